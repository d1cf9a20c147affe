"""The targets page shows a target's reference images, served by name and position only."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from vigil.config.settings import DatabaseSettings, Settings, TargetSettings
from vigil.media.registry import upsert_target
from vigil.store.db import make_engine, session_factory, write_session
from vigil.web.app import create_app
from workers.testing.clips import write_image


def test_targets_page_shows_reference_images_and_serves_only_them(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings(database={"url": sqlite_url}, storage={"data_dir": tmp_path / "data"})
    factory = session_factory(make_engine(DatabaseSettings(url=sqlite_url)))
    front = write_image(tmp_path / "front.png", size=(120, 90))
    conf = TargetSettings(name="mycar", description="my car", images=[front])
    with write_session(factory) as session:
        upsert_target(session, conf, None, references_dir=settings.storage.references_dir)
    client = TestClient(create_app(settings, factory), base_url="http://127.0.0.1")
    page = client.get("/targets")
    assert page.status_code == 200
    assert 'src="/targets/mycar/images/0"' in page.text and 'alt="front.png"' in page.text
    image = client.get("/targets/mycar/images/0")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == front.read_bytes()
    for path in [
        "/targets/mycar/images/1",
        "/targets/mycar/images/-1",
        "/targets/nobody/images/0",
        "/targets/mycar/images/..%2f..%2fetc%2fpasswd",
        "/targets/..%2fmycar/images/0",
    ]:
        assert client.get(path).status_code in (404, 422), path
    stored = next((tmp_path / "data" / "references").iterdir())
    stored.unlink()
    stored.symlink_to(front)  # a stored copy swapped for a link out of the references folder
    assert client.get("/targets/mycar/images/0").status_code == 404

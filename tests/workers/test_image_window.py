"""An image is one window with no time: the worker's log says "1 window" and the review page and the CLI
show the window as the image, not as "0.0–0.0 s" (issue 22, item 8)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from vigil.cli import cli
from vigil.config.settings import Settings, TargetSettings
from vigil.declared.apply import apply_settings
from vigil.formats.probe import probe
from vigil.media.registry import ensure_source, register_file
from vigil.ops.contracts import AnalyzePayload
from vigil.store.db import write_session
from vigil.store.schema import Alert, Detection
from vigil.web.app import create_app
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime
from workers.testing.clips import write_image


def test_an_image_is_one_window_said_as_the_image(
    sqlite_url: str, tmp_path: Path, tiny_model_dir, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        database={"url": sqlite_url},
        broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"},
        model={"id": str(tiny_model_dir("smolvlm2")), "frames_per_window": 4, "window_s": 1.0},
        storage={"data_dir": tmp_path / "data"},
        targets=[TargetSettings(name="car", description="a parked car", threshold=0.0)],
        alerts={"rules": [{"name": "any-car", "targets": ["car"], "cooldown_s": 0}]},
    )
    runtime = WorkerRuntime(settings)
    drop = tmp_path / "drop"
    drop.mkdir()
    image = write_image(drop / "still.jpg", size=(96, 72))
    apply_settings(runtime.factory, settings)
    with write_session(runtime.factory) as session:
        source_id = ensure_source(session, "drop", drop).id
    media_id = register_file(
        runtime.factory, source_id=source_id, root=drop, path=image, info=probe(image)
    ).media_id
    with caplog.at_level(logging.INFO, logger="workers.analysis.runner"):
        assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    done = [r.getMessage() for r in caplog.records if " done: " in r.getMessage()]
    assert len(done) == 1 and ", 1 window, " in done[0], done

    with runtime.factory() as session:
        (detection,) = session.scalars(select(Detection).where(Detection.media_id == media_id)).all()
        alert_id = session.scalar(select(Alert.id).where(Alert.media_id == media_id))
    assert (detection.start_s, detection.end_s) == (0.0, 0.0)
    client = TestClient(create_app(settings, runtime.factory), base_url="http://127.0.0.1")
    page = client.get(f"/media/{media_id}").text
    assert "0.0–0.0" not in page
    windows = re.findall(r'<td class="when">(.*?)</td>', page)
    assert windows == ["the image"]
    timeline = client.get("/").text
    assert "0.0–0.0" not in timeline
    assert re.findall(r'<div class="mute small">(.*?)</div></td>', timeline) == ["the image · analysis 1"]

    assert alert_id is not None
    env = {"VIGIL_DATABASE__URL": sqlite_url, "VIGIL_STORAGE__DATA_DIR": str(tmp_path / "data")}
    shown = CliRunner().invoke(cli, ["alerts", "show", str(alert_id)], env=env)
    assert shown.exit_code == 0, shown.output
    assert "  window    the image, score " in shown.output

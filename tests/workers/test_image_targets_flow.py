"""An image target through the analysis path of each family (no Celery): a clip becomes detections with
evidence about the referenced thing, and the rule on that target fires an alert."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from vigil.config.settings import Settings, TargetSettings
from vigil.declared.apply import apply_settings
from vigil.formats.probe import probe
from vigil.media.registry import ensure_source, register_file
from vigil.ops.contracts import AnalyzePayload
from vigil.store.db import write_session
from vigil.store.schema import Alert, Detection, Target
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime
from workers.testing.clips import write_clip_mp4v, write_image
from workers.testing.models import FAMILIES


@pytest.fixture(params=FAMILIES)
def runtime(request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path, tiny_model_dir) -> WorkerRuntime:
    refs = tmp_path / "refs"
    refs.mkdir()
    front = write_image(refs / "front.jpg", size=(120, 90))
    side = write_image(refs / "side.png", size=(90, 120))
    settings = Settings(
        database={"url": sqlite_url},
        broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"},
        model={"id": str(tiny_model_dir(request.param)), "frames_per_window": 4, "window_s": 1.0},
        storage={"data_dir": tmp_path / "data"},
        targets=[
            TargetSettings(name="mycar", description="my car", threshold=0.0, images=[front, side]),
            TargetSettings(name="van", description="a white van", threshold=1.0),
        ],
        alerts={"rules": [{"name": "car-home", "targets": ["mycar"], "cooldown_s": 0}]},
    )
    return WorkerRuntime(settings)


def test_an_image_target_is_scored_evidenced_and_alerted(runtime: WorkerRuntime, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    clip = write_clip_mp4v(drop / "a.mp4", seconds=2, fps=10, size=(96, 72))
    apply_settings(runtime.factory, runtime.settings)  # as the worker does at start
    with write_session(runtime.factory) as session:
        source_id = ensure_source(session, "drop", drop).id
    for original in runtime.settings.targets[0].images:
        original.unlink()  # the stored copies are what the worker reads
    info = probe(clip)
    media_id = register_file(runtime.factory, source_id=source_id, root=drop, path=clip, info=info).media_id
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    with runtime.factory() as session:
        car = session.scalar(select(Target).where(Target.name == "mycar"))
        assert car is not None and len(car.images) == 2
        rows = session.scalars(select(Detection).where(Detection.media_id == media_id)).all()
        alerts = session.scalars(select(Alert).where(Alert.media_id == media_id)).all()
    mine = [d for d in rows if d.target_id == car.id]
    assert len(mine) == 2 and all(d.matched and 0 < d.p_yes < 1 for d in mine)
    best = max(mine, key=lambda d: d.p_yes)  # one run of two matched windows: evidence on its best
    assert [bool(d.evidence) for d in mine] == [d is best for d in mine]
    assert all(Path(str(d.thumbnail_path)).is_file() for d in mine)
    assert [a.target_id for a in alerts] == [car.id]
    # Scoring, best-frame search and evidence all asked with the two reference images in the prompt.
    loaded = runtime.recognizer().loaded  # type: ignore[attr-defined]
    tails = loaded.suffixes.tails()
    assert any("shown in these images in the video? Answer yes or no." in t for t in tails)
    assert any("shown in these images appears in the video" in t for t in tails)

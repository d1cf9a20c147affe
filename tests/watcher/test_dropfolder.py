"""Drop-folder automation on rows created here, as the worker would leave them."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from tests.support.watching import media_rows, wait_for
from vigil.config.settings import Settings, SourceSettings
from vigil.media.dropfolder import finalize_file, move_no_clobber
from vigil.media.registry import register_file, sync_sources
from vigil.store.db import write_session
from vigil.store.schema import Analysis, Detection, Media, MediaStatus, Target, utcnow
from watcher.scan import scan_source


def _settings(make_settings, drop: Path, **source) -> Settings:
    return make_settings(sources=[SourceSettings(name="drop", path=drop, **source)])


def _register(factory, settings: Settings, path: Path, drop: Path) -> int:
    with write_session(factory) as session:
        source_id = sync_sources(session, settings.watch.sources)["drop"].id
    return register_file(factory, source_id=source_id, root=drop.resolve(), path=path, info=None).media_id


def _finish(factory, media_id: int, status: MediaStatus, *, p_yes: float = 0.8) -> None:
    with write_session(factory) as session:
        media = session.get_one(Media, media_id)
        media.status, media.finished_at = status, utcnow()
        if status == MediaStatus.DONE:
            target = Target(name="person", description="a person walking")
            analysis = Analysis(media_id=media_id, model_id="tiny", template_version=1, windows=1)
            session.add_all([target, analysis])
            session.flush()
            session.add(
                Detection(
                    analysis_id=analysis.id,
                    media_id=media_id,
                    target_id=target.id,
                    window_index=0,
                    start_s=0.0,
                    end_s=1.0,
                    p_yes=p_yes,
                    matched=True,
                    evidence="someone walks by",
                )
            )


def test_done_file_moves_keeping_its_relative_path_with_a_sidecar(
    make_settings, factory, make_clip, drop
) -> None:
    settings = _settings(make_settings, drop, after_analysis="move", sidecar=True)
    path = make_clip(drop / "cam1" / "2026" / "clip.mp4")
    original = path.read_bytes()
    media_id = _register(factory, settings, path, drop)
    _finish(factory, media_id, MediaStatus.DONE)
    moved = finalize_file(factory, settings, media_id)
    assert moved == drop.resolve() / "done" / "cam1" / "2026" / "clip.mp4"
    assert moved.read_bytes() == original and not path.exists()
    doc = json.loads((moved.parent / "clip.mp4.vigil.json").read_text())
    assert doc["media_id"] == media_id and doc["status"] == "done"
    assert doc["detections"] == [
        {
            "target": "person",
            "analysis_id": 1,
            "window": 0,
            "start_s": 0.0,
            "end_s": 1.0,
            "p_yes": 0.8,
            "matched": True,
            "evidence": "someone walks by",
        }
    ]
    (row,) = media_rows(factory)
    assert row.path == str(moved) and row.rel_path == "cam1/2026/clip.mp4"


def test_failed_file_moves_to_failed_and_collisions_get_a_suffix(
    make_settings, factory, make_clip, drop
) -> None:
    settings = _settings(make_settings, drop, after_analysis="move")
    squatter = make_clip(drop / "failed" / "x.mp4")
    path = drop / "x.mp4"
    path.write_bytes(b"broken")
    media_id = _register(factory, settings, path, drop)  # info=None: registered failed
    moved = finalize_file(factory, settings, media_id)
    assert moved == drop.resolve() / "failed" / "x-1.mp4"
    assert moved.read_bytes() == b"broken" and squatter.exists() and squatter.stat().st_size > 6
    assert not list(drop.rglob("*.vigil.json"))


def test_leave_with_sidecar_writes_next_to_the_original(make_settings, factory, make_clip, drop) -> None:
    settings = _settings(make_settings, drop, sidecar=True)
    path = make_clip(drop / "stay.mp4")
    media_id = _register(factory, settings, path, drop)
    _finish(factory, media_id, MediaStatus.DONE)
    assert finalize_file(factory, settings, media_id) == path
    assert json.loads((drop / "stay.mp4.vigil.json").read_text())["detections"][0]["target"] == "person"


def test_the_sidecar_keeps_every_targets_newest_answer_after_a_one_target_reanalysis(
    make_settings, factory, make_clip, drop
) -> None:
    """`vigil reanalyze --target dog` adds an analysis of dog alone: the sidecar still lists person's
    answer, from the analysis that gave it (issue 24)."""
    settings = _settings(make_settings, drop, sidecar=True)
    path = make_clip(drop / "again.mp4")
    media_id = _register(factory, settings, path, drop)
    _finish(factory, media_id, MediaStatus.DONE)
    with write_session(factory) as session:
        dog = Target(name="dog", description="a dog")
        again = Analysis(media_id=media_id, model_id="tiny", template_version=1, windows=1)
        session.add_all([dog, again])
        session.flush()
        session.add(
            Detection(analysis_id=again.id, media_id=media_id, target_id=dog.id, window_index=0,
                      start_s=0.0, end_s=1.0, p_yes=0.1, matched=False)
        )  # fmt: skip
        again_id = again.id
    assert finalize_file(factory, settings, media_id) == path
    document = json.loads((drop / "again.mp4.vigil.json").read_text())
    answers = {d["target"]: d["analysis_id"] for d in document["detections"]}
    assert answers["dog"] == again_id and answers["person"] < again_id, answers


def test_nothing_happens_when_off_or_not_finished(
    make_settings, make_enqueuer, factory, make_clip, drop
) -> None:
    off = _settings(make_settings, drop)
    path = make_clip(drop / "a.mp4")
    media_id = _register(factory, off, path, drop)
    with factory() as session:
        assert session.scalar(select(Media.status).where(Media.id == media_id)) == "failed"
    assert finalize_file(factory, off, media_id) is None
    on = _settings(make_settings, drop, after_analysis="move")
    queued = make_clip(drop / "b.mp4")
    other = scan_source(factory, make_enqueuer(on), on.watch.sources[0])
    assert other.queued == 1
    queued_id = next(m.id for m in media_rows(factory) if m.rel_path == "b.mp4")
    assert finalize_file(factory, on, queued_id) is None and queued.exists()


def test_move_no_clobber_never_overwrites(tmp_path: Path) -> None:
    for name in ("a.mp4", "a-1.mp4"):
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / name).write_text(name)
    (tmp_path / "a.mp4").write_text("new")
    dest = move_no_clobber(tmp_path / "a.mp4", tmp_path / "out" / "a.mp4")
    assert dest.name == "a-2.mp4" and dest.read_text() == "new"
    assert (tmp_path / "out" / "a.mp4").read_text() == "a.mp4"


def test_watcher_moves_a_file_that_failed_at_registration_into_failed(
    start_watcher, make_settings, drop: Path, factory
) -> None:
    source = SourceSettings(name="drop", path=drop, after_analysis="move", sidecar=True)
    start_watcher(make_settings(sources=[source], ready_deadline_s=0.5))
    (drop / "cam").mkdir()
    (drop / "cam" / "notes.mp4").write_text("not a video")
    moved = drop / "failed" / "cam" / "notes.mp4"
    wait_for(lambda: moved.is_file(), timeout=15)
    assert not (drop / "cam" / "notes.mp4").exists()
    sidecar = json.loads(moved.with_name("notes.mp4.vigil.json").read_text())
    assert sidecar["status"] == "failed" and sidecar["error"]

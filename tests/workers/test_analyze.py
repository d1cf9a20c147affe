"""The analysis path without Celery: claim, lease, recognise with a tiny real model, store exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from vigil.config.settings import Settings, TargetSettings
from vigil.errors import MediaError, ModelUnavailable, OutOfMemory
from vigil.formats.probe import MediaInfo, probe
from vigil.media.lifecycle import LostClaim, claim
from vigil.media.registry import ensure_source, register_file, sync_targets
from vigil.ops.contracts import AnalyzePayload, Recognition, TargetSpec
from vigil.store.db import write_session
from vigil.store.schema import Analysis, Detection, Media, MediaStatus, Target, utcnow
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime
from workers.analysis.storing import store_results
from workers.testing.clips import write_camera_clip, write_clip_mp4v, write_corrupt

TARGETS = [
    TargetSettings(name="person", description="a person walking", threshold=0.0),
    TargetSettings(name="van", description="a white delivery van", threshold=1.0),
]


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path, tiny_llava: Path) -> Settings:
    return Settings(
        database={"url": sqlite_url},
        broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"},
        model={"id": str(tiny_llava), "frames_per_window": 4, "window_s": 1.0},
        storage={"data_dir": tmp_path / "data"},
        targets=TARGETS,
        work={"lease_s": 30, "max_attempts": 2},
    )


@pytest.fixture
def runtime(settings: Settings) -> WorkerRuntime:
    return WorkerRuntime(settings)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def register(runtime: WorkerRuntime, drop: Path, path: Path) -> int:
    with write_session(runtime.factory) as session:
        sync_targets(
            session, runtime.settings.targets, references_dir=runtime.settings.storage.references_dir
        )
        source_id = ensure_source(session, "drop", drop).id
    try:
        info = probe(path)
    except MediaError:  # the watcher registers unreadable files as failed; here we want them queued
        info = MediaInfo("video", 1, 1, 1.0, 1, 1.0, None)
    return register_file(runtime.factory, source_id=source_id, root=drop, path=path, info=info).media_id


def counts(runtime: WorkerRuntime, media_id: int) -> tuple[int, int]:
    with runtime.factory() as session:
        analyses = session.scalar(
            select(func.count()).select_from(Analysis).where(Analysis.media_id == media_id)
        )
        detections = session.scalar(
            select(func.count()).select_from(Detection).where(Detection.media_id == media_id)
        )
    return int(analyses or 0), int(detections or 0)


def test_a_clip_ends_done_with_one_detection_per_target_and_window(
    runtime: WorkerRuntime, drop: Path
) -> None:
    clip = write_clip_mp4v(drop / "a.mp4", seconds=2, fps=10, size=(96, 72))
    media_id = register(runtime, drop, clip)
    outcome = analyze_media(runtime, AnalyzePayload(media_id=media_id))
    assert outcome.status == "done"
    with runtime.factory() as session:
        media = session.get_one(Media, media_id)
        detections = session.scalars(
            select(Detection).order_by(Detection.window_index, Detection.target_id)
        ).all()
        names = {t.id: t.name for t in session.scalars(select(Target))}
    assert media.status == MediaStatus.DONE and media.claim_token is None and media.error is None
    assert [(d.window_index, names[d.target_id]) for d in detections] == [
        (0, "person"),
        (0, "van"),
        (1, "person"),
        (1, "van"),
    ]
    assert all(0.0 < d.p_yes < 1.0 for d in detections)
    person = [d for d in detections if names[d.target_id] == "person"]
    van = [d for d in detections if names[d.target_id] == "van"]
    # threshold 0 always matches: a thumbnail each, and evidence on the run's best window (evidence_windows
    # best_of_run, the default); threshold 1 never does: neither.
    assert all(d.matched and d.thumbnail_path and Path(d.thumbnail_path).is_file() for d in person)
    best = max(person, key=lambda d: d.p_yes)
    assert [d.evidence is not None for d in person] == [d is best for d in person]
    assert all(not d.matched and d.thumbnail_path is None and d.evidence is None for d in van)
    assert [(d.start_s, d.end_s) for d in person] == [(0.0, 1.0), (1.0, 2.0)]


def test_a_second_delivery_of_the_same_task_does_nothing(runtime: WorkerRuntime, drop: Path) -> None:
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "skipped"
    assert counts(runtime, media_id) == (1, 2)


def test_only_one_of_two_concurrent_claims_wins(runtime: WorkerRuntime, drop: Path) -> None:
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    first = claim(runtime.factory, media_id, lease_s=30)
    assert first is not None and first.attempts == 1
    assert claim(runtime.factory, media_id, lease_s=30) is None


def test_a_worker_whose_lease_expired_cannot_store_results(runtime: WorkerRuntime, drop: Path) -> None:
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    stale = claim(runtime.factory, media_id, lease_s=30)
    assert stale is not None
    with write_session(runtime.factory) as session:  # the lease runs out: the worker was presumed dead
        session.execute(update(Media).where(Media.id == media_id).values(lease_until=utcnow()))
    fresh = claim(runtime.factory, media_id, lease_s=30)
    assert fresh is not None and fresh.attempts == 2
    empty = Recognition(results=[], windows=1, frames_decoded=4, decode_ms=1, model_ms=1)
    with pytest.raises(LostClaim):
        store_results(runtime.factory, stale, empty, model_id="m", template_version=1, total_ms=1)
    store_results(runtime.factory, fresh, empty, model_id="m", template_version=1, total_ms=1)
    assert counts(runtime, media_id) == (1, 0)


def test_corrupt_file_fails_at_once_with_its_reason(runtime: WorkerRuntime, drop: Path) -> None:
    bad = write_corrupt(drop / "bad.mp4", "truncated")
    media_id = register(runtime, drop, bad)
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "failed"
    with runtime.factory() as session:
        media = session.get_one(Media, media_id)
    assert media.status == MediaStatus.FAILED and media.error and media.attempts == 1
    assert counts(runtime, media_id) == (0, 0)


def test_reanalysis_asks_only_the_pending_targets(runtime: WorkerRuntime, drop: Path) -> None:
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    with write_session(runtime.factory) as session:
        van = session.scalar(select(Target).where(Target.name == "van"))
        assert van is not None
        session.execute(
            update(Media)
            .where(Media.id == media_id)
            .values(status=MediaStatus.QUEUED, pending_target_ids=[van.id])
        )
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    with runtime.factory() as session:
        latest = session.scalars(select(Analysis).order_by(Analysis.id.desc())).first()
        assert latest is not None and latest.target_ids == [van.id]
        assert {d.target_id for d in latest.detections} == {van.id}
        assert session.get_one(Media, media_id).pending_target_ids is None


class Failing:
    """A recogniser that fails the way a device can: the real one cannot run out of CUDA memory here."""

    model_id, template_version = "failing", 1

    def __init__(self, error: Exception) -> None:
        self.error, self.frames_seen = error, []

    def recognize(
        self,
        path: Path,
        info: MediaInfo,
        targets: list[TargetSpec],
        *,
        media_id: int,
        frames_per_window: int | None = None,
        static_gate: float = 0.0,
    ) -> Recognition:
        self.frames_seen.append(frames_per_window)
        raise self.error


def test_out_of_memory_retries_with_fewer_frames_then_gives_up(settings: Settings, drop: Path) -> None:
    failing = Failing(OutOfMemory("CUDA out of memory"))
    runtime = WorkerRuntime(settings, recognizer=failing)
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    first = analyze_media(runtime, AnalyzePayload(media_id=media_id))
    assert first.status == "retry" and first.frames_per_window == 2 and first.retry_in_s
    with runtime.factory() as session:
        media = session.get_one(Media, media_id)
        assert media.status == MediaStatus.QUEUED and "out of memory" in (media.error or "")
    second = analyze_media(runtime, AnalyzePayload(media_id=media_id, frames_per_window=2))
    assert second.status == "retry" and failing.frames_seen == [None, 2]
    third = analyze_media(runtime, AnalyzePayload(media_id=media_id, frames_per_window=1))
    assert third.status == "failed"
    with runtime.factory() as session:
        media = session.get_one(Media, media_id)
    assert media.status == MediaStatus.FAILED and "gave up after 2 attempts" in (media.error or "")


def test_a_model_that_cannot_load_leaves_the_media_queued(settings: Settings, drop: Path) -> None:
    settings.model.id = str(drop / "no-such-model")
    runtime = WorkerRuntime(settings)
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    outcome = analyze_media(runtime, AnalyzePayload(media_id=media_id))
    assert outcome.status == "retry"
    with runtime.factory() as session:
        media = session.get_one(Media, media_id)
    assert media.status == MediaStatus.QUEUED and media.attempts == 0
    assert "model unavailable" in (media.error or "")
    with pytest.raises(ModelUnavailable):
        runtime.recognizer()


def test_store_results_is_atomic(runtime: WorkerRuntime, drop: Path) -> None:
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=(96, 72)))
    taken = claim(runtime.factory, media_id, lease_s=30)
    assert taken is not None

    def explode(session: object, analysis: object) -> list[int]:
        raise RuntimeError("rule evaluation failed")

    recognition = Recognition(results=[], windows=1, frames_decoded=1, decode_ms=1, model_ms=1)
    with pytest.raises(RuntimeError):
        store_results(
            runtime.factory,
            taken,
            recognition,
            model_id="m",
            template_version=1,
            total_ms=1,
            after_results=explode,
        )
    with runtime.factory() as session:
        assert session.get_one(Media, media_id).status == MediaStatus.RUNNING
    assert counts(runtime, media_id) == (0, 0)


def test_caption_is_stored_when_configured(settings: Settings, drop: Path) -> None:
    settings.model.caption = True
    settings.model.caption_max_tokens = 6
    runtime = WorkerRuntime(settings)
    media_id = register(runtime, drop, write_clip_mp4v(drop / "a.mp4", seconds=2, fps=10, size=(96, 72)))
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    with runtime.factory() as session:
        media = session.get_one(Media, media_id)
    assert isinstance(media.caption, str)
    tokens = runtime.recognizer().loaded.tokenizer.encode(media.caption, add_special_tokens=False)  # type: ignore[attr-defined]
    assert len(tokens) <= 6 + 2  # decoding then re-encoding may merge or split a piece at the edges


def test_keyframe_mode_analyses_a_camera_clip_from_keyframes_alone(settings: Settings, drop: Path) -> None:
    """``sampling = "keyframe"`` through the worker: one-slice IDR keyframes every second (the keyframe
    pass's back-to-back path), a window each, thumbnails from the keyframes; only keyframes are decoded."""
    settings.model.sampling = "keyframe"
    settings.model.caption = True
    settings.model.caption_max_tokens = 2
    runtime = WorkerRuntime(settings)
    clip = write_camera_clip(drop / "cam.mp4", seconds=4, fps=25, gop_s=1, cut_s=0, size=(96, 64), slices=1)
    media_id = register(runtime, drop, clip)
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    with runtime.factory() as session:
        analysis = session.scalars(select(Analysis).where(Analysis.media_id == media_id)).one()
        detections = session.scalars(select(Detection).order_by(Detection.window_index)).all()
    assert analysis.params["sampling"] == "keyframe"
    assert analysis.frames_decoded == 4  # the 4 keyframes, each once, for the windows and the caption
    assert sorted({d.window_index for d in detections}) == [0, 1, 2, 3]
    matched = [d for d in detections if d.matched]
    assert len(matched) == 4 and all(d.thumbnail_path and Path(d.thumbnail_path).is_file() for d in matched)

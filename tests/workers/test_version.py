"""The worker analyses the version it claimed: a file changed after registration ends `superseded`, fires
nothing, and its new content becomes the next version; an analysis stores the size and mtime it read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from vigil.config.settings import Settings
from vigil.declared.apply import apply_settings
from vigil.formats.probe import MediaInfo, probe
from vigil.media.backfill import mark_for_reanalysis
from vigil.media.lifecycle import expire_leases
from vigil.media.registry import ensure_source, file_mtime, register_file
from vigil.ops.contracts import AnalyzePayload, Recognition, Recognizer, TargetSpec
from vigil.store.db import write_session
from vigil.store.schema import Alert, Analysis, Media, MediaStatus
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime
from workers.analysis.version import HASH_CHECK_MAX_BYTES
from workers.testing.clips import write_clip_mp4v

SIZE = (96, 72)


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path, tiny_llava: Path) -> Settings:
    return Settings(
        database={"url": sqlite_url},
        broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"},
        model={"id": str(tiny_llava), "frames_per_window": 4, "window_s": 1.0},
        storage={"data_dir": tmp_path / "data"},
        targets=[{"name": "person", "description": "a person walking", "threshold": 0.0}],
        alerts={
            "channels": [{"name": "log", "kind": "log"}],
            "rules": [{"name": "anyone", "targets": ["person"], "cooldown_s": 0}],
        },
        work={"lease_s": 30, "max_attempts": 2},
    )


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def register(runtime: WorkerRuntime, drop: Path, path: Path) -> int:
    apply_settings(runtime.factory, runtime.settings)
    with write_session(runtime.factory) as session:
        source_id = ensure_source(session, "drop", drop).id
    registration = register_file(runtime.factory, source_id=source_id, root=drop, path=path, info=probe(path))
    return registration.media_id


def row(runtime: WorkerRuntime, media_id: int) -> Media:
    with runtime.factory() as session:
        return session.get_one(Media, media_id)


def alerts_and_analyses(runtime: WorkerRuntime, media_id: int) -> tuple[int, int]:
    with runtime.factory() as session:
        alerts = session.scalar(select(func.count()).select_from(Alert).where(Alert.media_id == media_id))
        analyses = session.scalar(
            select(func.count()).select_from(Analysis).where(Analysis.media_id == media_id)
        )
    return int(alerts or 0), int(analyses or 0)


def test_a_file_rewritten_after_registration_is_superseded_and_the_next_version_analysed(
    settings: Settings, drop: Path
) -> None:
    runtime = WorkerRuntime(settings)
    path = write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=SIZE)
    first = register(runtime, drop, path)
    write_clip_mp4v(path, seconds=2, fps=10, size=SIZE)  # the uploader sends it again, longer
    outcome = analyze_media(runtime, AnalyzePayload(media_id=first))
    old = row(runtime, first)
    assert outcome.status == "superseded" and old.status == MediaStatus.SUPERSEDED
    assert "since registration" in (old.error or "") and "bytes" in (old.error or "")
    assert alerts_and_analyses(runtime, first) == (0, 0)
    # The normal path registers what is on disk now as version 2, even where a rescan sees nothing new.
    second = register(runtime, drop, path)
    assert second != first and row(runtime, second).version == 2
    assert analyze_media(runtime, AnalyzePayload(media_id=second)).status == "done"
    st = os.stat(path)
    with runtime.factory() as session:
        analysis = session.scalars(select(Analysis).where(Analysis.media_id == second)).one()
    assert (analysis.size_bytes, analysis.file_mtime) == (st.st_size, file_mtime(st))
    assert alerts_and_analyses(runtime, second) == (1, 1)


def test_same_size_and_mtime_with_new_content_is_caught_by_the_hash(settings: Settings, drop: Path) -> None:
    runtime = WorkerRuntime(settings)
    path = write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=SIZE)
    media_id = register(runtime, drop, path)
    st = os.stat(path)
    assert st.st_size <= HASH_CHECK_MAX_BYTES
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # rsync -t restores the mtime
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "superseded"
    assert "sha256" in (row(runtime, media_id).error or "")
    assert alerts_and_analyses(runtime, media_id) == (0, 0)


class RewritesDuringDecode:
    """The real recogniser, while the file is overwritten under it (an uploader's second attempt)."""

    def __init__(self, real: Recognizer) -> None:
        self.real = real
        self.model_id, self.template_version = real.model_id, real.template_version

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
        result = self.real.recognize(
            path,
            info,
            targets,
            media_id=media_id,
            frames_per_window=frames_per_window,
            static_gate=static_gate,
        )
        with path.open("ab") as handle:
            handle.write(b"\0" * 4096)
        return result


def test_a_file_that_changes_while_it_is_analysed_stores_nothing_and_fires_nothing(
    settings: Settings, drop: Path
) -> None:
    real = WorkerRuntime(settings).recognizer()
    runtime = WorkerRuntime(settings, recognizer=RewritesDuringDecode(real))
    path = write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=SIZE)
    media_id = register(runtime, drop, path)
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "superseded"
    assert "while it was analysed" in (row(runtime, media_id).error or "")
    assert alerts_and_analyses(runtime, media_id) == (0, 0)
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "skipped"  # terminal


def test_a_rewrite_that_no_longer_decodes_is_superseded_not_failed(settings: Settings, drop: Path) -> None:
    """Decoding starts beside the version check; when both fail, the check's verdict wins, as when it ran
    first (a new version is not this file's fault)."""
    runtime = WorkerRuntime(settings)
    path = write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=SIZE)
    media_id = register(runtime, drop, path)
    st = os.stat(path)
    path.write_bytes(b"\0" * st.st_size)  # same size, unreadable
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "superseded"
    assert "sha256" in (row(runtime, media_id).error or "")
    assert alerts_and_analyses(runtime, media_id) == (0, 0)


def test_no_alert_is_ever_fired_from_a_superseded_version(settings: Settings, drop: Path) -> None:
    """Neither the worker (again, as a redelivered task), nor a re-analysis for the target (`vigil backfill`)
    nor the lease reconciler brings a superseded row back: it stays without analysis and without alert,
    while the next version of the same file alerts once."""
    runtime = WorkerRuntime(settings)
    path = write_clip_mp4v(drop / "a.mp4", seconds=1, fps=10, size=SIZE)
    first = register(runtime, drop, path)
    write_clip_mp4v(path, seconds=2, fps=10, size=SIZE)
    assert analyze_media(runtime, AnalyzePayload(media_id=first)).status == "superseded"
    second = register(runtime, drop, path)
    assert analyze_media(runtime, AnalyzePayload(media_id=second)).status == "done"

    marked = mark_for_reanalysis(runtime.factory, target_name="person")
    assert first not in marked.media_ids and second in marked.media_ids
    expire_leases(runtime.factory, max_attempts=2, batch=100)
    assert row(runtime, first).status == MediaStatus.SUPERSEDED
    assert analyze_media(runtime, AnalyzePayload(media_id=first)).status == "skipped"
    assert analyze_media(runtime, AnalyzePayload(media_id=second)).status == "done"  # the re-analysis
    with runtime.factory() as session:
        from_superseded = session.scalar(
            select(func.count())
            .select_from(Alert)
            .join(Media, Media.id == Alert.media_id)
            .where(Media.status == MediaStatus.SUPERSEDED)
        )
    assert from_superseded == 0
    assert alerts_and_analyses(runtime, first) == (0, 0)
    assert alerts_and_analyses(runtime, second)[0] >= 1

"""The watcher end to end, in-process: real observers on real folders, a real migrated database."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kombu import Connection
from sqlalchemy.orm import Session, sessionmaker
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver

from tests.support.watching import UNREACHABLE_BROKER, media_rows, rows_for, wait_for
from vigil.config.settings import SourceSettings, TargetSettings
from vigil.media.reconciler import reconcile_media
from vigil.ops.contracts import GPU_QUEUE
from watcher.service import WatcherService, default_observer

Maker = Callable[..., Path]


def test_slow_writer_is_registered_once_after_its_last_byte(
    start_watcher: Callable[..., WatcherService], make_settings, factory, drop: Path, clip_bytes: bytes
) -> None:
    start_watcher(make_settings(settle_s=0.5))
    path = drop / "slow.mp4"
    chunks = [
        clip_bytes[i : i + len(clip_bytes) // 8 + 1]
        for i in range(0, len(clip_bytes), len(clip_bytes) // 8 + 1)
    ]
    with path.open("wb") as handle:
        for chunk in chunks:  # ~2 s of writing, pauses shorter than settle_s
            handle.write(chunk)
            handle.flush()
            time.sleep(0.25)
            assert media_rows(factory) == [], "registered before the last byte"
    last_write = datetime.now(UTC)
    (row,) = wait_for(lambda: media_rows(factory))
    assert row.created_at >= last_write
    assert row.size_bytes == len(clip_bytes)
    assert (row.status, row.kind, row.frame_count) == ("queued", "video", 10)
    wait_for(lambda: media_rows(factory)[0].sends == 1)  # sent after the commit
    time.sleep(0.8)  # later events (close-after-write) must not register it again
    assert len(media_rows(factory)) == 1


def test_file_moved_in_from_outside(
    start_watcher, make_clip: Maker, factory, drop: Path, tmp_path: Path
) -> None:
    start_watcher()
    outside = make_clip(tmp_path / "outside" / "moved.mp4")
    os.rename(outside, drop / "moved.mp4")
    (row,) = wait_for(lambda: media_rows(factory))
    assert (row.rel_path, row.status, row.version) == ("moved.mp4", "queued", 1)


def test_temp_name_then_rename(start_watcher, clip_bytes: bytes, factory, drop: Path) -> None:
    start_watcher()
    part = drop / "cam" / "x.mp4.part"
    part.parent.mkdir()
    with part.open("wb") as handle:
        half = len(clip_bytes) // 2
        handle.write(clip_bytes[:half])
        handle.flush()
        time.sleep(0.5)
        handle.write(clip_bytes[half:])
    part.rename(drop / "cam" / "x.mp4")
    (row,) = wait_for(lambda: media_rows(factory))
    assert (row.rel_path, row.status) == ("cam/x.mp4", "queued")
    time.sleep(0.5)
    assert [m.rel_path for m in media_rows(factory)] == ["cam/x.mp4"]


def test_duplicate_content_is_skipped_with_its_original(
    start_watcher, make_clip: Maker, factory, drop: Path
) -> None:
    start_watcher()
    make_clip(drop / "a.mp4", same=True)
    (first,) = wait_for(lambda: media_rows(factory))
    make_clip(drop / "b.mp4", same=True)
    rows = wait_for(lambda: rows_for(factory, "b.mp4"))
    assert (rows[0].status, rows[0].duplicate_of_id, rows[0].sends) == ("skipped", first.id, 0)


def test_duplicate_content_analyzed_when_configured(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path
) -> None:
    start_watcher(make_settings(duplicate_content="analyze"))
    make_clip(drop / "a.mp4", same=True)
    wait_for(lambda: media_rows(factory))
    make_clip(drop / "b.mp4", same=True)
    (row,) = wait_for(lambda: rows_for(factory, "b.mp4"))
    assert (row.status, row.duplicate_of_id) == ("queued", None)


def test_rewrite_in_place_is_a_new_version_and_a_touch_is_not(
    start_watcher, make_clip: Maker, factory, drop: Path
) -> None:
    service = start_watcher()
    path = make_clip(drop / "same-name.mp4")
    wait_for(lambda: media_rows(factory))
    make_clip(path)  # new content under the same name
    rows = wait_for(
        lambda: len(rows_for(factory, "same-name.mp4")) == 2 and rows_for(factory, "same-name.mp4")
    )
    assert [(m.version, m.status) for m in rows] == [(1, "queued"), (2, "queued")]
    assert rows[0].sha256 != rows[1].sha256
    os.utime(path)  # same content, new mtime: no new version
    time.sleep(0.2)
    assert service.wait_idle(5)
    assert len(rows_for(factory, "same-name.mp4")) == 2


def test_deleted_before_ready_leaves_no_row(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path
) -> None:
    service = start_watcher(make_settings(settle_s=0.5))
    path = make_clip(drop / "brief.mp4")
    time.sleep(0.1)
    path.unlink()
    assert service.wait_idle(5)
    assert media_rows(factory) == []


def test_symlink_out_of_the_root_is_ignored(
    start_watcher, make_clip: Maker, factory, drop: Path, tmp_path: Path
) -> None:
    service = start_watcher()
    secret = make_clip(tmp_path / "elsewhere" / "secret.mp4")
    (drop / "escape.mp4").symlink_to(secret)
    (drop / "escape-dir").symlink_to(secret.parent, target_is_directory=True)
    make_clip(drop / "real.mp4")
    wait_for(lambda: media_rows(factory))
    assert service.scan_now() == 0
    assert service.wait_idle(5)
    assert [m.rel_path for m in media_rows(factory)] == ["real.mp4"]


def test_fifo_is_skipped_without_blocking(start_watcher, make_clip: Maker, factory, drop: Path) -> None:
    os.mkfifo(drop / "before.mp4")  # found by the startup scan
    service = start_watcher()
    os.mkfifo(drop / "pipe.mp4")  # found by an event
    make_clip(drop / "after.mp4")
    wait_for(lambda: media_rows(factory), timeout=5)
    assert service.wait_idle(5), "a FIFO blocked the watcher"
    assert [m.rel_path for m in media_rows(factory)] == ["after.mp4"]


def test_never_readable_file_fails_after_the_deadline(
    start_watcher, make_settings, clip_bytes: bytes, factory, drop: Path
) -> None:
    start_watcher(make_settings(settle_s=0.2, ready_deadline_s=1.5))
    started = time.monotonic()
    (drop / "cut.mp4").write_bytes(clip_bytes[: len(clip_bytes) // 2])  # an upload cut short: no moov atom
    time.sleep(0.8)
    assert media_rows(factory) == [], "failed before its deadline"
    (row,) = wait_for(lambda: media_rows(factory), timeout=10)
    assert time.monotonic() - started >= 1.5
    assert (row.status, row.sends) == ("failed", 0)
    assert "incomplete mp4" in (row.error or "")


def test_camera_tree_bursts_of_new_directories(start_watcher, make_clip: Maker, factory, drop: Path) -> None:
    service = start_watcher()
    expected = set()
    for hour in range(12):
        for minute in range(4):
            rel = f"cam{hour % 3}/2026/11/24/{hour:02d}/{minute:02d}.mp4"
            make_clip(drop / rel)
            expected.add(rel)
    wait_for(lambda: len(media_rows(factory)) >= len(expected), timeout=20)
    assert service.wait_idle(10)
    rows = media_rows(factory)
    assert sorted(m.rel_path for m in rows) == sorted(expected)  # each exactly once
    assert {m.status for m in rows} == {"queued"}, [(m.rel_path, m.error) for m in rows if m.error]


def test_restart_finds_files_added_while_stopped(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path
) -> None:
    first = start_watcher()
    make_clip(drop / "before.mp4")
    wait_for(lambda: media_rows(factory))
    first.stop()
    make_clip(drop / "while-down.mp4")
    make_clip(drop / "new-dir" / "deep" / "while-down.mp4")
    start_watcher(make_settings())
    wait_for(lambda: len(media_rows(factory)) == 3)
    rows = media_rows(factory)
    assert sorted(m.rel_path for m in rows) == ["before.mp4", "new-dir/deep/while-down.mp4", "while-down.mp4"]
    assert all(m.version == 1 for m in rows)


def test_rescan_finds_what_events_missed_and_is_a_no_op_for_known_files(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path
) -> None:
    # A polling observer that never polls during the test stands for lost events.
    sources = [SourceSettings(name="drop", path=drop, observer="polling", poll_interval_s=600)]
    service = start_watcher(make_settings(sources=sources))
    make_clip(drop / "a" / "missed.mp4")
    time.sleep(0.5)
    assert media_rows(factory) == []
    assert service.scan_now() == 1
    wait_for(lambda: media_rows(factory))
    assert service.wait_idle(5)
    assert service.scan_now() == 0


def test_polling_observer(start_watcher, make_settings, make_clip: Maker, factory, drop: Path) -> None:
    sources = [SourceSettings(name="drop", path=drop, observer="polling", poll_interval_s=0.2)]
    service = start_watcher(make_settings(sources=sources))
    assert type(service.observers["drop"]).__name__ == "PollingObserver"
    make_clip(drop / "d1" / "polled.mp4")
    (row,) = wait_for(lambda: media_rows(factory))
    assert (row.rel_path, row.status) == ("d1/polled.mp4", "queued")


def test_ignored_names_and_drop_folder_outboxes(start_watcher, make_clip: Maker, factory, drop: Path) -> None:
    service = start_watcher()
    for rel in (
        "x.mp4.part",
        ".hidden.mp4",
        ".sync/y.mp4",
        "done/z.mp4",
        "failed/w.mp4",
        "notes.txt",
        "clip.mp4.vigil.json",
    ):
        make_clip(drop / rel)
    make_clip(drop / "UPPER.MP4")
    wait_for(lambda: media_rows(factory))
    assert service.scan_now() == 0
    assert service.wait_idle(5)
    assert [m.rel_path for m in media_rows(factory)] == ["UPPER.MP4"]


def test_non_recursive_source_ignores_subfolders(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path
) -> None:
    service = start_watcher(make_settings(sources=[SourceSettings(name="flat", path=drop, recursive=False)]))
    make_clip(drop / "sub" / "deep.mp4")
    make_clip(drop / "top.mp4")
    wait_for(lambda: media_rows(factory))
    assert service.wait_idle(5)
    assert [m.rel_path for m in media_rows(factory)] == ["top.mp4"]


def test_several_sources_with_their_own_targets(
    start_watcher, make_settings, make_clip: Maker, factory, tmp_path: Path
) -> None:
    sources = [
        SourceSettings(name="front", path=tmp_path / "front", targets=["person"]),
        SourceSettings(name="back", path=tmp_path / "back", observer="polling", poll_interval_s=0.2),
    ]
    for s in sources:
        s.path.mkdir()
    person = TargetSettings(name="person", description="a person")
    start_watcher(make_settings(sources=sources, targets=[person]))
    make_clip(tmp_path / "front" / "f.mp4")
    make_clip(tmp_path / "back" / "b.mp4")
    rows = wait_for(lambda: len(media_rows(factory)) == 2 and media_rows(factory))
    assert {(m.source.name if False else m.source_id, m.rel_path) for m in rows} == {
        (1, "f.mp4"),
        (2, "b.mp4"),
    }


def test_broker_down_at_registration_then_the_reconciler_sends(
    start_watcher, make_settings, make_clip: Maker, make_enqueuer, factory, drop: Path, broker_url: str
) -> None:
    start_watcher(make_settings(broker=UNREACHABLE_BROKER))
    make_clip(drop / "waiting.mp4")
    (row,) = wait_for(lambda: media_rows(factory), timeout=15)
    assert (row.status, row.sends, row.enqueued_at) == ("queued", 0, None)

    working = make_settings()
    report = reconcile_media(factory, make_enqueuer(working), working.work)
    assert report.resent == 1
    (row,) = media_rows(factory)
    assert row.sends == 1 and row.enqueued_at is not None
    with Connection(broker_url) as conn:
        queue = conn.SimpleQueue(GPU_QUEUE)
        message = queue.get(timeout=5)
        assert message.headers["task"] == "vigil.analyze"
        assert message.payload[1] == {"payload": {"media_id": row.id, "frames_per_window": None}}
        message.ack()
        queue.close()


def test_watch_limit_falls_back_to_polling(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class NoWatchesLeft(InotifyObserver):
        """The kernel's answer when fs.inotify.max_user_watches is used up (not settable in this sandbox)."""

        def schedule(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def factory_(source: SourceSettings) -> BaseObserver:
        return NoWatchesLeft() if source.observer == "native" else default_observer(source)

    sources = [SourceSettings(name="drop", path=drop, poll_interval_s=0.2)]
    with caplog.at_level(logging.ERROR, logger="watcher.service"):
        service = start_watcher(make_settings(sources=sources), observer_factory=factory_)
    assert "fs.inotify.max_user_watches" in caplog.text
    assert type(service.observers["drop"]).__name__ == "PollingObserver"
    make_clip(drop / "polled.mp4")
    wait_for(lambda: media_rows(factory))


def test_stop_lets_the_registration_in_progress_commit(
    start_watcher, make_settings, make_clip: Maker, factory: sessionmaker[Session], drop: Path
) -> None:
    for i in range(30):
        make_clip(drop / f"f{i:02d}.mp4")
    service = start_watcher(make_settings(settle_s=0.0))
    stopper = threading.Thread(target=service.stop)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive()
    rows = media_rows(factory)
    # every row is complete (one transaction each): queued with its probe and hash, and sent
    assert all(m.sha256 and m.frame_count == 10 and m.sends == 1 for m in rows)
    assert len({m.rel_path for m in rows}) == len(rows)


def test_source_folder_missing_does_not_stop_the_others(
    start_watcher, make_settings, make_clip: Maker, factory, drop: Path, tmp_path: Path
) -> None:
    sources = [
        SourceSettings(name="gone", path=tmp_path / "unmounted"),
        SourceSettings(name="drop", path=drop),
    ]
    service = start_watcher(make_settings(sources=sources))
    assert set(service.observers) == {"drop"}
    make_clip(drop / "ok.mp4")
    wait_for(lambda: media_rows(factory))


def test_directory_moved_in_with_files(
    start_watcher, make_clip: Maker, factory, drop: Path, tmp_path: Path
) -> None:
    start_watcher()
    staging = tmp_path / "staging" / "2026-11-24"
    for i in range(3):
        make_clip(staging / "sub" / f"{i}.mp4")
    shutil.move(str(staging), str(drop / "2026-11-24"))
    rows = wait_for(lambda: len(media_rows(factory)) == 3 and media_rows(factory))
    assert sorted(m.rel_path for m in rows) == [f"2026-11-24/sub/{i}.mp4" for i in range(3)]

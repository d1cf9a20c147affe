"""The completeness rules in a running watcher: a writer that stalls with the file open, a file cut short
that is finished later, files that can never be media, and the open-writer check on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from tests.support.watching import media_rows, wait_for
from vigil.media.settling import SettlingReport, read_report, settling_line, write_report
from vigil.ops.metrics import SETTLING_FILES, SETTLING_OLDEST, watch_settling
from watcher.service import WatcherService
from watcher.writers import OpenWriters, walk_descriptors
from workers.testing.formats import write_fragmented_mp4, write_jpeg, write_mjpeg_avi


def hold_open(path: Path, mode: str) -> subprocess.Popen[bytes]:
    """Another process that opens `path` with `mode` and keeps it open until killed."""
    code = f"import sys, time\nf = open({str(path)!r}, {mode!r})\nprint('open', flush=True)\ntime.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"open\n"
    return proc


def end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_open_writers_names_the_pid_that_writes_and_not_those_that_read(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"x")
    writers = OpenWriters(ttl_s=0)
    assert writers.writers(os.stat(target)) == []
    reader, writer = hold_open(target, "rb"), hold_open(target, "ab")
    try:
        assert writers.writers(os.stat(target)) == [writer.pid]
        os.rename(target, tmp_path / "renamed.bin")  # by inode: a rename does not hide the writer
        assert writers.writers(os.stat(tmp_path / "renamed.bin")) == [writer.pid]
        end(writer)
        assert writers.writers(os.stat(tmp_path / "renamed.bin")) == []
    finally:
        for proc in (reader, writer):
            end(proc)


def test_open_writers_is_unknown_without_proc(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert OpenWriters(proc=tmp_path / "no-proc").writers(os.stat(tmp_path / "f")) is None
    assert walk_descriptors(tmp_path / "no-proc").blind == -1


def test_a_writer_that_stalls_longer_than_settle_is_registered_once_when_it_closes(
    start_watcher: Callable[..., WatcherService], make_settings, factory, drop: Path, tmp_path: Path
) -> None:
    service = start_watcher(make_settings(settle_s=0.3))
    data = write_mjpeg_avi(tmp_path / "src.avi").read_bytes()
    path = drop / "cam.avi"
    with path.open("wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(2.0)  # ~7x settle_s with the file open and unchanged
        assert media_rows(factory) == [], "registered a file its writer still held open"
        summary = service.tracker.summary()
        assert (summary.count, summary.writing) == (1, 1) and summary.oldest_s >= 1.5
        report = wait_for(lambda: (r := read_report(service.settings.storage.data_dir)) and r.writing and r)
        assert (report.count, report.writing) == (1, 1)
        line = settling_line(report)
        assert line and line.startswith("settling: 1 file(s), oldest ") and "1 held open by a writer" in line
        registry = CollectorRegistry()  # the watcher's metric, scraped from its live tracker
        watch_settling(service._settling_numbers, registry)
        assert registry.get_sample_value(SETTLING_FILES, {"waiting": "writer"}) == 1.0
        assert registry.get_sample_value(SETTLING_FILES, {"waiting": "other"}) == 0.0
        assert (registry.get_sample_value(SETTLING_OLDEST) or 0.0) >= 1.5
        handle.write(data[len(data) // 2 :])
    (row,) = wait_for(lambda: media_rows(factory), timeout=15)
    assert (row.size_bytes, row.status) == (len(data), "queued")
    time.sleep(1.0)
    assert len(media_rows(factory)) == 1


def test_a_file_cut_short_and_closed_waits_for_its_rest(
    start_watcher: Callable[..., WatcherService], make_settings, factory, drop: Path, tmp_path: Path
) -> None:
    """An upload that breaks and resumes (FTP REST/APPE, rsync --partial): the cut copy is never analysed."""
    start_watcher(make_settings(settle_s=0.2, ready_deadline_s=30))
    data = write_fragmented_mp4(tmp_path / "src.mp4").read_bytes()
    path = drop / "frag.mp4"
    path.write_bytes(data[: len(data) - 1000])
    time.sleep(2.0)
    assert media_rows(factory) == [], "a fragmented MP4 cut inside its last mdat was registered"
    with path.open("ab") as handle:
        handle.write(data[len(data) - 1000 :])
    (row,) = wait_for(lambda: media_rows(factory), timeout=20)
    assert (row.size_bytes, row.status) == (len(data), "queued")


def test_files_that_can_never_be_media_fail_as_soon_as_their_writer_closes(
    start_watcher: Callable[..., WatcherService], make_settings, factory, drop: Path, tmp_path: Path
) -> None:
    start_watcher(make_settings(settle_s=5.0, ready_deadline_s=600))
    contents = {
        "zero.mp4": b"",
        "text.mp4": b"not a video\n" * 50,
        "photo.mp4": write_jpeg(tmp_path / "p.jpg").read_bytes(),
    }
    closed = {}
    for name, data in contents.items():
        (drop / name).write_bytes(data)  # write_bytes closes the file before it returns
        closed[name] = time.monotonic()
    failed_after: dict[str, float] = {}
    while len(failed_after) < len(contents) and time.monotonic() - closed["zero.mp4"] < 20:
        for row in media_rows(factory):
            failed_after.setdefault(row.rel_path, time.monotonic() - closed[row.rel_path])
        time.sleep(0.05)
    print("failed after close: " + ", ".join(f"{name} {s:.2f} s" for name, s in failed_after.items()))
    assert set(failed_after) == set(contents) and max(failed_after.values()) < 5.0, (
        f"waited for settle_s (5 s) although the writer had closed them: {failed_after}"
    )
    rows = media_rows(factory)
    errors = {r.rel_path: (r.status, r.error) for r in rows}
    assert errors["zero.mp4"] == ("failed", "empty file")
    assert errors["text.mp4"][0] == "failed" and "not a media container" in str(errors["text.mp4"][1])
    assert errors["photo.mp4"][0] == "failed" and "jpeg" in str(errors["photo.mp4"][1])
    # Issue 22 (8): these rows read as finished before they were registered (registered_at > finished_at).
    for row in rows:
        assert row.finished_at is not None and row.finished_at >= row.created_at, (
            row.rel_path,
            row.created_at,
        )


def test_settling_report_round_trip_and_staleness(tmp_path: Path) -> None:
    assert read_report(tmp_path) is None and settling_line(None) is None
    now = time.time()
    write_report(tmp_path, SettlingReport(3, 42.4, 0, now))
    assert settling_line(read_report(tmp_path), now=now + 1) == "settling: 3 file(s), oldest 42 s"
    write_report(tmp_path, SettlingReport(0, 0.0, 0, now))
    assert settling_line(read_report(tmp_path), now=now) == "settling: none"
    stale = settling_line(read_report(tmp_path), now=now + 60)
    assert stale is not None and "unknown" in stale and "60 s old" in stale
    (tmp_path / "watcher-settling.json").write_text("{half")
    assert read_report(tmp_path) is None

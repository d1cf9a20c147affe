"""`scan_source`: one folder, once, with the watcher's rules (what `vigil scan DIR` uses)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.watching import UNREACHABLE_BROKER, media_rows
from vigil.config.settings import DatabaseSettings, Settings, SourceSettings, WatchSettings
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory
from vigil.store.migrate import upgrade
from watcher.scan import scan_source

NOBODY = 65534


def test_scan_registers_new_files_once(make_settings, make_enqueuer, factory, make_clip, drop: Path) -> None:
    enqueuer = make_enqueuer(make_settings())
    source = SourceSettings(name="adhoc", path=drop)
    make_clip(drop / "a.mp4")
    make_clip(drop / "d" / "b.mp4")
    make_clip(drop / "d" / "copy-of-b.mp4", same=True)
    make_clip(drop / "d" / "again.mp4", same=True)
    (drop / "bad.mp4").write_bytes(b"not a video at all")
    os.mkfifo(drop / "pipe.mp4")
    report = scan_source(factory, enqueuer, source)
    assert (report.found, report.registered, report.queued, report.failed, report.skipped) == (5, 5, 3, 1, 2)
    again = scan_source(factory, enqueuer, source)
    assert (again.found, again.registered, again.known) == (5, 0, 5)
    rows = {m.rel_path: m for m in media_rows(factory)}
    assert rows["bad.mp4"].status == "failed" and rows["bad.mp4"].sends == 0
    assert rows["a.mp4"].sends == 1


def test_scan_with_settle_leaves_a_growing_file(
    make_settings, make_enqueuer, factory, make_clip, drop: Path
) -> None:
    enqueuer = make_enqueuer(make_settings())
    old = make_clip(drop / "old.mp4")
    os.utime(old, (1, 1_700_000_000))
    growing = make_clip(drop / "growing.mp4")
    source = SourceSettings(name="adhoc", path=drop)
    import threading

    def keep_writing() -> None:
        with growing.open("ab") as handle:
            for _ in range(6):
                handle.write(b"x" * 100)
                handle.flush()
                threading.Event().wait(0.1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    report = scan_source(factory, enqueuer, source, settle=True, watch=WatchSettings(settle_s=0.3))
    writer.join()
    assert (report.registered, report.pending) == (1, 1)
    assert [m.rel_path for m in media_rows(factory)] == ["old.mp4"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="vigil-unreadable-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges to another user")
def test_unreadable_file_fails_with_its_reason(shared_dir: Path, make_clip: Callable[..., Path]) -> None:
    """chmod 000 does not stop root, so the scan runs in a forked child that became `nobody`, who really
    cannot read the file. (The interpreter lives under /root, so `nobody` cannot exec a new one.)"""
    drop = shared_dir / "drop"
    make_clip(drop / "locked.mp4").chmod(0o000)
    drop.chmod(0o755)
    url = f"sqlite:///{shared_dir / 'vigil.db'}"
    upgrade(url)
    (shared_dir / "vigil.db").chmod(0o666)
    settings = Settings(database=DatabaseSettings(url=url), broker={"url": UNREACHABLE_BROKER})
    app = make_celery(settings)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, scan, report through the pipe
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            assert not os.access(drop / "locked.mp4", os.R_OK)
            engine = make_engine(settings.database)
            factory = session_factory(engine)
            report = scan_source(factory, Enqueuer(app, factory), SourceSettings(name="drop", path=drop))
            os.write(write_end, f"{report.registered} {report.queued} {report.failed}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    output = os.read(read_end, 1000).decode()
    os.close(read_end)
    app.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert output.split() == ["1", "0", "1"]
    engine = make_engine(DatabaseSettings(url=url))
    (row,) = media_rows(session_factory(engine))
    engine.dispose()
    assert (row.rel_path, row.status, row.sha256) == ("locked.mp4", "failed", None)
    assert "permission denied" in (row.error or "")

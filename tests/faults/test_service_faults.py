"""What Vigil depends on fails: Redis killed and restarted empty, the database unavailable for a while
(SQLite locked by another process, PostgreSQL cut off behind a TCP proxy), the webhook receiver down, the
disk full while a thumbnail is written. Each run ends with every file analysed exactly once, every alert
delivered once and the processes still running."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support.alerting import Receiver
from tests.support.faults import Deployment, FaultResult, Report, TcpProxy, drop_many, wait_for

pytestmark = pytest.mark.slow

OUTAGE_S = 20.0


def sqlite_deployment(root: Path, model: Path, **kwargs: Any) -> Deployment:
    return Deployment(
        root,
        db_url=f"sqlite:///{root / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{root / 'broker.db'}",
        model_dir=model,
        **kwargs,
    )


def test_redis_killed_and_restarted_empty(
    tmp_path: Path, tiny_llava: Path, redis_server: Any, fault_report: Report
) -> None:
    """Messages in Redis are lost with it; files arrive while it is down (their sends fail). After a restart
    with nothing in it, the reconciler resends both kinds from the rows and workers reconnect by
    themselves."""
    d = Deployment(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=redis_server.url,
        model_dir=tiny_llava,
        env={"VIGIL_WORK__REQUEUE_AFTER_S": "6"},
    )
    try:
        d.start_all()
        names = drop_many(d, "before", 2)
        d.wait_settled(names)
        names |= drop_many(d, "inflight", 3, seconds=6)
        wait_for(lambda: d.statuses().get("inflight2.mp4") is not None, what="inflight registered")
        redis_server.stop(kill=True)
        names |= drop_many(d, "during", 3)
        time.sleep(3)
        redis_server.start()
        restarted = time.monotonic()
        d.wait_settled(names)
        recovered = time.monotonic() - restarted
        lost, dup = d.verdict(names)
        assert d.alive("watcher") and d.alive("gpu")
        resent = sum(n for (n,) in d.rows("SELECT sends FROM media WHERE sends > 1"))
        fault_report.add(
            FaultResult(
                "redis killed, restarted empty", len(names), lost, dup, recovered, f"{resent} re-sends"
            )
        )
    finally:
        d.stop_all()


HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("ROLLBACK")
    """
)


def test_sqlite_locked_by_another_process(tmp_path: Path, tiny_llava: Path, fault_report: Report) -> None:
    """Another process holds `BEGIN EXCLUSIVE` for 20 s while files arrive: registrations and claims fail
    after the busy timeout and are retried (settle tracker, reconciler) until the lock is gone."""
    d = sqlite_deployment(tmp_path, tiny_llava)
    try:
        d.start_all()
        names = drop_many(d, "before", 2)
        d.wait_settled(names)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "vigil.db"), str(OUTAGE_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        names |= drop_many(d, "during", 4)
        assert holder.wait(timeout=OUTAGE_S + 30) == 0
        holder.stdout.close()
        released = time.monotonic()
        d.wait_settled(names)
        recovered = time.monotonic() - released
        lost, dup = d.verdict(names)
        assert d.alive("watcher") and d.alive("gpu")
        fault_report.add(
            FaultResult(f"sqlite locked {OUTAGE_S:.0f} s (BEGIN EXCLUSIVE)", len(names), lost, dup, recovered)
        )
    finally:
        d.stop_all()


def test_postgresql_cut_off(tmp_path: Path, tiny_llava: Path, pg_url: str, fault_report: Report) -> None:
    """Every connection to PostgreSQL goes through a proxy that refuses and drops them for 20 s while files
    arrive and a clip is being analysed; pool pre-ping and the retries bring everything back."""
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    d = Deployment(
        tmp_path, db_url=proxied, broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}", model_dir=tiny_llava
    )
    try:
        d.start_all()
        names = drop_many(d, "before", 2)
        d.wait_settled(names)
        names |= drop_many(d, "long", 1, seconds=16)
        wait_for(lambda: d.statuses().get("long0.mp4") == "running", what="long0 running", step=0.1)
        proxy.cut()
        names |= drop_many(d, "during", 3)
        time.sleep(OUTAGE_S)
        proxy.restore()
        restored = time.monotonic()
        d.wait_settled(names)
        recovered = time.monotonic() - restored
        lost, dup = d.verdict(names)
        assert d.alive("watcher") and d.alive("gpu")
        fault_report.add(
            FaultResult(f"postgresql cut off {OUTAGE_S:.0f} s (TCP proxy)", len(names), lost, dup, recovered)
        )
    finally:
        d.stop_all()
        proxy.cut()


def test_webhook_receiver_down_then_up(tmp_path: Path, tiny_llava: Path, fault_report: Report) -> None:
    """Alerts fire while the receiver refuses connections; deliveries back off and retry, and once it is up
    each alert arrives exactly once (one webhook-id per alert)."""
    receiver = Receiver().start()
    receiver.stop()  # the port is known, nothing listens on it
    d = sqlite_deployment(tmp_path, tiny_llava, receiver=receiver)
    try:
        d.start_all()
        names = drop_many(d, "alert", 3)
        d.wait_settled(names)
        wait_for(
            lambda: d.rows("SELECT COUNT(*) FROM deliveries WHERE attempts >= 2")[0][0] >= 3,
            what="every delivery retried at least once",
            timeout=60,
        )
        receiver.start()
        up = time.monotonic()
        wait_for(
            lambda: d.rows("SELECT COUNT(*) FROM deliveries WHERE status != 'delivered'")[0][0] == 0,
            what="all delivered",
            timeout=60,
        )
        recovered = time.monotonic() - up
        lost, dup = d.verdict(names)
        assert d.alive("watcher") and d.alive("cpu")
        fault_report.add(
            FaultResult(
                "webhook receiver down, then up",
                len(names),
                lost,
                dup,
                recovered,
                f"{len(receiver.ids())} webhooks",
            )
        )
    finally:
        d.stop_all()
        receiver.stop()


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): disk-full fault not run")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
            os.fsync(out.fileno())
    return filler


def test_disk_full_while_writing_a_thumbnail(tmp_path: Path, tiny_llava: Path, fault_report: Report) -> None:
    """The thumbnails folder is a full 64 KiB tmpfs: the analysis fails with ENOSPC at the thumbnail, the row
    goes back to the queue with the reason (no partial results), and once space is freed the retry
    succeeds."""
    thumbs = tmp_path / "data" / "thumbnails"
    with tiny_tmpfs(thumbs, "64k"):
        filler = fill(thumbs)
        d = sqlite_deployment(tmp_path, tiny_llava)
        try:
            d.start_all()
            names = drop_many(d, "full", 2)
            wait_for(
                lambda: any("No space" in str(e) for (e,) in d.rows("SELECT error FROM media")),
                what="an analysis refused for lack of space",
                timeout=90,
            )
            partial = (
                "SELECT COUNT(*) FROM analyses a JOIN media m ON m.id = a.media_id WHERE m.status != 'done'"
            )
            assert d.rows(partial)[0][0] == 0  # the refused analysis left no results behind
            filler.unlink()
            freed = time.monotonic()
            d.wait_settled(names)
            recovered = time.monotonic() - freed
            lost, dup = d.verdict(names)
            assert all(Path(p).is_file() for (p,) in d.rows("SELECT thumbnail_path FROM detections"))
            assert d.alive("watcher") and d.alive("gpu")
            fault_report.add(
                FaultResult("disk full writing a thumbnail (tmpfs)", len(names), lost, dup, recovered)
            )
        finally:
            d.stop_all()

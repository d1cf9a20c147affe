"""Real uploaders into a watched folder, against a real watcher process and a real worker process.

pyftpdlib serves the folder to Python's `ftplib` (plain STOR, a STOR that stalls far longer than
`settle_s` with the file open, a temp name then RNFR/RNTO, MKD of dated folders then STOR) and to `curl`
(FTP upload with `--limit-rate`); `rsync` copies with its default temp-and-rename, `--inplace --bwlimit`,
`--partial-dir` and `--delay-updates`; `cp` copies a 50 MB file and `mv` moves a whole directory in. Over
JPEG, MJPEG AVI, faststart MP4, fragmented MP4, MPEG-TS and plain MP4, all cases at once against one
watcher. For every final file: exactly one row with its size and sha256, `done`, one analysis that read
that size and mtime, one alert for the one matching rule; never a temp name, never a superseded or failed
row. The issue's own cases run too (`rsync --inplace` at 60 KiB/s of a JPEG and an MJPEG AVI, at 100
KiB/s of a faststart and a fragmented MP4). Then a zero-byte and a text `.mp4` stored by FTP fail within
seconds of the server closing them. The table of what was measured is printed (`pytest -s`).
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from tests.support.processes import Stack, wait_for
from tests.support.services import free_port
from vigil.media.settling import read_report
from workers.testing.formats import WRITERS, write_large_mjpeg_avi

pytestmark = pytest.mark.slow

FORMATS = ["jpeg", "mjpeg-avi", "faststart-mp4", "fragmented-mp4", "mpeg-ts", "plain-mp4"]
SHORT = {fmt: {"frames": 10} for fmt in FORMATS if fmt != "jpeg"}  # 1 s clips (two GOPs: two fragments)
SETTLE_S = 1.0
STALL_S = 15.0  # with the file open: 15 times settle_s (and time for `vigil status` to start)
# curl sends a file smaller than its upload buffer in one burst whatever the rate: its files are larger.
RATE = "60k"  # bytes per second for curl's 150-300 KB files; rsync's --bwlimit=30 (KiB/s): 40-70 KB, 1-3 s
LARGER = {"size": (320, 240)}
# The issue's table, as reported: `rsync --inplace` at 60 KiB/s of an MJPEG AVI and a JPEG, at 100 KiB/s of
# a faststart and a fragmented MP4; files of 380-560 KB, so each upload lasts 4-9 s with the file open.
ISSUE_RSYNC: dict[str, tuple[str, dict[str, dict[str, object]]]] = {
    "rsync-inplace-60": (
        "--bwlimit=60",
        {"jpeg": {"size": (800, 600)}, "mjpeg-avi": {"frames": 10, "size": (320, 240)}},
    ),
    "rsync-inplace-100": (
        "--bwlimit=100",
        {
            "faststart-mp4": {"frames": 10, "size": (320, 240)},
            "fragmented-mp4": {"frames": 10, "size": (320, 240)},
        },
    ),
}

pytest.importorskip("pyftpdlib")
if not (shutil.which("rsync") and shutil.which("curl")):
    pytest.skip("rsync and curl are needed (`make tools` installs them)", allow_module_level=True)


@dataclass(frozen=True)
class Case:
    writer: str
    fmt: str
    final: str  # path below the inbox once the upload is over
    source: Path


@pytest.fixture
def stack(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
        extra_env={
            "VIGIL_WATCH__SETTLE_S": str(SETTLE_S),
            "VIGIL_WATCH__READY_DEADLINE_S": "120",
            "VIGIL_WORK__RECONCILE_INTERVAL_S": "5",
            "VIGIL_MODEL__WINDOW_S": "10",  # one window per file: the model's time is not what is tested
            "VIGIL_MODEL__FRAMES_PER_WINDOW": "2",
            # An analysis that hangs (never seen here; once, in CI, two files were never done) is stopped
            # and retried within minutes rather than holding the one pool process for the default hour.
            "VIGIL_BROKER__TASK_TIME_LIMIT_S": "240",
        },
    )
    (tmp_path / "vigil.toml").write_text(
        """
[[targets]]
name = "person"
description = "a person walking"
threshold = 0.0

[[alerts.channels]]
name = "log"
kind = "log"

[[alerts.rules]]
name = "anyone"
targets = ["person"]
channels = ["log"]
cooldown_s = 0
"""
    )
    yield stack
    stack.stop_all()


class Uploaders:
    """One function per real client, each uploading `case.source` to `case.final` in the inbox."""

    def __init__(self, inbox: Path, ftp_port: int) -> None:
        self.inbox, self.port = inbox, ftp_port

    def _ftp(self) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=60)
        ftp.login()
        return ftp

    def ftp_stor(self, case: Case) -> None:
        with self._ftp() as ftp, case.source.open("rb") as handle:
            ftp.storbinary(f"STOR {case.final}", handle)

    def ftp_stall(self, case: Case) -> None:
        data = case.source.read_bytes()
        with self._ftp() as ftp:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd(f"STOR {case.final}") as conn:
                conn.sendall(data[: len(data) // 2])
                time.sleep(STALL_S)  # a camera on a weak link: the server holds the file open meanwhile
                conn.sendall(data[len(data) // 2 :])
            ftp.voidresp()

    def ftp_rename(self, case: Case) -> None:
        with self._ftp() as ftp, case.source.open("rb") as handle:
            ftp.storbinary(f"STOR {case.final}.tmp", handle)
            ftp.rename(f"{case.final}.tmp", case.final)

    def ftp_mkd(self, case: Case) -> None:
        parts = Path(case.final).parts
        with self._ftp() as ftp, case.source.open("rb") as handle:
            for depth in range(1, len(parts)):
                try:
                    ftp.mkd("/".join(parts[:depth]))
                except ftplib.error_perm as exc:  # as cameras do: a folder made by the last upload is fine
                    if not str(exc).startswith("550"):
                        raise
            ftp.storbinary(f"STOR {case.final}", handle)

    def curl(self, case: Case) -> None:
        url = f"ftp://127.0.0.1:{self.port}/{case.final}"
        run(["curl", "-sS", "--ftp-create-dirs", "--limit-rate", RATE, "-T", str(case.source), url])

    def rsync(self, case: Case, *options: str) -> None:
        run(["rsync", *options, str(case.source), str(self.inbox / case.final)])


def inplace(up: Uploaders, limit: str, case: Case) -> None:
    up.rsync(case, "--inplace", limit)


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{argv}: {result.stderr}"


def build_cases(staging: Path) -> list[Case]:
    cases, salt = [], 0
    writers = [
        "ftp-stor",
        "ftp-stall",
        "ftp-rename",
        "ftp-mkd",
        "curl-ftp",
        "rsync",
        "rsync-inplace",
        "rsync-partial-dir",
        "rsync-delay-updates",
    ]
    for writer in writers:
        for fmt in FORMATS:
            salt += 1
            suffix, make = WRITERS[fmt]
            options = SHORT.get(fmt, {}) | (LARGER if writer == "curl-ftp" else {})
            if writer == "curl-ftp" and fmt == "jpeg":
                options = {"size": (800, 600)}
            source = make(staging / f"{writer}-{fmt}{suffix}", salt=salt, **options)
            dated = writer == "ftp-mkd"  # a camera's dated folders, made by MKD
            final = f"{writer}/{fmt}/2026-12-01/clip{suffix}" if dated else f"{writer}/{fmt}{suffix}"
            if writer == "rsync-delay-updates":
                # a folder each: concurrent --delay-updates runs into one folder share its .~tmp~; one
                # removing it makes another discard its finished file yet exit 0 (4 of 240 lost, by hand)
                final = f"{writer}/{fmt}/clip{suffix}"
            cases.append(Case(writer, fmt, final, source))
    for writer, (_, formats) in ISSUE_RSYNC.items():
        for fmt, sizes in formats.items():
            salt += 1
            suffix, make = WRITERS[fmt]
            source = make(staging / f"{writer}-{fmt}{suffix}", salt=salt, **sizes)
            cases.append(Case(writer, fmt, f"{writer}/{fmt}{suffix}", source))
    return cases


def timed(action: Callable[[Case], None], case: Case, took: dict[str, float]) -> None:
    """Run one upload; record how long its writer took (from first byte to close) under `took`."""
    began = time.monotonic()
    action(case)
    took[case.final] = time.monotonic() - began


def table(stack: Stack, cases: list[Case], took: dict[str, float]) -> list[str]:
    """Per case, as measured: rows registered under the final name, their statuses, alerts, and whether
    every row's size and sha256 are the final file's."""
    rows = stack.rows(
        "SELECT m.rel_path, m.status, m.size_bytes, m.sha256, "
        "(SELECT COUNT(*) FROM analyses a WHERE a.media_id = m.id), "
        "(SELECT COUNT(*) FROM alerts al WHERE al.media_id = m.id) FROM media m"
    )
    by_path: dict[str, list[tuple[object, ...]]] = {}
    for r in rows:
        by_path.setdefault(str(r[0]), []).append(r)
    head = f"{'writer':<20} {'format':<15} {'bytes':>9} {'upload s':>8} rows status     alerts size= sha="
    lines = [head]
    for case in cases:
        found = by_path.get(case.final, [])
        statuses = ",".join(sorted({str(r[1]) for r in found})) or "-"
        alerts = sum(int(r[5]) for r in found)  # type: ignore[call-overload]
        final = stack.inbox / case.final
        data = final.read_bytes() if final.is_file() else b""
        size_ok = bool(found) and all(r[2] == len(data) for r in found)
        sha_ok = bool(found) and all(r[3] == hashlib.sha256(data).hexdigest() for r in found)
        lines.append(
            f"{case.writer:<20} {case.fmt:<15} {len(data):>9} {took.get(case.final, -1.0):8.1f} "
            f"{len(found):>4} {statuses:<10} {alerts:>6} "
            f"{'yes' if size_ok else 'NO':<5} {'yes' if sha_ok else 'NO'}"
        )
    return lines


def wait_for_progress(stack: Stack, expected: dict[str, Case], *, quiet_s: float = 900) -> None:
    """Until every expected file is `done`: fails at once when one ends otherwise (a terminal state), and
    when no file finished for `quiet_s` (32 s here at load ~3, 793 s at load ~18: 65 files, one CPU model).
    """
    finished, progress_at = -1, time.monotonic()
    while True:
        statuses = stack.statuses()
        if statuses == dict.fromkeys(expected, "done"):
            return
        ended = {p: s for p, s in statuses.items() if s in ("failed", "skipped")}
        assert not ended, f"uploads ended other than done: {ended}"
        count = sum(s == "done" for s in statuses.values())
        if count > finished:
            finished, progress_at = count, time.monotonic()
        assert time.monotonic() - progress_at < quiet_s, f"no upload analysed for {quiet_s:.0f} s"
        time.sleep(0.5)


def not_done(stack: Stack, expected: dict[str, Case]) -> str:
    """One line per expected file that is not `done`: its rows' statuses, attempts and errors, or that
    it was never registered."""
    rows = stack.rows("SELECT rel_path, status, attempts, error FROM media ORDER BY id")
    lines = []
    for final in expected:
        found = [r for r in rows if str(r[0]) == final]
        if not found:
            lines.append(f"{final}: never registered")
        elif any(str(r[1]) != "done" for r in found):
            lines.append(f"{final}: " + "; ".join(f"{r[1]} (attempts {r[2]}, error {r[3]})" for r in found))
    return "not done:\n" + "\n".join(lines)


def test_every_real_uploader_gives_one_complete_row_per_file(stack: Stack, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    cases = build_cases(staging)
    big = Case("cp-50MB", "mjpeg-avi", "cp/big.avi", write_large_mjpeg_avi(staging / "big.avi", salt=999))
    moved_dir = staging / "camdir"
    moved_dir.mkdir()
    moved = []
    for i, fmt in enumerate(FORMATS):
        suffix, make = WRITERS[fmt]
        source = make(moved_dir / f"{fmt}{suffix}", salt=500 + i, **SHORT.get(fmt, {}))
        moved.append(Case("mv-dir", fmt, f"mv-dir/{fmt}{suffix}", source))
    everything = [*cases, big, *moved]
    for case in cases:  # FTP and rsync need the folders; the MKD case makes its own
        if case.writer not in ("ftp-mkd", "curl-ftp"):
            (stack.inbox / case.final).parent.mkdir(parents=True, exist_ok=True)
    (stack.inbox / "cp").mkdir()

    assert stack.vigil("db", "upgrade").returncode == 0
    port = free_port()
    stack.spawn("ftp", "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-w", "-d", str(stack.inbox))
    stack.spawn("worker", "-m", "workers", "--queue", "gpu")
    stack.spawn("watcher", "-m", "watcher")
    wait_for(lambda: _accepts(port), timeout=60, what="the FTP server")
    wait_for(lambda: read_report(stack.root / "data") is not None, timeout=120, what="the watcher")

    up = Uploaders(stack.inbox, port)
    actions: dict[str, Callable[[Case], None]] = {
        "ftp-stor": up.ftp_stor,
        "ftp-stall": up.ftp_stall,
        "ftp-rename": up.ftp_rename,
        "ftp-mkd": up.ftp_mkd,
        "curl-ftp": up.curl,
        "rsync": lambda c: up.rsync(c),
        "rsync-inplace": lambda c: up.rsync(c, "--inplace", "--bwlimit=30"),
        "rsync-partial-dir": lambda c: up.rsync(c, "--partial-dir=.rsync-partial", "--bwlimit=30"),
        "rsync-delay-updates": lambda c: up.rsync(c, "--delay-updates", "--bwlimit=30"),
    }
    for writer, (limit, _) in ISSUE_RSYNC.items():
        actions[writer] = partial(inplace, up, limit)
    took: dict[str, float] = {}  # upload seconds per case; -1: not timed (the one mv of a whole folder)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(cases) + 2) as pool:
        futures = [pool.submit(timed, actions[c.writer], c, took) for c in cases]
        copy = ["cp", str(big.source), str(stack.inbox / big.final)]
        futures.append(pool.submit(timed, lambda _: run(copy), big, took))
        futures.append(pool.submit(run, ["mv", str(moved_dir), str(stack.inbox / "mv-dir")]))
        # While the stalled STORs hold their files open, `vigil status` says so.
        wait_for(
            lambda: (r := read_report(stack.root / "data")) is not None and r.writing >= 6,
            timeout=STALL_S,
            what="the stalled uploads in the settling report",
        )
        status = stack.vigil("status", "--no-broker")
        for future in futures:
            future.result()
    uploaded_s = time.monotonic() - began
    assert "settling: " in status.stdout and "held open by a writer" in status.stdout, status.stdout

    expected = {c.final: c for c in everything}
    never_written = [final for final in expected if not (stack.inbox / final).is_file()]
    assert not never_written, f"uploaders exited 0 without writing: {never_written}"  # nothing to wait for
    try:
        wait_for_progress(stack, expected)
    except AssertionError as exc:
        print("\n".join(table(stack, everything, took)))
        stack.dump_stacks()  # where a hung worker or watcher is, into the logs below
        pytest.fail(f"{stack.dump_logs()}\n{exc}\n{not_done(stack, expected)}")
    time.sleep(2 * SETTLE_S)  # nothing registers later (a close event, a rescan)
    done_s = time.monotonic() - began
    settling = next(line for line in status.stdout.splitlines() if line.startswith("settling: "))
    print(f"\nuploads took {uploaded_s:.1f} s, all analysed after {done_s:.1f} s; mid-stall: {settling}")
    print("\n".join(table(stack, everything, took)))
    print(f"analysed more than once: {stack.rows('SELECT rel_path, attempts FROM media WHERE attempts > 1')}")

    rows = stack.rows(
        "SELECT m.rel_path, m.status, m.size_bytes, m.sha256, a.size_bytes, "
        "(SELECT COUNT(*) FROM analyses x WHERE x.media_id = m.id), "
        "(SELECT COUNT(*) FROM alerts al WHERE al.media_id = m.id) "
        "FROM media m LEFT JOIN analyses a ON a.media_id = m.id ORDER BY m.rel_path"
    )
    registered = sorted(str(r[0]) for r in rows)
    assert registered == sorted(expected), "a temp name or a second version was registered"
    for rel_path, status, size, sha256, read_size, analyses, alerts in rows:
        data = (stack.inbox / str(rel_path)).read_bytes()
        assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest()), rel_path
        assert (status, analyses, read_size, alerts) == ("done", 1, len(data), 1), rel_path

    # Files that can never be media, by FTP STOR: `failed` within seconds of the server closing them
    # (the STOR's 226 reply), not after `ready_deadline_s` (120 s here).
    broken = {"broken/zero.mp4": b"", "broken/notes.mp4": b"not a video, a text file\n" * 100}
    (stack.inbox / "broken").mkdir()
    closed: dict[str, float] = {}
    for final, data in broken.items():
        with up._ftp() as ftp:
            ftp.storbinary(f"STOR {final}", io.BytesIO(data))
        closed[final] = time.monotonic()
    failed_after: dict[str, float] = {}
    while len(failed_after) < len(broken) and time.monotonic() - min(closed.values()) < 60:
        for final, state in stack.statuses().items():
            if final in broken and state == "failed" and final not in failed_after:
                failed_after[final] = time.monotonic() - closed[final]
        time.sleep(0.1)
    errors = {
        str(p): e for p, e in stack.rows("SELECT rel_path, error FROM media WHERE rel_path LIKE 'broken/%'")
    }
    print(
        "never media: "
        + ", ".join(
            f"{f} failed {failed_after.get(f, -1):.1f} s after close ({errors.get(f)})" for f in broken
        )
    )
    assert set(failed_after) == set(broken), errors
    assert max(failed_after.values()) < 10, failed_after


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False

"""Watcher burst benchmark (a script, not a test): `python bench/watcher_burst.py [--files 2000]`.

1. `python -m watcher` runs as its own process on a fresh SQLite database and embedded broker, deployed by
   the tests' harness (tests.support.processes.Stack), as e2e, the fault tests and bench/soak.py deploy.
2. A burst of N tiny images (unique content) is written into N/10 brand-new nested camera directories;
   we time until every file has a row, and check each has exactly one.
   Baseline, same run: `scan_source` registering the same files in one pass (no events, no settling).
3. A 50 MB valid MP4 (the clip, then a `free` atom) written at 2 MB/s: registered once, after its last
   byte; we report the delay after the last write. (The container opens long before the end, so only the
   settle rule keeps it from being registered early.)
4. The rescan cost over the registered files: the watcher's diff (one query per source) vs one query per
   file (the obvious way).
5. The watcher's RSS (and peak) from /proc, and whether any torch/transformers library is mapped into it.
Prints a table and ends with ONE JSON line. ``--quick`` is a smoke run (20 files, a 4 MB file): it proves
the script runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from tests.support.processes import Stack  # noqa: E402
from vigil.config.settings import DatabaseSettings, ModelSettings, Settings, SourceSettings  # noqa: E402
from vigil.media.registry import _latest_version  # noqa: E402
from vigil.ops.celery_app import make_celery  # noqa: E402
from vigil.ops.enqueue import Enqueuer  # noqa: E402
from vigil.store.db import make_engine, session_factory  # noqa: E402
from vigil.store.migrate import upgrade  # noqa: E402
from vigil.store.schema import Media  # noqa: E402
from watcher.intake import WatchedSource  # noqa: E402
from watcher.paths import SourceRules  # noqa: E402
from watcher.scan import changed_files, scan_source, walk  # noqa: E402
from workers.testing.clips import write_clip_mp4v, write_image  # noqa: E402

BIG_MB, RATE_MB_S, CHUNK_S = 50, 2.0, 0.25
QUICK_FILES, QUICK_BIG_MB = 20, 4


def tiny_images(n: int, tmp: Path, tag: str = "w") -> list[bytes]:
    """Valid JPEGs with unique bytes after the end-of-image marker (so none is a duplicate)."""
    base = write_image(tmp / "base.jpg", size=(32, 24)).read_bytes()
    return [base + f"unique-{tag}-{i}".encode() for i in range(n)]


def burst(root: Path, blobs: list[bytes]) -> float:
    start = time.monotonic()
    for i, blob in enumerate(blobs):
        d = (
            root
            / f"cam{i // 10 % 4}"
            / "2026"
            / "11"
            / f"{i // 10 // 24:02d}"
            / f"{i // 10 % 24:02d}-{i // 10}"
        )
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:05d}.jpg").write_bytes(blob)
    return start


def count(factory, source_id: int | None = None) -> tuple[int, int]:
    with factory() as s:
        q = select(func.count(), func.count(func.distinct(Media.rel_path)))
        if source_id is not None:
            q = q.where(Media.source_id == source_id)
        return tuple(s.execute(q).one())  # type: ignore[return-value]


def wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def start_watcher(tmp: Path, db_url: str, broker: str) -> tuple[Stack, subprocess.Popen[bytes]]:
    """The watcher alone, its source the harness's inbox; its log is <tmp>/watcher.log."""
    stack = Stack(
        tmp,
        db_url=db_url,
        broker_url=broker,
        model_dir=Path(ModelSettings().id),  # the watcher loads no model: the default id, untouched
        extra_env={
            "VIGIL_WATCH__SOURCES": json.dumps(
                [{"name": "drop", "path": str(tmp / "inbox"), "include": ["*.jpg", "*.mp4"]}]
            ),
            "VIGIL_WATCH__SETTLE_S": "0.5",
            "VIGIL_WATCH__RESCAN_INTERVAL_S": "300",
            "VIGIL_WATCH__READY_DEADLINE_S": "600",  # the default: the big file is written for 25 s
            "PYTHONPATH": str(ROOT),
        },
    )
    proc = stack.spawn("watcher", "-m", "watcher", new_session=True)
    log = tmp / "watcher.log"
    if not wait(lambda: "watcher started" in log.read_text(errors="replace"), 60):
        stack.stop_all()
        raise SystemExit("watcher did not start:\n" + stack.dump_logs())
    return stack, proc


def big_file(path: Path, tmp: Path, big_mb: int) -> float:
    clip = write_clip_mp4v(tmp / "clip.mp4", seconds=1, fps=10, size=(64, 48)).read_bytes()
    total = big_mb * 1024 * 1024
    pad = total - len(clip)
    chunk = int(RATE_MB_S * 1024 * 1024 * CHUNK_S)
    with path.open("wb") as handle:
        handle.write(clip + struct.pack(">I", pad) + b"free")
        written = len(clip) + 8
        handle.flush()
        while written < total:
            time.sleep(CHUNK_S)
            n = min(chunk, total - written)
            handle.write(b"\0" * n)
            handle.flush()
            written += n
    return time.time()


def proc_status(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def rescan_costs(factory, source_id: int, drop: Path) -> tuple[float, float]:
    source = WatchedSource(source_id, SourceRules.of(SourceSettings(name="drop", path=drop)))
    t = time.perf_counter()
    changed = sum(1 for c in changed_files(factory, source) if c.stat is not None)
    ours = time.perf_counter() - t
    assert changed == 0, changed
    t = time.perf_counter()
    with factory() as session:
        for c in walk(source.rules):
            latest = _latest_version(session, source_id, c.path.relative_to(source.rules.root).as_posix())
            assert latest is not None
    naive = time.perf_counter() - t
    return ours, naive


@dataclass
class Watched:
    written: float  # seconds to write the burst
    burst_s: float  # seconds from the first write until every file had a row
    rows: int
    distinct: int
    big_delay: float  # seconds from the big file's last write to its row
    after_burst: dict[str, float]  # VmRSS/VmHWM in MB
    final: dict[str, float]
    torch_mapped: bool


def watch(stack: Stack, proc: subprocess.Popen[bytes], factory, blobs: list[bytes], big_mb: int) -> Watched:
    """The burst, then the big file, through the running watcher; its memory and libraries at the end."""
    drop, files, pid = stack.inbox, len(blobs), proc.pid
    started = burst(drop, blobs)
    written = time.monotonic() - started
    ok = wait(lambda: count(factory)[0] >= files, 600)
    burst_s = time.monotonic() - started
    time.sleep(2.0)  # anything registered twice would show up now
    rows, distinct = count(factory)
    assert ok and rows == distinct == files, (rows, distinct)
    after_burst = proc_status(pid)

    (drop / "big").mkdir()
    last_write = big_file(drop / "big" / "big.mp4", stack.root, big_mb)
    assert wait(lambda: count(factory)[0] > files, 60)
    with factory() as s:
        big = s.scalars(select(Media).where(Media.rel_path == "big/big.mp4")).all()
    assert len(big) == 1 and big[0].size_bytes == big_mb * 1024 * 1024, [
        (m.size_bytes, m.version) for m in big
    ]
    big_delay = big[0].created_at.timestamp() - last_write
    time.sleep(1.0)
    assert count(factory)[0] == files + 1

    maps = Path(f"/proc/{pid}/maps").read_text()
    torch_mapped = any(name in maps for name in ("libtorch", "/torch/", "/transformers/"))
    return Watched(written, burst_s, rows, distinct, big_delay, after_burst, proc_status(pid), torch_mapped)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 files, a 4 MB file (no figures)")
    args = parser.parse_args()
    big_mb = QUICK_BIG_MB if args.quick else BIG_MB
    if args.quick:
        args.files = QUICK_FILES
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    base_drop = tmp / "baseline"
    db_url, broker = f"sqlite:///{tmp / 'vigil.db'}", f"sqla+sqlite:///{tmp / 'broker.db'}"
    upgrade(db_url)
    engine = make_engine(DatabaseSettings(url=db_url))
    factory = session_factory(engine)
    blobs = tiny_images(args.files, tmp)

    stack, proc = start_watcher(tmp, db_url, broker)
    try:
        watched = watch(stack, proc, factory, blobs, big_mb)
    finally:
        stack.stop_all(timeout=60)  # SIGTERM, as a service manager stops it; SIGKILL only after 60 s
    exit_code = proc.returncode
    with factory() as s:
        source_id = s.scalar(select(Media.source_id).limit(1))
    rescan_s, per_file_s = rescan_costs(factory, source_id, stack.inbox)

    # Baseline: the same files registered by one scan_source pass (no events, no settling).
    burst(
        base_drop, tiny_images(args.files, tmp, tag="baseline")
    )  # new content: queued and sent, like the burst
    settings = Settings(database={"url": db_url}, broker={"url": broker})
    app = make_celery(settings)
    t = time.perf_counter()
    report = scan_source(
        factory, Enqueuer(app, factory), SourceSettings(name="baseline", path=base_drop, include=["*.jpg"])
    )
    baseline_s = time.perf_counter() - t
    app.close()
    assert report.registered == report.queued == args.files, report
    engine.dispose()

    table = [
        ("files in the burst / new directories", f"{args.files} / {args.files // 10}"),
        ("burst written in", f"{watched.written:.2f} s"),
        (
            "watcher: all registered after",
            f"{watched.burst_s:.2f} s ({args.files / watched.burst_s:.0f} files/s)",
        ),
        ("baseline scan_source, same files", f"{baseline_s:.2f} s ({args.files / baseline_s:.0f} files/s)"),
        ("rows / distinct paths", f"{watched.rows} / {watched.distinct}"),
        (
            f"{big_mb} MB at {RATE_MB_S} MB/s: registered after last write",
            f"{watched.big_delay:.2f} s (settle 0.5 s)",
        ),
        (
            "rescan of known files: one query / query per file",
            f"{rescan_s * 1000:.0f} ms / {per_file_s * 1000:.0f} ms",
        ),
        (
            "watcher RSS after burst / at end / peak",
            f"{watched.after_burst['VmRSS']:.0f} / {watched.final['VmRSS']:.0f} / "
            f"{watched.final['VmHWM']:.0f} MB",
        ),
        ("torch or transformers mapped in watcher", str(watched.torch_mapped)),
        ("watcher exit code on SIGTERM", str(exit_code)),
    ]
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"{key:<{width}}  {value}")
    print(
        json.dumps(
            {
                "bench": "watcher_burst",
                "quick": args.quick,
                "files": args.files,
                "baseline_scan_s": round(baseline_s, 3),
                "watcher_burst_s": round(watched.burst_s, 3),
                "ratio": round(watched.burst_s / baseline_s, 2),
                "files_per_s": round(args.files / watched.burst_s, 1),
                "big_file_delay_s": round(watched.big_delay, 3),
                "rescan_known_s": round(rescan_s, 4),
                "rescan_per_file_query_s": round(per_file_s, 4),
                "watcher_rss_mb": round(watched.after_burst["VmRSS"], 1),
                "peak_rss_mb": round(watched.final["VmHWM"], 1),
                "torch_loaded": watched.torch_mapped,
                "exit_code": exit_code,
            }
        )
    )


if __name__ == "__main__":
    main()

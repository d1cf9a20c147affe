"""Throughput of the whole distributed path with a tiny model: media/s end to end with 1 and 2 worker
processes, on the embedded default (SQLite + sqla+sqlite broker) and on PostgreSQL + Redis, and the
per-media overhead outside the model: wall time per media (x workers) minus the mean of the analyses'
`model_ms + decode_ms`.

Baseline, measured in the same run: the same clips analysed in this process (`analyze_media` in a loop:
claim, recognise, store; no broker, no worker process). The ratio shows what the distributed path costs.
Workers are started and warmed (model loaded) before the clock starts; the clock runs from the first send
to the last `done` row. A redis-server of our own runs on a free port; the PostgreSQL database is created
for the run and dropped after.

    PYTHONPATH=. python bench/pipeline.py [--clips 40] [--workers 1,2] [--no-embedded] [--pg postgresql+psycopg://...]

``--quick`` is a smoke run (4 clips, one worker, PostgreSQL + Redis only: the embedded path runs the same
code with other URLs): it proves the bench still runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from vigil.config.settings import Settings, TargetSettings
from vigil.formats.probe import probe
from vigil.media.registry import ensure_source, register_file, sync_targets
from vigil.ops.celery_app import make_celery
from vigil.ops.contracts import AnalyzePayload
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.migrate import upgrade
from vigil.store.schema import Analysis, Media
from workers.testing.clips import write_clip_mp4v
from workers.testing.models import cached_tiny_model

# Thresholds of 1: no evidence generation, so model time is the scoring pass only (the part we subtract).
TARGETS = [
    TargetSettings(name="person", description="a person walking", threshold=1.0),
    TargetSettings(name="van", description="a white delivery van", threshold=1.0),
]
MODEL_ENV = {"VIGIL_MODEL__FRAMES_PER_WINDOW": "4", "VIGIL_MODEL__WINDOW_S": "1.0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    name = f"vigil_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_clips(folder: Path, count: int) -> list[Path]:
    """1 s clips, each different (identical files would be skipped as copies): one window each."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_clip_mp4v(folder / f"c{i:03d}.mp4", seconds=1, fps=8, size=(64 + 2 * i, 48))
        for i in range(count)
    ]


class Install:
    """A migrated database with the clips registered (queued, not sent) and an enqueuer."""

    def __init__(self, db_url: str, broker_url: str, model: Path, clips: list[Path], data: Path) -> None:
        upgrade(db_url)
        self.settings = Settings(
            database={"url": db_url},
            broker={"url": broker_url},
            model={"id": str(model), "frames_per_window": 4, "window_s": 1.0, "device": "cpu"},
            storage={"data_dir": data},
            targets=TARGETS,
        )
        self.engine = make_engine(self.settings.database)
        self.factory = session_factory(self.engine)
        with write_session(self.factory) as session:
            sync_targets(session, TARGETS, references_dir=self.settings.storage.references_dir)
            source_id = ensure_source(session, "bench", clips[0].parent).id
        self.ids = [
            register_file(
                self.factory, source_id=source_id, root=clips[0].parent, path=p, info=probe(p)
            ).media_id
            for p in clips
        ]
        self.app = make_celery(self.settings)
        self.enqueuer = Enqueuer(self.app, self.factory)

    def done(self, ids: list[int]) -> int:
        with self.factory() as session:
            return int(
                session.scalar(
                    select(func.count()).where(Media.id.in_(ids), Media.status.in_(["done", "failed"]))
                )
                or 0
            )

    def model_ms(self, ids: list[int]) -> float:
        """Mean decode + model milliseconds per media, from the analyses rows."""
        with self.factory() as session:
            value = session.scalar(
                select(func.avg(Analysis.model_ms + Analysis.decode_ms)).where(Analysis.media_id.in_(ids))
            )
        return float(value or 0.0)

    def close(self) -> None:
        self.app.close()
        self.engine.dispose()


def wait_done(install: Install, ids: list[int], *, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while install.done(ids) < len(ids):
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {install.done(ids)}/{len(ids)} done")
        time.sleep(0.02)


def baseline(install: Install) -> tuple[float, float]:
    """In-process: analyze_media in a loop. Returns (seconds, mean model+decode ms)."""
    from workers.analysis.runner import analyze_media
    from workers.analysis.runtime import WorkerRuntime

    runtime = WorkerRuntime(install.settings, app=install.app)
    warm, timed = install.ids[:2], install.ids[2:]
    for media_id in warm:
        analyze_media(runtime, AnalyzePayload(media_id=media_id))
    began = time.perf_counter()
    for media_id in timed:
        analyze_media(runtime, AnalyzePayload(media_id=media_id))
    seconds = time.perf_counter() - began
    return seconds, install.model_ms(timed)


def distributed(install: Install, workers: int, workdir: Path) -> tuple[float, float]:
    """Real worker processes. Returns (seconds from first send to last done, mean model+decode ms)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        | MODEL_ENV
        | {
            "VIGIL_DATABASE__URL": install.settings.database.url,
            "VIGIL_BROKER__URL": install.settings.broker.url,
            "VIGIL_MODEL__ID": install.settings.model.id,
            "VIGIL_MODEL__DEVICE": "cpu",
            "VIGIL_STORAGE__DATA_DIR": str(install.settings.storage.data_dir),
            "VIGIL_LOG__LEVEL": "WARNING",
            "OMP_NUM_THREADS": str(threads),
        }
    )
    processes = []
    for n in range(workers):
        log = (workdir / f"worker-{n}.log").open("ab")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "workers", "--queue", "gpu", "--name", f"bench{n}@%h"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        warm, timed = install.ids[: 2 * workers], install.ids[2 * workers :]
        for media_id in warm:  # loads the model in every worker (one at a time each: prefetch 1)
            install.enqueuer.analyze(media_id)
        wait_done(install, warm)
        began = time.perf_counter()
        for media_id in timed:
            install.enqueuer.analyze(media_id)
        wait_done(install, timed)
        seconds = time.perf_counter() - began
        return seconds, install.model_ms(timed)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--workers", default="1,2", help="worker process counts to run each path with")
    parser.add_argument("--no-embedded", action="store_true", help="skip the SQLite + sqla path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 clips, 1 worker (no figures)")
    parser.add_argument(
        "--pg",
        default=os.environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    if args.quick:
        args.clips, args.workers, args.no_embedded = 4, "1", True
    counts = [int(n) for n in args.workers.split(",")]
    if args.clips < 2 * max(counts) + 1:
        parser.error(f"--clips must be at least {2 * max(counts) + 1}: each worker warms up on 2 clips")
    root = Path(tempfile.mkdtemp(prefix="vigil-bench-pipeline-"))
    try:
        model = cached_tiny_model("llava_next_video", root / "models")
        clips = make_clips(root / "clips", args.clips)
        rows = run_all(root, model, clips, pg_admin=args.pg, workers=counts, embedded=not args.no_embedded)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(rows, clips=args.clips, quick=args.quick)


def run_all(
    root: Path, model: Path, clips: list[Path], *, pg_admin: str, workers: list[int], embedded: bool
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def record(name: str, workers: int, timed: int, seconds: float, model_ms: float) -> None:
        overhead = seconds * 1000 * workers / timed - model_ms
        rows.append(
            {
                "path": name,
                "workers": workers,
                "media": timed,
                "seconds": round(seconds, 3),
                "media_per_s": round(timed / seconds, 2),
                "model_decode_ms": round(model_ms, 1),
                "overhead_ms": round(overhead, 1),
            }
        )
        print(
            f"  {name:28s} workers={workers}  {timed / seconds:6.2f} media/s  "
            f"overhead {overhead:6.1f} ms/media"
        )

    def fresh(tag: str, db_url: str, broker_url: str) -> Install:
        return Install(db_url, broker_url, model, clips, root / tag / "data")

    for tag in ("baseline",):
        (root / tag).mkdir()
        install = fresh(tag, f"sqlite:///{root / tag / 'v.db'}", f"sqla+sqlite:///{root / tag / 'b.db'}")
        seconds, model_ms = baseline(install)
        install.close()
        record("in-process (no broker)", 1, len(clips) - 2, seconds, model_ms)
    for count in workers if embedded else []:
        tag = f"embedded-{count}"
        (root / tag).mkdir()
        install = fresh(tag, f"sqlite:///{root / tag / 'v.db'}", f"sqla+sqlite:///{root / tag / 'b.db'}")
        seconds, model_ms = distributed(install, count, root / tag)
        install.close()
        record("embedded (SQLite+sqla)", count, len(clips) - 2 * count, seconds, model_ms)
    with redis_server(root) as redis_url:
        for count in workers:
            tag = f"redis-{count}"
            (root / tag).mkdir()
            with pg_database(pg_admin) as db_url:
                install = fresh(tag, db_url, redis_url)
                seconds, model_ms = distributed(install, count, root / tag)
                install.close()
            record("PostgreSQL + Redis", count, len(clips) - 2 * count, seconds, model_ms)
    return rows


def per_media(row: dict[str, object]) -> float:
    return float(row["seconds"]) / float(row["media"])  # type: ignore[arg-type]


def report(rows: list[dict[str, object]], *, clips: int, quick: bool) -> None:
    base = rows[0]
    print(
        f"\n{'path':28s} {'workers':>7s} {'media/s':>8s} {'model+decode ms':>16s} "
        f"{'overhead ms':>12s} {'vs base':>8s}"
    )
    for row in rows:
        ratio = float(row["media_per_s"]) / float(base["media_per_s"])  # type: ignore[arg-type]
        print(
            f"{row['path']!s:28s} {row['workers']!s:>7s} {row['media_per_s']!s:>8s} "
            f"{row['model_decode_ms']!s:>16s} {row['overhead_ms']!s:>12s} {ratio:8.2f}"
        )
    ours = next(r for r in rows if r["path"] == "PostgreSQL + Redis" and r["workers"] == 1)
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "bench": "pipeline",
                "quick": quick,
                "clips": clips,
                # seconds per media: the runs time different counts (warm-up clips are left out)
                "baseline_s": round(per_media(base), 4),
                "ours_s": round(per_media(ours), 4),
                "ratio": round(per_media(ours) / per_media(base), 2),
                "rows": rows,
                "peak_rss_mb": round(self_mb, 1),
                "peak_worker_rss_mb": round(child_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

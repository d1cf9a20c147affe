"""Soak benchmark (a script, not a test): `python bench/soak.py [--minutes 60] [--rate 30]`.

A real watcher and a real gpu worker (prefork, the tiny random LLaVA-NeXT-Video unless --model is given)
run on a fresh SQLite database and embedded broker, with metrics on. Small unique clips arrive at a steady
rate (moved into the watched folder); every `--sample-s` seconds we record the RSS of each process and
the queue depth, read from the watcher's own /metrics endpoint (`vigil_queue_depth`), the same number
Prometheus would see. The worker's RSS is its main process plus its pool children, from /proc; pages they
share (torch's libraries among them) count in each, so that figure overstates its real footprint.

At the end arrivals stop, the queue drains, and we check every file was analysed exactly once, and that
the worker's `vigil_media_analysed_total` (summed over prefork children by multiprocess mode) equals the
rows. Baseline, same run: each process's RSS once warm (after the first analysis); we report the growth
from there to the end and its ratio. Ends with ONE JSON line. ``--quick`` is a smoke run (6 s of arrivals at
30 a minute): it proves the script runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import Stack  # noqa: E402
from vigil.store.migrate import upgrade  # noqa: E402
from workers.testing.clips import write_clip_mp4v  # noqa: E402

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set of `pid` plus its children (a prefork pool), from /proc; 0 when gone."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE_KB / 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found + [g for c in found for g in children(c)]


def scrape(port: int, name: str, labels: str = "") -> float | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    values = [float(m) for m in re.findall(pattern, body, flags=re.M)]
    return sum(values) if values else None


class Soak(Stack):
    """The installation under load: the tests' deployment harness (tests.support.processes.Stack) with a
    watcher and a gpu worker, ports for their metrics, and a staging folder files are written in first."""

    def __init__(self, root: Path, model: Path) -> None:
        root.mkdir(parents=True)
        self.watcher_port, self.worker_port = free_port(), free_port()
        super().__init__(
            root,
            db_url=f"sqlite:///{root / 'vigil.db'}",
            broker_url=f"sqla+sqlite:///{root / 'broker.db'}",
            model_dir=model,
            extra_env={
                "VIGIL_MODEL__FRAMES_PER_WINDOW": "4",
                "VIGIL_MODEL__WINDOW_S": "2.0",
                "VIGIL_MODEL__EVIDENCE": "false",
                "VIGIL_TARGETS": json.dumps(
                    [
                        {"name": "person", "description": "a person walking", "threshold": 0.5},
                        {"name": "van", "description": "a white van", "threshold": 0.5},
                    ]
                ),
                "VIGIL_WATCH__SOURCES": json.dumps([{"name": "soak", "path": str(root / "inbox")}]),
                "VIGIL_WATCH__READY_DEADLINE_S": "600",
                "VIGIL_WORK__RECONCILE_INTERVAL_S": "5",
                "VIGIL_LOG__FORMAT": "json",
                "VIGIL_LOG__LEVEL": "WARNING",
                "VIGIL_METRICS__WATCHER_PORT": str(self.watcher_port),
                "VIGIL_METRICS__WORKER_PORT": str(self.worker_port),
                "PYTHONPATH": str(ROOT),
                "HF_HUB_OFFLINE": "1",
            },
        )
        self.staging = root / "staging"
        self.staging.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        upgrade(self.db_url)

    def start(self) -> None:
        for name, argv in [("worker", ["-m", "workers", "--queue", "gpu"]), ("watcher", ["-m", "watcher"])]:
            self.procs[name] = self.spawn(name, *argv, new_session=True)

    def stop(self) -> None:
        self.stop_all(timeout=60)

    def drop(self, index: int) -> None:
        staged = self.staging / f"c{index:05d}.mp4"
        write_clip_mp4v(staged, seconds=2, fps=5, size=(64, 48))
        tag = f"soak-{index}".encode()
        with staged.open("ab") as out:  # a `free` box makes each file unique and keeps the MP4 whole
            out.write(struct.pack(">I4s", 8 + len(tag), b"free") + tag)
        staged.rename(self.inbox / staged.name)

    def done(self) -> int:
        return int(self.rows("SELECT COUNT(*) FROM media WHERE status = 'done'")[0][0])  # type: ignore[arg-type]

    def sample(self, began: float) -> dict[str, float | None]:
        point: dict[str, float | None] = {"t": round(time.monotonic() - began, 1)}
        for name, proc in self.procs.items():
            point[f"{name}_rss_mb"] = round(rss_mb(proc.pid), 1)
        point["queued"] = scrape(self.watcher_port, "vigil_queue_depth", '{status="queued"}')
        return point


def run(args: argparse.Namespace, root: Path) -> dict[str, object]:
    model = Path(args.model) if args.model else None
    if model is None:
        from workers.testing.models import cached_tiny_model

        model = cached_tiny_model("llava_next_video", root / "models")
    soak = Soak(root / "run", model)
    soak.start()
    try:
        return drive(soak, args)
    finally:
        soak.stop()


def drive(soak: Soak, args: argparse.Namespace) -> dict[str, object]:
    began = time.monotonic()
    end = began + args.minutes * 60
    interval, next_drop, next_sample, dropped = 60.0 / args.rate, began, began, 0
    samples: list[dict[str, float | None]] = []
    warm: dict[str, float | None] | None = None
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_drop:
            soak.drop(dropped)
            dropped += 1
            next_drop += interval
        if now >= next_sample:
            samples.append(soak.sample(began))
            if warm is None and soak.done() > 0:
                warm = samples[-1]
            next_sample += args.sample_s
        for name, proc in soak.procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}; see {soak.root}/{name}.log")
        time.sleep(0.05)
    drain_began = time.monotonic()
    while soak.done() < dropped and time.monotonic() - drain_began < args.drain_s:
        time.sleep(0.5)
    drain_s = time.monotonic() - drain_began
    samples.append(soak.sample(began))
    return summarise(soak, samples, warm or samples[0], dropped, drain_s, args)


def summarise(
    soak: Soak,
    samples: list[dict[str, float | None]],
    warm: dict[str, float | None],
    dropped: int,
    drain_s: float,
    args: argparse.Namespace,
) -> dict[str, object]:
    last = samples[-1]
    per_path = soak.rows(
        "SELECT m.rel_path, m.status, COUNT(a.id) FROM media m LEFT JOIN analyses a ON a.media_id = m.id "
        "GROUP BY m.id, m.rel_path, m.status"
    )
    done = [r for r in per_path if r[1] == "done"]
    mean_ms = soak.rows("SELECT AVG(total_ms) FROM analyses")[0][0]
    figures: dict[str, object] = {
        "bench": "soak",
        "quick": args.quick,
        "minutes": args.minutes,
        "rate_per_min": args.rate,
        "files": dropped,
        "done": len(done),
        "lost": dropped - len(done),
        "duplicated": sum(1 for r in per_path if int(r[2]) > 1),  # type: ignore[call-overload]
        "drain_s": round(drain_s, 1),
        "mean_analysis_ms": round(float(mean_ms or 0), 1),
        "metrics_analysed": scrape(soak.worker_port, "vigil_media_analysed_total", '{source="soak"}'),
        "queued_max": max((s["queued"] or 0) for s in samples),
        "samples": len(samples),
    }
    for name in soak.procs:
        key = f"{name}_rss_mb"
        base, end = float(warm[key] or 0), float(last[key] or 0)
        peak = max(float(s[key] or 0) for s in samples)
        figures |= {
            f"{name}_rss_warm_mb": base,
            f"{name}_rss_end_mb": end,
            f"{name}_rss_peak_mb": peak,
            f"{name}_rss_growth_mb": round(end - base, 1),
            f"{name}_rss_ratio": round(end / base, 3) if base else None,
        }
    figures["peak_rss_mb"] = max(float(figures[f"{n}_rss_peak_mb"]) for n in soak.procs)  # type: ignore[arg-type]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=30.0, help="files per minute")
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=120.0, help="longest wait for the queue to empty")
    parser.add_argument("--model", help="model directory (default: a tiny random LLaVA-NeXT-Video)")
    parser.add_argument("--workdir", help="keep files here (default: a temporary folder, removed)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 s of arrivals (no figures)")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.rate, args.sample_s = 0.1, 30.0, 1.0
    if args.workdir:
        figures = run(args, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
            figures = run(args, Path(tmp))
    f = figures
    print(
        f"{f['files']} files in {args.minutes} min: {f['done']} done, {f['lost']} lost, "
        f"{f['duplicated']} duplicated; worker RSS {f['worker_rss_warm_mb']} -> {f['worker_rss_end_mb']} MB "
        f"(x{f['worker_rss_ratio']}), watcher {f['watcher_rss_warm_mb']} -> {f['watcher_rss_end_mb']} MB "
        f"(x{f['watcher_rss_ratio']}); queue depth max {f['queued_max']}",
        file=sys.stderr,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""`python -m workers`: a Celery worker process for one queue (`vigil worker` runs this)."""

from __future__ import annotations

import argparse

from vigil.contracts import GPU_QUEUE
from vigil.logs import configure_logging
from vigil.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vigil worker")
    parser.add_argument("--config")
    parser.add_argument("--queue", default=GPU_QUEUE, choices=["gpu", "cpu"])
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--name")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configure_logging(settings.log, process_name=f"worker-{args.queue}")

    from workers.app import build_worker_app

    app = build_worker_app(settings, queue=args.queue)
    concurrency = args.concurrency or (
        settings.work.gpu_concurrency if args.queue == GPU_QUEUE else settings.work.cpu_concurrency
    )
    pool = "prefork" if args.queue == GPU_QUEUE else "threads"
    worker_argv = [
        "worker",
        "-Q",
        args.queue,
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        settings.log.level,
    ]
    if args.name:
        worker_argv += ["-n", args.name]
    app.worker_main(worker_argv)


if __name__ == "__main__":
    main()

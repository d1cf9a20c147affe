"""`python -m workers`: a Celery worker process for one queue (`vigil worker` runs the same)."""

from __future__ import annotations

import argparse
import logging
import sys

from vigil.config.settings import Settings, load_settings
from vigil.errors import VigilError
from vigil.ops.celery_app import is_embedded
from vigil.ops.contracts import GPU_QUEUE
from vigil.ops.health import url_for_display
from vigil.ops.logs import configure_logging
from vigil.ops.metrics_env import prepare_worker_metrics

log = logging.getLogger("workers")


def run_worker(
    settings: Settings, *, queue: str, concurrency: int | None = None, name: str | None = None
) -> None:
    json_logs = configure_logging(settings.log, process_name=f"worker-{queue}")
    prepare_worker_metrics(settings, queue=queue)  # before anything imports prometheus_client
    from vigil.ops.metrics_server import serve_worker_metrics
    from workers.app import build_worker_app

    app = build_worker_app(settings, queue=queue)
    if concurrency is None:
        concurrency = settings.work.gpu_concurrency if queue == GPU_QUEUE else settings.work.cpu_concurrency
    # prefork for analysis: hard time limits need it and a lost child is reported (reject_on_worker_lost);
    # threads for delivery: it waits on networks, not on a device.
    pool = "prefork" if queue == GPU_QUEUE else "threads"
    argv = [
        "worker",
        "-Q",
        queue,
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        settings.log.level,
    ]
    if is_embedded(settings):  # no fanout on the embedded broker: no event heartbeats to send
        argv.append("--without-heartbeat")
    if name:
        argv += ["-n", name]
    if json_logs:  # Celery's banner is a dozen plain lines: in a JSON log, the one line below instead
        argv.insert(0, "--quiet")
    from celery.utils.nodenames import default_nodename, host_format

    from vigil.ops.live_workers import announce
    from workers.analysis.storing import set_worker_name

    node = host_format(default_nodename(name))
    set_worker_name(node)  # analyses.worker
    # `vigil health` and `vigil workers` find it (on the embedded broker, which has no remote control).
    announce(settings, name=node, queue=queue, model=settings.model.id if queue == GPU_QUEUE else None)
    serve_worker_metrics(settings, queue)
    log.info(
        "celery worker %s: queue %s, %s pool of %d, broker %s",
        node, queue, pool, concurrency, url_for_display(settings.broker.url),
    )  # fmt: skip
    app.worker_main(argv)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers")
    parser.add_argument("--config")
    parser.add_argument("--queue", default=GPU_QUEUE, choices=["gpu", "cpu"])
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--name")
    args = parser.parse_args(argv)
    try:
        run_worker(load_settings(args.config), queue=args.queue, concurrency=args.concurrency, name=args.name)
    except VigilError as exc:  # e.g. an unsupported model family: refused at start, not at the first file
        print(f"worker: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Serving the metrics Vigil defines in `vigil.ops.metrics`: an HTTP endpoint per process on `metrics.host`
(HTTP Basic with `metrics.password` when set; `vigil.ops.metrics_http`), retried in the background while
its port is taken, and a worker's endpoint summing its prefork pool's children."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.services import MetricsSettings, secret_value
from vigil.ops import metrics_http
from vigil.ops.metrics import analysis_metrics, watch_queue, watch_settling
from vigil.ops.ports import worker_port

log = logging.getLogger(__name__)

# A metrics port that was busy is tried again, back-off doubling up to this far apart.
RETRY_MAX_S = 300.0


def start_metrics_server(
    port: int,
    *,
    addr: str = MetricsSettings.model_fields["host"].default,
    registry: CollectorRegistry | None = None,
    password: str | None = None,
    setting: str = "metrics.*_port",
    retry_max_s: float = RETRY_MAX_S,
) -> bool:
    """Serve /metrics on `addr`:`port` from a daemon thread (HTTP Basic when `password` is given). In
    multiprocess mode, the sum over every process.

    Returns False when the port is 0, or cannot be bound now: metrics never stop a process. A busy port is
    reported (naming `setting`) and tried again from a daemon thread with back-off, up to `retry_max_s`
    apart, until it binds.
    """
    if port == 0:
        return False
    if registry is None:
        registry = _multiprocess_registry() if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else REGISTRY
    serve = functools.partial(metrics_http.serve, port, host=addr, registry=registry, password=password)
    try:
        serve()
    except OSError as exc:
        log.warning(
            "metrics not served on %s:%d: %s (set %s to a free port); trying again in the background",
            addr, port, exc.strerror or exc, setting,
        )  # fmt: skip
        threading.Thread(
            target=_retry_serving, args=(serve, port, addr, retry_max_s), name="metrics-retry", daemon=True
        ).start()
        return False
    log.info("metrics served on http://%s:%d/metrics", addr, port)
    return True


def _retry_serving(serve: Callable[[], None], port: int, addr: str, retry_max_s: float) -> None:
    delay = 1.0
    while True:
        time.sleep(delay)
        try:
            serve()
        except OSError as exc:
            delay = min(retry_max_s, delay * 2)
            log.debug("metrics still not served on %s:%d: %s", addr, port, exc.strerror or exc)
            continue
        log.info("metrics served on http://%s:%d/metrics (the port was free again)", addr, port)
        return


def _multiprocess_registry() -> CollectorRegistry:
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve_watcher_metrics(
    settings: Any,
    factory: sessionmaker[Session],
    settling: Callable[[], tuple[int, int, float]] | None = None,
) -> bool:
    """The watcher's endpoint: its counters, the queue gauges and (given `settling`) the files still
    settling. `settings` is the whole Settings."""
    if not settings.metrics.enabled:
        return False
    watch_queue(factory)
    if settling is not None:
        watch_settling(settling)
    return start_metrics_server(
        settings.metrics.watcher_port, setting="metrics.watcher_port", **_door(settings)
    )


def serve_worker_metrics(settings: Any, queue: str) -> bool:
    """The worker's endpoint, from its main process: the sum over its pool's children."""
    if not settings.metrics.enabled or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return False  # without the folder, the pool's children could not be summed: serve nothing
    if queue == "gpu":
        analysis_metrics()  # its series exist from the start, as zeros until the first analysis
    return start_metrics_server(
        worker_port(settings, queue), setting="metrics.worker_port", **_door(settings)
    )


def _door(settings: Any) -> dict[str, Any]:
    """Where the endpoints listen and the password they ask for (`metrics.host`, `metrics.password`)."""
    return {"addr": settings.metrics.host, "password": secret_value(settings.metrics.password)}

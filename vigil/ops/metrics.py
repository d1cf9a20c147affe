"""Every Prometheus metric Vigil exports, defined here and nowhere else (docs/operations.md lists them).

Who records what:
- the watcher: registrations, reconciler re-sends, and, computed on each scrape from the database, the queue
  depth (`QueueCollector`, one grouped COUNT over the `(status, enqueued_at)` index), and from its settle
  tracker the files still settling (`SettlingCollector`);
- workers: analysis outcomes, timings, frames, detections, alerts (gpu queue) and deliveries (cpu queue).

Workers run a Celery prefork pool: each child counts in its own memory-mapped file under
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode) and the worker's main process serves the
sum. That variable must be set before prometheus_client is first imported, which is why the worker sets it
with `vigil.ops.metrics_env.use_multiprocess_dir` (under `metrics.multiproc_dir`, default
`<storage.data_dir>/metrics`) before importing its tasks (and this module).

Recording never fails the work it measures: helpers that read the database swallow and log their errors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.services import secret_value
from vigil.ops import metrics_http

log = logging.getLogger(__name__)

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)

# -- watcher ---------------------------------------------------------------------------------------------
MEDIA_REGISTERED = Counter(
    "vigil_media_registered",
    "Files registered by the watcher, by source and the status they were registered with",
    ["source", "status"],
)
RECONCILER_RESENT = Counter(
    "vigil_reconciler_resent",
    "Messages the reconciler sent again because the broker lost them (kind: media or delivery)",
    ["kind"],
)
RECONCILER_EXPIRED = Counter(
    "vigil_reconciler_expired_leases",
    "Running media whose worker stopped renewing its lease, put back in the queue or given up",
    ["action"],
)
# -- workers: analysis -----------------------------------------------------------------------------------
ANALYSIS_OUTCOMES = Counter(
    "vigil_analysis_outcomes",
    "Analysis task runs by outcome (done, failed, skipped, retry, lost)",
    ["outcome"],
)
MEDIA_ANALYSED = Counter("vigil_media_analysed", "Media analysed to the end (status done)", ["source"])
MEDIA_FAILED = Counter("vigil_media_failed", "Media that ended failed in a worker", ["source"])
ANALYSIS_SECONDS = Histogram(
    "vigil_analysis_seconds", "Wall time of one analysis, claim to commit", buckets=SECONDS_BUCKETS
)
MODEL_SECONDS = Histogram(
    "vigil_model_seconds", "Model time (scoring and evidence) of one analysis", buckets=SECONDS_BUCKETS
)
DECODE_SECONDS = Histogram(
    "vigil_decode_seconds", "Frame decoding time of one analysis", buckets=SECONDS_BUCKETS
)
FRAMES_DECODED = Counter("vigil_frames_decoded", "Frames decoded for analysis")
DETECTIONS = Counter(
    "vigil_detections", "Detection rows stored, by target and whether they matched", ["target", "matched"]
)
ALERTS = Counter("vigil_alerts", "Alerts fired, by target", ["target"])
# -- workers: delivery -----------------------------------------------------------------------------------
DELIVERIES = Counter(
    "vigil_deliveries",
    "Delivery attempts by channel and outcome (delivered, retry, failed)",
    ["channel", "outcome"],
)

SETTLING_FILES = "vigil_watcher_settling_files"
SETTLING_OLDEST = "vigil_watcher_settling_oldest_seconds"
QUEUE_DEPTH = "vigil_queue_depth"
QUEUE_OLDEST = "vigil_queue_oldest_seconds"
DELIVERIES_PENDING = "vigil_deliveries_pending"


def metric_names() -> set[str]:
    """Every series name this module can export (counters with `_total`, histograms with their parts)."""
    names = {QUEUE_DEPTH, QUEUE_OLDEST, DELIVERIES_PENDING, SETTLING_FILES, SETTLING_OLDEST}
    for value in globals().values():
        if isinstance(value, Counter):
            names |= {f"{value._name}_total", f"{value._name}_created"}
        elif isinstance(value, Histogram):
            names |= {value._name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
    return names


# -- recording helpers -----------------------------------------------------------------------------------


def record_registration(source: str, status: str) -> None:
    MEDIA_REGISTERED.labels(source=source, status=status).inc()


def record_reconcile(*, resent: int, requeued: int, given_up: int) -> None:
    RECONCILER_RESENT.labels(kind="media").inc(resent)
    RECONCILER_EXPIRED.labels(action="requeued").inc(requeued)
    RECONCILER_EXPIRED.labels(action="given_up").inc(given_up)


def record_delivery(channel: str, outcome: str) -> None:
    DELIVERIES.labels(channel=channel, outcome=outcome).inc()


def record_outcome(factory: sessionmaker[Session], media_id: int, outcome: str) -> None:
    """Count one analysis task run; `done` and `failed` are also counted by the media's source."""
    ANALYSIS_OUTCOMES.labels(outcome=outcome).inc()
    if outcome not in ("done", "failed"):
        return
    source = _source_of(factory, media_id)
    (MEDIA_ANALYSED if outcome == "done" else MEDIA_FAILED).labels(source=source).inc()


def record_analysis(
    factory: sessionmaker[Session], analysis_id: int, targets: Any, recognition: Any, *, began: float
) -> None:
    """Timings, frames and detections of one committed analysis, and the alerts it fired (one query).

    `targets` are the claim's TargetSpecs and `recognition` the worker's Recognition (duck-typed: this
    module stays torch-free); `began` is the `time.perf_counter()` at the start of the analysis.
    """
    ANALYSIS_SECONDS.observe(time.perf_counter() - began)
    MODEL_SECONDS.observe(recognition.model_ms / 1000)
    DECODE_SECONDS.observe(recognition.decode_ms / 1000)
    FRAMES_DECODED.inc(recognition.frames_decoded)
    names = {t.id: t.name for t in targets}
    for result in recognition.results:
        matched = "true" if result.matched else "false"
        DETECTIONS.labels(target=names.get(result.target_id, "unknown"), matched=matched).inc()
    for target, count in _alerts_of(factory, analysis_id):
        ALERTS.labels(target=target).inc(count)


def _source_of(factory: sessionmaker[Session], media_id: int) -> str:
    from vigil.store.schema import Media, Source

    try:
        with factory() as session:
            name = session.scalar(
                select(Source.name).join(Media, Media.source_id == Source.id).where(Media.id == media_id)
            )
    except Exception as exc:  # the database may be down; a metric is not worth failing a task for
        log.debug("media %d: source not read for metrics: %s", media_id, exc)
        return "unknown"
    return name or "unknown"


def _alerts_of(factory: sessionmaker[Session], analysis_id: int) -> list[tuple[str, int]]:
    from vigil.store.schema import Alert, Detection, Target

    try:
        with factory() as session:
            rows = session.execute(
                select(Target.name, func.count(Alert.id))
                .join(Alert, Alert.target_id == Target.id)
                .join(Detection, Detection.id == Alert.detection_id)
                .where(Detection.analysis_id == analysis_id)
                .group_by(Target.name)
            ).all()
    except Exception as exc:
        log.debug("analysis %d: alerts not read for metrics: %s", analysis_id, exc)
        return []
    return [(str(name), int(count)) for name, count in rows]


# -- the watcher's queue gauges ---------------------------------------------------------------------------


class QueueCollector(Collector):
    """Queue depth read from the rows at scrape time: the database is the truth, not a counter."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def describe(self) -> list[Any]:
        return []  # collected lazily: registering must not query the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from vigil.store.schema import Delivery, DeliveryStatus, Media, MediaStatus, utcnow

        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Media rows waiting (queued) or being analysed", labels=["status"]
        )
        oldest = GaugeMetricFamily(QUEUE_OLDEST, "Age of the oldest queued media row in seconds")
        pending = GaugeMetricFamily(DELIVERIES_PENDING, "Alert deliveries not yet delivered or given up")
        statuses = (MediaStatus.QUEUED, MediaStatus.RUNNING)
        try:
            with self.factory() as session:
                by_status = select(Media.status, func.count()).where(Media.status.in_(statuses))
                counts = dict(session.execute(by_status.group_by(Media.status)).all())
                first = session.scalar(
                    select(func.min(Media.created_at)).where(Media.status == MediaStatus.QUEUED)
                )
                waiting = session.scalar(
                    select(func.count()).where(Delivery.status == DeliveryStatus.PENDING)
                )
        except Exception as exc:
            log.warning("queue depth not collected: %s", exc)
            return
        for status in statuses:
            depth.add_metric([str(status)], float(counts.get(status, 0)))
        age = 0.0 if first is None else max(0.0, (utcnow() - _aware(first)).total_seconds())
        oldest.add_metric([], age)
        pending.add_metric([], float(waiting or 0))
        yield from (depth, oldest, pending)


def _aware(moment: Any) -> Any:
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class SettlingCollector(Collector):
    """Files the watcher has seen but not registered, read from its settle tracker at scrape time."""

    def __init__(self, summary: Callable[[], tuple[int, int, float]]) -> None:
        self.summary = summary  # () -> (count, held open by a writer, oldest in seconds)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count, writing, oldest_s = self.summary()
        files = GaugeMetricFamily(
            SETTLING_FILES,
            "Files seen but not registered yet, by what they wait for (writer: held open for writing)",
            labels=["waiting"],
        )
        files.add_metric(["writer"], float(writing))
        files.add_metric(["other"], float(count - writing))
        oldest = GaugeMetricFamily(SETTLING_OLDEST, "Seconds since the oldest settling file was first seen")
        oldest.add_metric([], oldest_s)
        yield from (files, oldest)


def watch_settling(
    summary: Callable[[], tuple[int, int, float]], registry: CollectorRegistry = REGISTRY
) -> SettlingCollector:
    collector = SettlingCollector(summary)
    registry.register(collector)
    return collector


_queue_collector: QueueCollector | None = None
_collector_lock = threading.Lock()


def watch_queue(factory: sessionmaker[Session], registry: CollectorRegistry = REGISTRY) -> QueueCollector:
    """Register the queue collector once per process (a later call points it at the new database)."""
    global _queue_collector
    with _collector_lock:
        if _queue_collector is None:
            _queue_collector = QueueCollector(factory)
            registry.register(_queue_collector)
        _queue_collector.factory = factory
        return _queue_collector


# -- serving -----------------------------------------------------------------------------------------------


def start_metrics_server(
    port: int,
    *,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    password: str | None = None,
) -> bool:
    """Serve /metrics on `addr`:`port` from a daemon thread (HTTP Basic when `password` is given). In
    multiprocess mode, the sum over every process.

    Returns False (and logs why) when the port is 0 or cannot be bound: metrics never stop a process.
    """
    if port == 0:
        return False
    if registry is None:
        registry = _multiprocess_registry() if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else REGISTRY
    try:
        metrics_http.serve(port, host=addr, registry=registry, password=password)
    except OSError as exc:
        log.warning("metrics not served on %s:%d: %s", addr, port, exc.strerror or exc)
        return False
    log.info("metrics served on http://%s:%d/metrics", addr, port)
    return True


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
    return start_metrics_server(settings.metrics.watcher_port, **_door(settings))


def worker_port(settings: Any, queue: str) -> int:
    """The gpu worker serves `worker_port`, the cpu worker the next one (0 turns both off)."""
    base = int(settings.metrics.worker_port)
    return 0 if base == 0 else base + (0 if queue == "gpu" else 1)


def serve_worker_metrics(settings: Any, queue: str) -> bool:
    """The worker's endpoint, from its main process: the sum over its pool's children."""
    if not settings.metrics.enabled or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return False  # without the folder, the pool's children could not be summed: serve nothing
    return start_metrics_server(worker_port(settings, queue), **_door(settings))


def _door(settings: Any) -> dict[str, Any]:
    """Where the endpoints listen and the password they ask for (`metrics.host`, `metrics.password`)."""
    return {"addr": settings.metrics.host, "password": secret_value(settings.metrics.password)}

"""Every Prometheus metric Vigil exports, defined here and nowhere else (docs/operations.md lists them).

Who records what (each process exports what it measures, nothing else):
- the watcher: registrations, reconciler re-sends, and, computed on each scrape from the database, the queue
  depth and the failed rows (`QueueCollector`, grouped COUNTs over the `(status, enqueued_at)` index), and
  from its settle tracker the files still settling (`SettlingCollector`);
- workers: analysis outcomes, timings, frames, detections, alerts (gpu queue) and deliveries (cpu queue).

Failures two ways (docs/operations.md says why): `vigil_media_failed_total` counts each terminal failure in
the process where it happens (watcher: registration, reconciler; gpu worker: analysis), for rates that stay
right across restarts; `vigil_media_failed_rows` is the level the database holds, read at each scrape.
The analysis timings and frames carry no labels, so any process that made them would export them (as zeros):
only the gpu worker makes them, through `analysis_metrics()`.

Workers run a Celery prefork pool: each child counts in its own memory-mapped file under
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode) and the worker's main process serves the
sum. That variable must be set before prometheus_client is first imported, which is why the worker sets it
with `vigil.ops.metrics_env.use_multiprocess_dir` (under `metrics.multiproc_dir`, default
`<storage.data_dir>/metrics`) before importing its tasks (and this module).

Recording never fails the work it measures: helpers that read the database swallow and log their errors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
_lock = threading.Lock()  # metrics and collectors made once per process

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
# -- watcher and `vigil prune`: retention (vigil.media.retention) -------------------------------------------
PRUNED = Counter(
    "vigil_pruned",
    "Deletions by retention, by source, what (file, thumbnails, gone: the row of a file already missing) "
    "and cause (age, pressure)",
    ["source", "what", "cause"],
)
PRUNED_BYTES = Counter("vigil_pruned_bytes", "Bytes freed by retention", ["source", "cause"])
DISK_FREE = Gauge(
    "vigil_disk_free_bytes",
    "Free bytes on each volume retention watches (a source's folder or the data directory)",
    ["volume"],
    multiprocess_mode="livesum",
)
DISK_PRESSURE_UNRELIEVED = Counter(
    "vigil_disk_pressure_unrelieved",
    "Retention passes that left a volume below min_free: only evidence (alerted files) was left to delete",
    ["volume"],
)
# -- the recorder (recorder/): one label value per stream source -----------------------------------------
STREAM_UP = Gauge("vigil_stream_up", "1 while a stream source is being recorded, else 0", ["source"])
STREAM_RECONNECTS = Counter(
    "vigil_stream_reconnects", "Connection attempts after a failure or a lost stream", ["source"]
)
STREAM_SEGMENTS = Counter(
    "vigil_stream_segments", "Segments completed and renamed into the source's folder", ["source"]
)
STREAM_BYTES = Counter("vigil_stream_bytes", "Bytes of completed segments", ["source"])
STREAM_LAG = Gauge("vigil_stream_lag_seconds", "Seconds since the stream's last packet arrived", ["source"])
# -- workers: analysis -----------------------------------------------------------------------------------
ANALYSIS_OUTCOMES = Counter(
    "vigil_analysis_outcomes",
    "Analysis task runs by outcome (done, failed, skipped, retry, lost)",
    ["outcome"],
)
MEDIA_ANALYSED = Counter("vigil_media_analysed", "Media analysed to the end (status done)", ["source"])
MEDIA_FAILED = Counter(
    "vigil_media_failed",
    "Media that ended failed, counted where it happened (stage: registration, analysis, reconciler)",
    ["source", "stage"],
)
# made only by the gpu worker (`analysis_metrics`): name -> help
ANALYSIS_HISTOGRAMS = {
    "vigil_analysis_seconds": "Wall time of one analysis, claim to commit",
    "vigil_model_seconds": "Model time (scoring and evidence) of one analysis",
    "vigil_decode_seconds": "Frame decoding time of one analysis",
}
FRAMES_DECODED = "vigil_frames_decoded"
DETECTIONS = Counter(
    "vigil_detections", "Detection rows stored, by target and whether they matched", ["target", "matched"]
)
ALERTS = Counter("vigil_alerts", "Alerts fired, by target", ["target"])
# made by the recorder (camera_offline) and the watcher (disk_pressure): vigil.alerts.events
EVENT_ALERTS = Counter("vigil_event_alerts", "Alerts fired on events, by event and rule", ["event", "rule"])
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
FAILED_ROWS = "vigil_media_failed_rows"


@dataclass(frozen=True)
class AnalysisMetrics:
    seconds: Histogram
    model_seconds: Histogram
    decode_seconds: Histogram
    frames: Counter


_analysis_metrics: AnalysisMetrics | None = None


def analysis_metrics() -> AnalysisMetrics:
    """The gpu worker's label-less series, made on the first call in a process (the worker calls it at start,
    so they exist from then on; no other process does, so none exports them as zeros)."""
    global _analysis_metrics
    with _lock:
        if _analysis_metrics is None:
            seconds, model, decode = (
                Histogram(name, doc, buckets=SECONDS_BUCKETS) for name, doc in ANALYSIS_HISTOGRAMS.items()
            )
            frames = Counter(FRAMES_DECODED, "Frames decoded for analysis")
            _analysis_metrics = AnalysisMetrics(seconds, model, decode, frames)
        return _analysis_metrics


def metric_names() -> set[str]:
    """Every series name this module can export (counters with `_total`, histograms with their parts)."""
    names = {QUEUE_DEPTH, QUEUE_OLDEST, DELIVERIES_PENDING, FAILED_ROWS, SETTLING_FILES, SETTLING_OLDEST}
    counters = [v._name for v in globals().values() if isinstance(v, Counter)] + [FRAMES_DECODED]
    for name in counters:
        names |= {f"{name}_total", f"{name}_created"}
    for name in ANALYSIS_HISTOGRAMS:
        names |= {name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
    names |= {v._name for v in globals().values() if isinstance(v, Gauge)}
    return names


# -- recording helpers -----------------------------------------------------------------------------------


def record_registration(source: str, status: str) -> None:
    """One committed registration; a file refused there (`failed`) is also a terminal failure."""
    MEDIA_REGISTERED.labels(source=source, status=status).inc()
    if status == "failed":
        MEDIA_FAILED.labels(source=source, stage="registration").inc()


def record_pruned(source: str, what: str, cause: str, size: int) -> None:
    PRUNED.labels(source=source, what=what, cause=cause).inc()
    PRUNED_BYTES.labels(source=source, cause=cause).inc(size)


def record_reconcile(
    factory: sessionmaker[Session], *, resent: int, requeued: int, given_up: list[int]
) -> None:
    """One reconciler pass; `given_up` are the media it failed (their worker was lost every time)."""
    RECONCILER_RESENT.labels(kind="media").inc(resent)
    RECONCILER_EXPIRED.labels(action="requeued").inc(requeued)
    RECONCILER_EXPIRED.labels(action="given_up").inc(len(given_up))
    for media_id in given_up:
        MEDIA_FAILED.labels(source=_source_of(factory, media_id), stage="reconciler").inc()


def record_delivery(channel: str, outcome: str) -> None:
    DELIVERIES.labels(channel=channel, outcome=outcome).inc()


def record_outcome(factory: sessionmaker[Session], media_id: int, outcome: str) -> None:
    """Count one analysis task run; `done` and `failed` are also counted by the media's source."""
    ANALYSIS_OUTCOMES.labels(outcome=outcome).inc()
    if outcome not in ("done", "failed"):
        return
    source = _source_of(factory, media_id)
    if outcome == "done":
        MEDIA_ANALYSED.labels(source=source).inc()
    else:
        MEDIA_FAILED.labels(source=source, stage="analysis").inc()


def record_analysis(
    factory: sessionmaker[Session], analysis_id: int, targets: Any, recognition: Any, *, began: float
) -> None:
    """Timings, frames and detections of one committed analysis, and the alerts it fired (one query).

    `targets` are the claim's TargetSpecs and `recognition` the worker's Recognition (duck-typed: this
    module stays torch-free); `began` is the `time.perf_counter()` at the start of the analysis.
    """
    measured = analysis_metrics()
    measured.seconds.observe(time.perf_counter() - began)
    measured.model_seconds.observe(recognition.model_ms / 1000)
    measured.decode_seconds.observe(recognition.decode_ms / 1000)
    measured.frames.inc(recognition.frames_decoded)
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
    """Queue depth and failed rows read from the rows at scrape time: the database is the truth."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def describe(self) -> list[Any]:
        return []  # collected lazily: registering must not query the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from vigil.store.schema import Delivery, DeliveryStatus, Media, MediaStatus, Source, utcnow

        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Media rows waiting (queued) or being analysed", labels=["status"]
        )
        oldest = GaugeMetricFamily(QUEUE_OLDEST, "Age of the oldest queued media row in seconds")
        pending = GaugeMetricFamily(DELIVERIES_PENDING, "Alert deliveries not yet delivered or given up")
        failed = GaugeMetricFamily(
            FAILED_ROWS,
            "Media rows whose status is failed now, by source (from the database)",
            labels=["source"],
        )
        statuses = (MediaStatus.QUEUED, MediaStatus.RUNNING)
        try:
            with self.factory() as session:
                by_status = select(Media.status, func.count()).where(Media.status.in_(statuses))
                counts = dict(session.execute(by_status.group_by(Media.status)).all())
                by_source = (
                    select(Source.name, func.count())
                    .join(Media, Media.source_id == Source.id)
                    .where(Media.status == MediaStatus.FAILED)
                    .group_by(Source.name)
                )
                failures = session.execute(by_source).all()
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
        for source, count in failures:
            failed.add_metric([str(source)], float(count))
        yield from (depth, oldest, pending, failed)


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


def watch_queue(factory: sessionmaker[Session], registry: CollectorRegistry = REGISTRY) -> QueueCollector:
    """Register the queue collector once per process (a later call points it at the new database)."""
    global _queue_collector
    with _lock:
        if _queue_collector is None:
            _queue_collector = QueueCollector(factory)
            registry.register(_queue_collector)
        _queue_collector.factory = factory
        return _queue_collector


# -- serving -----------------------------------------------------------------------------------------------

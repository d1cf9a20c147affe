"""Following work through the database: a progress line for backfills, and the `vigil status` summary.

The database is the source of truth, so progress is read from the media rows (counted by status), never
from the broker. On a terminal the progress line is redrawn in place; elsewhere (logs, CI) a plain line is
written every `interval_s` seconds and once at the end.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.ops.contracts import GPU_QUEUE
from vigil.store.schema import TERMINAL_STATUSES, Delivery, DeliveryStatus, Media, MediaStatus, Source

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

CHUNK = 500


SENT = "sent"  # a key of count_statuses(): rows that went to the analysis queue (queued, running or begun)


def count_statuses(factory: sessionmaker[Session], media_ids: Sequence[int]) -> Counter[str]:
    """How many of these media rows are in each status, plus `SENT`: how many were queued for analysis
    (a file found unreadable or a duplicate at registration never was)."""
    counts: Counter[str] = Counter()
    began = Media.started_at.is_not(None)
    with factory() as session:
        for start in range(0, len(media_ids), CHUNK):
            chunk = media_ids[start : start + CHUNK]
            rows = session.execute(
                select(Media.status, began, func.count())
                .where(Media.id.in_(chunk))
                .group_by(Media.status, began)
            )
            for status, has_begun, n in rows:
                counts[status] += n
                if has_begun or status in (MediaStatus.QUEUED, MediaStatus.RUNNING):
                    counts[SENT] += n
    return counts


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class Progress:
    """Files found, queued, done, failed, rate and ETA, drawn on `stream` from `count_statuses` counts."""

    stream: TextIO
    label: str
    interactive: bool
    interval_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    found: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    _started: float = field(init=False, default=0.0)
    _finished_at_start: int | None = field(init=False, default=None)
    _last_line: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self._started = self.clock()

    @property
    def remaining(self) -> int:
        return self.counts[MediaStatus.QUEUED] + self.counts[MediaStatus.RUNNING]

    @property
    def finished(self) -> int:
        return sum(self.counts[s] for s in TERMINAL_STATUSES)

    def line(self) -> str:
        c = self.counts
        found = "scanning" if self.found is None else f"{self.found} found"
        parts = [found, f"{c[SENT]} queued", f"{c[MediaStatus.DONE]} done", f"{c[MediaStatus.FAILED]} failed"]
        for quiet in (MediaStatus.SKIPPED, MediaStatus.SUPERSEDED):
            if c[quiet]:
                parts.append(f"{c[quiet]} {quiet}")
        elapsed = self.clock() - self._started
        rate = (self.finished - (self._finished_at_start or 0)) / elapsed if elapsed > 0 else 0.0
        parts.append(f"{rate:.2f}/s")
        if self.remaining:
            parts.append(f"ETA {format_duration(self.remaining / rate)}" if rate > 0 else "ETA ?")
        return f"{self.label}: " + ", ".join(parts)

    def update(
        self, *, counts: Counter[str] | None = None, found: int | None = None, force: bool = False
    ) -> None:
        if counts is not None:
            self.counts = counts
            if self._finished_at_start is None:
                self._finished_at_start = self.finished
        if found is not None:
            self.found = found
        now = self.clock()
        if self.interactive:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
        elif force or now - self._last_line >= self.interval_s:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_line = now

    def close(self) -> None:
        prefix = "\r\x1b[K" if self.interactive else ""
        self.stream.write(prefix + self.line() + "\n")
        self.stream.flush()


def follow(
    factory: sessionmaker[Session],
    media_ids: Sequence[int],
    progress: Progress,
    *,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll the rows until none is queued or running (True), or until `timeout_s` (False)."""
    deadline = None if timeout_s is None else progress.clock() + timeout_s
    while True:
        progress.update(counts=count_statuses(factory, media_ids))
        if progress.remaining == 0:
            return True
        if deadline is not None and progress.clock() >= deadline:
            return False
        sleep(poll_s)


# --- `vigil status` -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    media_id: int
    source: str
    path: str
    error: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class StatusReport:
    by_status: dict[str, int]
    oldest_queued: datetime | None
    failures: list[Failure]
    deliveries_pending: int
    alerts_waiting: int
    broker_queues: dict[str, int | None]

    @property
    def queue_depth(self) -> int:
        return self.by_status.get(MediaStatus.QUEUED, 0)


def gather_status(
    factory: sessionmaker[Session],
    *,
    recent_failures: int = 5,
    broker_queues: dict[str, int | None] | None = None,
) -> StatusReport:
    with factory() as session:
        grouped = session.execute(select(Media.status, func.count()).group_by(Media.status))
        by_status = {status: n for status, n in grouped}
        oldest = session.scalar(
            select(func.min(func.coalesce(Media.enqueued_at, Media.created_at))).where(
                Media.status == MediaStatus.QUEUED
            )
        )
        failures = [
            Failure(m.id, name, m.path, m.error, m.finished_at)
            for m, name in session.execute(
                select(Media, Source.name)
                .join(Source, Source.id == Media.source_id)
                .where(Media.status == MediaStatus.FAILED)
                .order_by(Media.finished_at.desc(), Media.id.desc())
                .limit(recent_failures)
            )
        ]
        pending = select(Delivery).where(Delivery.status == DeliveryStatus.PENDING).subquery()
        deliveries = session.scalar(select(func.count()).select_from(pending)) or 0
        alerts = session.scalar(select(func.count(func.distinct(pending.c.alert_id)))) or 0
    return StatusReport(by_status, oldest, failures, deliveries, alerts, broker_queues or {})


def status_lines(report: StatusReport, *, now: datetime) -> Iterable[str]:
    order = [s.value for s in MediaStatus]
    counts = ", ".join(f"{report.by_status.get(s, 0)} {s}" for s in order)
    yield f"media: {counts}"
    age = ""
    if report.oldest_queued is not None:
        oldest = report.oldest_queued
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        age = f" (oldest queued {format_duration((now - oldest).total_seconds())} ago)"
    yield f"queue: {report.queue_depth} queued{age}"
    for queue, depth in report.broker_queues.items():
        yield f"broker queue {queue}: {'unknown' if depth is None else depth} message(s)"
    yield f"alerts: {report.alerts_waiting} waiting for {report.deliveries_pending} delivery(ies)"
    if report.failures:
        yield "recent failures:"
        for f in report.failures:
            when = f.finished_at.strftime("%Y-%m-%d %H:%M") if f.finished_at else "?"
            yield f"  {when}  {f.source}  {f.path}: {f.error or 'no reason recorded'}"


def broker_queue_depths(
    app: Celery, queues: Sequence[str] = (GPU_QUEUE,), *, timeout_s: float = 3.0
) -> dict[str, int | None]:
    """Messages waiting in each broker queue (Redis and the SQLAlchemy transport report it); None: unknown."""
    depths: dict[str, int | None] = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
            channel = conn.default_channel
            for queue in queues:
                try:
                    depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
                except Exception as exc:  # a queue never declared has no messages to count
                    log.debug("broker queue %s: %s", queue, exc)
                    depths[queue] = 0
    except Exception as exc:  # an unreachable broker must not break `vigil status`
        log.warning("cannot read the broker's queue lengths: %s", exc)
        return dict.fromkeys(queues)
    return depths

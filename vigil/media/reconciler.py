"""Finds work the broker lost, from the rows: the database is the source of truth.

- `queued` rows never sent are sent; rows sent longer ago than `requeue_after_s` are sent again, unless
  the broker's queue holds at least one message per queued row (a deep backlog, nothing lost): without
  that check every row of a backlog older than `requeue_after_s` got one more message per interval;
- `running` rows whose lease ran out (their worker died) go back to `queued` and are sent again,
  or end `failed` once they used `max_attempts`.
A message delivered twice is harmless: the second finds its row already claimed or done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import WorkSettings
from vigil.media.lifecycle import expire_leases
from vigil.ops import metrics
from vigil.ops.contracts import ANALYZE, TASK_QUEUES
from vigil.ops.enqueue import Enqueuer
from vigil.store.schema import Media, MediaStatus, utcnow

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class ReconcileReport:
    resent: int = 0
    expired: int = 0
    dead: int = 0


def reconcile_media(
    factory: sessionmaker[Session], enqueuer: Enqueuer, work: WorkSettings
) -> ReconcileReport:
    report = ReconcileReport()
    expired, given_up = expire_leases(factory, max_attempts=work.max_attempts, batch=BATCH)
    report.expired, report.dead = len(expired), len(given_up)
    for media_id in _queued_needing_send(factory, enqueuer, work):
        if enqueuer.analyze(media_id):
            report.resent += 1
    metrics.record_reconcile(factory, resent=report.resent, requeued=report.expired, given_up=given_up)
    if report.resent or report.expired or report.dead:
        log.info(
            "reconciled: %d resent, %d leases expired, %d given up",
            report.resent,
            report.expired,
            report.dead,
        )
    return report


def _queued_needing_send(factory: sessionmaker[Session], enqueuer: Enqueuer, work: WorkSettings) -> list[int]:
    stale = utcnow() - timedelta(seconds=work.requeue_after_s)
    with factory() as session:
        due = list(
            session.execute(
                select(Media.id, Media.enqueued_at)
                .where(
                    Media.status == MediaStatus.QUEUED,
                    or_(Media.enqueued_at.is_(None), Media.enqueued_at < stale),
                )
                .order_by(Media.id)
                .limit(BATCH)
            )
        )
        if not any(row.enqueued_at is not None for row in due):
            return [row.id for row in due]
        sent = session.scalar(
            select(func.count()).where(Media.status == MediaStatus.QUEUED, Media.enqueued_at.is_not(None))
        )
    if enqueuer.holds_one_per(TASK_QUEUES[ANALYZE], sent or 0):
        # A message waits for every queued row that was sent: the old ones are a backlog, not a loss.
        return [row.id for row in due if row.enqueued_at is None]
    return [row.id for row in due]

"""Delivering one outbox row: lease it, send it, record the outcome. The row is the truth.

- A delivery is leased before sending (`attempts + 1`, `lease_until`), with the attempt count as a fence:
  a duplicate task message finds the lease held and does nothing, and a sender whose lease ran out cannot
  overwrite the outcome of the one that took over.
- It is marked delivered after the send. A crash in between sends it again later (at least once); receivers
  dedupe by the idempotency key (`webhook-id`).
- A retryable failure leaves the row `pending` with `next_attempt_at` = now + exponential backoff with jitter
  (at least the receiver's `Retry-After`), until `alerts.retry_horizon_s` after the row was created; the task
  re-sends itself with that countdown, and `reconcile_deliveries` re-sends rows whose message was lost.
- A final failure (4xx other than 408/429, a bad command) ends `failed`; HTTP 410 also disables the channel.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vigil.alerts.channels import DeliveryFailed, Notification, Sender, build_sender, channel_configs
from vigil.config.settings import AlertSettings, ChannelSettings, Settings
from vigil.ops import metrics
from vigil.ops.contracts import DELIVER, TASK_QUEUES
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import write_session
from vigil.store.schema import Alert, Channel, Delivery, DeliveryStatus, utcnow

log = logging.getLogger(__name__)

EARLY_S = 0.05  # timer slack: a message this close to next_attempt_at counts as due
REQUEUE_NOT_DUE_S = 300.0  # an early message waits again (countdown) up to this; later ones are dropped
RECONCILE_BATCH = 500

SenderFactory = Callable[[ChannelSettings], Sender]


class NotDue(Exception):
    """The row's next attempt is later (e.g. a duplicate message arrived before the retry's countdown)."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"not due for {wait_s:.1f} s")
        self.wait_s = wait_s


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str  # delivered | retry | failed | skipped
    retry_in_s: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Lease:
    delivery_id: int
    attempts: int  # after taking the lease: the fence for every later write
    channel: str
    conf: ChannelSettings | None
    note: Notification
    created_at: datetime
    problem: str | None  # a reason to fail without sending (channel gone from settings, or disabled)


def lease_seconds(conf: ChannelSettings | None) -> float:
    """Long enough for a send that uses its whole timeout at every step (connect, TLS, write)."""
    return max(60.0, (conf.timeout_s if conf else 10.0) * 4)


def backoff_s(
    attempts: int, conf: AlertSettings, *, rng: random.Random, retry_after_s: float | None = None
) -> float:
    """Capped exponential backoff with jitter in [d/2, d], but never sooner than the receiver asked."""
    nominal = min(conf.retry_max_s, conf.retry_base_s * 2 ** max(0, attempts - 1))
    delay = rng.uniform(nominal / 2, nominal)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def deliver(
    factory: sessionmaker[Session],
    delivery_id: int,
    *,
    settings: Settings,
    senders: SenderFactory = build_sender,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    """Send one delivery row if it is pending, due and not leased by someone else."""
    try:
        lease = take_lease(factory, delivery_id, settings=settings)
    except NotDue as early:
        if early.wait_s <= REQUEUE_NOT_DUE_S:
            return DeliveryOutcome("retry", retry_in_s=early.wait_s)
        return DeliveryOutcome("skipped")  # the reconciler sends it when it is due
    if lease is None:
        return DeliveryOutcome("skipped")
    if lease.problem is not None or lease.conf is None:
        problem = lease.problem or f"channel {lease.channel} is not configured"
        return record_failure(
            factory, lease, DeliveryFailed(problem, retryable=False), settings=settings, rng=rng
        )
    try:
        senders(lease.conf).send(lease.note)
    except DeliveryFailed as exc:
        return record_failure(factory, lease, exc, settings=settings, rng=rng)
    except Exception as exc:  # a sender bug must not lose the alert: retried like a transient failure
        log.exception("delivery %d to %s: unexpected error", delivery_id, lease.channel)
        failure = DeliveryFailed(f"{type(exc).__name__}: {exc}", retryable=True)
        return record_failure(factory, lease, failure, settings=settings, rng=rng)
    return mark_delivered(factory, lease)


def take_lease(factory: sessionmaker[Session], delivery_id: int, *, settings: Settings) -> Lease | None:
    now = utcnow()
    configs = channel_configs(settings)
    with write_session(factory) as session:
        row = session.get(Delivery, delivery_id)
        if row is None or row.status != DeliveryStatus.PENDING:
            log.debug("delivery %d: not pending, nothing to do", delivery_id)
            return None
        if row.lease_until is not None and row.lease_until > now:
            log.info("delivery %d: leased by another sender until %s", delivery_id, row.lease_until)
            return None
        if row.next_attempt_at is not None and row.next_attempt_at > now + timedelta(seconds=EARLY_S):
            log.debug("delivery %d: not due before %s", delivery_id, row.next_attempt_at)
            raise NotDue((row.next_attempt_at - now).total_seconds())
        conf = configs.get(row.channel)
        attempts = row.attempts + 1
        taken = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.status == DeliveryStatus.PENDING,
                Delivery.attempts == row.attempts,
                or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
            )
            .values(attempts=attempts, lease_until=now + timedelta(seconds=lease_seconds(conf)))
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row.attempts = attempts
        alert = session.get_one(Alert, row.alert_id)
        note = Notification.from_alert(alert, row, base_url=settings.web.base_url)
        problem = _problem(session, row, conf)
        return Lease(delivery_id, attempts, row.channel, conf, note, row.created_at, problem)


def _problem(session: Session, row: Delivery, conf: ChannelSettings | None) -> str | None:
    if conf is None:
        return f"channel {row.channel} is not configured"
    channel = session.scalar(select(Channel).where(Channel.name == row.channel))
    if channel is not None and channel.disabled_at is not None:
        return f"channel {row.channel} is disabled: {channel.disabled_reason or 'no reason recorded'}"
    return None


def mark_delivered(factory: sessionmaker[Session], lease: Lease) -> DeliveryOutcome:
    now = utcnow()
    with write_session(factory) as session:
        done = session.execute(
            _fenced(lease).values(
                status=DeliveryStatus.DELIVERED,
                delivered_at=now,
                lease_until=None,
                next_attempt_at=None,
                last_error=None,
            )
        )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("delivery %d: sent, but our lease was taken over meanwhile", lease.delivery_id)
    metrics.record_delivery(lease.channel, "delivered")
    log.info(
        "delivery %d: alert sent to %s (attempt %d, %s)",
        lease.delivery_id,
        lease.channel,
        lease.attempts,
        lease.note.idempotency_key,
    )
    return DeliveryOutcome("delivered")


def record_failure(
    factory: sessionmaker[Session],
    lease: Lease,
    exc: DeliveryFailed,
    *,
    settings: Settings,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    now = utcnow()
    reason = exc.reason[-1000:]
    outcome = DeliveryOutcome("failed", error=reason)
    values: dict[str, object] = {"status": DeliveryStatus.FAILED, "lease_until": None, "last_error": reason}
    if exc.retryable:
        delay = backoff_s(
            lease.attempts, settings.alerts, rng=rng or random.Random(), retry_after_s=exc.retry_after_s
        )
        horizon = lease.created_at + timedelta(seconds=settings.alerts.retry_horizon_s)
        if now + timedelta(seconds=delay) <= horizon:
            values.update(status=DeliveryStatus.PENDING, next_attempt_at=now + timedelta(seconds=delay))
            outcome = DeliveryOutcome("retry", retry_in_s=delay, error=reason)
        else:
            values["last_error"] = f"gave up after {lease.attempts} attempts: {reason}"[-1000:]
    with write_session(factory) as session:
        if exc.gone and lease.conf is not None:
            disable_channel(session, lease.conf, reason=f"receiver answered {reason}"[:500], now=now)
        session.execute(_fenced(lease).values(**values))
    metrics.record_delivery(lease.channel, outcome.status)
    if outcome.status == "retry":
        log.warning(
            "delivery %d to %s failed (attempt %d), retry in %.1f s: %s",
            lease.delivery_id,
            lease.channel,
            lease.attempts,
            outcome.retry_in_s,
            reason,
        )
    else:
        error = values["last_error"]
        log.error("delivery %d to %s failed for good: %s", lease.delivery_id, lease.channel, error)
    return outcome


def _fenced(lease: Lease):  # type: ignore[no-untyped-def]
    return (
        update(Delivery)
        .where(
            Delivery.id == lease.delivery_id,
            Delivery.attempts == lease.attempts,
            Delivery.status == DeliveryStatus.PENDING,
        )
        .execution_options(synchronize_session=False)
    )


def disable_channel(session: Session, conf: ChannelSettings, *, reason: str, now: datetime) -> None:
    row = session.scalar(select(Channel).where(Channel.name == conf.name))
    if row is None:
        row = Channel(name=conf.name, kind=conf.kind)
        session.add(row)
    row.disabled_at, row.disabled_reason = now, reason
    log.error(
        "channel %s disabled: %s; no more alerts go there until `vigil alerts retry --enable` re-enables it",
        conf.name,
        reason,
    )


def reconcile_deliveries(
    factory: sessionmaker[Session], enqueuer: Enqueuer, *, grace_s: float = 60.0, limit: int = RECONCILE_BATCH
) -> int:
    """Re-send pending deliveries whose attempt is overdue by `grace_s` (message lost) or whose lease expired.

    Each re-sent row's `next_attempt_at` moves to now, so a row is re-sent at most once per grace period.
    Nothing is re-sent while the broker's queue holds a message per pending row: with no worker on the
    queue (an alerts worker down overnight) every row was otherwise sent once more per grace period, and
    the queue grew by the whole outbox each minute.
    """
    now = utcnow()
    overdue = now - timedelta(seconds=grace_s)
    with write_session(factory) as session:
        ids = list(
            session.scalars(
                select(Delivery.id)
                .where(
                    Delivery.status == DeliveryStatus.PENDING,
                    or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= overdue),
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
                )
                .order_by(Delivery.id)
                .limit(limit)
            )
        )
        if ids and _backlog_not_loss(session, enqueuer):
            log.debug("deliveries: %d overdue, but a message waits for each pending one", len(ids))
            return 0
        if ids:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
    sent = sum(1 for delivery_id in ids if enqueuer.deliver(delivery_id))
    metrics.RECONCILER_RESENT.labels(kind="delivery").inc(sent)
    if ids:
        log.info("deliveries reconciled: %d overdue, %d re-sent", len(ids), sent)
    return sent


def _backlog_not_loss(session: Session, enqueuer: Enqueuer) -> bool:
    """True when the deliver queue holds at least one message per pending row (a retry's countdown is held
    by a worker, not counted): they wait, none was lost."""
    pending = session.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.PENDING))
    return enqueuer.holds_one_per(TASK_QUEUES[DELIVER], pending or 0)

"""Sending work by name, after commit. A failed send is logged, never raised: the row stays and the
reconciler sends it again, so a broker outage delays work but loses none."""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from vigil.errors import TransientError
from vigil.ops.contracts import ANALYZE, DELIVER, TASK_QUEUES, AnalyzePayload, DeliverPayload, Payload
from vigil.store.db import write_session
from vigil.store.schema import Media, utcnow

log = logging.getLogger(__name__)

PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class Enqueuer:
    """Publishes task messages for rows already committed."""

    def __init__(self, app: Celery, factory: sessionmaker[Session]) -> None:
        self.app = app
        self.factory = factory

    def analyze(self, media_id: int) -> bool:
        payload = AnalyzePayload(media_id=media_id)
        if not self._send(ANALYZE, payload):
            return False
        try:
            with write_session(self.factory) as session:
                session.execute(
                    update(Media)
                    .where(Media.id == media_id)
                    .values(enqueued_at=utcnow(), sends=Media.sends + 1)
                )
        except TransientError as exc:
            log.warning("media %d sent, but its send time was not recorded: %s", media_id, exc)
        return True

    def waiting(self, queue: str) -> int | None:
        """How many messages wait in `queue` on the broker (not those workers hold); None if it cannot say."""
        try:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=5)
                _, count, _ = conn.default_channel.queue_declare(queue=queue, passive=False)
                return int(count)
        except Exception as exc:  # the broker is down or the transport cannot count: the caller decides
            log.debug("could not count messages in queue %s: %s", queue, exc)
            return None

    def holds_one_per(self, queue: str, rows: int) -> bool:
        """True when `queue` holds at least one message per row sent to it: a backlog, nothing lost. The
        reconcilers' rule before sending again; messages workers hold are not counted, so it errs towards
        sending again (which the claims make harmless), and a broker that cannot count says False."""
        waiting = self.waiting(queue)
        return waiting is not None and waiting >= rows

    def deliver(self, delivery_id: int) -> bool:
        return self._send(DELIVER, DeliverPayload(delivery_id=delivery_id))

    def _send(self, name: str, payload: Payload) -> bool:
        try:
            self.app.send_task(
                name,
                kwargs={"payload": payload.model_dump(mode="json")},
                queue=TASK_QUEUES[name],
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
        except Exception as exc:  # kombu raises OperationalError, redis/socket/sqlalchemy errors alike
            log.warning("could not send %s %s (the reconciler will resend): %s", name, payload, exc)
            return False
        log.debug("sent %s %s", name, payload)
        return True

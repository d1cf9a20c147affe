"""The outage rows of stream sources (`stream_outages`), one owner: the recorder opens one when a stream
stops being recorded and closes it when a segment begins again. A recorder that starts closes what an
earlier one left open (it was stopped or killed mid-outage), at the time it starts."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from vigil.store.db import write_session
from vigil.store.schema import StreamOutage, utcnow

log = logging.getLogger(__name__)


def open_outage(factory: sessionmaker[Session], source_id: int, *, started_at: datetime, reason: str) -> int:
    with write_session(factory) as session:
        outage = StreamOutage(source_id=source_id, started_at=started_at, reason=reason, attempts=1)
        session.add(outage)
        session.flush()
        return outage.id


def count_attempt(factory: sessionmaker[Session], outage_id: int) -> None:
    with write_session(factory) as session:
        session.execute(
            update(StreamOutage)
            .where(StreamOutage.id == outage_id)
            .values(attempts=StreamOutage.attempts + 1)
        )


def close_outage(factory: sessionmaker[Session], outage_id: int, *, ended_at: datetime) -> None:
    with write_session(factory) as session:
        session.execute(
            update(StreamOutage)
            .where(StreamOutage.id == outage_id, StreamOutage.ended_at.is_(None))
            .values(ended_at=ended_at)
        )


def close_left_open(factory: sessionmaker[Session], source_ids: list[int]) -> int:
    """Close the outages a previous recorder left open for these sources (now); how many."""
    now = utcnow()
    with write_session(factory) as session:
        ids = list(
            session.scalars(
                select(StreamOutage.id).where(
                    StreamOutage.source_id.in_(source_ids), StreamOutage.ended_at.is_(None)
                )
            )
        )
        if ids:
            session.execute(update(StreamOutage).where(StreamOutage.id.in_(ids)).values(ended_at=now))
    if ids:
        log.info("closed %d outage(s) left open by an earlier recorder", len(ids))
    return len(ids)

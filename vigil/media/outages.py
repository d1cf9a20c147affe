"""The outage rows of stream sources (`stream_outages`), one owner: the recorder opens one when a stream
stops being recorded and closes it when a segment begins again. An outage outlives the recorder: one
stopped or killed mid-outage leaves it open (the source is not recorded meanwhile either), and the next
recorder of the source takes it over (`left_open`), so the outage, and the alerts it fired, stay one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from vigil.store.db import write_session
from vigil.store.schema import StreamOutage

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


@dataclass(frozen=True)
class OpenOutage:
    id: int
    started_at: datetime
    reason: str


def left_open(factory: sessionmaker[Session], source_ids: list[int]) -> dict[int, OpenOutage]:
    """The outage an earlier recorder left open, per source; should there be more than one, the older ones
    end where the newest began."""
    with write_session(factory) as session:
        rows = session.scalars(
            select(StreamOutage)
            .where(StreamOutage.source_id.in_(source_ids), StreamOutage.ended_at.is_(None))
            .order_by(StreamOutage.started_at, StreamOutage.id)
        ).all()
        newest = {row.source_id: row for row in rows}
        for row in rows:
            if row is not newest[row.source_id]:
                row.ended_at = newest[row.source_id].started_at
        found = {source: OpenOutage(row.id, row.started_at, row.reason) for source, row in newest.items()}
    if found:
        log.info("taking over %d outage(s) left open by an earlier recorder", len(found))
    return found

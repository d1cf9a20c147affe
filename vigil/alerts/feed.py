"""New detection rows as they commit, for processes that follow the database (Home Assistant's bridge).

Rows are followed by id. On PostgreSQL an id is taken at INSERT and becomes visible at COMMIT, so a
transaction that took a lower id can commit after a higher one has been read: the ids skipped over are
remembered as gaps and looked up again on every poll for `settle_s` seconds (a rolled-back transaction's
ids stay gaps forever, so they expire).

A feed with a `consumer` name keeps its position in `feed_positions`: the caller saves `position()` once
what it read is delivered, and a restarted feed resumes there (its gaps get `settle_s` again). A consumer
seen for the first time, and a feed without one, start at the newest detection: history is not replayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vigil.store.db import write_session
from vigil.store.schema import Detection, FeedPosition, Media, Source, Target

BATCH = 1000
MAX_GAP_IDS = 10_000  # a larger jump (a sequence that skipped ahead) is not tracked id by id


@dataclass(frozen=True)
class SeenDetection:
    id: int
    media_id: int
    media_path: str
    source: str
    target: str
    window_index: int
    start_s: float
    end_s: float
    p_yes: float
    matched: bool
    evidence: str | None
    thumbnail_path: str | None
    created_at: datetime  # when the worker stored it: the time of the match


@dataclass(frozen=True)
class Position:
    """Every detection up to `last_id` has been read, except the ids in `gaps`."""

    last_id: int
    gaps: tuple[int, ...] = ()


def _query() -> Select[Detection, str, str, str]:
    return (
        select(Detection, Media.path, Source.name, Target.name)
        .join(Media, Media.id == Detection.media_id)
        .join(Source, Source.id == Media.source_id)
        .join(Target, Target.id == Detection.target_id)
    )


class DetectionFeed:
    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        consumer: str | None = None,
        settle_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.consumer = consumer
        self.settle_s = settle_s
        self.clock = clock
        start = self._resume()
        self.high = start.last_id
        now = clock()
        self.gaps: dict[int, float] = dict.fromkeys(start.gaps, now)  # unseen id below `high` -> skipped at

    def _resume(self) -> Position:
        """The saved position of this consumer; else the newest detection (saved, for a consumer)."""
        with self.factory() as session:
            if self.consumer is not None:
                row = session.scalar(select(FeedPosition).where(FeedPosition.consumer == self.consumer))
                if row is not None:
                    return Position(int(row.last_id), tuple(int(i) for i in row.gaps))
            newest = Position(int(session.scalar(select(func.max(Detection.id))) or 0))
        if self.consumer is not None:
            try:
                with write_session(self.factory) as session:
                    session.add(FeedPosition(consumer=self.consumer, last_id=newest.last_id, gaps=[]))
            except IntegrityError:  # another process of the same consumer made it meanwhile
                return self._resume()
        return newest

    def position(self) -> Position:
        return Position(self.high, tuple(sorted(self.gaps)))

    def save(self, position: Position) -> None:
        """Remember `position` for this consumer (a no-op without one)."""
        if self.consumer is None:
            return
        with write_session(self.factory) as session:
            session.execute(
                update(FeedPosition)
                .where(FeedPosition.consumer == self.consumer)
                .values(last_id=position.last_id, gaps=list(position.gaps))
            )

    def poll(self) -> list[SeenDetection]:
        """Detections committed since the last poll, in id order."""
        now = self.clock()
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < self.settle_s}
        with self.factory() as session:
            newer = _query().where(Detection.id > self.high).order_by(Detection.id).limit(BATCH)
            rows = list(session.execute(newer))
            if self.gaps:
                late = sorted(self.gaps)[:BATCH]
                rows += list(session.execute(_query().where(Detection.id.in_(late))))
        seen = sorted((_seen(det, path, src, tgt) for det, path, src, tgt in rows), key=lambda d: d.id)
        for d in seen:
            self.gaps.pop(d.id, None)
        fresh = {d.id for d in seen if d.id > self.high}
        if fresh:
            top = max(fresh)
            if top - self.high <= MAX_GAP_IDS:
                self.gaps.update((i, now) for i in range(self.high + 1, top) if i not in fresh)
            self.high = top
        return seen


def latest_matches(session: Session, since: datetime) -> dict[tuple[str, str], datetime]:
    """The time of the newest matching detection since `since`, by (source, target)."""
    newest = func.max(Detection.created_at)
    query = (
        select(Source.name, Target.name, newest)
        .join(Media, Media.id == Detection.media_id)
        .join(Source, Source.id == Media.source_id)
        .join(Target, Target.id == Detection.target_id)
        .where(Detection.matched.is_(True), Detection.created_at >= since)
        .group_by(Source.name, Target.name)
    )
    return {(source, target): at for source, target, at in session.execute(query)}


def _seen(det: Detection, media_path: str, source: str, target: str) -> SeenDetection:
    return SeenDetection(
        id=det.id,
        media_id=det.media_id,
        media_path=media_path,
        source=source,
        target=target,
        window_index=det.window_index,
        start_s=det.start_s,
        end_s=det.end_s,
        p_yes=det.p_yes,
        matched=det.matched,
        evidence=det.evidence,
        thumbnail_path=det.thumbnail_path,
        created_at=det.created_at,
    )

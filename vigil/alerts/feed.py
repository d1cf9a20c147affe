"""New detection rows as they commit, for processes that follow the database (Home Assistant's bridge).

Rows are followed by id. On PostgreSQL an id is taken at INSERT and becomes visible at COMMIT, so a
transaction that took a lower id can commit after a higher one has been read: the ids skipped over are
remembered as gaps and looked up again on every poll for `settle_s` seconds (a rolled-back transaction's
ids stay gaps forever, so they expire). Nothing before the feed's start is replayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.store.schema import Detection, Media, Source, Target

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
        settle_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.factory = factory
        self.settle_s = settle_s
        self.clock = clock
        with factory() as session:
            self.high = int(session.scalar(select(func.max(Detection.id))) or 0)
        self.gaps: dict[int, float] = {}  # id below `high` not seen yet -> when it was skipped

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
    )

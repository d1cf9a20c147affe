"""The two guards against alert storms, decided from the `alerts` table so they hold across workers: the
unique dedup key and the per-rule, per-source cooldown."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.alerts.matching import (
    Context,
    FiringRun,
)
from vigil.store.schema import (
    Alert,
    AlertRule,
)

log = logging.getLogger(__name__)


@dataclass
class Guard:
    """The dedup keys already used and the last alert per rule for this source, read once per evaluation."""

    existing: dict[str, int]
    last_fired: dict[int, datetime]
    now: datetime

    @classmethod
    def load(
        cls, session: Session, candidates: list[FiringRun], ctx: Context, *, now: datetime, lock: bool = True
    ) -> Guard:
        rule_ids = sorted({c.rule.id for c in candidates})
        if lock:  # serialise evaluations per rule across workers (PostgreSQL); SQLite's write lock does
            session.execute(
                select(AlertRule.id)
                .where(AlertRule.id.in_(rule_ids))
                .order_by(AlertRule.id)
                .with_for_update()
            )
        keys = [c.dedup_key for c in candidates]
        found = session.execute(select(Alert.dedup_key, Alert.id).where(Alert.dedup_key.in_(keys)))
        existing: dict[str, int] = {key: alert_id for key, alert_id in found}
        horizon = now - timedelta(seconds=max(c.rule.cooldown_s for c in candidates))
        last = session.execute(
            select(Alert.rule_id, func.max(Alert.fired_at))
            .where(Alert.rule_id.in_(rule_ids), Alert.source_id == ctx.source.id, Alert.fired_at >= horizon)
            .group_by(Alert.rule_id)
        ).all()
        return cls(existing, {rule_id: _aware(fired) for rule_id, fired in last}, now)

    def blocked(self, candidate: FiringRun) -> str | None:
        if candidate.dedup_key in self.existing:
            return f"already fired as alert {self.existing[candidate.dedup_key]}"
        last = self.last_fired.get(candidate.rule.id)
        cooldown = candidate.rule.cooldown_s
        if last is not None and cooldown > 0 and (self.now - last).total_seconds() < cooldown:
            return f"cooldown: last alert of this rule for this source at {last.isoformat()}"
        return None

    def fired(self, candidate: FiringRun, now: datetime) -> None:
        self.existing[candidate.dedup_key] = -1
        self.last_fired[candidate.rule.id] = now


def _aware(value: datetime) -> datetime:
    # func.max() on SQLite returns text/naive values without the column type's processing.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))

"""Rule rows compiled into `CompiledRule` (parsed schedule, zone, globs), cached per row version."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.config.schedule import DAYS, Hours, parse_hours, parse_zone
from vigil.config.template import FIELDS_ON, check_template
from vigil.errors import ConfigError
from vigil.store.schema import (
    AlertRule,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompiledRule:
    id: int
    name: str
    targets: frozenset[str]
    sources: tuple[str, ...]
    min_score: float | None
    days: frozenset[int]
    hours: Hours | None
    zone: ZoneInfo
    min_consecutive: int
    cooldown_s: float
    severity: str
    message: str
    channels: tuple[str, ...]
    event: str = "detection"  # or camera_offline, disk_pressure (vigil.alerts.events)
    after_s: float = 0.0  # camera_offline: how long an outage lasts before the rule fires

    def matches_source(self, name: str) -> bool:
        return not self.sources or any(fnmatchcase(name, glob) for glob in self.sources)

    def matches_target(self, name: str) -> bool:
        return not self.targets or name in self.targets

    def threshold(self, target_threshold: float) -> float:
        return target_threshold if self.min_score is None else self.min_score

    def in_schedule(self, local: datetime) -> bool:
        """`local` is the wall-clock time in this rule's zone. A night past midnight counts for its eve."""
        minute = local.hour * 60 + local.minute
        if self.hours is not None and not self.hours.contains(minute):
            return False
        if not self.days:
            return True
        day = local.weekday()
        if self.hours is not None and self.hours.wraps and minute < self.hours.end:
            day = (day - 1) % 7
        return day in self.days


def compile_rule(row: AlertRule) -> CompiledRule:
    where = f"alerts.rules[{row.name}]"
    check_template(row.message, fields=FIELDS_ON.get(row.event, {}), where=f"{where}.message")
    return CompiledRule(
        id=row.id,
        name=row.name,
        event=row.event,
        after_s=row.after_s or 0.0,
        targets=frozenset(row.target_names or ()),
        sources=tuple(row.source_globs or ()),
        min_score=row.min_score,
        days=frozenset(DAYS.index(d) for d in row.days or ()),
        hours=parse_hours(row.hours, where=where) if row.hours else None,
        zone=parse_zone(row.timezone, where=where),
        min_consecutive=row.min_consecutive,
        cooldown_s=row.cooldown_s,
        severity=row.severity,
        message=row.message,
        channels=tuple(row.channel_names or ()),
    )


_COMPILED: dict[tuple[int, datetime], CompiledRule] = {}


def load_rules(session: Session, *, event: str) -> list[CompiledRule]:
    """Enabled rules that fire on `event`, compiled once per row version (id, updated_at). A broken row is
    logged and skipped."""
    versions = session.execute(
        select(AlertRule.id, AlertRule.updated_at)
        .where(AlertRule.enabled.is_(True), AlertRule.event == event)
        .order_by(AlertRule.id)
    ).all()
    missing = [rule_id for rule_id, updated in versions if (rule_id, updated) not in _COMPILED]
    if missing:
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        for row in session.scalars(select(AlertRule).where(AlertRule.id.in_(missing))):
            try:
                _COMPILED[(row.id, row.updated_at)] = compile_rule(row)
            except ConfigError as exc:
                log.error("rule %s skipped: %s", row.name, exc)
    return [_COMPILED[key] for key in map(tuple, versions) if key in _COMPILED]

"""Evaluating the rules against one analysis (`evaluate_analysis`), and explaining one (`explain_rule`).

A rule fires for a run of at least `min_consecutive` consecutive windows of one target in one clip whose
P(yes) reaches its minimum score (default: the target's threshold) and whose wall-clock time (media mtime +
window start, in the rule's IANA time zone, DST-correct through zoneinfo) falls in its schedule. Two guards
keep alerts from storming, both decided from the `alerts` table so they hold across worker processes:

- the dedup key (rule, source, media content, target, first window) is unique: re-analysing a file never
  fires twice;
- the cooldown: no second alert for the same rule and source within `cooldown_s` of the last one.

`evaluate_analysis` runs inside the transaction that stores the detections, and creates one delivery row per
alert and channel (the outbox); it returns the ids of those to send after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.alerts.compiled import CompiledRule, compile_rule, load_rules
from vigil.alerts.guard import Guard
from vigil.alerts.matching import (
    FiringRun,
    WindowCheck,
    check_windows,
    find_candidates,
    load_context,
)
from vigil.alerts.outbox import ChannelState, add_deliveries, new_alert
from vigil.config.settings import Settings
from vigil.errors import ConfigError
from vigil.store.schema import (
    Alert,
    AlertRule,
    Analysis,
    Media,
    utcnow,
)

log = logging.getLogger(__name__)


def evaluate_analysis(
    session: Session, analysis: Analysis, *, settings: Settings, now: datetime | None = None
) -> list[int]:
    """Fire the rules an analysis satisfies, inside the caller's transaction. Returns delivery ids to send."""
    now = now or utcnow()
    ctx = load_context(session, analysis.media_id, analysis_id=analysis.id)
    rules = [r for r in load_rules(session, event="detection") if r.matches_source(ctx.source.name)]
    candidates = [c for rule in rules for c in find_candidates(rule, ctx)]
    if not candidates:
        return []
    guard = Guard.load(session, candidates, ctx, now=now)
    fired: list[tuple[FiringRun, Alert]] = []
    for candidate in candidates:
        if guard.blocked(candidate) is None:
            guard.fired(candidate, now)
            fired.append((candidate, new_alert(candidate, ctx, now=now)))
    if not fired:
        return []
    session.add_all([alert for _candidate, alert in fired])
    session.flush()
    for candidate, alert in fired:
        log.info(
            "alert %d: rule %s fired for %s in media %d (%.2f, %.1f-%.1f s)",
            alert.id,
            candidate.rule.name,
            candidate.target.name,
            ctx.media.id,
            alert.score,
            alert.start_s,
            alert.end_s,
        )
    return add_deliveries(session, fired, ChannelState.load(session, settings), now=now)


@dataclass
class Explanation:
    """What a rule would do with the newest answers (per target) of one media file, and why."""

    rule: CompiledRule
    source: str
    source_ok: bool
    checks: list[WindowCheck]
    outcomes: list[tuple[FiringRun, str | None]]  # None: would fire; else why not


def explain_rule(session: Session, name: str, media_id: int, *, now: datetime | None = None) -> Explanation:
    row = session.scalar(select(AlertRule).where(AlertRule.name == name))
    if row is None:
        raise ConfigError(f"no rule named {name!r}")
    if row.event != "detection":
        raise ConfigError(
            f"rule {name!r} fires on {row.event}, not on detections: it has no window to explain "
            "(`vigil rules list` shows what it does)"
        )
    if session.get(Media, media_id) is None:
        raise ConfigError(f"no media with id {media_id}")
    rule = compile_rule(row)
    ctx = load_context(session, media_id)
    source_ok = rule.matches_source(ctx.source.name)
    by_target = check_windows(rule, ctx, every_window=True) if source_ok else {}
    checks = [check for pairs in by_target.values() for _det, check in pairs]
    candidates = find_candidates(rule, ctx) if source_ok else []
    outcomes: list[tuple[FiringRun, str | None]] = []
    if candidates:
        guard = Guard.load(session, candidates, ctx, now=now or utcnow(), lock=False)
        for candidate in candidates:
            reason = guard.blocked(candidate)
            if reason is None:
                guard.fired(candidate, guard.now)
            outcomes.append((candidate, reason))
    return Explanation(rule, ctx.source.name, source_ok, checks, outcomes)

"""Alert rules: validated from settings into `alert_rules`, matched against detections, turned into alerts.

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

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.errors import ConfigError
from vigil.schema import (
    Alert,
    AlertRule,
    Analysis,
    Channel,
    Delivery,
    DeliveryStatus,
    Detection,
    Media,
    Source,
    Target,
    utcnow,
)
from vigil.settings import RuleSettings, Settings
from vigil.template import check_template, render

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LOG_CHANNEL = "log"
_HOURS = re.compile(r"(\d{1,2})(?::(\d{2}))?-(\d{1,2})(?::(\d{2}))?")


# ---------------------------------------------------------------- schedule pieces


@dataclass(frozen=True)
class Hours:
    """Minutes of the day [start, end); start > end wraps midnight ("22-06")."""

    start: int
    end: int

    @property
    def wraps(self) -> bool:
        return self.start > self.end

    def contains(self, minute: int) -> bool:
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end


def parse_hours(text: str, *, where: str) -> Hours:
    """ "22-06", "08:30-17:00", "0-24"; hours 0-24, minutes 0-59, start != end."""
    match = _HOURS.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f'{where}.hours: {text!r} is not HH-HH or HH:MM-HH:MM (e.g. "22-06")')
    h1, m1, h2, m2 = (int(g) if g else 0 for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start >= 24 * 60 or end > 24 * 60 or start == end:
        raise ConfigError(f"{where}.hours: {text!r} is not a valid range of hours")
    return Hours(start, end)


def parse_zone(name: str, *, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}.timezone: {name!r} is not an IANA time zone (e.g. Europe/Paris)") from exc


# ---------------------------------------------------------------- compiled rules


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
    check_template(row.message, where=f"{where}.message")
    return CompiledRule(
        id=row.id,
        name=row.name,
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


def load_rules(session: Session) -> list[CompiledRule]:
    """Enabled rules, compiled once per row version (id, updated_at). A broken row is logged and skipped."""
    versions = session.execute(
        select(AlertRule.id, AlertRule.updated_at).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)
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


# ---------------------------------------------------------------- validation and sync


def validate_rule(conf: RuleSettings, *, targets: Iterable[str], channels: Iterable[str]) -> None:
    """Raise ConfigError naming the rule and key for anything that cannot be used."""
    where = f"alerts.rules[{conf.name}]"
    unknown = sorted(set(conf.targets) - set(targets))
    if unknown:
        raise ConfigError(f"{where}.targets: unknown target(s): {', '.join(unknown)}")
    unknown = sorted(set(conf.channels) - set(channels) - {LOG_CHANNEL})
    if unknown:
        raise ConfigError(f"{where}.channels: unknown channel(s): {', '.join(unknown)}")
    if not conf.channels:
        raise ConfigError(f'{where}.channels: a rule needs at least one channel (e.g. "log")')
    parse_zone(conf.timezone, where=where)
    if conf.hours is not None:
        parse_hours(conf.hours, where=where)
    check_template(conf.message, where=f"{where}.message")


def known_names(session: Session, settings: Settings) -> tuple[set[str], set[str]]:
    """Target names (settings and table) and channel names (settings and the built-in log channel)."""
    targets = {t.name for t in settings.targets} | set(session.scalars(select(Target.name)))
    channels = {c.name for c in settings.alerts.channels} | {LOG_CHANNEL}
    return targets, channels


def sync_rules(session: Session, settings: Settings) -> dict[str, AlertRule]:
    """Validate the configured rules, then upsert them by name. Rules added by `vigil rules add` stay."""
    names = [r.name for r in settings.alerts.rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"alerts.rules: rule names must be unique, repeated: {', '.join(dupes)}")
    targets, channels = known_names(session, settings)
    for conf in settings.alerts.rules:
        validate_rule(conf, targets=targets, channels=channels)
    existing = {r.name: r for r in session.scalars(select(AlertRule))}
    for conf in settings.alerts.rules:
        existing[conf.name] = upsert_rule(session, conf, existing.get(conf.name))
    session.flush()
    return existing


def upsert_rule(session: Session, conf: RuleSettings, row: AlertRule | None = None) -> AlertRule:
    values: dict[str, Any] = {
        "target_names": list(conf.targets),
        "source_globs": [] if conf.sources == ["*"] else list(conf.sources),
        "min_score": conf.min_score,
        "days": list(conf.days),
        "hours": conf.hours,
        "timezone": conf.timezone,
        "min_consecutive": conf.min_consecutive,
        "cooldown_s": conf.cooldown_s,
        "severity": conf.severity,
        "message": conf.message,
        "channel_names": list(conf.channels),
        "enabled": conf.enabled,
    }
    if row is None:
        row = AlertRule(name=conf.name, **values)
        session.add(row)
        return row
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
    return row


# ---------------------------------------------------------------- evaluation


@dataclass
class WindowCheck:
    """Why one detection does or does not count for a rule (shown by `vigil rules test`)."""

    detection_id: int
    target_id: int
    target: str
    window_index: int
    start_s: float
    end_s: float
    score: float
    min_score: float
    local_time: datetime
    score_ok: bool
    schedule_ok: bool
    run: int = 0  # length of the run of passing windows this one belongs to (0 when it does not pass)

    @property
    def passes(self) -> bool:
        return self.score_ok and self.schedule_ok


@dataclass
class Candidate:
    """A run of passing windows long enough to fire a rule."""

    rule: CompiledRule
    target: Target
    windows: list[tuple[Detection, WindowCheck]]
    dedup_key: str = ""

    @property
    def best(self) -> tuple[Detection, WindowCheck]:
        return max(self.windows, key=lambda pair: pair[1].score)


@dataclass
class Context:
    media: Media
    source: Source
    detections: Sequence[tuple[Detection, Target]]
    local_cache: dict[tuple[str, float], datetime] = field(default_factory=dict)

    def local_time(self, zone: ZoneInfo, start_s: float) -> datetime:
        key = (zone.key, start_s)
        local = self.local_cache.get(key)
        if local is None:
            local = (self.media.mtime + timedelta(seconds=start_s)).astimezone(zone)
            self.local_cache[key] = local
        return local


def check_windows(
    rule: CompiledRule, ctx: Context, *, every_window: bool = False
) -> dict[int, list[tuple[Detection, WindowCheck]]]:
    """Per target (matching the rule): its detections in window order with their checks and run lengths.

    Windows below the minimum score are left out unless `every_window` (they can never be in a run).
    """
    by_target: dict[int, list[tuple[Detection, WindowCheck]]] = defaultdict(list)
    for det, target in ctx.detections:
        if not rule.matches_target(target.name):
            continue
        minimum = rule.threshold(target.threshold)
        if det.p_yes < minimum and not every_window:
            continue
        local = ctx.local_time(rule.zone, det.start_s)
        check = WindowCheck(
            det.id,
            target.id,
            target.name,
            det.window_index,
            det.start_s,
            det.end_s,
            det.p_yes,
            minimum,
            local,
            score_ok=det.p_yes >= minimum,
            schedule_ok=rule.in_schedule(local),
        )
        by_target[target.id].append((det, check))
    for pairs in by_target.values():
        pairs.sort(key=lambda pair: pair[1].window_index)
        for run in _runs(pairs):
            for _det, check in run:
                check.run = len(run)
    return by_target


def _runs(pairs: list[tuple[Detection, WindowCheck]]) -> list[list[tuple[Detection, WindowCheck]]]:
    """Maximal runs of passing windows with consecutive indexes (pairs sorted by window index)."""
    runs: list[list[tuple[Detection, WindowCheck]]] = []
    for pair in pairs:
        if not pair[1].passes:
            continue
        if runs and pair[1].window_index == runs[-1][-1][1].window_index + 1:
            runs[-1].append(pair)
        else:
            runs.append([pair])
    return runs


def find_candidates(rule: CompiledRule, ctx: Context) -> list[Candidate]:
    """Each run of passing windows at least `min_consecutive` long, in clip order."""
    targets = {target.id: target for _det, target in ctx.detections}
    found = [
        Candidate(rule, targets[target_id], run)
        for target_id, pairs in check_windows(rule, ctx).items()
        for run in _runs(pairs)
        if len(run) >= rule.min_consecutive
    ]
    for candidate in found:
        candidate.dedup_key = dedup_key(candidate, ctx)
    found.sort(key=lambda c: (c.windows[0][1].start_s, c.target.id))
    return found


def dedup_key(candidate: Candidate, ctx: Context) -> str:
    content = f"sha256:{ctx.media.sha256}" if ctx.media.sha256 else f"media:{ctx.media.id}"
    first = candidate.windows[0][1].window_index
    rule, source, target = candidate.rule.id, ctx.source.id, candidate.target.id
    return f"rule:{rule}/source:{source}/{content}/target:{target}/window:{first}"


def load_context(session: Session, media_id: int, *, analysis_id: int | None = None) -> Context:
    """The media, its source and the detections of one analysis (default: the latest one)."""
    media = session.get_one(Media, media_id)
    source = session.get_one(Source, media.source_id)
    if analysis_id is None:
        analysis_id = session.scalar(
            select(Analysis.id).where(Analysis.media_id == media_id).order_by(Analysis.id.desc()).limit(1)
        )
    rows = session.execute(
        select(Detection, Target)
        .join(Target, Target.id == Detection.target_id)
        .where(Detection.analysis_id == analysis_id)
        .order_by(Detection.target_id, Detection.window_index)
    ).all()
    return Context(media, source, [(det, target) for det, target in rows])


def evaluate_analysis(
    session: Session, analysis: Analysis, *, settings: Settings, now: datetime | None = None
) -> list[int]:
    """Fire the rules an analysis satisfies, inside the caller's transaction. Returns delivery ids to send."""
    now = now or utcnow()
    ctx = load_context(session, analysis.media_id, analysis_id=analysis.id)
    rules = [r for r in load_rules(session) if r.matches_source(ctx.source.name)]
    candidates = [c for rule in rules for c in find_candidates(rule, ctx)]
    if not candidates:
        return []
    guard = Guard.load(session, candidates, ctx, now=now)
    fired: list[tuple[Candidate, Alert]] = []
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
    """What a rule would do with the latest analysis of one media file, and why."""

    rule: CompiledRule
    source: str
    source_ok: bool
    checks: list[WindowCheck]
    outcomes: list[tuple[Candidate, str | None]]  # None: would fire; else why not


def explain_rule(session: Session, name: str, media_id: int, *, now: datetime | None = None) -> Explanation:
    row = session.scalar(select(AlertRule).where(AlertRule.name == name))
    if row is None:
        raise ConfigError(f"no rule named {name!r}")
    if session.get(Media, media_id) is None:
        raise ConfigError(f"no media with id {media_id}")
    rule = compile_rule(row)
    ctx = load_context(session, media_id)
    source_ok = rule.matches_source(ctx.source.name)
    by_target = check_windows(rule, ctx, every_window=True) if source_ok else {}
    checks = [check for pairs in by_target.values() for _det, check in pairs]
    candidates = find_candidates(rule, ctx) if source_ok else []
    outcomes: list[tuple[Candidate, str | None]] = []
    if candidates:
        guard = Guard.load(session, candidates, ctx, now=now or utcnow(), lock=False)
        for candidate in candidates:
            reason = guard.blocked(candidate)
            if reason is None:
                guard.fired(candidate, guard.now)
            outcomes.append((candidate, reason))
    return Explanation(rule, ctx.source.name, source_ok, checks, outcomes)


@dataclass
class Guard:
    """The dedup keys already used and the last alert per rule for this source, read once per evaluation."""

    existing: dict[str, int]
    last_fired: dict[int, datetime]
    now: datetime

    @classmethod
    def load(
        cls, session: Session, candidates: list[Candidate], ctx: Context, *, now: datetime, lock: bool = True
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

    def blocked(self, candidate: Candidate) -> str | None:
        if candidate.dedup_key in self.existing:
            return f"already fired as alert {self.existing[candidate.dedup_key]}"
        last = self.last_fired.get(candidate.rule.id)
        cooldown = candidate.rule.cooldown_s
        if last is not None and cooldown > 0 and (self.now - last).total_seconds() < cooldown:
            return f"cooldown: last alert of this rule for this source at {last.isoformat()}"
        return None

    def fired(self, candidate: Candidate, now: datetime) -> None:
        self.existing[candidate.dedup_key] = -1
        self.last_fired[candidate.rule.id] = now


def _aware(value: datetime) -> datetime:
    # func.max() on SQLite returns text/naive values without the column type's processing.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))


def message_values(candidate: Candidate, ctx: Context) -> dict[str, str | float]:
    det, check = candidate.best
    return {
        "rule": candidate.rule.name,
        "target": candidate.target.name,
        "description": candidate.target.description,
        "source": ctx.source.name,
        "path": ctx.media.path,
        "file": PurePath(ctx.media.path).name,
        "score": check.score,
        "min_score": check.min_score,
        "start_s": candidate.windows[0][1].start_s,
        "end_s": candidate.windows[-1][1].end_s,
        "severity": candidate.rule.severity,
        "time": check.local_time.isoformat(timespec="seconds"),
        "media_id": ctx.media.id,
        "evidence": det.evidence or "",
    }


def new_alert(candidate: Candidate, ctx: Context, *, now: datetime) -> Alert:
    """The alert row for a candidate (not added to the session); its payload is the JSON sent out."""
    det, check = candidate.best
    values = message_values(candidate, ctx)
    alert = Alert(
        dedup_key=candidate.dedup_key,
        rule_id=candidate.rule.id,
        media_id=ctx.media.id,
        target_id=candidate.target.id,
        detection_id=det.id,
        source_id=ctx.source.id,
        score=check.score,
        start_s=float(values["start_s"]),
        end_s=float(values["end_s"]),
        severity=candidate.rule.severity,
        message=render(candidate.rule.message, values, where=f"alerts.rules[{candidate.rule.name}].message"),
        fired_at=now,
    )
    alert.payload = alert_payload(alert, candidate, ctx)
    return alert


def alert_payload(alert: Alert, candidate: Candidate, ctx: Context) -> dict[str, Any]:
    det, check = candidate.best
    return {
        "type": "vigil.alert",
        "alert": {  # its id is added when sent
            "rule": candidate.rule.name,
            "severity": alert.severity,
            "message": alert.message,
            "fired_at": alert.fired_at.isoformat(),
            "dedup_key": alert.dedup_key,
        },
        "media": {
            "id": ctx.media.id,
            "path": ctx.media.path,
            "source": ctx.source.name,
            "mtime": ctx.media.mtime.isoformat(),
            "sha256": ctx.media.sha256,
        },
        "target": {
            "id": candidate.target.id,
            "name": candidate.target.name,
            "description": candidate.target.description,
        },
        "score": check.score,
        "min_score": check.min_score,
        "window": {
            "start_s": alert.start_s,
            "end_s": alert.end_s,
            "best_index": check.window_index,
            "windows": len(candidate.windows),
            "local_time": check.local_time.isoformat(timespec="seconds"),
        },
        "evidence": det.evidence,
        "thumbnail_path": det.thumbnail_path,
    }


@dataclass
class ChannelState:
    configured: set[str]
    disabled: dict[str, str]

    @classmethod
    def load(cls, session: Session, settings: Settings) -> ChannelState:
        configured = {c.name for c in settings.alerts.channels} | {LOG_CHANNEL}
        disabled = {
            row.name: row.disabled_reason or "disabled"
            for row in session.scalars(select(Channel).where(Channel.disabled_at.is_not(None)))
        }
        return cls(configured, disabled)

    def problem(self, name: str) -> str | None:
        if name not in self.configured:
            return f"channel {name} is not configured"
        if name in self.disabled:
            return f"channel {name} is disabled: {self.disabled[name]}"
        return None


def idempotency_key(dedup: str, channel: str) -> str:
    return "msg_" + hashlib.sha256(f"{dedup}|{channel}".encode()).hexdigest()[:32]


def add_deliveries(
    session: Session, fired: list[tuple[Candidate, Alert]], channels: ChannelState, *, now: datetime
) -> list[int]:
    """One outbox row per alert and channel, in one flush. Returns the ids of those to send."""
    rows = []
    for candidate, alert in fired:
        for name in candidate.rule.channels:
            row = Delivery(
                alert_id=alert.id,
                channel=name,
                idempotency_key=idempotency_key(alert.dedup_key, name),
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
            )
            problem = channels.problem(name)
            if problem:
                row.status, row.last_error, row.next_attempt_at = DeliveryStatus.FAILED, problem, None
                log.warning("alert %d not sent to %s: %s", alert.id, name, problem)
            rows.append(row)
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows if row.status == DeliveryStatus.PENDING]

"""Alerts on Vigil's own events, through the one alert lifecycle (rules, `alerts` rows, the outbox):

- `camera_offline`: the recorder calls `camera_offline` while an outage of a stream source lasts. Each rule
  with `on = "camera_offline"` whose `sources` match and whose `after_s` the outage has outlasted fires
  once per outage: the dedup key names the outage row, which a restarted recorder takes over (so a restart
  mid-outage never fires twice), and an alert of the rule on an outage of the source still open blocks it
  too (two recorders of one source).
- `disk_pressure`: the watcher calls `disk_pressure` on each retention pass that leaves a volume below
  min_free. Each rule with `on = "disk_pressure"` fires once per episode (from the watcher's first pass
  that found the volume short to its first that did not; the dedup key names the host, volume and start).

A rule fires only inside its schedule (its days, hours and time zone, at the time it fires) and not within
its `cooldown_s` of its last alert for the same source (camera_offline) or host and volume (disk_pressure).
A check that finds nothing to fire only reads (the recorder asks at least every 30 s while an outage lasts).
One that does fires in one write transaction: the rule rows are locked (PostgreSQL; SQLite's write lock does
it), the guards are read again, the alert rows and one delivery per channel are written together; after
commit the deliveries go to the queue exactly as a detection alert's do (the reconciler resends any lost).
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.alerts.compiled import CompiledRule, load_rules
from vigil.alerts.outbox import ChannelState, add_rule_deliveries
from vigil.config.settings import Settings
from vigil.config.template import render
from vigil.media.deletion import Pressure
from vigil.ops import metrics
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import write_session
from vigil.store.schema import Alert, AlertRule, Source, StreamOutage, utcnow

log = logging.getLogger(__name__)

DEDUP_KEY_MAX = 255  # alerts.dedup_key


@dataclass(frozen=True)
class Event:
    """One occurrence the rules of its kind may fire on, and what its alert rows record."""

    kind: str  # camera_offline | disk_pressure
    episode: str  # what makes it one occurrence (part of the dedup key)
    started_at: datetime
    host: str
    values: dict[str, str | float]  # the message's placeholders besides rule, severity, time, since, minutes
    document: dict[str, Any]  # the alert document's part about the event
    source_id: int | None = None
    source: str | None = None
    outage_id: int | None = None
    volume: str | None = None


@dataclass(frozen=True)
class Fired:
    alert_ids: list[int] = field(default_factory=list)
    next_in_s: float | None = None  # until the next rule's after_s is reached; None: no rule waits


def camera_offline(
    factory: sessionmaker[Session],
    outage_id: int,
    *,
    settings: Settings,
    enqueuer: Enqueuer | None = None,
    now: datetime | None = None,
) -> Fired:
    """Fire the camera_offline rules this outage has outlasted (none once it has ended)."""
    with factory() as session:
        found = session.execute(
            select(StreamOutage, Source.name)
            .join(Source, Source.id == StreamOutage.source_id)
            .where(StreamOutage.id == outage_id)
        ).one_or_none()
    if found is None or found[0].ended_at is not None:
        return Fired()
    outage, source = found
    host = socket.gethostname()
    event = Event(
        kind="camera_offline",
        episode=f"source:{outage.source_id}/outage:{outage.id}",
        started_at=outage.started_at,
        host=host,
        values={"source": source, "reason": outage.reason},
        document={
            "source": {"id": outage.source_id, "name": source},
            "outage": {"id": outage.id, "started_at": outage.started_at.isoformat(), "reason": outage.reason},
        },
        source_id=outage.source_id,
        source=source,
        outage_id=outage.id,
    )
    return fire(factory, event, settings=settings, enqueuer=enqueuer, now=now)


def disk_pressure(
    factory: sessionmaker[Session],
    pressure: Pressure,
    *,
    since: datetime,
    settings: Settings,
    enqueuer: Enqueuer | None = None,
    now: datetime | None = None,
) -> Fired:
    """Fire the disk_pressure rules for a volume retention left below min_free, short since `since`."""
    host = socket.gethostname()
    figures: dict[str, str | float] = {
        "free_bytes": pressure.free_bytes,
        "needed_bytes": pressure.needed_bytes,
        "min_free": pressure.min_free,
    }
    event = Event(
        kind="disk_pressure",
        episode=f"host:{host}/volume:{pressure.volume}/since:{since.isoformat()}",
        started_at=since,
        host=host,
        values={"volume": pressure.volume, **figures},
        document={"volume": {"path": pressure.volume, **figures}},
        volume=pressure.volume,
    )
    return fire(factory, event, settings=settings, enqueuer=enqueuer, now=now)


def fire(
    factory: sessionmaker[Session],
    event: Event,
    *,
    settings: Settings,
    enqueuer: Enqueuer | None = None,
    now: datetime | None = None,
) -> Fired:
    """Fire every rule of the event's kind that is due, in one transaction; send the deliveries after."""
    now = now or utcnow()
    lasted = (now - event.started_at).total_seconds()
    with factory() as session:  # read first: most checks find nothing to fire, and take no write lock
        rules = [r for r in load_rules(session, event=event.kind) if _applies(r, event)]
        due = [
            r
            for r in rules
            if r.after_s <= lasted
            and r.in_schedule(now.astimezone(r.zone))
            and _blocked(session, r, event, dedup_key(r, event), now) is None
        ]
    waiting = [r.after_s - lasted for r in rules if r.after_s > lasted]
    if not due:
        return Fired([], min(waiting, default=None))
    fired: list[tuple[CompiledRule, Alert]] = []
    with write_session(factory) as session:
        session.execute(  # serialise firing per rule across processes (PostgreSQL)
            select(AlertRule.id)
            .where(AlertRule.id.in_([r.id for r in due]))
            .order_by(AlertRule.id)
            .with_for_update()
        )
        for rule in due:  # the guards again, under the lock
            key = dedup_key(rule, event)
            reason = _blocked(session, rule, event, key, now)
            if reason is not None:
                log.debug("rule %s not fired on %s: %s", rule.name, event.kind, reason)
                continue
            alert = _new_alert(rule, event, key, now)
            session.add(alert)
            session.flush()
            fired.append((rule, alert))
        delivery_ids = add_rule_deliveries(session, fired, ChannelState.load(session, settings), now=now)
    for rule, alert in fired:
        metrics.EVENT_ALERTS.labels(event=event.kind, rule=rule.name).inc()
        log.warning("alert %d: rule %s fired on %s: %s", alert.id, rule.name, event.kind, alert.message)
    if enqueuer is not None:
        for delivery_id in delivery_ids:
            enqueuer.deliver(delivery_id)
    return Fired([alert.id for _rule, alert in fired], min(waiting, default=None))


def _applies(rule: CompiledRule, event: Event) -> bool:
    return event.source is None or rule.matches_source(event.source)


def dedup_key(rule: CompiledRule, event: Event) -> str:
    """`camera_offline/rule:3/source:1/outage:12`; one past the column's size keeps its start and a hash."""
    key = f"{event.kind}/rule:{rule.id}/{event.episode}"
    if len(key) <= DEDUP_KEY_MAX:
        return key
    return f"{key[: DEDUP_KEY_MAX - 40]}/sha256:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _blocked(session: Session, rule: CompiledRule, event: Event, key: str, now: datetime) -> str | None:
    found = session.scalar(select(Alert.id).where(Alert.dedup_key == key))
    if found is not None:
        return f"already fired as alert {found}"
    if event.outage_id is not None:
        told = session.scalar(
            select(Alert.id)
            .join(StreamOutage, StreamOutage.id == Alert.outage_id)
            .where(
                Alert.rule_id == rule.id,
                Alert.source_id == event.source_id,
                StreamOutage.ended_at.is_(None),
            )
            .limit(1)
        )
        if told is not None:
            return f"already fired as alert {told} on an outage of this source that is still open"
    if rule.cooldown_s > 0:
        here = (
            Alert.source_id == event.source_id
            if event.source_id is not None
            else (Alert.volume == event.volume) & (Alert.host == event.host)
        )
        last = session.scalar(
            select(Alert.fired_at)
            .where(Alert.rule_id == rule.id, here, Alert.fired_at >= now - timedelta(seconds=rule.cooldown_s))
            .order_by(Alert.fired_at.desc())
            .limit(1)
        )
        if last is not None:
            return f"cooldown: last alert of this rule here at {last.isoformat()}"
    return None


def message_values(rule: CompiledRule, event: Event, now: datetime) -> dict[str, str | float]:
    """The placeholders of the rule's message (vigil.config.template); times in the rule's zone."""
    values: dict[str, str | float] = {
        "rule": rule.name,
        "severity": rule.severity,
        "time": now.astimezone(rule.zone).isoformat(timespec="seconds"),
        "host": event.host,
        **event.values,
    }
    if event.kind == "camera_offline":
        values["since"] = event.started_at.astimezone(rule.zone).isoformat(timespec="seconds")
        values["minutes"] = (now - event.started_at).total_seconds() / 60
    return values


def _new_alert(rule: CompiledRule, event: Event, key: str, now: datetime) -> Alert:
    message = render(
        rule.message, message_values(rule, event, now), where=f"alerts.rules[{rule.name}].message"
    )
    alert = Alert(
        event=event.kind,
        dedup_key=key,
        rule_id=rule.id,
        source_id=event.source_id,
        outage_id=event.outage_id,
        volume=event.volume,
        host=event.host,
        severity=rule.severity,
        message=message,
        fired_at=now,
    )
    alert.payload = {
        "type": "vigil.alert",
        "event": event.kind,
        "alert": {  # its id is added when sent
            "rule": rule.name,
            "severity": rule.severity,
            "message": message,
            "fired_at": now.isoformat(),
            "dedup_key": key,
        },
        "host": event.host,
        **event.document,
    }
    return alert

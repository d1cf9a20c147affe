"""The alert rows and their outbox: one alert per fired candidate, one delivery row per alert and channel."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.alerts.channels import LOG_CHANNEL
from vigil.alerts.compiled import CompiledRule
from vigil.alerts.matching import (
    Context,
    FiringRun,
)
from vigil.config.settings import Settings
from vigil.config.template import render
from vigil.store.db import installation_uid
from vigil.store.schema import (
    Alert,
    Channel,
    Delivery,
    DeliveryStatus,
)

log = logging.getLogger(__name__)


def message_values(candidate: FiringRun, ctx: Context) -> dict[str, str | float]:
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


def new_alert(candidate: FiringRun, ctx: Context, *, now: datetime) -> Alert:
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


def alert_payload(alert: Alert, candidate: FiringRun, ctx: Context) -> dict[str, Any]:
    det, check = candidate.best
    return {
        "type": "vigil.alert",
        "event": "detection",
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


def idempotency_key(installation: str, dedup: str, channel: str) -> str:
    """The delivery's `webhook-id`: stored on its row, so every retry sends the same one; the installation's
    uid keeps two sites that alert on the same file content from sending the same id."""
    return "msg_" + hashlib.sha256(f"{installation}|{dedup}|{channel}".encode()).hexdigest()[:32]


def add_deliveries(
    session: Session, fired: list[tuple[FiringRun, Alert]], channels: ChannelState, *, now: datetime
) -> list[int]:
    """The outbox rows of detection alerts (`add_rule_deliveries`)."""
    return add_rule_deliveries(session, [(c.rule, alert) for c, alert in fired], channels, now=now)


def add_rule_deliveries(
    session: Session, fired: list[tuple[CompiledRule, Alert]], channels: ChannelState, *, now: datetime
) -> list[int]:
    """One outbox row per alert and channel of its rule, in one flush. Returns the ids of those to send."""
    rows = []
    installation = installation_uid(session) if fired else ""
    for rule, alert in fired:
        for name in rule.channels:
            row = Delivery(
                alert_id=alert.id,
                channel=name,
                idempotency_key=idempotency_key(installation, alert.dedup_key, name),
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

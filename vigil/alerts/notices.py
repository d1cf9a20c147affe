"""Notices about Vigil itself, sent straight to channels (no rule, no alert row): a volume that retention
could not bring back above `min_free` (`retention.alert_channels`, sent by the watcher), a camera offline
for `offline_alert_s` (a stream source's `offline_channels`, sent by the recorder). Once per episode; a
channel that fails is logged, never retried: the error line, the metric and the outage row stay the record.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from datetime import datetime
from typing import Any

from vigil.alerts.channels import Notification, build_sender, channel_configs
from vigil.config.settings import Settings
from vigil.errors import VigilError
from vigil.media.retention import Pressure
from vigil.store.schema import utcnow

log = logging.getLogger(__name__)


def disk_pressure_notice(pressure: Pressure, *, host: str | None = None) -> Notification:
    host = host or socket.gethostname()
    now = utcnow()
    text = (
        f"disk pressure on {host}: {pressure.volume} has {pressure.free_bytes} bytes free, below min_free "
        f"{pressure.min_free} ({pressure.needed_bytes} bytes) and nothing there may be pruned"
    )
    identity = f"disk-pressure|{host}|{pressure.volume}|{now.isoformat()}"
    payload = {
        "event": "disk_pressure",
        "host": host,
        "volume": pressure.volume,
        "free_bytes": pressure.free_bytes,
        "needed_bytes": pressure.needed_bytes,
        "min_free": pressure.min_free,
        "at": now.isoformat(),
        "media": {"source": "vigil"},
        "target": {"name": "disk"},
        "alert": {"rule": "retention", "message": text},
    }
    return _notice(identity, payload, text, severity="critical")


def stream_offline_notice(
    source: str, *, started_at: datetime, reason: str, host: str | None = None
) -> Notification:
    host = host or socket.gethostname()
    minutes = (utcnow() - started_at).total_seconds() / 60
    text = f"camera {source} offline for {minutes:.1f} min (since {started_at:%Y-%m-%d %H:%M:%S}Z): {reason}"
    identity = f"stream-offline|{host}|{source}|{started_at.isoformat()}"
    payload = {
        "event": "stream_offline",
        "host": host,
        "source": source,
        "since": started_at.isoformat(),
        "reason": reason,
        "media": {"source": source},
        "target": {"name": "offline"},
        "alert": {"rule": "stream", "message": text},
    }
    return _notice(identity, payload, text, severity="warning")


def _notice(identity: str, payload: dict[str, Any], text: str, *, severity: str) -> Notification:
    """A notice whose idempotency key is a hash of what makes the episode one (kind, host, place, start)."""
    return Notification(
        idempotency_key=hashlib.sha256(identity.encode()).hexdigest()[:32],
        payload=payload,
        subject=f"[vigil {severity}] {text}",
        text=text,
        severity=severity,
        thumbnail=None,
    )


def send_notice(settings: Settings, note: Notification, channels: list[str]) -> int:
    """Send `note` to each named channel; how many took it."""
    configs, sent = channel_configs(settings), 0
    for name in channels:
        try:
            build_sender(configs[name]).send(note)
        except (VigilError, OSError, KeyError) as exc:
            log.error("notice %s not sent to channel %s: %s", note.idempotency_key, name, exc)
            continue
        sent += 1
    return sent

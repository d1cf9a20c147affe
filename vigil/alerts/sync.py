"""Rules into `alert_rules`: one rule upserted by name, and the checks `vigil rules add` makes of a rule
typed on the command line. Settings files are applied by `vigil.declared.apply.apply_settings`, whose
checks are the settings model's own (`vigil.config.checks`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.alerts.channels import LOG_CHANNEL
from vigil.config.schedule import parse_hours, parse_zone
from vigil.config.settings import RuleSettings, Settings
from vigil.config.template import FIELDS_ON, check_template
from vigil.errors import ConfigError
from vigil.store.schema import (
    AlertRule,
    Target,
)

log = logging.getLogger(__name__)


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
    check_template(conf.message, fields=FIELDS_ON[conf.on], where=f"{where}.message")


def known_names(session: Session, settings: Settings) -> tuple[set[str], set[str]]:
    """Target names (settings and table) and channel names (settings and the built-in log channel)."""
    targets = {t.name for t in settings.targets} | set(session.scalars(select(Target.name)))
    channels = {c.name for c in settings.alerts.channels} | {LOG_CHANNEL}
    return targets, channels


def upsert_rule(session: Session, conf: RuleSettings, row: AlertRule | None = None) -> AlertRule:
    values: dict[str, Any] = {
        "event": conf.on,
        "after_s": conf.after_s,
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

"""The declared configuration, applied to the database the same way by every process.

Every process that opens the database (the watcher, each worker, `vigil run`, the CLI commands) calls
`apply_settings` once at start. It is idempotent: the same settings give the same rows, on one machine or
fifty, whichever process starts first.

Ownership is a column, `declared_in`:
- sources, targets and rules declared in a settings file carry that file's absolute path and are owned by
  it: the CLI refuses to edit them (`refuse_declared`), and when the file stops declaring one, the next
  apply from that file retires it (a target or rule is disabled and handed to the database, so it stops
  being asked about or firing; its past rows stay);
- rows made with the CLI have NULL and are owned by the database: an apply never touches them, unless a
  file starts declaring the same name, which then owns it;
- settings without a file (defaults and `VIGIL_*` variables only) declare rows but retire nothing.

`apply_settings` also returns, as one line, where this process's settings disagree with the database
(rules declared by another file, rules whose channels this process does not configure).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vigil.alerts.sync import upsert_rule
from vigil.config.checks import BUILTIN_CHANNEL, missing_targets, refuse
from vigil.config.settings import Settings, SourceSettings
from vigil.errors import ConfigError
from vigil.media.registry import sync_sources, sync_targets
from vigil.store.db import write_session
from vigil.store.schema import AlertRule, DeclaredMixin, Source, Target

log = logging.getLogger(__name__)

Row = TypeVar("Row", Source, Target, AlertRule)


@dataclass
class Applied:
    sources: dict[str, int] = field(default_factory=dict)
    """Source name → id, for every source of the settings."""
    retired: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)

    def disagreement_line(self) -> str | None:
        if not self.disagreements:
            return None
        return "settings differ from the database: " + "; ".join(self.disagreements)


def apply_settings(
    factory: sessionmaker[Session], settings: Settings, *, pending_targets: Collection[str] = ()
) -> Applied:
    """Upsert what the settings declare, retire what their file no longer declares, report disagreements.

    `pending_targets` are names the calling command is about to create (`vigil targets add`), so a rule in
    the file that names a CLI target does not stop the one command that would make it."""
    try:
        return _apply_once(factory, settings, pending_targets)
    except IntegrityError:  # another process inserted the same name first: its row is ours to update now
        return _apply_once(factory, settings, pending_targets)


def _apply_once(factory: sessionmaker[Session], settings: Settings, pending: Collection[str]) -> Applied:
    owner = str(settings.config_file) if settings.config_file else None
    applied = Applied()
    with write_session(factory) as session:
        refuse(missing_targets(settings, [*session.scalars(select(Target.name)), *pending]))
        sources = _apply_sources(session, settings.watch.sources, owner, applied)
        _apply_targets(session, settings, owner, applied)
        _apply_rules(session, settings, owner, applied)
        session.flush()
        applied.sources = {name: row.id for name, row in sources.items()}
    for what in applied.retired:
        log.info("%s is no longer declared in %s: retired", what, owner)
    return applied


def _claim(row: DeclaredMixin, owner: str | None, what: str, applied: Applied) -> None:
    if row.declared_in is not None and owner is not None and row.declared_in != owner:
        applied.disagreements.append(f"{what} was declared in {row.declared_in}, now in {owner}")
    if owner is not None or row.declared_in is None:
        row.declared_in = owner


def _retire(session: Session, model: type[Row], owner: str | None, declared: set[str]) -> list[Row]:
    if owner is None:
        return []
    rows = session.scalars(select(model).where(model.declared_in == owner)).all()
    return [row for row in rows if row.name not in declared]


def _apply_sources(
    session: Session, confs: list[SourceSettings], owner: str | None, applied: Applied
) -> dict[str, Source]:
    rows = sync_sources(session, confs)
    for conf in confs:
        _claim(rows[conf.name], owner, f"source {conf.name}", applied)
    for row in _retire(session, Source, owner, {c.name for c in confs}):
        row.declared_in = None  # no longer watched; its media rows stay
        applied.retired.append(f"source {row.name}")
    return {conf.name: rows[conf.name] for conf in confs}


def _apply_targets(session: Session, settings: Settings, owner: str | None, applied: Applied) -> None:
    sync_targets(session, settings.targets, references_dir=settings.storage.references_dir)
    rows = {t.name: t for t in session.scalars(select(Target))}
    for conf in settings.targets:
        _claim(rows[conf.name], owner, f"target {conf.name}", applied)
    for row in _retire(session, Target, owner, {t.name for t in settings.targets}):
        row.enabled, row.declared_in = False, None
        applied.retired.append(f"target {row.name}")


def _apply_rules(session: Session, settings: Settings, owner: str | None, applied: Applied) -> None:
    existing = {r.name: r for r in session.scalars(select(AlertRule))}
    for conf in settings.alerts.rules:
        row = upsert_rule(session, conf, existing.get(conf.name))
        _claim(row, owner, f"rule {conf.name}", applied)
    for row in _retire(session, AlertRule, owner, {r.name for r in settings.alerts.rules}):
        row.enabled, row.declared_in = False, None
        applied.retired.append(f"rule {row.name}")
    session.flush()
    configured = {c.name for c in settings.alerts.channels} | {BUILTIN_CHANNEL}
    for row in session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.name)):
        if row.declared_in is not None and row.declared_in != owner:
            applied.disagreements.append(f"rule {row.name} is declared in {row.declared_in}, not here")
        if unknown := sorted(set(row.channel_names or ()) - configured):
            applied.disagreements.append(
                f"rule {row.name} sends to {', '.join(unknown)}, a channel these settings do not configure"
            )


def refuse_declared(row: DeclaredMixin, what: str) -> None:
    """CLI edits of a row a settings file owns would be undone at the next start: refuse them."""
    if row.declared_in is not None:
        raise ConfigError(f"{what} is declared in {row.declared_in}: change it there, not with the CLI")

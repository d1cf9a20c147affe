"""`vigil config check|show` and `vigil db upgrade|current`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass

import click

from vigil.cli.context import AppContext, pass_app
from vigil.config.base import Problem
from vigil.config.diagnose import Diagnosis, ordered
from vigil.terminal import safe_lines


@click.group("config")
def config_group() -> None:
    """Validate and show the settings in use."""


@config_group.command("check")
@pass_app
def config_check(app: AppContext) -> None:
    """Validate the settings: every error and warning at once, each with where it came from (the file or
    the environment variable) and its key; then count the targets and rules, the file's and the database's."""
    from vigil.config.checks import missing_targets
    from vigil.config.settings import config_path, diagnose_settings

    diagnosis = diagnose_settings(app.config)
    settings = diagnosis.remainder
    stored = _stored_rows(diagnosis) if settings is not None else None
    if settings is not None and stored is not None:
        known = [*stored.targets, *diagnosis.declared.get("targets", ())]
        diagnosis.add_errors(missing_targets(settings, known))
    if diagnosis.errors:
        lines = [
            f"{len(diagnosis.errors)} invalid setting(s):",
            *(f"  {p}" for p in ordered(diagnosis.errors)),
        ]
        click.echo(f"error: {safe_lines(chr(10).join(lines))}", err=True)
    for warning in ordered(diagnosis.warnings):
        click.echo(f"warning: {safe_lines(str(warning))}", err=True)
    if diagnosis.errors:
        sys.exit(2)
    path = config_path(app.config)
    where = str(path) if path else "the environment"
    owned = str(settings.config_file) if settings.config_file else None
    targets = _count(
        "target", [t.name for t in settings.targets], stored.targets if stored else None, owned, where
    )
    rules = _count(
        "rule", [r.name for r in settings.alerts.rules], stored.rules if stored else None, owned, where
    )
    click.echo(
        f"ok: {path or 'no config file (defaults and environment)'}: "
        f"{len(settings.watch.sources)} source(s), {targets}, {rules}, model {settings.model.id}"
    )


Owners = dict[str, str | None]  # row name → the file that owns it (None: made with the CLI)


@dataclass
class StoredRows:
    """The database's targets and rules."""

    targets: Owners
    rules: Owners


def _stored_rows(diagnosis: Diagnosis) -> StoredRows | None:
    """The targets and rules already in the database (none when there is no database yet); None when it
    cannot be read, said as a warning: the references to targets made with the CLI are then not checked."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from vigil.store.db import make_engine, missing_sqlite_file, schema_revision, session_factory
    from vigil.store.schema import AlertRule, Target

    if any(p.key.startswith(("database", "storage")) for p in diagnosis.errors):
        diagnosis.add_warnings([Problem("", "the database was not read: its settings are invalid")])
        return None
    database = diagnosis.remainder.database
    if missing_sqlite_file(database.url) is not None:
        return StoredRows(targets={}, rules={})
    engine = make_engine(database)
    try:
        if schema_revision(engine) is None:
            return StoredRows(targets={}, rules={})
        with session_factory(engine)() as session:
            return StoredRows(
                targets={n: f for n, f in session.execute(select(Target.name, Target.declared_in))},
                rules={n: f for n, f in session.execute(select(AlertRule.name, AlertRule.declared_in))},
            )
    except SQLAlchemyError as exc:
        reason = f"targets not checked against the database (unreachable: {exc})"
        diagnosis.add_warnings([Problem("", reason)])
        return None
    finally:
        engine.dispose()


def _count(what: str, declared: list[str], stored: Owners | None, owner: str | None, where: str) -> str:
    """ "3 target(s) (1 in vigil.toml, 2 made with the CLI)": the settings' and the database's others. A
    row that this file (`owner`) owned and no longer declares is left out: the next start retires it."""
    names = set(declared)
    others = Counter(
        "made with the CLI" if file is None else f"in {file}"
        for name, file in (stored or {}).items()
        if name not in names and (file is None or file != owner)
    )
    total = f"{len(names) + sum(others.values())} {what}(s)"
    if not others:
        return total
    parts = [f"{len(names)} in {where}", *(f"{n} {label}" for label, n in sorted(others.items()))]
    return f"{total} ({', '.join(parts)})"


@config_group.command("show")
@pass_app
def config_show(app: AppContext) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    click.echo(json.dumps(app.settings.model_dump(mode="json"), indent=2))


@click.group("db")
def db_group() -> None:
    """Create and migrate the database."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_app
def db_upgrade(app: AppContext, revision: str) -> None:
    """Create or migrate the database to the current schema."""
    from vigil.store.migrate import current_revision, upgrade

    url = app.settings.database.url
    upgrade(url, revision)
    click.echo(f"database {app.engine.url.render_as_string()} at revision {current_revision(url)}")


@db_group.command("current")
@pass_app
def db_current(app: AppContext) -> None:
    """Print the database's schema revision and the one this code expects."""
    from vigil.store.db import schema_revision
    from vigil.store.migrate import head_revision

    click.echo(f"database: {schema_revision(app.engine) or 'not initialised'}; code: {head_revision()}")


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
    cli.add_command(db_group)

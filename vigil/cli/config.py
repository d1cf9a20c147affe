"""`vigil config check|show` and `vigil db upgrade|current`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vigil.cli.context import AppContext, pass_app


@click.group("config")
def config_group() -> None:
    """Validate and show the settings in use."""


@config_group.command("check")
@pass_app
def config_check(app: AppContext) -> None:
    """Validate the settings; print each problem with its key, and warnings about missing paths."""
    settings = app.settings
    from vigil.config.settings import config_path

    path = config_path(app.config)
    for warning in settings.warnings():
        click.echo(f"warning: {warning}", err=True)
    _check_targets_against_database(app)
    click.echo(
        f"ok: {path or 'no config file (defaults and environment)'}: "
        f"{len(settings.watch.sources)} source(s), {len(settings.targets)} target(s), "
        f"{len(settings.alerts.rules)} rule(s), model {settings.model.id}"
    )


def _check_targets_against_database(app: AppContext) -> None:
    """Rules may name targets made with `vigil targets add`: the same check `apply_settings` makes."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from vigil.config.checks import missing_targets, refuse
    from vigil.store.db import is_sqlite, schema_revision
    from vigil.store.schema import Target

    settings = app.settings
    if not missing_targets(settings, ()):
        return
    url = settings.database.url
    names: list[str] = []
    database = make_url(url).database
    if not is_sqlite(url) or (database and Path(database).is_file()):
        try:
            if schema_revision(app.engine) is not None:
                with app.factory() as session:
                    names = list(session.scalars(select(Target.name)))
        except SQLAlchemyError as exc:
            click.echo(f"warning: targets not checked against the database (unreachable: {exc})", err=True)
            return
    refuse(missing_targets(settings, names))


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

"""What every command shares: the settings (loaded once, lazily), the database, and error reporting."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any, NoReturn

import click
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vigil.errors import ConfigError, VigilError
from vigil.settings import Settings, format_validation_error, load_settings


class AppContext:
    def __init__(self, config: str | None) -> None:
        self.config = config
        self.overrides: dict[str, dict[str, Any]] = {}

    def override(self, section: str, **values: Any) -> None:
        """Apply command-line options (e.g. --model) on top of file and environment settings."""
        clean = {k: v for k, v in values.items() if v is not None}
        if clean:
            self.overrides.setdefault(section, {}).update(clean)
            self.__dict__.pop("settings", None)

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings(self.config)
        for section, values in self.overrides.items():
            merged = getattr(settings, section).model_copy(update=values)
            # Re-validate the section so an override is checked like a file value.
            try:
                setattr(settings, section, type(merged).model_validate(merged.model_dump()))
            except ValidationError as exc:
                raise ConfigError(f"{section}: {format_validation_error(exc)}") from exc
        return settings

    @cached_property
    def engine(self) -> Engine:
        from vigil.db import make_engine

        return make_engine(self.settings.database)

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        from vigil.db import session_factory

        return session_factory(self.engine)

    def close(self) -> None:
        """Close the database pool, when a command opened one (called when the command ends)."""
        engine = self.__dict__.pop("engine", None)
        self.__dict__.pop("factory", None)
        if engine is not None:
            engine.dispose()

    def open_database(self) -> None:
        """Check the schema, then mirror the sources and targets of the settings into their tables."""
        from vigil.alerts.sync import sync_rules
        from vigil.db import write_session
        from vigil.registry import sync_sources, sync_targets

        self.require_migrated()
        with write_session(self.factory) as session:
            sync_sources(session, self.settings.watch.sources)
            sync_targets(session, self.settings.targets, references_dir=self.settings.storage.references_dir)
            sync_rules(session, self.settings)

    def require_migrated(self, *, initialise: bool = True) -> None:
        """Refuse to work on a database at another schema revision than the code's.

        A brand-new embedded SQLite database is created on the spot (the one-machine default needs no
        separate step); any other database must be migrated explicitly with `vigil db upgrade`.
        """
        from vigil.db import is_sqlite, schema_revision
        from vigil.migrate import head_revision, upgrade

        current, head = schema_revision(self.engine), head_revision()
        if current is None and initialise and is_sqlite(self.settings.database.url):
            upgrade(self.settings.database.url)
            click.echo(f"initialised database {self.settings.database.url}", err=True)
            return
        if current != head:
            state = "not initialised" if current is None else f"at revision {current}, code expects {head}"
            raise ConfigError(f"database {self.settings.database.url} is {state}: run `vigil db upgrade`")


pass_app = click.make_pass_decorator(AppContext)


def fail(message: str, *, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class VigilGroup(click.Group):
    """A command group that reports Vigil's errors as one line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VigilError as exc:
            fail(str(exc))
        except OperationalError as exc:
            fail(f"database unavailable: {exc.orig}")
        except KeyboardInterrupt:
            fail("interrupted", code=130)

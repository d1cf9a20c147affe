"""What every command shares: the settings (loaded once, lazily), the database, and error reporting."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any, NoReturn, TypeVar

import click
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.base import error_message
from vigil.config.settings import Settings, format_validation_error, load_settings
from vigil.errors import ConfigError, VigilError
from vigil.terminal import safe_lines


class AppContext:
    def __init__(self, config: str | None) -> None:
        self.config = config
        self.overrides: dict[str, dict[str, Any]] = {}

    def use_config(self, config: str) -> None:
        """The settings file named after the command (`vigil targets list -c FILE`)."""
        self.config = config
        self.__dict__.pop("settings", None)

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
        from vigil.store.db import make_engine

        return make_engine(self.settings.database)

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        from vigil.store.db import session_factory

        return session_factory(self.engine)

    def close(self) -> None:
        """Close the database pool, when a command opened one (called when the command ends)."""
        engine = self.__dict__.pop("engine", None)
        self.__dict__.pop("factory", None)
        if engine is not None:
            engine.dispose()

    def open_database(self, *, pending_targets: tuple[str, ...] = ()) -> None:
        """Check the schema, then apply the settings (the one path every process takes: declared.apply)."""
        from vigil.declared.apply import apply_settings

        self.require_migrated()
        apply_settings(self.factory, self.settings, pending_targets=pending_targets)

    def require_migrated(self, *, initialise: bool = True) -> None:
        """Refuse to work on a database at another schema revision than the code's.

        A brand-new embedded SQLite database is created on the spot by commands that write (the
        one-machine default needs no separate step); commands that only read (`initialise=False`) create
        nothing and say so. Any other database must be migrated explicitly with `vigil db upgrade`.
        """
        from vigil.store.db import is_sqlite, missing_sqlite_file, no_database_message, schema_revision
        from vigil.store.migrate import head_revision, upgrade

        missing = missing_sqlite_file(self.settings.database.url)
        if missing is not None and not initialise:
            raise ConfigError(no_database_message(missing))

        current, head = schema_revision(self.engine), head_revision()
        if current is None and initialise and is_sqlite(self.settings.database.url):
            upgrade(self.settings.database.url)
            click.echo(f"initialised database {self.settings.database.url}", err=True)
            return
        if current != head:
            state = "not initialised" if current is None else f"at revision {current}, code expects {head}"
            raise ConfigError(f"database {self.settings.database.url} is {state}: run `vigil db upgrade`")


pass_app = click.make_pass_decorator(AppContext)

SectionT = TypeVar("SectionT", bound=BaseModel)


def from_arguments(section: type[SectionT], arguments: dict[str, str], **values: Any) -> SectionT:
    """A settings section built from a command's arguments; invalid values are reported as the arguments
    they came from (`arguments` maps a field to its argument; the rest are options of the same name), in
    words, on one line."""
    try:
        return section(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = arguments.get(field, f"--{field.replace('_', '-')}" if field else "")
            problems.append(f"{where}: {error_message(error)}" if where else error_message(error))
        raise ConfigError("; ".join(problems)) from exc


def fail(message: str, *, code: int = 2) -> NoReturn:
    # An error may quote a file name or a value (a server's "invalid input syntax: ..."): escaped.
    click.echo(f"error: {safe_lines(message)}", err=True)
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

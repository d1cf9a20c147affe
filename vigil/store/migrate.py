"""Alembic, driven from Vigil's settings: `vigil db upgrade`, the no-drift check, the revision in use."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from vigil.config.settings import DatabaseSettings
from vigil.errors import ConfigError
from vigil.store.db import make_engine, schema_revision

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(url: str) -> str | None:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def ensure_migrated(engine: Engine) -> None:
    """Refuse to run against a database that is not at the migrations' head revision (the daemons)."""
    current, head = schema_revision(engine), head_revision()
    if current != head:
        raise ConfigError(
            f"database {engine.url.render_as_string()} is at revision {current or '(none: never migrated)'}, "
            f"Vigil needs {head}: run `vigil db upgrade` first"
        )

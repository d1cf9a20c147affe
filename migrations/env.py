"""Alembic environment: the database URL comes from Vigil's settings (or the caller's config)."""

from __future__ import annotations

from alembic import context

from vigil.config.settings import DatabaseSettings, load_settings
from vigil.store.db import is_sqlite, make_engine
from vigil.store.schema import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or load_settings().database.url


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(DatabaseSettings(url=url))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=is_sqlite(url),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

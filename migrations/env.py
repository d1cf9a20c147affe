"""Alembic environment: the database URL comes from Vigil's settings (or the caller's config)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

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
        if is_sqlite(url):
            _run_with_foreign_keys_off(connection)
        else:
            with context.begin_transaction():
                context.run_migrations()
    engine.dispose()


def _run_with_foreign_keys_off(connection: Connection) -> None:
    """SQLite's way to change a table it cannot ALTER (sqlite.org/lang_altertable.html): foreign keys off
    outside the transaction (a batch copy drops the old table, which would otherwise cascade into the
    tables that refer to it), the keys checked before commit (a key broken by the migration rolls it back;
    one broken before, by a tool that wrote with the keys off, is left as it was), and on again after."""
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with context.begin_transaction():
            before = set(map(tuple, connection.exec_driver_sql("PRAGMA foreign_key_check").all()))
            context.run_migrations()
            after = set(map(tuple, connection.exec_driver_sql("PRAGMA foreign_key_check").all()))
            if broken := sorted(after - before, key=str):
                raise RuntimeError(f"the migration broke {len(broken)} foreign key(s), e.g. {broken[0]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

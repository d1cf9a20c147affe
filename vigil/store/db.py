"""Engines and sessions for the one database, SQLite (embedded) or PostgreSQL (at scale)."""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import DatabaseSettings
from vigil.errors import ConfigError, TransientError
from vigil.store.schema import Installation

log = logging.getLogger(__name__)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def missing_sqlite_file(url: str) -> Path | None:
    """The file of an embedded SQLite database that does not exist yet (None: it exists, or not SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(str(parsed.database)).expanduser()
    return None if path.exists() or str(parsed.database).startswith("file:") else path


def no_database_message(path: Path) -> str:
    """What every command that only reads says about a database that does not exist (it creates none)."""
    return f"no database at {path} yet: `vigil run` or `vigil db upgrade` creates it"


def make_engine(settings: DatabaseSettings, *, url: str | None = None) -> Engine:
    """An engine with SQLite in WAL mode, a busy timeout and foreign keys on."""
    url = url or settings.url
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: not a database URL: {url!r}") from exc
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": settings.busy_timeout_s, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = network_bounds(settings)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"database.url: cannot use {parsed.render_as_string()}: {exc}") from exc
    _forget_connections_across_fork(engine)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms=int(settings.busy_timeout_s * 1000))
    return engine


def network_bounds(settings: DatabaseSettings) -> dict[str, int]:
    """libpq's connection options that bound a dead or partitioned link: a connect timeout, TCP keepalives
    on idle connections, and a TCP user timeout on connections waiting for an answer. Each is given up after
    about ``network_timeout_s``, so a query fails (and is retried by its caller) instead of hanging."""
    bound = settings.network_timeout_s
    interval = max(1, int(bound / 4))
    return {
        "connect_timeout": max(2, int(settings.connect_timeout_s)),
        "keepalives": 1,
        "keepalives_idle": interval,
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": int(bound * 1000),
    }


def _forget_connections_across_fork(engine: Engine) -> None:
    """A forked child starts with an empty pool: it never uses a connection its parent opened.

    A prefork worker applies its settings in the parent, then forks its pool children with that connection
    pooled: two children writing on one socket garbled each other's replies (a claim's COMMIT answered
    EMPTY_QUERY, its row stayed running and was claimed a second time once the lease ran out). Dropped, not
    closed (SQLAlchemy's fork recipe): closing would end the session the parent still holds on that socket.
    """
    ref = weakref.ref(engine)

    def after_fork_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=after_fork_in_child)


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling delays BEGIN; take control so that
        # "BEGIN IMMEDIATE" can be issued for writes that must not deadlock.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("vigil_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction takes the write lock up front on SQLite (no upgrade deadlocks).

    Commits on success, rolls back on error; a busy or unreachable database becomes TransientError.
    """
    session = factory()
    try:
        session.connection(execution_options={"vigil_write": True})
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise TransientError(f"database unavailable: {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision stamped in the database, or None when it was never migrated."""
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return row[0] if row else None


def installation_uid(session: Session) -> str:
    """This installation's random uid (the `installation` row its migration made; made again if deleted)."""
    uid = session.scalar(select(Installation.uid).where(Installation.id == 1))
    if uid is not None:
        return uid
    try:
        with session.begin_nested():
            session.add(Installation(id=1, uid=uuid.uuid4().hex))
    except IntegrityError:  # another process made it meanwhile
        pass
    made = session.scalar(select(Installation.uid).where(Installation.id == 1))
    assert made is not None
    return made

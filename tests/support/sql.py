"""Databases and roles for the `vigil sql` tests: seeded rows, what a write would change, PostgreSQL roles.

Every role made here has a unique name and is dropped by the context manager that made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from vigil.config.settings import DatabaseSettings
from vigil.sql.roles import create_reader, reader_url
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Base, Media, Source


def seed(url: str) -> None:
    engine = make_engine(DatabaseSettings(url=url))
    with write_session(session_factory(engine)) as s:
        cam = Source(name="cam1", path="/cams/1")
        s.add(cam)
        for i, status in enumerate(["done", "failed", "queued"]):
            s.add(
                Media(
                    source=cam,
                    rel_path=f"c{i}.mp4",
                    path=f"/cams/1/c{i}.mp4",
                    kind="video",
                    size_bytes=100 * (i + 1),
                    mtime=datetime(2026, 11, 20, 8, i, tzinfo=UTC),
                    status=status,
                )
            )
    engine.dispose()


def snapshot(url: str) -> tuple[object, ...]:
    """Row counts of every table, the table and view names, media statuses: what a write would change.

    On PostgreSQL also the large objects, roles, and when the configuration was last loaded.
    """
    engine = make_engine(DatabaseSettings(url=url))
    insp = inspect(engine)
    with engine.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in Base.metadata.tables
        }
        statuses = [r[0] for r in conn.execute(text("SELECT status FROM media ORDER BY id"))]
        server: tuple[object, ...] = ()
        if engine.dialect.name == "postgresql":
            server = (
                conn.execute(text("SELECT COUNT(*) FROM pg_largeobject_metadata")).scalar_one(),
                # Roles are cluster-wide: those of other tests' databases (vigil_test_*), made and dropped
                # by tests running beside this one, are not this database's change.
                sorted(
                    r[0]
                    for r in conn.execute(text("SELECT rolname FROM pg_roles"))
                    if not r[0].startswith("vigil_test_")
                ),
                conn.execute(text("SELECT pg_conf_load_time()")).scalar_one(),
                conn.execute(text("SELECT COUNT(*) FROM pg_prepared_xacts")).scalar_one(),
            )
    state = (counts, sorted(insp.get_table_names()) + sorted(insp.get_view_names()), statuses, server)
    engine.dispose()
    return state


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def reader(pg_url: str) -> Iterator[str]:
    """The role `vigil db reader` creates (no password: trust auth here); yields its readonly_url."""
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        role, secret = create_reader(conn, password=False)
    try:
        yield reader_url(pg_url, role, secret)
    finally:
        drop_role(pg_url, role)


@contextmanager
def member_of(pg_url: str, dangerous: str) -> Iterator[str]:
    """A login role that may only SELECT Vigil's tables but is a member of ``dangerous``."""
    role = f"vigil_test_{dangerous}_{uuid.uuid4().hex[:6]}"[:63]
    database = make_url(pg_url).database
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        for statement in [
            f'CREATE ROLE "{role}" LOGIN',
            f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
            f'GRANT {dangerous} TO "{role}"',
        ]:
            conn.execute(statement.encode())
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        drop_role(pg_url, role)


def drop_role(pg_url: str, role: str) -> None:
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
            return
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
        conn.execute(f'DROP OWNED BY "{role}"'.encode())
        conn.execute(f'DROP ROLE "{role}"'.encode())

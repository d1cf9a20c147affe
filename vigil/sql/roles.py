"""The PostgreSQL role `vigil sql` logs in as: checked at connect time, created by `vigil db reader`.

A ``READ ONLY`` transaction stops writes to tables, not ``COPY ... TO PROGRAM``, ``pg_read_file`` or
``pg_terminate_backend`` run by a superuser, and a session ``SET ROLE`` is undone by
``set_config('role', ...)``. So the safety of `vigil sql` on PostgreSQL is the login role itself: not a
superuser, no membership that reaches outside the database, no privilege to create or write anything.

Without ``database.readonly_url`` `vigil sql` logs in as ``<database>_reader`` (the role `vigil db reader`
creates) with the main URL's host and database and no password (libpq then uses ``~/.pgpass``,
``PGPASSFILE`` or the server's trust/peer rules); it never runs a query as the main URL's role.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.engine import URL, make_url

from vigil.errors import ConfigError, QueryRefused

# Memberships that reach outside the database (files, programs) or into other sessions, or write anything.
DANGEROUS_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_write_all_data",
)
HOW_TO = "run `vigil db reader` and set database.readonly_url to the URL it prints (docs/querying.md)"

_CHECK = """
SELECT session_user::text, current_user::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb,
       r.rolreplication, r.rolbypassrls,
       ARRAY(SELECT g FROM unnest(%(dangerous)s::text[]) AS g WHERE pg_has_role(session_user, g, 'MEMBER')),
       has_database_privilege(session_user, current_database(), 'CREATE'),
       ARRAY(SELECT n.nspname::text FROM pg_namespace n
             WHERE has_schema_privilege(session_user, n.oid, 'CREATE')
               AND n.nspname !~ '^pg_(toast_)?temp_'),
       ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
               AND has_table_privilege(session_user, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
             LIMIT 3)
FROM pg_roles r WHERE r.rolname = session_user
"""


def reader_role_name(database: str) -> str:
    return f"{database}_reader"[:63]


def default_reader_url(main_url: str) -> str:
    """The main URL with the reader role as user and no password."""
    url = make_url(main_url)
    if not url.database:
        raise ConfigError(f"database.url {url.render_as_string()}: names no database")
    return url.set(username=reader_role_name(url.database), password=None).render_as_string()


def unsafe_reasons(conn: Any) -> list[str]:
    """Why the connected login may do more than read this database; empty when it may not."""
    row = conn.execute(_CHECK, {"dangerous": list(DANGEROUS_ROLES)}).fetchone()
    session, current, superuser, createrole, createdb, replication, bypassrls = row[:7]
    members, create_db, create_schemas, writable = row[7:]
    reasons = []
    if session != current:
        reasons.append(f"the session runs as {current} by SET ROLE (a superuser session can undo it)")
    for flag, what in [
        (superuser, "is a superuser"),
        (createrole, "may create roles"),
        (createdb, "may create databases"),
        (replication, "may start replication"),
        (bypassrls, "bypasses row security"),
    ]:
        if flag:
            reasons.append(what)
    if members:
        reasons.append(f"is a member of {', '.join(members)}")
    if create_db:
        reasons.append("may create schemas in this database")
    if create_schemas:
        reasons.append(f"may create objects in schema {', '.join(create_schemas)}")
    if writable:
        reasons.append(f"may write tables ({', '.join(writable)})")
    return reasons


def refuse_unless_reader(conn: Any) -> None:
    reasons = unsafe_reasons(conn)
    if reasons:
        user = conn.execute("SELECT session_user::text").fetchone()[0]
        raise QueryRefused(f"refused: the role {user} {'; '.join(reasons)}: {HOW_TO}")


def create_reader(conn: Any, *, password: bool = True) -> tuple[str, str | None]:
    """Create or refresh ``<database>_reader`` on an autocommit connection of the tables' owner.

    Returns the role name and its new password (None with ``password=False``). Re-running it grants
    SELECT on tables added since and sets a new password.
    """
    from psycopg import sql

    database, schema, owner = conn.execute(
        "SELECT current_database(), current_schema(), current_user::text"
    ).fetchone()
    role = reader_role_name(database)
    secret = secrets.token_urlsafe(24) if password else None
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    attrs = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT")
    ident, db, nsp = sql.Identifier(role), sql.Identifier(database), sql.Identifier(schema)
    verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
    pw = sql.SQL("PASSWORD {}").format(sql.Literal(secret)) if secret else sql.SQL("PASSWORD NULL")
    statements = [
        sql.SQL("{} {} {} {}").format(verb, ident, attrs, pw),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(nsp, ident),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(nsp, ident),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
            sql.Identifier(owner), nsp, ident
        ),
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident),
    ]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return role, secret


def reader_url(main_url: str, role: str, secret: str | None) -> str:
    url: URL = make_url(main_url).set(username=role, password=secret)
    return url.render_as_string(hide_password=False)

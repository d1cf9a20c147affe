"""On PostgreSQL `vigil sql` reads only as a role the server keeps from writing and from leaving the database.

`vigil db reader` makes that role; any other login (a superuser, a dangerous membership, a role that may
create or write, a SET ROLE session) is refused with one line that says how to get a reader.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from tests.support.sql import drop_role, libpq, member_of, seed, snapshot
from vigil.cli import cli
from vigil.config.settings import DatabaseSettings
from vigil.errors import QueryRefused
from vigil.sql import run_query
from vigil.sql.roles import DANGEROUS_ROLES, reader_role_name

HOW_TO = "run `vigil db reader` and set database.readonly_url"


@contextmanager
def role_with(pg_url: str, *grants: str, attrs: str = "") -> Iterator[str]:
    role = f"vigil_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN {attrs}'.encode())
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'.encode())
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"'.encode())
        for grant in grants:
            conn.execute(grant.format(role=f'"{role}"', db=f'"{make_url(pg_url).database}"').encode())
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        drop_role(pg_url, role)


def refusal(pg_url: str, readonly_url: str) -> str:
    with pytest.raises(QueryRefused) as caught:
        run_query(DatabaseSettings(url=pg_url, readonly_url=readonly_url), "SELECT 1", timeout_s=10)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("refused: ") and HOW_TO in message
    return message


@pytest.mark.parametrize("dangerous", DANGEROUS_ROLES)
def test_a_dangerous_membership_is_refused(pg_url: str, dangerous: str) -> None:
    with member_of(pg_url, dangerous) as url:
        assert f"is a member of {dangerous}" in refusal(pg_url, url)


@pytest.mark.parametrize(
    ("grant", "attrs", "reason"),
    [
        ("", "CREATEROLE", "may create roles"),
        ("", "CREATEDB", "may create databases"),
        ("GRANT CREATE ON DATABASE {db} TO {role}", "", "may create schemas in this database"),
        ("GRANT CREATE ON SCHEMA public TO {role}", "", "may create objects in schema public"),
        ("GRANT INSERT ON media TO {role}", "", "may write tables (media)"),
    ],
)
def test_a_role_that_may_create_or_write_is_refused(pg_url: str, grant: str, attrs: str, reason: str) -> None:
    with role_with(pg_url, *([grant] if grant else []), attrs=attrs) as url:
        assert reason in refusal(pg_url, url)


def test_a_superuser_is_refused_even_under_set_role(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "is a superuser" in refusal(pg_url, pg_url)
    with role_with(pg_url) as url:
        role = make_url(url).username
        monkeypatch.setenv("PGOPTIONS", f"-c role={role}")  # the session starts as postgres, then SET ROLE
        message = refusal(pg_url, pg_url)
        monkeypatch.delenv("PGOPTIONS")
    assert f"runs as {role} by SET ROLE" in message and "is a superuser" in message


def test_without_a_reader_role_nothing_runs(pg_url: str) -> None:
    with pytest.raises(QueryRefused, match=r"^refused: cannot log in as the reader role .*vigil db reader"):
        run_query(DatabaseSettings(url=pg_url), "SELECT 1", timeout_s=10)


def invoke(*args: str, **env: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


def test_vigil_db_reader_makes_the_role_sql_uses(pg_url: str) -> None:
    seed(pg_url)
    role = reader_role_name(make_url(pg_url).database or "")
    try:
        made = invoke("db", "reader", VIGIL_DATABASE__URL=pg_url)
        assert made.exit_code == 0, made.output
        line = made.stdout.strip()
        assert line.startswith('readonly_url = "postgresql+psycopg://') and f"{role}:" in line
        readonly_url = line.split('"')[1]
        assert make_url(readonly_url).password  # a fresh random password
        # with readonly_url set, and by default (the reader's name, no password: trust auth here)
        for env in ({"VIGIL_DATABASE__READONLY_URL": readonly_url}, {}):
            got = invoke("sql", "SELECT current_user, COUNT(*) FROM media", VIGIL_DATABASE__URL=pg_url, **env)
            assert got.exit_code == 0, got.output
            assert got.stdout.splitlines() == ["current_user,count", f"{role},3"]
        again = invoke("db", "reader", "--no-password", VIGIL_DATABASE__URL=pg_url)
        no_password = make_url(pg_url).set(username=role).render_as_string()
        assert again.exit_code == 0 and again.stdout.strip() == f'readonly_url = "{no_password}"'
        before = snapshot(pg_url)
        write = "WITH x AS (DELETE FROM media RETURNING *) SELECT * FROM x"
        refused = invoke("sql", write, VIGIL_DATABASE__URL=pg_url)
        assert refused.exit_code == 2 and refused.stderr.startswith("error: refused: only reads are allowed")
        assert snapshot(pg_url) == before
    finally:
        drop_role(pg_url, role)


def test_the_reader_sees_tables_that_later_migrations_add(pg_url: str) -> None:
    role = reader_role_name(make_url(pg_url).database or "")
    try:
        assert invoke("db", "reader", "--no-password", VIGIL_DATABASE__URL=pg_url).exit_code == 0
        with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
            conn.execute("CREATE TABLE later_table (x integer)")
            conn.execute("INSERT INTO later_table VALUES (7)")
        got = run_query(DatabaseSettings(url=pg_url), "SELECT x FROM later_table", timeout_s=10)
        assert got.rows == [(7,)]
    finally:
        drop_role(pg_url, role)


def test_vigil_db_reader_is_for_postgresql(sqlite_url: str) -> None:
    done = invoke("db", "reader", VIGIL_DATABASE__URL=sqlite_url)
    assert done.exit_code == 2 and "is for PostgreSQL" in done.stderr

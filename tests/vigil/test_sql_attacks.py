"""An attacker's corpus against `vigil sql`, on SQLite and on PostgreSQL as a superuser, as the reader role
`vigil db reader` creates, and as a SELECT-only role with a dangerous membership.

Each attack asserts its refusal message (or, for a memory bomb, the truncation note) and that nothing
changed: row counts, schema, statuses, large objects, roles, the server's configuration load time, files on
disk, another session still alive, and the SQLite file byte for byte.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from tests.support.sql import libpq, member_of, reader, seed, snapshot
from vigil.config.settings import DatabaseSettings
from vigil.errors import QueryRefused
from vigil.sql import Caps, run_query
from vigil.store.migrate import upgrade

MARK = Path(f"/tmp/vigil-attack-{uuid.uuid4().hex[:10]}")
ROWS = "^ROWS$"  # runs, returns rows, changes nothing (rolled back, or harmless for this role)
TRUNCATED = "^truncated at"  # a memory bomb: the result stops at a cap with a note
READS_ONLY = r"^refused: only reads are allowed \(permission denied for function"
# A write; or a statement of the other dialect (COPY on SQLite, PRAGMA on PostgreSQL), a syntax error there.
NOT_A_READ = r"^(refused: \w+ is not a read|syntax error: \w+ does not begin an SQL statement)"
SQLITE_SYNTAX = r"^syntax error: (near|unrecognized token)"
NO_SUCH_FUNCTION = r"^query failed: no such function"


@dataclass(frozen=True)
class Attack:
    name: str
    sql: str
    sqlite: str  # the expected message (a regex), ROWS or TRUNCATED
    reader: str  # the same on PostgreSQL as the reader role
    timeout_s: float = 5.0
    before_login: bool = False  # refused before any connection, whatever the role


CORPUS = [
    # comments that hide the first word
    Attack("nested comment hides COPY TO PROGRAM",
           f"/* /* */ SELECT */ COPY (SELECT 1) TO PROGRAM 'touch {MARK}'", SQLITE_SYNTAX, NOT_A_READ),
    Attack("unbalanced comment", f"/* /* */ COPY (SELECT 1) TO '{MARK}'", NOT_A_READ,
           r"^refused: empty statement"),
    Attack("comment then write", "-- SELECT\nDELETE FROM media", NOT_A_READ, NOT_A_READ),
    Attack("dollar quote hides a second statement", "SELECT $x$ */ $x$; DELETE FROM media",
           SQLITE_SYNTAX, r"^refused: only one statement"),
    Attack("second statement", "SELECT 1; DROP TABLE media", r"^refused: only one statement",
           r"^refused: only one statement"),
    # server-side files, programs, signals, settings by every spelling
    Attack("COPY to a file", f"COPY media TO '{MARK}'", NOT_A_READ, NOT_A_READ),
    Attack("COPY to a program", f"COPY (SELECT 1) TO PROGRAM 'touch {MARK}'", NOT_A_READ, NOT_A_READ),
    Attack("pg_read_file", "SELECT pg_read_file('/etc/hostname')", NO_SUCH_FUNCTION, READS_ONLY),
    Attack("quoted name", "SELECT \"pg_read_file\"('/etc/hostname')", NO_SUCH_FUNCTION, READS_ONLY),
    Attack("comment before the parenthesis", "SELECT pg_read_file/**/('/etc/hostname')", NO_SUCH_FUNCTION,
           READS_ONLY),
    Attack("schema-qualified", "SELECT pg_catalog.pg_read_file('/etc/hostname')", r"^syntax error: near",
           READS_ONLY),
    Attack("U& escaped name", "SELECT U&\"pg\\005fread\\005ffile\"('/etc/hostname')", r"^query failed",
           READS_ONLY),
    Attack("U& escaped first letter", "SELECT U&\"\\0070g_ls_dir\"('.')", r"^query failed", READS_ONLY),
    Attack("binary file read", "SELECT pg_read_binary_file('/etc/hostname')", NO_SUCH_FUNCTION, READS_ONLY),
    Attack("query_to_xml builds a file read",
           "SELECT query_to_xml('select pg_'||'read_file(''/etc/hostname'')', true, false, '')",
           NO_SUCH_FUNCTION, READS_ONLY),
    Attack("query_to_xml_and_xmlschema lists a directory",
           "SELECT query_to_xml_and_xmlschema('select pg_'||'ls_dir(''.'')', true, false, '')",
           NO_SUCH_FUNCTION, READS_ONLY),
    Attack("query_to_xml runs a DELETE",
           "SELECT query_to_xml('delete from media returning 1', true, false, '')",
           NO_SUCH_FUNCTION, r"^query failed: DELETE is not allowed in a non-volatile function"),
    Attack("terminate every other session",
           "SELECT \"pg_terminate_backend\"(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
           r"^query failed: no such table",
           r"^refused: only reads are allowed \(must be a superuser to terminate"),
    Attack("reload the configuration", "SELECT \"pg_reload_conf\"()", r"^query failed", READS_ONLY),
    Attack("set_config role", "SELECT set_config('role', 'postgres', false)", NO_SUCH_FUNCTION,
           r"^refused: only reads are allowed \(permission denied to set role"),
    Attack("set_config read-write", "SELECT set_config('transaction_read_only', 'off', true)",
           NO_SUCH_FUNCTION,
           r"^query failed: transaction read-write mode must be set before any query"),
    Attack("DO block with dynamic COPY",
           f"DO $$BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {MARK}'''; END$$",
           NOT_A_READ, NOT_A_READ),
    Attack("DO block with lo_export",
           f"DO $$BEGIN PERFORM lo_export(lo_from_bytea(0, 'x'), '{MARK}'); END$$", NOT_A_READ, NOT_A_READ),
    Attack("LOAD a library", "LOAD 'auto_explain'", NOT_A_READ, NOT_A_READ),
    Attack("LOCK a table", "LOCK TABLE media IN ACCESS EXCLUSIVE MODE", NOT_A_READ, NOT_A_READ),
    Attack("SET ROLE", "SET ROLE postgres", NOT_A_READ, NOT_A_READ),
    Attack("SET read-write", "SET default_transaction_read_only = off", NOT_A_READ, NOT_A_READ),
    Attack("RESET ALL", "RESET ALL", NOT_A_READ, NOT_A_READ),
    Attack("COMMIT", "COMMIT", NOT_A_READ, NOT_A_READ),
    Attack("BEGIN read-write", "START TRANSACTION READ WRITE", NOT_A_READ, NOT_A_READ),
    Attack("commit then delete", "SELECT 1; COMMIT; DELETE FROM media", r"^refused: only one statement",
           r"^refused: only one statement"),
    Attack("CALL", "CALL pg_catalog.pg_sleep(1)", NOT_A_READ, NOT_A_READ),
    Attack("PREPARE inside", "PREPARE x AS DELETE FROM media", NOT_A_READ, NOT_A_READ),
    # large objects
    Attack("lo_import a server file", "SELECT lo_import('/etc/hostname')", NO_SUCH_FUNCTION, READS_ONLY),
    Attack("lo_export to a server file", f"SELECT lo_export(lo_from_bytea(0, 'x'), '{MARK}')",
           NO_SUCH_FUNCTION, READS_ONLY),
    Attack("lo_from_bytea (rolled back)", "SELECT lo_from_bytea(0, 'x')", NO_SUCH_FUNCTION, ROWS),
    # writes that start like a read
    Attack("data-modifying CTE", "WITH x AS (DELETE FROM media RETURNING *) SELECT * FROM x",
           r"^syntax error: near \"DELETE\"", r"^refused: only reads are allowed"),
    Attack("CTE then UPDATE", "WITH x AS (SELECT 1) UPDATE media SET status = 'done'",
           r"^refused: only reads are allowed", r"^refused: only reads are allowed"),
    Attack("SELECT INTO", "SELECT * INTO evil FROM media", SQLITE_SYNTAX, r"^refused"),
    Attack("row locks", "SELECT * FROM media FOR UPDATE", SQLITE_SYNTAX,
           r"^refused: only reads are allowed \(permission denied for table media"),
    Attack("sequence", "SELECT nextval('media_id_seq')", NO_SUCH_FUNCTION,
           r"^refused: only reads are allowed \(permission denied for sequence"),
    Attack("ATTACH", "ATTACH DATABASE ':memory:' AS other", NOT_A_READ, NOT_A_READ),
    Attack("PRAGMA write", "PRAGMA writable_schema = 1", r"^refused: only reads are allowed", NOT_A_READ),
    Attack("load_extension", "SELECT load_extension('/tmp/x')",
           r"^refused: only reads are allowed|^query failed",
           r"^query failed: function load_extension"),
    Attack("EXPLAIN ANALYZE DELETE", "EXPLAIN ANALYZE DELETE FROM media", SQLITE_SYNTAX, NOT_A_READ),
    # time and memory
    Attack("pg_sleep past the limit", "SELECT pg_sleep(30)", NO_SUCH_FUNCTION,
           r"^query stopped at the time limit of 1 s", timeout_s=1.0),
    Attack("endless recursion", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
           "SELECT COUNT(*) FROM r", r"^query stopped at the time limit of 1 s",
           r"^query stopped at the time limit of 1 s", timeout_s=1.0),
    Attack("five million rows", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
           "WHERE n < 5000000) SELECT n FROM r", TRUNCATED, TRUNCATED),
    Attack("one huge value (PostgreSQL)", "SELECT repeat('x', 300000000)", NO_SUCH_FUNCTION, TRUNCATED,
           timeout_s=30.0),
    Attack("one huge value (SQLite)", "SELECT zeroblob(1000000000)", r"^refused: a value passes the byte cap",
           r"^query failed: function zeroblob"),
    # SQLite's printf stops at the length limit and returns NULL (it used to take gigabytes), after seconds
    # of uninterruptible CPU: on a loaded machine that passes the 5 s limit and the deadline refuses it.
    Attack("printf bomb", "SELECT printf('%.*c', 100000000, 'x')", ROWS + "|^query stopped at the time limit",
           r"^query failed: function printf"),
    Attack("recursive string growth", "WITH RECURSIVE r(s, n) AS (SELECT 'x', 1 UNION ALL "
           "SELECT s || s, n + 1 FROM r WHERE n < 40) SELECT s FROM r",
           # the server may reach its own 1 GB limit before the client stops reading
           r"^refused: a value passes the byte cap", TRUNCATED + "|^query failed: invalid memory alloc",
           timeout_s=30.0),
    Attack("non-finite time limit (nan)", "SELECT 1", r"^refused: the time limit must be a finite",
           r"^refused: the time limit must be a finite", timeout_s=float("nan"), before_login=True),
    Attack("infinite time limit", "SELECT 1", r"^refused: the time limit must be a finite",
           r"^refused: the time limit must be a finite", timeout_s=float("inf"), before_login=True),
    Attack("zero time limit", "SELECT 1", r"^refused: the time limit must be a finite",
           r"^refused: the time limit must be a finite", timeout_s=0.0, before_login=True),
    Attack("negative time limit", "SELECT 1", r"^refused: the time limit must be a finite",
           r"^refused: the time limit must be a finite", timeout_s=-1.0, before_login=True),
]  # fmt: skip


@dataclass(frozen=True)
class Door:
    kind: str  # sqlite, superuser, reader, member
    settings: DatabaseSettings
    main_url: str


@pytest.fixture(scope="module")
def sqlite_door(tmp_path_factory: pytest.TempPathFactory) -> Door:
    url = f"sqlite:///{tmp_path_factory.mktemp('attacks') / 'vigil.db'}"
    upgrade(url)
    seed(url)
    return Door("sqlite", DatabaseSettings(url=url), url)


@pytest.fixture(scope="module")
def pg_database(pg_server: str) -> Iterator[str]:
    name = f"vigil_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        seed(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["superuser", "reader", "member"])
def pg_door(request: pytest.FixtureRequest, pg_database: str) -> Iterator[Door]:
    if request.param == "superuser":
        yield Door("superuser", DatabaseSettings(url=pg_database, readonly_url=pg_database), pg_database)
        return
    if request.param == "reader":
        roles = reader(pg_database)
    else:
        roles = member_of(pg_database, "pg_execute_server_program")
    with roles as readonly_url:
        yield Door(request.param, DatabaseSettings(url=pg_database, readonly_url=readonly_url), pg_database)


@pytest.fixture
def bystander(pg_database: str) -> Iterator[psycopg.Connection]:
    """Another session, as the tables' owner, that every attack must leave alive."""
    with psycopg.connect(libpq(pg_database), autocommit=True, application_name="vigil-bystander") as conn:
        yield conn


def expected(door: Door, attack: Attack) -> str:
    if door.kind == "sqlite":
        return attack.sqlite
    if door.kind == "reader" or attack.before_login:
        return attack.reader
    if door.kind == "superuser":
        return r"^refused: the role postgres is a superuser.*run `vigil db reader`"
    return r"^refused: the role \S+ is a member of pg_execute_server_program.*run `vigil db reader`"


def attempt(door: Door, attack: Attack) -> str:
    """The refusal message, or the truncation note, or ROWS."""
    try:
        result = run_query(door.settings, attack.sql, timeout_s=attack.timeout_s, caps=Caps())
    except QueryRefused as exc:
        message = str(exc)
        assert "\n" not in message, message
        return message
    return result.truncated or "ROWS"


def check(door: Door, attack: Attack) -> None:
    before = snapshot(door.main_url)
    file_before = _file_digest(door)
    outcome = attempt(door, attack)
    want = expected(door, attack)
    assert re.search(want, outcome), outcome
    assert snapshot(door.main_url) == before
    assert _file_digest(door) == file_before
    assert not MARK.exists()


def _file_digest(door: Door) -> str:
    if door.kind != "sqlite":
        return ""
    path = Path(door.main_url.removeprefix("sqlite:///"))
    return "|".join(
        hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "-"
        for p in (path, path.with_name(path.name + "-wal"))
    )


@pytest.mark.parametrize("attack", CORPUS, ids=[a.name for a in CORPUS])
def test_sqlite_refuses_the_corpus(sqlite_door: Door, attack: Attack) -> None:
    check(sqlite_door, attack)


@pytest.mark.parametrize("attack", CORPUS, ids=[a.name for a in CORPUS])
def test_postgresql_refuses_the_corpus(pg_door: Door, bystander: psycopg.Connection, attack: Attack) -> None:
    check(pg_door, attack)
    assert bystander.execute("SELECT 1").fetchone() == (1,)


def test_the_file_check_can_fail(pg_database: str) -> None:
    """The server writes where the corpus looks: a superuser's own COPY lands in MARK's folder."""
    control = MARK.with_name(MARK.name + "-control")
    with psycopg.connect(libpq(pg_database), autocommit=True) as conn:
        conn.execute(f"COPY (SELECT 1) TO '{control}'".encode())
    try:
        assert control.exists()
    finally:
        control.unlink(missing_ok=True)

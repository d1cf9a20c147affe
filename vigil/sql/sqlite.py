"""`vigil sql` on SQLite: the authorizer is the authority, and SQLite's own limits bound the cost.

The query runs on a separate connection opened ``file:...?mode=ro`` with ``PRAGMA query_only`` and an
authorizer that allows only SELECT, reads, functions, recursive CTEs and PRAGMAs from a list of harmless
reads (with an argument only for the table-describing ones): no ATTACH, no writes, no DDL, no
``PRAGMA x=y``. ``SQLITE_LIMIT_LENGTH`` at the byte cap stops ``zeroblob``, ``printf`` and string-growth
bombs inside SQLite; ``hard_heap_limit`` bounds SQLite's own memory; a progress handler stops the statement
at the deadline; rows are fetched one at a time. sqlite3 itself refuses a second statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import make_url

from vigil.errors import ConfigError, QueryRefused
from vigil.sql.caps import Caps, Collected, Deadline, collect, value_size
from vigil.sql.lexer import first_word, is_empty, not_a_read
from vigil.store.db import no_database_message

QUERY_WORDS = frozenset({"select", "with", "values", "explain", "pragma"})
# The first words of SQLite's statements (sqlite.org/lang.html): any other first word is a typo.
STATEMENT_WORDS = QUERY_WORDS | frozenset(
    {
        "alter", "analyze", "attach", "begin", "commit", "create", "delete", "detach", "drop", "end",
        "insert", "reindex", "release", "replace", "rollback", "savepoint", "update", "vacuum",
    }
)  # fmt: skip
# PRAGMAs that only read, allowed without an argument; those in TABLE_PRAGMAS also with a table name.
TABLE_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
SAFE_PRAGMAS = TABLE_PRAGMAS | frozenset(
    {
        "database_list", "collation_list", "function_list", "pragma_list",
        "module_list", "compile_options", "user_version", "schema_version", "application_id",
        "page_count", "page_size", "freelist_count", "encoding", "journal_mode", "foreign_keys",
        "query_only", "data_version",
    }
)  # fmt: skip
ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Booleans read as true/false on SQLite too (it stores 0/1): columns declared BOOLEAN, through views as well.
sqlite3.register_converter("BOOLEAN", lambda raw: raw not in (b"0", b""))
PROGRESS_STEPS = 1000
MAX_COLUMNS = 200
HEAP_LIMIT = 200 * 1024 * 1024


def check_first_word(sql: str) -> None:
    """Refuse, with a clear message, what does not start like a read (the authorizer decides the rest)."""
    if is_empty(sql, nested_comments=False):
        raise QueryRefused("refused: empty statement")
    word = first_word(sql, nested_comments=False)
    if word not in QUERY_WORDS:
        only = "only SELECT, WITH, VALUES, EXPLAIN and PRAGMA reads may run"
        raise QueryRefused(not_a_read(word, reads=QUERY_WORDS, statements=STATEMENT_WORDS, only=only))


def sqlite_readonly_uri(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(f"database {url}: `vigil sql` needs a SQLite database file")
    path = Path(database).expanduser()
    if not path.is_file():
        raise ConfigError(no_database_message(path))
    return f"file:{quote(str(path.resolve()))}?mode=ro"


def _authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
    if action in ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        pragma = (arg1 or "").lower()
        if pragma in SAFE_PRAGMAS and (arg2 is None or pragma in TABLE_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def run_sqlite(
    url: str, sql: str, params: dict[str, Any], deadline: Deadline, caps: Caps, *, busy_s: float
) -> Collected:
    check_first_word(sql)
    uri = sqlite_readonly_uri(url)
    try:
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_s,
            isolation_level=None,
            check_same_thread=False,
            detect_types=sqlite3.PARSE_DECLTYPES,
        )
    except sqlite3.Error as exc:
        raise QueryRefused(f"cannot open {uri} read-only: {exc}") from exc
    heap_before = conn.execute("PRAGMA hard_heap_limit").fetchone()[0]
    try:
        conn.execute("PRAGMA query_only = ON")
        heap = HEAP_LIMIT if heap_before == 0 else min(heap_before, HEAP_LIMIT)
        conn.execute(f"PRAGMA hard_heap_limit = {heap}")
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(caps.max_bytes, 1000))
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        conn.set_authorizer(_authorizer)
        conn.set_progress_handler(lambda: int(deadline.left() <= 0), PROGRESS_STEPS)
        try:
            cursor = conn.execute(sql, params)
            columns = [d[0] for d in cursor.description or ()]
            return collect(columns, _sized(cursor), deadline, caps)
        except (sqlite3.Error, OverflowError, MemoryError) as exc:
            raise _sqlite_error(exc, deadline, caps) from exc
    finally:
        conn.set_authorizer(None)
        conn.execute(f"PRAGMA hard_heap_limit = {heap_before}")
        conn.close()


def _sized(cursor: sqlite3.Cursor) -> Iterator[tuple[int, tuple[Any, ...]]]:
    # One row at a time: a batch of wide rows would be held before the byte cap could count it.
    for row in cursor:
        yield sum(value_size(v) for v in row), tuple(row)


def _sqlite_error(exc: Exception, deadline: Deadline, caps: Caps) -> QueryRefused:
    message = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in message:
        return QueryRefused("refused: the query needs more memory than `vigil sql` allows")
    if isinstance(exc, OverflowError):
        return QueryRefused(f"refused: a value is too large ({message})")
    if "too big" in message:
        return QueryRefused(
            f"refused: a value passes the byte cap of {caps.max_bytes} bytes (raise it with --max-bytes)"
        )
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement at a time" in message:
        return QueryRefused("refused: only one statement may run at a time")
    if isinstance(exc, sqlite3.ProgrammingError) and "binding parameter" in message:
        return QueryRefused(f"query needs a parameter: {message} (give it with --param NAME=VALUE)")
    if message == "interrupted":
        return deadline.refusal()
    if (
        "syntax error" in message
        or message in ("incomplete input",)
        or message.startswith("unrecognized token")
    ):
        return QueryRefused(f"syntax error: {message}")
    if "not authorized" in message or "readonly" in message or "read-only" in message:
        return QueryRefused(f"refused: only reads are allowed ({message})")
    return QueryRefused(f"query failed: {message}")

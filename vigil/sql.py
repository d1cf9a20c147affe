"""`vigil sql`: one read-only statement against Vigil's database, with a time limit, and its output formats.

Read-only is enforced by the database, not by parsing, with a cheap first-word check in front for clear
messages (only SELECT, WITH, VALUES, TABLE, EXPLAIN, SHOW and PRAGMA may start a statement):

* SQLite: a separate connection opened ``file:...?mode=ro``, ``PRAGMA query_only``, and an authorizer that
  allows only SELECT, reads, functions, recursive CTEs and PRAGMAs from a list of harmless reads, with an
  argument only for the table-describing ones (no ATTACH, no writes, no DDL, no ``PRAGMA x=y``). A progress
  handler stops the statement at the time limit. sqlite3 itself refuses a second statement.
* PostgreSQL: ``database.readonly_url`` when set (a role that may only SELECT; see docs/querying.md), else
  the main URL, in a ``READ ONLY`` transaction that is always rolled back, with ``statement_timeout``.
  The statement is sent as a prepared statement, which PostgreSQL refuses to hold more than one command.
  Administrative functions (``pg_terminate_backend``, file access, ``set_config`` ...) are refused by name:
  a read-only transaction does not stop them, only a SELECT-only role does.

Everything refused, timed out or failing raises ``QueryRefused`` with a one-line message.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, StatementError

from vigil.db import is_sqlite, make_engine
from vigil.errors import ConfigError, QueryRefused
from vigil.settings import DatabaseSettings

log = logging.getLogger(__name__)

Format = Literal["table", "csv", "jsonl", "markdown"]
FORMATS: tuple[Format, ...] = ("table", "csv", "jsonl", "markdown")

ALLOWED_FIRST_WORDS = frozenset({"select", "with", "values", "table", "explain", "show", "pragma"})
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
# Functions a read-only transaction does not stop: signalling backends, server files, settings, locks.
DENIED_PG_FUNCTIONS = re.compile(
    r"\b(pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_promote"
    r"|pg_switch_wal|pg_create_restore_point|pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file"
    r"|pg_stat_reset\w*|pg_file_write|lo_\w+|dblink\w*|set_config|pg_advisory\w*|pg_try_advisory\w*"
    r"|pg_notify|pg_logical_emit_message|pg_replication_origin_\w+|pg_create_\w+_replication_slot"
    r"|pg_drop_replication_slot)\s*\(",
    re.IGNORECASE,
)
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|\()*", re.DOTALL)
PROGRESS_STEPS = 1000


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    elapsed_s: float


def check_statement(sql: str) -> None:
    """Refuse, with a clear message, anything that does not start like a read."""
    body = _LEADING_NOISE.sub("", sql, count=1)
    word = re.match(r"[A-Za-z_]+", body)
    if word is None:
        raise QueryRefused("refused: empty statement" if not body.strip() else "refused: not a SQL query")
    if word.group(0).lower() not in ALLOWED_FIRST_WORDS:
        raise QueryRefused(
            f"refused: {word.group(0).upper()} is not a read (only SELECT, WITH, VALUES, "
            "TABLE, EXPLAIN, SHOW and PRAGMA reads may run)"
        )


def run_query(
    settings: DatabaseSettings,
    sql: str,
    *,
    params: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
) -> QueryResult:
    """Run one read-only statement; raise QueryRefused for a write, a second statement, the time limit."""
    check_statement(sql)
    limit = timeout_s if timeout_s is not None else settings.query_timeout_s
    if limit <= 0:
        raise ConfigError("the query time limit must be above zero")
    url = settings.readonly_url or settings.url
    started = time.monotonic()
    if is_sqlite(url):
        columns, rows = _run_sqlite(url, sql, dict(params or {}), limit, settings.busy_timeout_s)
    else:
        columns, rows = _run_postgresql(settings, url, sql, dict(params or {}), limit)
    elapsed = time.monotonic() - started
    log.debug("query returned %d rows in %.3f s", len(rows), elapsed)
    return QueryResult(columns, rows, elapsed)


# --- SQLite ---------------------------------------------------------------------------------------------


def sqlite_readonly_uri(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(f"database {url}: `vigil sql` needs a SQLite database file")
    path = Path(database).expanduser()
    if not path.is_file():
        raise ConfigError(f"database file not found: {path}")
    return f"file:{quote(str(path.resolve()))}?mode=ro"


ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
    if action in ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        pragma = (arg1 or "").lower()
        if pragma in SAFE_PRAGMAS and (arg2 is None or pragma in TABLE_PRAGMAS):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _run_sqlite(
    url: str, sql: str, params: dict[str, Any], limit_s: float, busy_s: float
) -> tuple[list[str], list[tuple[Any, ...]]]:
    uri = sqlite_readonly_uri(url)
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise QueryRefused(f"cannot open {uri} read-only: {exc}") from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorizer)
        deadline = time.monotonic() + limit_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
        try:
            cursor = conn.execute(sql, params)
            rows = cursor.fetchall()
        except (sqlite3.Error, OverflowError) as exc:
            raise _sqlite_error(exc, limit_s) from exc
        columns = [d[0] for d in cursor.description or ()]
        return columns, rows
    finally:
        conn.close()


def _sqlite_error(exc: Exception, limit_s: float) -> QueryRefused:
    message = str(exc)
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement at a time" in message:
        return QueryRefused("refused: only one statement may run at a time")
    if isinstance(exc, sqlite3.ProgrammingError) and "binding parameter" in message:
        return QueryRefused(f"query needs a parameter: {message} (give it with --param NAME=VALUE)")
    if message == "interrupted":
        return QueryRefused(f"query stopped at the time limit of {limit_s:g} s (change it with --timeout)")
    if "not authorized" in message or "readonly" in message or "read-only" in message:
        return QueryRefused(f"refused: only reads are allowed ({message})")
    return QueryRefused(f"query failed: {message}")


# --- PostgreSQL -----------------------------------------------------------------------------------------


def _run_postgresql(
    settings: DatabaseSettings, url: str, sql: str, params: dict[str, Any], limit_s: float
) -> tuple[list[str], list[tuple[Any, ...]]]:
    denied = DENIED_PG_FUNCTIONS.search(sql)
    if denied:
        raise QueryRefused(f"refused: {denied.group(1)}() is not allowed in `vigil sql`")
    engine = make_engine(settings, url=url)
    try:
        try:
            compiled = text(sql).compile(dialect=engine.dialect)
            bound = compiled.construct_params(params)
        except (ArgumentError, StatementError, InvalidRequestError) as exc:
            message = str(exc).split(" (Background")[0]
            hint = "give it with --param NAME=VALUE"
            raise QueryRefused(f"query needs a parameter: {message} ({hint})") from exc
        with engine.connect() as conn:
            try:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round(limit_s * 1000))}")
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                # A prepared statement holds exactly one command: PostgreSQL refuses "SELECT 1; DELETE ...".
                cursor.execute(compiled.string, bound, prepare=True)
                columns = [d.name for d in cursor.description or ()]
                rows = [tuple(r) for r in cursor.fetchall()] if cursor.description else []
            except Exception as exc:
                raise _pg_error(exc, limit_s) from exc
            finally:
                conn.rollback()
        return columns, rows
    finally:
        engine.dispose()


def _pg_error(exc: Exception, limit_s: float) -> QueryRefused:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if state == "57014":
        return QueryRefused(f"query stopped at the time limit of {limit_s:g} s (change it with --timeout)")
    if state == "25006" or state == "42501":
        return QueryRefused(f"refused: only reads are allowed ({first_line})")
    if state == "42601" and "multiple commands" in first_line:
        return QueryRefused("refused: only one statement may run at a time")
    return QueryRefused(f"query failed: {first_line}")


# --- output ---------------------------------------------------------------------------------------------


def render(result: QueryResult, fmt: Format) -> Iterator[str]:
    """The result as lines of text (no trailing newlines) in the given format."""
    if fmt == "csv":
        yield from _csv(result)
    elif fmt == "jsonl":
        for row in result.rows:
            yield json.dumps(
                dict(zip(result.columns, (_json_value(v) for v in row), strict=True)), ensure_ascii=False
            )
    elif fmt == "markdown":
        yield from _markdown(result)
    elif fmt == "table":
        yield from _table(result)
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _text(value: Any) -> str:
    """A value as people read it: NULL empty, booleans true/false, JSON as JSON, times ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | dtime):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return _text(value)


def _csv(result: QueryResult) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in [result.columns, *([_text(v) for v in r] for r in result.rows)]:
        writer.writerow(row)
        yield buffer.getvalue().removesuffix("\n")
        buffer.seek(0)
        buffer.truncate()


def _numeric_columns(result: QueryResult) -> list[bool]:
    def numeric(i: int) -> bool:
        values = [r[i] for r in result.rows if r[i] is not None]
        return bool(values) and all(
            isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values
        )

    return [numeric(i) for i in range(len(result.columns))]


def _one_line(value: Any) -> str:
    return _text(value).replace("\r\n", "\n").replace("\n", "\\n")


def _table(result: QueryResult) -> Iterator[str]:
    cells = [[_one_line(v) for v in row] for row in result.rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    numeric = _numeric_columns(result)

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    yield line(list(result.columns))
    yield "  ".join("-" * w for w in widths)
    for row in cells:
        yield line(row)
    yield f"({len(cells)} row{'' if len(cells) == 1 else 's'})"


def _markdown(result: QueryResult) -> Iterator[str]:
    def cell(value: Any) -> str:
        return _text(value).replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")

    numeric = _numeric_columns(result)
    yield "| " + " | ".join(cell(c) for c in result.columns) + " |"
    yield "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"
    for row in result.rows:
        yield "| " + " | ".join(cell(v) for v in row) + " |"

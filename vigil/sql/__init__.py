"""`vigil sql`: one read-only query against Vigil's database, bounded in time and memory.

What may run is decided by the database, never by parsing the text (the lexer only words refusals):

* SQLite (sqlite.py): a read-only connection whose authorizer allows only reads.
* PostgreSQL (postgres.py, roles.py): a login role the server keeps from writing and from reaching outside
  the database, checked at connect time; the text goes through ``PREPARE`` (whose grammar takes only
  queries and DML) in a ``READ ONLY`` transaction that is rolled back.

Both stream rows under a row and a byte cap and one deadline (caps.py). Everything refused, timed out or
failing raises ``QueryRefused`` with a one-line message.

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store, vigil.ops
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from vigil.config.settings import DatabaseSettings
from vigil.errors import QueryRefused
from vigil.sql.caps import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, Caps, Deadline, check_time_limit
from vigil.sql.render import FORMATS, Format, render
from vigil.sql.result import QueryResult
from vigil.store.db import is_sqlite

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ROWS",
    "FORMATS",
    "Caps",
    "Deadline",
    "Format",
    "QueryResult",
    "check_time_limit",
    "render",
    "run_query",
]

log = logging.getLogger(__name__)


def run_query(
    settings: DatabaseSettings,
    sql: str,
    *,
    params: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
    deadline: Deadline | None = None,
    caps: Caps | None = None,
) -> QueryResult:
    """Run one read-only query; raise QueryRefused for anything else, a cap's failure or the time limit."""
    deadline = deadline or Deadline(timeout_s if timeout_s is not None else settings.query_timeout_s)
    caps = caps or Caps()
    started = time.monotonic()
    try:
        if is_sqlite(settings.readonly_url or settings.url):
            from vigil.sql.sqlite import run_sqlite

            url = settings.readonly_url or settings.url
            got = run_sqlite(url, sql, dict(params or {}), deadline, caps, busy_s=settings.busy_timeout_s)
        else:
            from vigil.sql.postgres import run_postgresql

            got = run_postgresql(settings.url, settings.readonly_url, sql, dict(params or {}), deadline, caps)
    except (MemoryError, OverflowError) as exc:
        raise QueryRefused(f"refused: the result is too large to hold ({type(exc).__name__})") from exc
    elapsed = time.monotonic() - started
    log.debug("query returned %d rows in %.3f s", len(got.rows), elapsed)
    return QueryResult(got.columns, got.rows, elapsed, got.truncated)

"""`vigil sql` on PostgreSQL: the server's grammar decides the statement kind, its privileges decide the rest.

1. Log in as a reader role (see roles.py) and refuse any other.
2. In a ``READ ONLY`` transaction, always rolled back, with ``statement_timeout`` and ``lock_timeout`` at
   the time left: ``PREPARE vigil_q AS <text>``, sent with the extended protocol so a second statement is
   an error. PREPARE's grammar takes only SELECT, VALUES, TABLE, WITH and DML, never COPY, DO, LOAD, LOCK,
   SET, CALL or transaction control; DML then meets the read-only transaction and the role's privileges.
3. The rows come through a wrapper that measures each row on the server (its text size) and sends no value
   of a row over the byte cap, ``LIMIT max_rows + 1``, streamed one row at a time and cancelled at a cap.
   The text is embedded as a subquery only after PREPARE accepted it alone, so it is one balanced query.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.engine import make_url

from vigil.errors import ConfigError, QueryRefused
from vigil.sql.caps import Caps, Collected, Deadline, collect
from vigil.sql.lexer import first_word, not_a_read, numbered_parameters, one_statement
from vigil.sql.roles import HOW_TO, default_reader_url, refuse_unless_reader

log = logging.getLogger(__name__)

QUERY_WORDS = frozenset({"select", "with", "values", "table"})
# The first words of PostgreSQL's commands (its manual's "SQL Commands"): any other first word is a typo.
STATEMENT_WORDS = QUERY_WORDS | frozenset(
    {
        "abort", "alter", "analyze", "begin", "call", "checkpoint", "close", "cluster", "comment", "commit",
        "copy", "create", "deallocate", "declare", "delete", "discard", "do", "drop", "end", "execute",
        "explain", "fetch", "grant", "import", "insert", "listen", "load", "lock", "merge", "move", "notify",
        "prepare", "reassign", "refresh", "reindex", "release", "reset", "revoke", "rollback", "savepoint",
        "security", "set", "show", "start", "truncate", "unlisten", "update", "vacuum",
    }
)  # fmt: skip


def run_postgresql(
    main_url: str,
    readonly_url: str | None,
    sql: str,
    params: dict[str, Any],
    deadline: Deadline,
    caps: Caps,
) -> Collected:
    conn = _connect(readonly_url or default_reader_url(main_url), deadline, explicit=bool(readonly_url))
    try:
        refuse_unless_reader(conn)
        text, names = numbered_parameters(_one_query(sql))
        missing = [n for n in names if n not in params]
        if missing:
            raise QueryRefused(f"query needs a parameter: :{missing[0]} (give it with --param NAME=VALUE)")
        return _run(conn, text, [params[n] for n in names], deadline, caps)
    except QueryRefused:
        raise
    except Exception as exc:
        raise _refusal(exc, deadline) from exc
    finally:
        conn.close()


def _one_query(sql: str) -> str:
    statement = one_statement(sql)
    if statement is None:
        raise QueryRefused("refused: only one statement may run at a time")
    word = first_word(statement)
    if not statement.strip():
        raise QueryRefused("refused: empty statement")
    if word not in QUERY_WORDS:
        only = "only SELECT, WITH, VALUES and TABLE queries may run"
        raise QueryRefused(not_a_read(word, reads=QUERY_WORDS, statements=STATEMENT_WORDS, only=only))
    return statement


def _connect(url: str, deadline: Deadline, *, explicit: bool) -> Any:
    import psycopg

    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("postgresql"):
        raise ConfigError(f"database.readonly_url: not a PostgreSQL URL: {parsed.render_as_string()}")
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(2, min(10, int(deadline.left()))),
            application_name="vigil-sql",
        )
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        where = "database.readonly_url" if explicit else f"the reader role {parsed.username}"
        raise QueryRefused(f"refused: cannot log in as {where} ({reason}): {HOW_TO}") from exc


def _run(conn: Any, text: str, values: list[Any], deadline: Deadline, caps: Caps) -> Collected:
    from psycopg import sql

    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        ms = max(1, round(deadline.left() * 1000))
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(ms)))
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(ms)))
        columns = _prepare(conn, "vigil_q", text)
        literals = sql.SQL(", ").join(sql.Literal(str(v)) for v in values)
        args = sql.SQL("({})").format(literals) if values else sql.SQL("")
        _refuse_write(conn, args)
        if not columns:
            raise QueryRefused("refused: the statement returns no rows")
        _prepare(conn, "vigil_w", _wrapper(text, len(columns), caps))
        cursor = conn.cursor()
        rows = cursor.stream(sql.SQL("EXECUTE vigil_w{}").format(args))
        stream = ((row[0], tuple(row[1:])) for row in rows)
        try:
            return collect(columns, stream, deadline, caps)
        finally:
            _stop(rows, cursor)


def _stop(rows: Any, cursor: Any) -> None:
    """End the stream early; the server's cancel error is expected and the transaction is rolled back."""
    import psycopg

    try:
        rows.close()
        cursor.close()
    except psycopg.Error as exc:
        log.debug("stream stopped: %s", exc)


def _prepare(conn: Any, name: str, text: str) -> list[str]:
    """PREPARE by the extended protocol (one statement only); the result's column names."""
    from psycopg import pq

    result = conn.pgconn.exec_params(f"PREPARE {name} AS {text}".encode(), [])
    if result.status != pq.ExecStatus.COMMAND_OK:
        state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        message = (result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode(errors="replace")
        raise _server_refusal(state, message)
    described = conn.pgconn.describe_prepared(name.encode())
    return [described.fname(i).decode(errors="replace") for i in range(described.nfields)]


def _wrapper(text: str, ncols: int, caps: Caps) -> str:
    cols = [f"c{i}" for i in range(ncols)]
    size = " + ".join(f"coalesce(octet_length(q.{c}::text), 0)" for c in cols)
    shown = ", ".join(f"CASE WHEN s.n > {caps.max_bytes} THEN NULL ELSE q.{c} END" for c in cols)
    return (
        f"SELECT s.n, {shown} FROM (SELECT * FROM (\n{text}\n) AS vigil_inner OFFSET 0)"
        f" AS q({', '.join(cols)})"
        f" CROSS JOIN LATERAL (SELECT {size} AS n) AS s LIMIT {caps.max_rows + 1}"
    )


def _refuse_write(conn: Any, args: Any) -> None:
    """Refuse a data-modifying statement by its plan (EXPLAIN without ANALYZE runs nothing)."""
    from psycopg import sql

    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE vigil_q{}").format(args)).fetchone()[0]
    operation = _modify_operation(plan if isinstance(plan, list) else json.loads(plan))
    if operation:
        raise QueryRefused(f"refused: {operation.upper()} is not a read (`vigil sql` only reads)")


def _modify_operation(node: Any) -> str | None:
    if isinstance(node, dict):
        if node.get("Node Type") == "ModifyTable":
            return str(node.get("Operation", "write"))
        children = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _modify_operation(child)
        if found:
            return found
    return None


def _server_refusal(state: str, message: str) -> QueryRefused:
    # The first line only; splitlines() would also cut at a \r or \x1c inside a quoted value.
    first = message.strip().split("\n")[0] if message.strip() else "error"
    if state == "57014":
        return QueryRefused("query stopped at the time limit (change it with --timeout)")
    if state in {"25006", "42501"}:
        return QueryRefused(f"refused: only reads are allowed ({first})")
    if state == "42601" and "multiple commands" in first:
        return QueryRefused("refused: only one statement may run at a time")
    if state == "42601" and first.startswith("syntax error"):
        return QueryRefused(f"syntax error: {first}")
    if state == "42601":
        return QueryRefused(f"refused: not a query the server accepts as one ({first})")
    if state in {"53200", "54000"}:
        return QueryRefused(f"refused: the query asks for too much memory ({first})")
    return QueryRefused(f"query failed: {first}")


def _refusal(exc: Exception, deadline: Deadline) -> QueryRefused:
    import psycopg

    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        if state == "57014" or (isinstance(exc, psycopg.errors.QueryCanceled)):
            return deadline.refusal()
        diag = exc.diag.message_primary if exc.diag else None
        return _server_refusal(state, diag or str(exc))
    if isinstance(exc, MemoryError | OverflowError):
        return QueryRefused(f"refused: the result is too large to hold ({type(exc).__name__})")
    raise exc

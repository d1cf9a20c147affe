"""`vigil sql` (one read-only query, as a table, CSV, JSON lines or Markdown) and `vigil status`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vigil.cli.context import AppContext, pass_app
from vigil.errors import ConfigError
from vigil.sql import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, FORMATS, Caps, Deadline, render, run_query
from vigil.store.schema import utcnow
from vigil.terminal import safe


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE (bound as :NAME)")
        params[name.strip()] = value
    return params


def _read_query(query: str | None, file: str | None) -> str:
    if (query is None) == (file is None):
        raise ConfigError("give a query, or a file with -f (not both)")
    if file is None:
        assert query is not None
        return query
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from exc


@click.command("sql")
@click.argument("query", required=False)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read the query from a file (- for stdin).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format. Default: table on a terminal, csv when piped.",
)
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Bind a value to :NAME (repeatable). Values are passed as text.",
)
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Stop the query (run, fetch and print) after this long. Default: database.query_timeout_s.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Stop after this many rows (a note says so).",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Stop before the values held pass this many bytes (as text).",
)
@pass_app
def sql_command(
    app: AppContext,
    query: str | None,
    file: str | None,
    fmt: str | None,
    params: tuple[str, ...],
    timeout: float | None,
    max_rows: int,
    max_bytes: int,
) -> None:
    """Run one read-only SQL query, e.g. `vigil sql "SELECT * FROM latest_detections_v LIMIT 5"`.

    Only reads run: on PostgreSQL as a reader role (see `vigil db reader`), on SQLite through a
    read-only connection; anything else is refused and the database is left unchanged. See
    docs/querying.md for the caps and docs/schema.md for the tables and views.
    """
    text = _read_query(query, file)
    bound = parse_params(params)
    fmt = fmt or ("table" if sys.stdout.isatty() else "csv")
    database = app.settings.database
    deadline = Deadline(timeout if timeout is not None else database.query_timeout_s)
    caps = Caps(max_rows=max_rows, max_bytes=max_bytes)
    result = run_query(database, text, params=bound, deadline=deadline, caps=caps)
    for line in render(result, fmt, deadline=deadline):  # type: ignore[arg-type]
        click.echo(line)
    if result.truncated and fmt != "table":
        click.echo(f"vigil sql: {result.truncated}", err=True)


@click.command("reader")
@click.option(
    "--password/--no-password",
    default=True,
    show_default=True,
    help="Give the role a new random password (--no-password for trust, peer or .pgpass setups).",
)
@pass_app
def reader_command(app: AppContext, password: bool) -> None:
    """Create (or refresh) the PostgreSQL role `vigil sql` reads as; print the readonly_url to set.

    The role is `<database>_reader`: it may log in and SELECT Vigil's tables and views (and those that
    later migrations add), nothing else. Run it as the role that owns the tables.
    """
    from vigil.sql.roles import create_reader, reader_url, unsafe_reasons
    from vigil.store.db import is_sqlite

    url = app.settings.database.url
    if is_sqlite(url):
        raise ConfigError("`vigil db reader` is for PostgreSQL; on SQLite `vigil sql` is read-only already")
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            role, secret = create_reader(conn, password=password)
        readonly = reader_url(url, role, secret)
        with psycopg.connect(
            make_url(readonly).set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        ) as conn:
            reasons = unsafe_reasons(conn)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot create the reader role: {' '.join(str(exc).split())}") from exc
    if reasons:
        raise ConfigError(f"the role {role} {'; '.join(reasons)}: revoke that, then run this again")
    database = make_url(url).database
    click.echo(f"role {role} may read {database} and nothing else; set in vigil.toml:", err=True)
    click.echo("[database]", err=True)
    click.echo(f'readonly_url = "{readonly}"')


@click.command("status")
@click.option("--failures", default=5, show_default=True, help="How many recent failures to list.")
@click.option(
    "--broker/--no-broker",
    default=True,
    show_default=True,
    help="Also ask the broker how many messages wait in the GPU queue.",
)
@pass_app
def status_command(app: AppContext, failures: int, broker: bool) -> None:
    """What Vigil is doing: media by status, queue depth, recent failures, alerts awaiting delivery, and
    files the watcher has seen but not registered yet (still being written or settling)."""
    from vigil.media.progress import broker_queue_depths, gather_status, status_lines
    from vigil.media.settling import read_report, settling_lines

    app.require_migrated(initialise=False)
    depths = None
    if broker and _broker_exists(app.settings.broker.url):
        from vigil.ops.celery_app import make_celery

        depths = broker_queue_depths(make_celery(app.settings))
    report = gather_status(app.factory, recent_failures=failures, broker_queues=depths)
    for line in status_lines(report, now=utcnow()):
        click.echo(safe(line))
    for line in settling_lines(read_report(app.settings.storage.data_dir)):
        click.echo(safe(line))


def _broker_exists(url: str) -> bool:
    """False for an embedded broker file not created yet (asking would create it)."""
    if not url.startswith("sqla+sqlite:///"):
        return True
    return Path(url.removeprefix("sqla+sqlite:///")).is_file()


def register(cli: click.Group) -> None:
    from vigil.cli.config import db_group

    db_group.add_command(reader_command)
    cli.add_command(sql_command)
    cli.add_command(status_command)

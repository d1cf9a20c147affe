"""`vigil sql` (one read-only query, as a table, CSV, JSON lines or Markdown) and `vigil status`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vigil.cli.context import AppContext, pass_app
from vigil.errors import ConfigError
from vigil.schema import utcnow
from vigil.sql import FORMATS, render, run_query


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
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop the query after this long. Default: database.query_timeout_s.",
)
@pass_app
def sql_command(
    app: AppContext,
    query: str | None,
    file: str | None,
    fmt: str | None,
    params: tuple[str, ...],
    timeout: float | None,
) -> None:
    """Run one read-only SQL query, e.g. `vigil sql "SELECT * FROM latest_detections_v LIMIT 5"`.

    Only reads run (SELECT, WITH, VALUES, EXPLAIN, and harmless PRAGMAs on SQLite); anything else is
    refused and the database is left unchanged. See docs/schema.md for the tables and views.
    """
    text = _read_query(query, file)
    bound = parse_params(params)
    fmt = fmt or ("table" if sys.stdout.isatty() else "csv")
    result = run_query(app.settings.database, text, params=bound, timeout_s=timeout)
    for line in render(result, fmt):  # type: ignore[arg-type]
        click.echo(line)


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
    from vigil.progress import broker_queue_depths, gather_status, status_lines
    from vigil.settling import read_report, settling_line

    app.require_migrated(initialise=False)
    depths = None
    if broker and _broker_exists(app.settings.broker.url):
        from vigil.celery_app import make_celery

        depths = broker_queue_depths(make_celery(app.settings))
    report = gather_status(app.factory, recent_failures=failures, broker_queues=depths)
    for line in status_lines(report, now=utcnow()):
        click.echo(line)
    settling = settling_line(read_report(app.settings.storage.data_dir))
    if settling:
        click.echo(settling)


def _broker_exists(url: str) -> bool:
    """False for an embedded broker file not created yet (asking would create it)."""
    if not url.startswith("sqla+sqlite:///"):
        return True
    return Path(url.removeprefix("sqla+sqlite:///")).is_file()


def register(cli: click.Group) -> None:
    cli.add_command(sql_command)
    cli.add_command(status_command)

"""`vigil health`: exit 0 when every check of a component passes, 1 otherwise (container health checks)."""

from __future__ import annotations

import sys

import click

from vigil.cli.context import AppContext, pass_app


@click.command("health")
@click.option(
    "--component",
    type=click.Choice(["watcher", "worker", "all"]),
    default="all",
    show_default=True,
    help="watcher: database and broker; worker and all: also the model.",
)
@pass_app
def health_command(app: AppContext, component: str) -> None:
    """Check the database (reachable, migrated), the broker and, for workers, the model. One line each."""
    from vigil.health import run_checks

    checks = run_checks(app.settings, component)  # type: ignore[arg-type]
    for check in checks:
        click.echo(check.line())
    sys.exit(0 if all(c.ok for c in checks) else 1)


def register(cli: click.Group) -> None:
    cli.add_command(health_command)

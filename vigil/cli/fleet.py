"""`vigil workers`: the running workers with their queue and model (`vigil.ops.live_workers` finds them)."""

from __future__ import annotations

import click

from vigil.cli.context import AppContext, pass_app


@click.command("workers")
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Seconds to wait for replies.")
@pass_app
def workers_command(app: AppContext, timeout: float) -> None:
    """List running workers: name, queue, model. Exits 1 when there is none."""
    from vigil.ops.health import url_for_display
    from vigil.ops.live_workers import is_embedded, live_workers

    settings = app.settings
    found = live_workers(settings, timeout_s=timeout)
    if not found:
        how = "is running" if is_embedded(settings) else f"answered within {timeout:g} s"
        click.echo(f"no worker {how} on {url_for_display(settings.broker.url)}", err=True)
        raise SystemExit(1)
    width = max(len(worker.name) for worker in found)
    for worker in found:
        click.echo(f"{worker.name:<{width}}  queue {worker.queue}  model {worker.model or '-'}")


def register(cli: click.Group) -> None:
    cli.add_command(workers_command)

"""`vigil workers`: the live Celery workers, asked over the broker, with their queue and model."""

from __future__ import annotations

import click

from vigil.cli.context import AppContext, pass_app
from vigil.errors import ConfigError


@click.command("workers")
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Seconds to wait for replies.")
@pass_app
def workers_command(app: AppContext, timeout: float) -> None:
    """List live workers: name, queue, model. Exits 1 when none answers."""
    from vigil.celery_app import INFO_COMMAND, is_embedded, make_celery

    settings = app.settings
    if is_embedded(settings):
        raise ConfigError(
            "the embedded broker has no remote control: `vigil workers` needs a Redis or RabbitMQ broker "
            "(`vigil health` checks the embedded one)"
        )
    celery = make_celery(settings)
    try:
        replies = celery.control.inspect(timeout=timeout)._request(INFO_COMMAND) or {}
    finally:
        celery.close()
    if not replies:
        click.echo(f"no worker answered within {timeout:g} s on {settings.broker.url}", err=True)
        raise SystemExit(1)
    width = max(len(name) for name in replies)
    for name, info in sorted(replies.items()):
        queue = info.get("queue", "?") if isinstance(info, dict) else "?"
        model = (info.get("model") if isinstance(info, dict) else None) or "-"
        click.echo(f"{name:<{width}}  queue {queue}  model {model}")


def register(cli: click.Group) -> None:
    cli.add_command(workers_command)

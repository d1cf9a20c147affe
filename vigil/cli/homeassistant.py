"""`vigil homeassistant`: the Home Assistant MQTT bridge as its own process (`vigil run` starts it when
`homeassistant.enabled`)."""

from __future__ import annotations

import signal
import threading

import click

from vigil.cli.context import AppContext, pass_app
from vigil.errors import ConfigError
from vigil.ops.logs import configure_logging


@click.command("homeassistant")
@pass_app
def homeassistant_command(app: AppContext) -> None:
    """Announce every source x target to Home Assistant (MQTT discovery) and publish their live state:
    ON with a matching detection, the last score, the last thumbnail, online/offline."""
    from vigil.alerts.homeassistant import HomeAssistantBridge

    settings = app.settings
    if not settings.homeassistant.enabled:
        raise ConfigError("homeassistant.enabled is false: set it (and homeassistant.channel) in vigil.toml")
    configure_logging(settings.log, process_name="homeassistant")
    app.require_migrated(initialise=False)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    HomeAssistantBridge(settings, app.factory).run(stop)


def register(cli: click.Group) -> None:
    cli.add_command(homeassistant_command)

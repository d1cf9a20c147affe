"""`vigil`: the command line. Each group of commands lives in its own module, registered here.

Commands that need torch (ask, describe, chat, selftest, worker) import it inside the command, so
`vigil --help`, `vigil sql` and the watcher stay light.
"""

from __future__ import annotations

import importlib

import click

from vigil.cli.context import AppContext, VigilGroup

COMMAND_MODULES = [
    "vigil.cli.config",
    "vigil.cli.targets",
    "vigil.cli.processes",
    "vigil.cli.selftest",
    "vigil.cli.media_qa",
    "vigil.cli.query",
    "vigil.cli.backfill",
    "vigil.cli.rules",
    "vigil.cli.alerts",
    "vigil.cli.health",
    "vigil.cli.fleet",
    "vigil.cli.review",
    "vigil.cli.homeassistant",
]


@click.group(cls=VigilGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    envvar="VIGIL_CONFIG",
    type=click.Path(dir_okay=False),
    help="Settings file (TOML). Default: $VIGIL_CONFIG, else ./vigil.toml when present.",
)
@click.version_option(package_name="vigil")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Vigil watches folders of video and images and asks a video-language model about your targets.

    Answers land as rows in a SQL database; alert rules over them notify people.
    """
    ctx.obj = AppContext(config)
    ctx.call_on_close(ctx.obj.close)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    cli(prog_name="vigil")

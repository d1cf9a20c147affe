"""`vigil`: the command line. Each group of commands lives in its own module, registered here.

Commands that need torch (ask, describe, chat, selftest, worker) import it inside the command, so
`vigil --help`, `vigil sql` and the watcher stay light.

The composition root: the only package that wires the core, the watcher and the workers together.

May import: vigil, watcher, workers
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

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


def summarise_without_examples(group: click.Group) -> None:
    """A command's one-line summary in `--help` leaves out its example: Click ends a summary at a period
    before a capital or a quote, so `Add a target, e.g. `vigil targets add ...`` was listed as "Add a
    target, e.g."."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            summarise_without_examples(command)
        if command.help and command.short_help is None:
            first = " ".join(command.help.partition("\n\n")[0].split())
            example = re.search(r",?\s+(e\.g\.|i\.e\.)\s", first)
            if example:
                command.short_help = re.split(r"(?<=\.)\s", first[: example.start()] + ".")[0]


def _use_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    takes_channels = any("--channel" in getattr(param, "opts", ()) for param in ctx.command.params)
    if takes_channels and not Path(value).is_file():  # `-c` was --channel on `rules add` once
        raise click.BadParameter(
            f"no settings file {value!r}: -c is --config on every command; "
            f"name a channel with --channel {value}"
        )
    ctx.find_object(AppContext).use_config(value)  # type: ignore[union-attr]


def accept_config_after_the_command(group: click.Group) -> None:
    """`vigil targets list -c FILE` as well as `vigil -c FILE targets list`: every command takes the
    settings file too, as `-c` or `--config` (no command gives `-c` another meaning; test_cli checks)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            accept_config_after_the_command(command)
            continue
        taken = {opt for param in command.params for opt in getattr(param, "opts", [])}
        names = [n for n in ("--config", "-c") if n not in taken]
        command.params.append(
            click.Option(
                names,
                type=click.Path(dir_okay=False),
                expose_value=False,
                is_eager=True,
                callback=_use_config,
                help="Settings file (TOML), as `vigil --config` takes it.",
            )
        )


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)
summarise_without_examples(cli)
accept_config_after_the_command(cli)


def main() -> None:
    cli(prog_name="vigil")

"""`vigil health`: exit 0 when every check of a component passes, 1 otherwise (container health checks).

The model check (workers only) is here, at the composition root: it imports the workers (transformers and
torch), so only the worker's checks pay for it; it sets HF_HUB_OFFLINE=1 so it never downloads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from vigil.cli.context import AppContext, pass_app
from vigil.errors import VigilError
from vigil.health import CORE_CHECKS, Check, first_line
from vigil.settings import Settings


def check_model(settings: Settings) -> Check:
    model = settings.model.id
    # A health check never downloads: a worker's model is on disk or in the cache, or it is unhealthy.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from workers.models import check_model_supported

        family = check_model_supported(model)
    except VigilError as exc:
        return Check("model", False, first_line(exc))
    except ImportError as exc:
        return Check("model", False, f"{model}: the worker's libraries are not installed ({exc})")
    return Check("model", True, f"{model}: configuration readable, family {family} supported")


CHECKS: dict[str, list[Callable[[Settings], Check]]] = {
    "watcher": CORE_CHECKS,
    "worker": [*CORE_CHECKS, check_model],
    "all": [*CORE_CHECKS, check_model],
}


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

    checks = run_checks(app.settings, CHECKS[component])
    for check in checks:
        click.echo(check.line())
    sys.exit(0 if all(c.ok for c in checks) else 1)


def register(cli: click.Group) -> None:
    cli.add_command(health_command)

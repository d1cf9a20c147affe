"""`vigil health`: exit 0 when every check of a component passes, 1 otherwise (container health checks).

A worker's health is that it runs and that its model can be had: the `workers` check asks which workers are
running (`vigil.ops.live_workers`), and the model checked is the one those workers were started with (what
`vigil run --model` gave them), else `--model`, else the configured one. The model check is here, at the
composition root: it imports the workers (transformers), and sets HF_HUB_OFFLINE=1 so it never downloads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from vigil.cli.context import AppContext, pass_app
from vigil.config.settings import Settings
from vigil.errors import VigilError
from vigil.ops.contracts import GPU_QUEUE
from vigil.ops.health import CORE_CHECKS, Check, first_line, url_for_display


def check_model(settings: Settings, *, whose: str = "configured") -> Check:
    model = settings.model.id
    # A health check never downloads: a worker's model is on disk or in the cache, or it is unhealthy.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from workers.model.loading import check_model_supported

        family = check_model_supported(model)
    except VigilError as exc:
        return Check("model", False, f"{first_line(exc)} ({whose})")
    except ImportError as exc:
        return Check("model", False, f"{model}: the worker's libraries are not installed ({exc})")
    return Check("model", True, f"{model}: configuration readable, family {family} supported ({whose})")


def worker_checks(
    settings: Settings, *, model: str | None, name: str | None, timeout_s: float
) -> list[Callable[[Settings], Check]]:
    """The `workers` check, then one model check per model in use (see the module's docstring)."""
    from vigil.ops.live_workers import LiveWorker, is_embedded, live_workers

    running: list[LiveWorker] = []

    def check_workers(settings: Settings) -> Check:
        running.extend(live_workers(settings, timeout_s=timeout_s))
        where = (
            ""
            if is_embedded(settings)
            else f" (asked {url_for_display(settings.broker.url)}, {timeout_s:g} s)"
        )
        if name is not None:
            wanted = _node_name(name)
            mine = [w for w in running if w.name == wanted]
            running[:] = mine
            if not mine:
                return Check("workers", False, f"{wanted} is not running{where}")
            return Check("workers", True, f"{wanted} running, queue {mine[0].queue}")
        running[:] = [w for w in running if w.queue == GPU_QUEUE]
        if not running:
            return Check("workers", False, f"no analysis ({GPU_QUEUE}) worker is running{where}")
        return Check("workers", True, f"{', '.join(w.name for w in running)} running, queue {GPU_QUEUE}")

    def check_models(settings: Settings) -> Check:
        if model is not None:
            return check_model(_with_model(settings, model), whose="--model")
        in_use: dict[str, list[str]] = {}
        for worker in running:
            if worker.model:
                in_use.setdefault(worker.model, []).append(worker.name)
        if not in_use:
            return check_model(settings)
        results = [
            check_model(_with_model(settings, m), whose=f"used by {', '.join(n)}") for m, n in in_use.items()
        ]
        failed = [r for r in results if not r.ok]
        return failed[0] if failed else Check("model", True, "; ".join(r.message for r in results))

    check_models.__name__ = "check_model"
    return [check_workers, check_models]


def _with_model(settings: Settings, model: str) -> Settings:
    return settings.model_copy(update={"model": settings.model.model_copy(update={"id": model})})


def _node_name(name: str) -> str:
    """`gpu@%h` as the worker itself expands it (Celery's node-name rules)."""
    from celery.utils.nodenames import default_nodename, host_format

    return str(host_format(default_nodename(name)))


@click.command("health")
@click.option(
    "--component",
    type=click.Choice(["watcher", "worker", "all"]),
    default="all",
    show_default=True,
    help="watcher: database and broker; worker and all: also a running analysis worker and its model.",
)
@click.option(
    "--model", "-m", help="Check this model (as given to `vigil run --model`), not the workers' own."
)
@click.option("--name", "worker_name", help="The worker that must be running, by its --name (e.g. gpu@%h).")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for workers.")
@pass_app
def health_command(
    app: AppContext, component: str, model: str | None, worker_name: str | None, timeout: float
) -> None:
    """Check the database (reachable, migrated), the broker and, for workers, that one runs and its model
    can be loaded. One line each."""
    from vigil.ops.health import run_checks

    checks: list[Callable[[Settings], Check]] = list(CORE_CHECKS)
    if component != "watcher":
        checks += worker_checks(app.settings, model=model, name=worker_name, timeout_s=timeout)
    results = run_checks(app.settings, checks)
    for check in results:
        click.echo(check.line())
    sys.exit(0 if all(c.ok for c in results) else 1)


def register(cli: click.Group) -> None:
    cli.add_command(health_command)

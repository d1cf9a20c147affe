"""`vigil run`, `vigil watcher`, `vigil worker`: the long-running processes."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import click

from vigil.cli.context import AppContext, pass_app
from vigil.config.settings import SourceSettings
from vigil.errors import ConfigError
from vigil.ops.logs import configure_logging

log = logging.getLogger(__name__)

model_option = click.option(
    "--model", "-m", help="Model to load: a Hugging Face hub id or a local directory (overrides settings)."
)


def source_name_for(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-.") or "folder"
    name, n = base[:60], 2
    while name in taken:
        name, n = f"{base[:57]}-{n}", n + 1
    return name


def add_watch_dirs(app: AppContext, dirs: tuple[Path, ...]) -> list[SourceSettings]:
    """Sources from settings plus one per --watch folder (named after the folder)."""
    sources = list(app.settings.watch.sources)
    known = {s.path.resolve() for s in sources}
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"--watch {folder}: not a directory")
        if folder.resolve() in known:
            continue
        name = source_name_for(folder, {s.name for s in sources})
        sources.append(SourceSettings(name=name, path=folder.resolve()))
        known.add(folder.resolve())
    app.override("watch", sources=sources)
    return sources


@click.command("run")
@click.option(
    "--watch", "-w", "watch_dirs", multiple=True, type=click.Path(path_type=Path), help="Folder to watch."
)
@model_option
@click.option("--no-cpu-worker", is_flag=True, help="Do not start the worker for alert delivery.")
@pass_app
def run_command(
    app: AppContext, watch_dirs: tuple[Path, ...], model: str | None, no_cpu_worker: bool
) -> None:
    """Start everything on this machine: watcher, reconciler, analysis worker, alert-delivery worker.

    The default is embedded (SQLite file + serverless broker); with a Redis broker and PostgreSQL set in
    the settings the same command runs against them.
    """
    from vigil.ops.health import url_for_display
    from vigil.ops.instance import InstanceLock
    from vigil.ops.ports import check_free, metrics_listeners, web_listener
    from vigil.ops.supervisor import ChildSpec, Supervisor
    from vigil.store.migrate import upgrade

    app.override("model", id=model)
    sources = add_watch_dirs(app, watch_dirs)
    if not sources:
        raise ConfigError("nothing to watch: pass --watch DIR or configure [[watch.sources]]")
    settings = app.settings
    configure_logging(settings.log, process_name="vigil-run")
    # Refused in one line before anything starts: a second run on this data directory, a busy port.
    lock = InstanceLock(settings.storage.data_dir.expanduser().absolute()).acquire()
    from workers.model.loading import check_model_supported

    check_model_supported(settings.model.id)  # a missing or unsupported model fails here, in one line
    upgrade(settings.database.url)
    app.open_database()
    queues = ["gpu"] if no_cpu_worker else ["gpu", "cpu"]
    check_free(
        ([web_listener(settings)] if settings.web.enabled else [])
        + metrics_listeners(settings, queues=queues)
    )
    env = {"VIGIL_WATCH__SOURCES": json.dumps([s.model_dump(mode="json") for s in sources])}
    if model:
        env["VIGIL_MODEL__ID"] = model
    if app.config:
        env["VIGIL_CONFIG"] = str(Path(app.config).resolve())
    specs = [
        ChildSpec("watcher", [sys.executable, "-m", "watcher"]),
        ChildSpec("worker-gpu", [sys.executable, "-m", "workers", "--queue", "gpu", "--name", "gpu@%h"]),
    ]
    if not no_cpu_worker:
        specs.append(
            ChildSpec("worker-cpu", [sys.executable, "-m", "workers", "--queue", "cpu", "--name", "cpu@%h"])
        )
    if settings.web.enabled:
        specs.append(ChildSpec("web", [sys.executable, "-m", "vigil.web"], optional=True))
    if settings.homeassistant.enabled:
        specs.append(
            ChildSpec("homeassistant", [sys.executable, "-m", "vigil", "homeassistant"], optional=True)
        )
    log.info(
        "vigil running: %s; model %s; database %s; broker %s; review page %s",
        ", ".join(f"{s.name}={s.path}" for s in sources),
        settings.model.id,
        url_for_display(settings.database.url),
        url_for_display(settings.broker.url),
        f"http://{settings.web.host}:{settings.web.port}" if settings.web.enabled else "off",
    )
    supervisor = Supervisor(specs, env=env, pass_fds=[lock.fd] if lock.fd is not None else [])
    supervisor.install_signal_handlers()
    try:
        code = supervisor.run()
    finally:
        lock.release()
    if supervisor.failure:
        raise ConfigError(supervisor.failure)
    sys.exit(code)


@click.command("watcher")
@click.option("--watch", "-w", "watch_dirs", multiple=True, type=click.Path(path_type=Path))
@pass_app
def watcher_command(app: AppContext, watch_dirs: tuple[Path, ...]) -> None:
    """Run the watcher alone (no torch): observers, registration, reconciler."""
    from watcher.__main__ import run_watcher

    add_watch_dirs(app, watch_dirs)
    app.require_migrated(initialise=False)
    sys.exit(run_watcher(app.settings))


@click.command("worker")
@click.option("--queue", "-Q", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True)
@click.option("--concurrency", type=int)
@click.option("--name", "-n", help="Celery node name, e.g. gpu0@%h.")
@model_option
@pass_app
def worker_command(
    app: AppContext, queue: str, concurrency: int | None, name: str | None, model: str | None
) -> None:
    """Run a Celery worker: `gpu` analyses media, `cpu` delivers alerts."""
    from workers.__main__ import run_worker

    app.override("model", id=model)
    app.require_migrated(initialise=False)
    run_worker(app.settings, queue=queue, concurrency=concurrency, name=name)


def register(cli: click.Group) -> None:
    cli.add_command(run_command)
    cli.add_command(watcher_command)
    cli.add_command(worker_command)

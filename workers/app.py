"""The worker's Celery app: the shared configuration plus this side's tasks."""

from __future__ import annotations

import logging

from celery import Celery

from vigil.config.settings import Settings
from vigil.declared.apply import apply_settings
from vigil.ops.celery_app import INFO_COMMAND, make_celery
from workers.analysis.runtime import WorkerRuntime
from workers.delivery_tasks import register_delivery_tasks
from workers.tasks import register_tasks

log = logging.getLogger(__name__)


def build_worker_app(settings: Settings, *, queue: str) -> Celery:
    app = make_celery(settings)
    runtime = WorkerRuntime(settings, app=app)
    if queue == "gpu":
        from workers.model.loading import check_model_supported

        check_model_supported(settings.model.id)
    # Like every process, a worker applies its settings at start: the rules of its file fire.
    disagreement = apply_settings(runtime.factory, settings).disagreement_line()
    if disagreement:
        log.warning("%s", disagreement)
    register_info_command(settings, queue=queue)
    register_tasks(app, runtime)
    register_delivery_tasks(app, runtime)
    return app


def register_info_command(settings: Settings, *, queue: str) -> None:
    """`vigil_info`, a remote-control inspect command: what `vigil workers` shows about this worker."""
    from celery.worker.control import inspect_command

    info = {"queue": queue, "model": settings.model.id if queue == "gpu" else None}

    @inspect_command(name=INFO_COMMAND)  # type: ignore[untyped-decorator]
    def vigil_info(_state: object) -> dict[str, str | None]:
        return info

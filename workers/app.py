"""The worker's Celery app: the shared configuration plus this side's tasks."""

from __future__ import annotations

import logging

from celery import Celery

from vigil.celery_app import make_celery
from vigil.declared import apply_settings
from vigil.settings import Settings
from workers.delivery_tasks import register_delivery_tasks
from workers.runtime import WorkerRuntime
from workers.tasks import register_tasks

log = logging.getLogger(__name__)


def build_worker_app(settings: Settings, *, queue: str) -> Celery:
    app = make_celery(settings)
    runtime = WorkerRuntime(settings, app=app)
    if queue == "gpu":
        from workers.models import check_model_supported

        check_model_supported(settings.model.id)
    # Like every process, a worker applies its settings at start: the rules of its file fire.
    disagreement = apply_settings(runtime.factory, settings).disagreement_line()
    if disagreement:
        log.warning("%s", disagreement)
    register_tasks(app, runtime)
    register_delivery_tasks(app, runtime)
    return app

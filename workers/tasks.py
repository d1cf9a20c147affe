"""Celery tasks: thin. Unpack the payload, call a plain function, turn its outcome into a retry."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from vigil.errors import TransientError
from vigil.ops.contracts import ANALYZE, AnalyzePayload
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime

log = logging.getLogger(__name__)

# A task that could not reach the database to claim its row (or give it back) tries again this much later.
DATABASE_RETRY_S = 10.0


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=ANALYZE, bind=True, max_retries=None)
    def analyze(self: Task, payload: dict[str, Any]) -> str:
        request = AnalyzePayload.model_validate(payload)
        try:
            outcome = analyze_media(runtime, request)
        except TransientError as exc:  # the database is out of reach: one line, and again later
            log.warning("media %d: %s; trying again in %.0f s", request.media_id, exc, DATABASE_RETRY_S)
            raise self.retry(countdown=DATABASE_RETRY_S) from None
        if outcome.status == "retry":
            retry_payload = request.model_copy(
                update={"frames_per_window": outcome.frames_per_window or request.frames_per_window}
            )
            raise self.retry(
                kwargs={"payload": retry_payload.model_dump(mode="json")}, countdown=outcome.retry_in_s
            )
        return outcome.status

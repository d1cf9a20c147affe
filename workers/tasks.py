"""Celery tasks: thin. Unpack the payload, call a plain function, turn its outcome into a retry."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from vigil.ops.contracts import ANALYZE, AnalyzePayload
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=ANALYZE, bind=True, max_retries=None)
    def analyze(self: Task, payload: dict[str, Any]) -> str:
        request = AnalyzePayload.model_validate(payload)
        outcome = analyze_media(runtime, request)
        if outcome.status == "retry":
            retry_payload = request.model_copy(
                update={"frames_per_window": outcome.frames_per_window or request.frames_per_window}
            )
            raise self.retry(
                kwargs={"payload": retry_payload.model_dump(mode="json")}, countdown=outcome.retry_in_s
            )
        return outcome.status

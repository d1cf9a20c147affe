"""The delivery task: thin. Unpack the payload, deliver one outbox row, turn a retry into a countdown.

The row's `next_attempt_at` is the truth; the countdown only saves the reconciler a round. The task runs on
the CPU queue (threads pool), so a slow receiver holds one thread for at most its channel's timeout.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from vigil.alerts.delivery import deliver
from vigil.ops.contracts import DELIVER, DeliverPayload
from workers.analysis.runtime import WorkerRuntime


def register_delivery_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=DELIVER, bind=True, max_retries=None)
    def deliver_alert(self: Task, payload: dict[str, Any]) -> str:
        request = DeliverPayload.model_validate(payload)
        outcome = deliver(runtime.factory, request.delivery_id, settings=runtime.settings)
        if outcome.status == "retry":
            raise self.retry(countdown=outcome.retry_in_s)
        return outcome.status

"""The wire contract between processes: task names, queues and payloads.

Producers (watcher, reconciler, CLI) send tasks *by name* with these payloads, so they never import
the workers. Payloads carry ids only; a task re-reads its rows from the database.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ANALYZE = "vigil.analyze"
DELIVER = "vigil.deliver"

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"

TASK_QUEUES = {ANALYZE: GPU_QUEUE, DELIVER: CPU_QUEUE}


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnalyzePayload(Payload):
    media_id: int = Field(gt=0)
    # Set on a retry after the device ran out of memory: sample fewer frames per window.
    frames_per_window: int | None = Field(default=None, ge=1)


class DeliverPayload(Payload):
    delivery_id: int = Field(gt=0)

"""The contracts between the core and its sides: task names, queues and payloads on the wire; the
recogniser the workers implement and the core calls.

Producers (watcher, reconciler, CLI) send tasks *by name* with these payloads, so they never import
the workers. Payloads carry ids only; a task re-reads its rows from the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from vigil.formats.probe import MediaInfo

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


# --- recognition: what a worker's recogniser is given and returns ----------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    id: int
    name: str
    description: str
    threshold: float
    # Stored reference images (file names under <data_dir>/references, "<sha256><suffix>"), in order.
    images: tuple[str, ...] = ()


@dataclass
class WindowResult:
    target_id: int
    window_index: int
    start_s: float
    end_s: float
    p_yes: float
    matched: bool
    evidence: str | None = None
    thumbnail_path: str | None = None
    # Copied from the last scored window: the scene had not changed (the static-scene gate); no model run.
    inherited: bool = False


@dataclass
class Recognition:
    results: list[WindowResult]
    windows: int
    frames_decoded: int
    decode_ms: float
    model_ms: float
    params: dict[str, object] = field(default_factory=dict)
    caption: str | None = None


class Recognizer(Protocol):
    model_id: str
    template_version: int  # of the recogniser's question templates, stored on each analysis

    def recognize(
        self,
        path: Path,
        info: MediaInfo,
        targets: list[TargetSpec],
        *,
        media_id: int,
        frames_per_window: int | None = None,
        static_gate: float = 0.0,
    ) -> Recognition: ...

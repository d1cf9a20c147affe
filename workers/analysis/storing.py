"""Storing one analysis: its row, its detections, `done` and the alerts they fire, in one commit.

Exactly-once results come from the claim token (`vigil.media.lifecycle`, which owns every status change):
only the worker holding the current claim may write results, and the results, the `done` status and the
alerts they fire are one transaction.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from vigil.media.lifecycle import Claim, finish_done
from vigil.ops.contracts import Recognition
from vigil.store.db import write_session
from vigil.store.schema import Analysis, Detection
from workers.analysis.version import FileRead

log = logging.getLogger(__name__)

# analyses.worker: the Celery node name (`--name gpu0@%h`) once `set_worker_name` ran, else host:pid.
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


def set_worker_name(node: str) -> None:
    """Called by the worker's entry point before the pool forks, so every child stores the node name."""
    global WORKER_NAME
    WORKER_NAME = node


# Called inside the results transaction; returns ids of delivery rows to send after commit.
AfterResults = Callable[[Session, Analysis], list[int]]


def store_results(
    factory: sessionmaker[Session],
    claim: Claim,
    recognition: Recognition,
    *,
    model_id: str,
    template_version: int,
    total_ms: float,
    read: FileRead | None = None,
    after_results: AfterResults | None = None,
) -> tuple[int, list[int]]:
    """Write the analysis, its detections and `done` in one transaction. Returns (analysis id, deliveries)."""
    with write_session(factory) as session:
        finish_done(session, claim, caption=recognition.caption)
        analysis = Analysis(
            media_id=claim.media_id,
            model_id=model_id,
            template_version=template_version,
            params=dict(recognition.params),
            target_ids=[t.id for t in claim.targets],
            windows=recognition.windows,
            frames_decoded=recognition.frames_decoded,
            decode_ms=recognition.decode_ms,
            model_ms=recognition.model_ms,
            total_ms=total_ms,
            worker=WORKER_NAME,
            size_bytes=read.size_bytes if read else None,
            file_mtime=read.mtime if read else None,
        )
        session.add(analysis)
        session.flush()
        session.add_all(
            Detection(analysis_id=analysis.id, media_id=claim.media_id, **vars(result))
            for result in recognition.results
        )
        session.flush()
        deliveries = after_results(session, analysis) if after_results else []
        return analysis.id, deliveries

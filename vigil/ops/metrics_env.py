"""Before prometheus_client is imported: point a worker at its multiprocess folder (stdlib only).

prometheus_client chooses between in-memory and memory-mapped values when it is first imported, so a Celery
prefork worker must set `PROMETHEUS_MULTIPROC_DIR` before it imports its tasks (which import
vigil.ops.metrics).
This module imports nothing that could import prometheus_client.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_worker_metrics(settings: Any, *, queue: str) -> Path | None:
    """With metrics on, the worker's folder under `metrics.multiproc_dir` (default `<data_dir>/metrics`)."""
    if not settings.metrics.enabled:
        return None
    if "prometheus_client" in sys.modules and os.environ.get(ENV) is None:
        log.error("metrics off: prometheus_client was imported before its multiprocess folder was set")
        return None
    root = settings.metrics.multiproc_dir or settings.storage.data_dir / "metrics"
    return use_multiprocess_dir(Path(root), queue=queue)


def use_multiprocess_dir(root: Path, *, queue: str) -> Path:
    """Create this worker's folder `root/<queue>-<pid>`, export it as PROMETHEUS_MULTIPROC_DIR, return it.

    Folders that earlier workers of the same queue left behind (their process is gone) are removed: their
    counts belonged to dead processes and Prometheus already saw them. Workers on one host never share one.
    The folder is removed again when this process exits (and folders this call created, when empty).
    """
    if "prometheus_client" in sys.modules and os.environ.get(ENV) is None:
        raise RuntimeError("prometheus_client was imported before its multiprocess folder was set")
    made = [d for d in (root.parent, root) if not d.exists()]
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{queue}-*"):
        if stale.is_dir() and not _alive(stale.name.rpartition("-")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    folder = root / f"{queue}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.environ[ENV] = str(folder)
    atexit.register(_remove, folder, made, owner=os.getpid())
    log.debug("prometheus multiprocess folder %s", folder)
    return folder


def _remove(folder: Path, made: list[Path], *, owner: int) -> None:
    """At the worker's exit: its counts die with its endpoint; folders it created go if left empty."""
    if os.getpid() != owner:  # a forked pool child that ran atexit: the folder is its parent's
        return
    shutil.rmtree(folder, ignore_errors=True)
    for folder_made in reversed(made):
        with contextlib.suppress(OSError):
            folder_made.rmdir()


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

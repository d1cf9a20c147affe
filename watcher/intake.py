"""From a complete file to a committed row and a sent message: probe, register (one transaction), send.

The order is the contract: the row is committed before the message is sent, so a worker always finds its
row; a send that fails leaves the row `queued` with `sends=0` for the reconciler.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from vigil.errors import MediaError, UnreadableMedia
from vigil.formats.probe import MediaInfo, probe
from vigil.media.registry import Registration, register_file
from vigil.ops import metrics
from vigil.ops.enqueue import Enqueuer
from vigil.store.schema import MediaStatus
from watcher.paths import SourceRules

log = logging.getLogger(__name__)


class Admission(enum.StrEnum):
    QUEUED = "queued"
    FAILED = "failed"
    SKIPPED = "skipped"
    KNOWN = "known"  # this version was registered before: nothing to do


@dataclass(frozen=True)
class WatchedSource:
    """A configured source with its database id."""

    id: int
    rules: SourceRules
    targets: tuple[str, ...] | None = None
    # A stream source: Vigil's recorder renames only whole segments into it, so no settle time is waited.
    recorded: bool = False


def check_ready(path: Path) -> MediaInfo:
    """The completeness probe: the file can be opened by this process and its container opens.

    Opening with O_NONBLOCK is safe: callers only pass regular files, never FIFOs.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError as exc:
        raise UnreadableMedia(path, "permission denied: the watcher cannot read this file") from exc
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnreadableMedia(path, f"cannot open: {exc.strerror or exc}") from exc
    os.close(fd)
    return probe(path)


def admit(
    factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    source: WatchedSource,
    path: Path,
    *,
    info: MediaInfo | None,
    problem: MediaError | None = None,
    duplicate_content: str = "skip",
) -> tuple[Admission, Registration]:
    """Register `path` (committed), then send it for analysis when it is new and queued."""
    registration = register_file(
        factory,
        source_id=source.id,
        root=source.rules.root,
        path=path,
        info=info,
        problem=problem,
        duplicate_content=duplicate_content,
    )
    if not registration.created:
        return Admission.KNOWN, registration
    metrics.record_registration(source.rules.name, str(registration.status))
    if registration.status == MediaStatus.QUEUED:
        enqueuer.analyze(registration.media_id)
        return Admission.QUEUED, registration
    if registration.status == MediaStatus.SKIPPED:
        return Admission.SKIPPED, registration
    return Admission.FAILED, registration

"""Deleting one media file or one media's thumbnails for retention, each checked again at the moment of
deletion (the row locked and still finished, the file unchanged and inside its folder), and the report of
a pass. The policy that chooses what to delete is `vigil.media.retention`; this module only carries it out.
"""

from __future__ import annotations

import logging
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from vigil.media.registry import file_mtime
from vigil.ops import metrics
from vigil.store.db import write_session
from vigil.store.schema import Detection, Media, MediaStatus

log = logging.getLogger(__name__)

# Finished rows: a queued or running row is waiting for or under analysis; a superseded one is rewritten.
PRUNABLE = (MediaStatus.DONE, MediaStatus.FAILED, MediaStatus.SKIPPED)


class Refused(Exception):
    """This file may not be deleted (the message says why); the row stays as it is."""


class Gone(Exception):
    """The file is no longer there (deleted by someone else): the row is marked pruned, nothing deleted."""


@dataclass(frozen=True)
class Scope:
    """One source's policy: its folder (resolved) and its effective settings."""

    source_id: int
    name: str
    root: Path
    keep_days: float | None
    keep_alerted_days: float | None
    min_free: str | None


@dataclass(frozen=True)
class Candidate:
    media_id: int
    path: Path
    size_bytes: int
    mtime: datetime
    evidence: bool


@dataclass(frozen=True)
class Deletion:
    media_id: int
    source: str
    path: str
    size_bytes: int
    what: str  # file | thumbnails | gone (the file had already disappeared: only the row is marked)
    cause: str  # age | pressure
    reason: str


@dataclass
class Pressure:
    """A volume still below `min_free` after the pass: only evidence (or nothing prunable) is left on it."""

    volume: str
    free_bytes: int
    needed_bytes: int
    min_free: str


@dataclass
class PruneReport:
    dry_run: bool
    deletions: list[Deletion] = field(default_factory=list)
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (media id, path, why)
    pressure: list[Pressure] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(d.size_bytes for d in self.deletions)


# -- deleting ------------------------------------------------------------------------------------------------


def delete_file(
    factory: sessionmaker[Session],
    scope: Scope,
    cand: Candidate,
    *,
    cause: str,
    reason: str,
    now: datetime,
    report: PruneReport,
) -> int:
    """Delete one row's file (checked again under the row's lock) and mark the row; the bytes freed."""
    try:
        with write_session(factory) as session:
            row = session.get(Media, cand.media_id, with_for_update=True)
            if row is None or row.pruned_at is not None or row.status not in PRUNABLE:
                raise Refused("no longer finished (queued again, or pruned by another process)")
            try:
                real = checked_file(Path(row.path), scope.root, size=row.size_bytes, mtime=row.mtime)
            except Gone:
                what, size, reason = "gone", 0, f"file already gone ({reason})"
            else:
                what, size = "file", row.size_bytes
                if not report.dry_run:
                    real.unlink()
            if report.dry_run:
                session.rollback()
            else:
                row.pruned_at, row.prune_reason = now, reason
    except (Refused, OSError) as exc:
        why = str(exc) if isinstance(exc, Refused) else f"cannot delete: {exc.strerror or exc}"
        report.refused.append((cand.media_id, str(cand.path), why))
        log.warning("retention: media %d %s kept: %s", cand.media_id, cand.path, why)
        return 0
    report.deletions.append(Deletion(cand.media_id, scope.name, str(cand.path), size, what, cause, reason))
    if not report.dry_run:
        metrics.record_pruned(scope.name, what, cause, size)
        log.info("pruned media %d %s (%s, %d bytes): %s", cand.media_id, cand.path, what, size, reason)
    return size


def checked_file(path: Path, root: Path, *, size: int, mtime: datetime) -> Path:
    """The real file behind `path` when it may be deleted: inside `root` (symlinks resolved), a regular
    file, unchanged since its row recorded it. Raises Gone when it is missing, Refused otherwise."""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError as exc:
        raise Gone(str(path)) from exc
    except (OSError, RuntimeError) as exc:
        raise Refused(f"cannot resolve: {exc}") from exc
    if not real.is_relative_to(root):
        raise Refused(f"resolves to {real}, outside the source folder {root}")
    st = real.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise Refused("not a regular file")
    if st.st_size != size or file_mtime(st) != mtime:
        raise Refused("changed since it was registered (being written: a new version will be registered)")
    return real


def delete_thumbnails(
    factory: sessionmaker[Session],
    scope: Scope,
    media_id: int,
    thumbnails: Path,
    *,
    reason: str,
    report: PruneReport,
) -> None:
    """Delete a media's thumbnail folder (inside the thumbnails folder, symlinks resolved); clear paths."""
    base = thumbnails.expanduser().resolve()
    folder = base / str(media_id)
    try:
        real = folder.resolve()
        if real != folder or not real.is_relative_to(base):
            raise Refused(f"{folder} resolves to {real}, outside {base}")
        size = sum(p.stat().st_size for p in real.iterdir() if p.is_file()) if real.is_dir() else 0
        if not report.dry_run:
            with write_session(factory) as session:
                session.execute(
                    update(Detection).where(Detection.media_id == media_id).values(thumbnail_path=None)
                )
                if real.is_dir():
                    shutil.rmtree(real)
    except (Refused, OSError) as exc:
        report.refused.append((media_id, str(folder), str(exc)))
        log.warning("retention: thumbnails of media %d kept: %s", media_id, exc)
        return
    report.deletions.append(Deletion(media_id, scope.name, str(folder), size, "thumbnails", "age", reason))
    if not report.dry_run:
        metrics.record_pruned(scope.name, "thumbnails", "age", size)
        log.info("pruned thumbnails of media %d %s (%d bytes): %s", media_id, folder, size, reason)

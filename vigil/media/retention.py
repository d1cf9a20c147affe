"""Retention, the one owner of deleting media files and thumbnails (`vigil prune`, the watcher's schedule).

The policy, per source (`watch.sources[].keep_days`, … else `[retention]`):

* **age**: a file goes once its recorded time (`media.mtime`) is older than `keep_days`; a file that fired an
  alert or got a verdict is evidence and goes after `keep_alerted_days` instead. Its thumbnails go with it
  (for evidence too: at `keep_alerted_days`); `detections.thumbnail_path` is then cleared.
* **disk pressure**: a volume holding a source's folder or the data directory with less free space than
  `min_free` loses its oldest *unalerted* files first, until it has enough; evidence is never deleted for
  space. A volume still short is reported loudly (an error line, `vigil_disk_pressure_unrelieved_total`,
  and the disk_pressure alert rules, fired by the watcher: `vigil.alerts.events`).

Rows outlive files: a pruned row keeps its detections and alerts and gets `pruned_at` and `prune_reason`.

What is never touched: a row that is not finished (queued, running: being analysed or waiting for it; a
superseded latest version: the file is being rewritten), a file whose size or mtime differ from its row
(written since it was registered), files nobody registered (a recorder's or uploader's temporary file),
anything that resolves (symlinks followed) outside the row's source folder — or, for thumbnails, outside
the thumbnails folder of the data directory. Each row is re-read and locked in the transaction that deletes
its file, so a re-analysis that queued it a moment earlier wins. Every deletion is logged with its reason.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.retention import min_free_bytes
from vigil.config.settings import Settings
from vigil.media.deletion import (
    PRUNABLE,
    Candidate,
    Deletion,
    Pressure,
    PruneReport,
    Scope,
    delete_file,
    delete_thumbnails,
)
from vigil.ops import metrics
from vigil.store.schema import Alert, Detection, Feedback, Media, Source, utcnow

__all__ = ["Deletion", "Pressure", "PruneReport", "policy_enabled", "prune"]

log = logging.getLogger(__name__)

Usage = Callable[[Path], Any]  # shutil.disk_usage: .total and .free (what an unprivileged writer may use)


def policy_enabled(settings: Settings) -> bool:
    """True when some source (or the default) keeps files for a limited time or watches free space."""
    if settings.retention.min_free is not None:
        return True
    return any(
        value is not None for source in settings.watch.sources for value in settings.retention_of(source)
    )


def prune(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    usage: Usage = shutil.disk_usage,
) -> PruneReport:
    """Apply the retention policy once (or, with `dry_run`, say what it would delete)."""
    now = now or utcnow()
    report = PruneReport(dry_run)
    scopes = _scopes(factory, settings)
    thumbnails = settings.storage.thumbnails_dir
    for scope in scopes:
        _by_age(factory, scope, thumbnails, now=now, report=report)
    _for_space(factory, settings, scopes, usage=usage, now=now, report=report)
    if report.deletions or report.pressure:
        verb = "would free" if dry_run else "freed"
        log.info(
            "retention: %s %d bytes (%d deletion(s)), %d volume(s) still below min_free",
            verb,
            report.freed_bytes,
            len(report.deletions),
            len(report.pressure),
        )
    return report


# -- the policy ------------------------------------------------------------------------------------------


def _scopes(factory: sessionmaker[Session], settings: Settings) -> list[Scope]:
    with factory() as session:
        ids = {name: id_ for name, id_ in session.execute(select(Source.name, Source.id))}
    scopes = []
    for conf in settings.watch.sources:
        if conf.name not in ids:
            continue  # never synced: no rows, nothing to prune
        keep, alerted, min_free = settings.retention_of(conf)
        root = conf.path.expanduser().resolve()
        scopes.append(Scope(ids[conf.name], conf.name, root, keep, alerted, min_free))
    return scopes


def _by_age(
    factory: sessionmaker[Session], scope: Scope, thumbnails: Path, *, now: datetime, report: PruneReport
) -> None:
    days = [d for d in (scope.keep_days, scope.keep_alerted_days) if d is not None]
    if not days:
        return
    cutoff = now - timedelta(days=min(days))
    for cand in _candidates(factory, scope.source_id, before=cutoff):
        keep = scope.keep_alerted_days if cand.evidence else scope.keep_days
        if keep is None or cand.mtime >= now - timedelta(days=keep):
            continue
        which = "keep_alerted_days" if cand.evidence else "keep_days"
        reason = f"age: recorded {cand.mtime:%Y-%m-%d %H:%M:%S}Z, past {which}={keep:g}"
        delete_file(factory, scope, cand, cause="age", reason=reason, now=now, report=report)
    pruned_now = {d.media_id for d in report.deletions} if report.dry_run else set()
    for media_id, mtime, evidence in _thumbnailed(
        factory, scope.source_id, before=cutoff, pruned_now=pruned_now
    ):
        keep = scope.keep_alerted_days if evidence else scope.keep_days
        if keep is not None and mtime < now - timedelta(days=keep):
            which = "keep_alerted_days" if evidence else "keep_days"
            reason = f"age: recorded {mtime:%Y-%m-%d %H:%M:%S}Z, past {which}={keep:g}"
            delete_thumbnails(factory, scope, media_id, thumbnails, reason=reason, report=report)


def _for_space(
    factory: sessionmaker[Session],
    settings: Settings,
    scopes: list[Scope],
    *,
    usage: Usage,
    now: datetime,
    report: PruneReport,
) -> None:
    for volume, (label, wanted, members) in _volumes(settings, scopes).items():
        total, free = _space(usage, label)
        needed, spec = max((min_free_bytes(w, total), w) for w in wanted)
        metrics.DISK_FREE.labels(volume=str(label)).set(free)
        if free >= needed:
            continue
        log.warning("disk pressure: %s has %d bytes free, min_free %s is %d bytes", label, free, spec, needed)
        reason = f"disk pressure: {label} had {free} bytes free, below min_free {spec}"
        for scope, cand in _oldest_unalerted(factory, members):
            if _device_of(cand.path) != volume:
                continue
            freed = delete_file(factory, scope, cand, cause="pressure", reason=reason, now=now, report=report)
            free = free + freed if report.dry_run else _space(usage, label)[1]
            if free >= needed:
                break
        if free < needed:
            _report_pressure(Pressure(str(label), free, needed, spec), report)


def _report_pressure(pressure: Pressure, report: PruneReport) -> None:
    report.pressure.append(pressure)
    if report.dry_run:
        return
    metrics.DISK_PRESSURE_UNRELIEVED.labels(volume=pressure.volume).inc()
    log.error(
        "disk pressure NOT relieved: %s has %d bytes free, below min_free %s (%d bytes); nothing there may "
        "be pruned: alerted files are kept as evidence, queued or running ones are awaited. Free space by "
        "hand, add space, or lower keep_alerted_days",
        pressure.volume,
        pressure.free_bytes,
        pressure.min_free,
        pressure.needed_bytes,
    )


def _volumes(settings: Settings, scopes: list[Scope]) -> dict[int, tuple[Path, list[str], list[Scope]]]:
    """Each watched volume (by device): a path on it, the min_free values asked of it, its sources."""
    volumes: dict[int, tuple[Path, list[str], list[Scope]]] = {}
    places: list[tuple[Path, str | None, Scope | None]] = [
        (settings.storage.data_dir.expanduser().resolve(), settings.retention.min_free, None)
    ]
    places += [(scope.root, scope.min_free, scope) for scope in scopes]
    for path, min_free, scope in places:
        device = _device_of(path)
        if device is None:
            continue
        label, wanted, members = volumes.setdefault(device, (_mount_point(path, device), [], []))
        if min_free is not None:
            wanted.append(min_free)
        if scope is not None:
            members.append(scope)
    return {device: v for device, v in volumes.items() if v[1]}


def _mount_point(path: Path, device: int) -> Path:
    """The top folder of `path`'s volume (the name reports and metrics give it)."""
    while path.parent != path and _device_of(path.parent) == device:
        path = path.parent
    return path


def _device_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def _space(usage: Usage, path: Path) -> tuple[int, int]:
    got = usage(path)
    return int(got.total), int(got.free)


# -- the rows ------------------------------------------------------------------------------------------------


def _evidence() -> object:
    alerted = exists().where(Alert.media_id == Media.id)
    judged = exists(
        select(Detection.id)
        .join(Feedback, Feedback.detection_id == Detection.id)
        .where(Detection.media_id == Media.id)
    )
    return alerted | judged


def _candidates(
    factory: sessionmaker[Session], source_id: int, *, before: datetime | None, evidence: bool | None = None
) -> list[Candidate]:
    """Finished, unpruned latest versions of a source's files recorded before `before`, oldest first."""
    latest = (
        select(Media.rel_path, func.max(Media.version).label("version"))
        .where(Media.source_id == source_id)
        .group_by(Media.rel_path)
        .subquery()
    )
    is_evidence = _evidence()
    query = (
        select(Media.id, Media.path, Media.size_bytes, Media.mtime, is_evidence)  # type: ignore[call-overload]
        .join(latest, and_(latest.c.rel_path == Media.rel_path, latest.c.version == Media.version))
        .where(Media.source_id == source_id, Media.pruned_at.is_(None), Media.status.in_(PRUNABLE))
        .order_by(Media.mtime, Media.id)
    )
    if before is not None:
        query = query.where(Media.mtime < before)
    if evidence is not None:
        query = query.where(is_evidence if evidence else ~is_evidence)  # type: ignore[operator]
    with factory() as session:
        rows = session.execute(query).all()
    return [Candidate(i, Path(p), s, m, bool(e)) for i, p, s, m, e in rows]


def _oldest_unalerted(
    factory: sessionmaker[Session], scopes: Iterable[Scope]
) -> list[tuple[Scope, Candidate]]:
    found = [(s, c) for s in scopes for c in _candidates(factory, s.source_id, before=None, evidence=False)]
    return sorted(found, key=lambda sc: (sc[1].mtime, sc[1].media_id))


def _thumbnailed(
    factory: sessionmaker[Session], source_id: int, *, before: datetime, pruned_now: set[int]
) -> list[tuple[int, datetime, bool]]:
    """Pruned media of a source recorded before `before` that still have thumbnails: (id, mtime, evidence)."""
    has_thumbnails = exists().where(Detection.media_id == Media.id, Detection.thumbnail_path.is_not(None))
    query = select(Media.id, Media.mtime, _evidence()).where(  # type: ignore[call-overload]
        Media.source_id == source_id,
        Media.mtime < before,
        Media.status.in_(PRUNABLE),
        # Thumbnails go with or after their file, never before (a dry run counts its own would-be deletions).
        or_(Media.pruned_at.is_not(None), Media.id.in_(sorted(pruned_now))),
        has_thumbnails,
    )
    with factory() as session:
        return [(i, m, bool(e)) for i, m, e in session.execute(query.order_by(Media.mtime)).all()]

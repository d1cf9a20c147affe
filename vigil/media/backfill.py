"""Backfill and re-analysis: put existing files and finished media (back) into the queue.

Re-analysis asks one target again: matching done/failed media get ``pending_target_ids=[target]`` and go
back to ``queued`` in one transaction (so a crash leaves either all or none marked), then each is sent after
commit. The worker asks only the pending targets, adds a new analysis (``latest_detections_v`` shows the
newest), and clears ``pending_target_ids``. A send that fails is logged; the reconciler sends the row later.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import SourceSettings, format_validation_error
from vigil.errors import ConfigError
from vigil.media.lifecycle import reanalyzable, requeue_for_target
from vigil.store.db import write_session
from vigil.store.schema import Media, Source, Target, utcnow

if TYPE_CHECKING:
    from vigil.ops.enqueue import Enqueuer

log = logging.getLogger(__name__)

CHUNK = 500
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|days|w|week|weeks)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hr": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """`2d`, `12h`, `30m`, `1w` before now, or an ISO 8601 date/time (UTC unless it carries an offset)."""
    now = now or utcnow()
    match = _RELATIVE.match(value)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        return now - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ConfigError(f"--since {value!r}: use e.g. 2d, 12h, 30m, 1w or 2026-11-20T08:00") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class Marked:
    target_id: int
    media_ids: list[int]


def _target_and_sources(
    session: Session, target_name: str, source_name: str | None
) -> tuple[Target, list[int]]:
    target = session.scalar(select(Target).where(Target.name == target_name))
    if target is None:
        raise ConfigError(f"no target named {target_name!r}")
    if not target.enabled:
        raise ConfigError(f"target {target_name} is disabled; first run: vigil targets enable {target_name}")
    query = select(Source)
    if source_name is not None:
        query = query.where(Source.name == source_name)
    sources = list(session.scalars(query))
    if source_name is not None and not sources:
        raise ConfigError(f"no source named {source_name!r}")
    applies = [s for s in sources if s.target_names is None or target_name in s.target_names]
    if source_name is not None and not applies:
        raise ConfigError(
            f"target {target_name} is not asked about at source {source_name} "
            f"(its targets: {', '.join(sources[0].target_names or [])})"
        )
    return target, [s.id for s in applies]


def mark_for_reanalysis(
    factory: sessionmaker[Session],
    *,
    target_name: str,
    since: datetime | None = None,
    source_name: str | None = None,
) -> Marked:
    """Queue again, for this target only, the done/failed media of the sources that ask about it.

    `since` filters on the file's mtime (when it was recorded). Media still queued or running are left
    alone: they will be asked about every target that applies anyway.
    """
    with write_session(factory) as session:
        target, source_ids = _target_and_sources(session, target_name, source_name)
        query = select(Media.id).where(reanalyzable(), Media.source_id.in_(source_ids))
        if since is not None:
            query = query.where(Media.mtime >= since)
        ids = list(session.scalars(query.order_by(Media.id)))
        requeue_for_target(session, ids, target.id, now=utcnow())
    log.info("marked %d media for re-analysis of target %s (id %d)", len(ids), target_name, target.id)
    return Marked(target.id, ids)


def enqueue_all(
    enqueuer: Enqueuer,
    media_ids: Sequence[int],
    *,
    on_sent: Callable[[int, int], None] | None = None,
) -> int:
    """Send each media id; returns how many sends the broker accepted. `on_sent(sent, failed)` reports."""
    sent = failed = 0
    for media_id in media_ids:
        if enqueuer.analyze(media_id):
            sent += 1
        else:
            failed += 1
        if on_sent is not None:
            on_sent(sent, failed)
    if failed:
        log.warning("%d of %d sends failed; the reconciler will send them again", failed, len(media_ids))
    return sent


def source_settings_for_scan(
    folder: Path | None, name: str | None, configured: Sequence[SourceSettings]
) -> SourceSettings:
    """The source a `vigil scan` covers: a configured one (its rules), or an ad-hoc folder with defaults.

    The folder of a configured source must be its root (rows are keyed by the path below the root).
    An ad-hoc folder is named after its directory unless `name` is given.
    """
    by_name = {s.name: s for s in configured}
    if name is not None and name in by_name:
        conf = by_name[name]
        if folder is not None and folder.resolve() != conf.path.resolve():
            raise ConfigError(
                f"source {name} is the folder {conf.path}, not {folder}; scan its root, or "
                "give another --source name for an ad-hoc folder"
            )
        return conf
    if folder is None:
        known = ", ".join(sorted(by_name)) or "none configured"
        if name is None:
            raise ConfigError(
                f"nothing to scan: give a folder, or --source NAME of a configured source ({known})"
            )
        raise ConfigError(f"no configured source named {name!r} ({known}); give a folder to scan")
    if not folder.is_dir():
        raise ConfigError(f"not a folder: {folder}")
    matching = [s for s in configured if s.path.resolve() == folder.resolve()]
    if name is None and matching:
        return matching[0]
    name = name or _source_name(folder)
    try:
        return SourceSettings(name=name, path=folder.resolve())
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc


def _source_name(folder: Path) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "scan"
    return cleaned[:64]


def check_source_row(factory: sessionmaker[Session], source: SourceSettings) -> None:
    """Refuse to scan a folder under a name the database already gives to another folder."""
    with factory() as session:
        row = session.scalar(select(Source).where(Source.name == source.name))
    if row is not None and Path(row.path).resolve() != source.path.resolve():
        raise ConfigError(
            f"source name {source.name} is already used for {row.path}; choose another with --source NAME"
        )


def media_since(factory: sessionmaker[Session], source_name: str, since: datetime) -> list[int]:
    """Media of this source registered at or after `since` (what a scan that began then added)."""
    with factory() as session:
        return list(
            session.scalars(
                select(Media.id)
                .join(Source, Source.id == Media.source_id)
                .where(Source.name == source_name, Media.created_at >= since)
                .order_by(Media.id)
            )
        )

"""Registering files as media rows: exactly one row per version of a file, decided in the database.

Sources and targets from settings are mirrored into their tables here too, so rows can refer to them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import SourceSettings, TargetSettings
from vigil.errors import MediaError, UnreadableMedia
from vigil.formats.probe import MediaInfo
from vigil.formats.reference_images import check_references, store_reference
from vigil.formats.types import media_kind
from vigil.media.identity import file_mtime, sha256_file
from vigil.media.lifecycle import set_registered
from vigil.store.db import write_session
from vigil.store.schema import Media, MediaStatus, Source, Target

log = logging.getLogger(__name__)


def sync_sources(session: Session, sources: list[SourceSettings]) -> dict[str, Source]:
    """Upsert configured sources by name (ownership and retiring: `vigil.declared.apply.apply_settings`)."""
    existing = {s.name: s for s in session.scalars(select(Source))}
    for conf in sources:
        row = existing.get(conf.name)
        if row is None:
            row = Source(
                name=conf.name,
                path=str(conf.path.resolve()),
                target_names=conf.targets,
                static_gate=conf.static_gate,
            )
            session.add(row)
            existing[conf.name] = row
        else:
            row.path = str(conf.path.resolve())
            row.target_names = conf.targets
            row.static_gate = conf.static_gate
    session.flush()
    return existing


def ensure_source(session: Session, name: str, path: Path) -> Source:
    """The source named `name`, created for an ad-hoc folder (e.g. `vigil scan DIR`) when missing (with
    the static-scene gate off: only a configured source turns it on)."""
    row = session.scalar(select(Source).where(Source.name == name))
    if row is None:
        row = Source(name=name, path=str(path.resolve()), target_names=None)
        session.add(row)
        session.flush()
    return row


def sync_targets(session: Session, targets: list[TargetSettings], *, references_dir: Path) -> None:
    """Upsert targets declared in settings (ownership and retiring: `vigil.declared.apply.apply_settings`)."""
    existing = {t.name: t for t in session.scalars(select(Target))}
    for conf in targets:
        upsert_target(session, conf, existing.get(conf.name), references_dir=references_dir)
    session.flush()


def upsert_target(
    session: Session, conf: TargetSettings, row: Target | None, *, references_dir: Path
) -> bool:
    """Create or update one target, copying its reference images into ``references_dir``; a new
    description or new images are a new prompt version. True when created."""
    images = []
    for path, info in zip(conf.images, check_references(conf.images), strict=True):
        store_reference(path, info, references_dir)
        images.append(info.as_row())
    if row is None:
        session.add(
            Target(
                name=conf.name,
                description=conf.description,
                threshold=conf.threshold,
                enabled=conf.enabled,
                images=images,
            )
        )
        return True
    if row.description != conf.description or _hashes(row.images) != _hashes(images):
        row.prompt_version += 1
    row.description, row.threshold, row.enabled = conf.description, conf.threshold, conf.enabled
    row.images = images
    return False


def _hashes(images: list[Any]) -> list[str]:
    return [str(image["sha256"]) for image in images or []]


@dataclass(frozen=True)
class Registration:
    media_id: int
    status: str
    created: bool
    """False when the file (this version of it) was already registered."""


def register_file(
    factory: sessionmaker[Session],
    *,
    source_id: int,
    root: Path,
    path: Path,
    info: MediaInfo | None,
    problem: MediaError | None = None,
    duplicate_content: str = "skip",
) -> Registration:
    """Insert the media row for `path` unless this version of it is already known.

    `info` is the completeness probe's result; `problem` says why the file can never be analysed (the row
    is then created `failed` with that reason, so nothing is silently dropped). A file whose size or mtime
    changed and whose content hash differs from the latest version becomes a new version.
    """
    stat = path.stat()
    mtime = file_mtime(stat)
    rel_path = path.relative_to(root).as_posix()
    with factory() as session:
        latest = _latest_version(session, source_id, rel_path)
        if _is_current(latest) and latest.size_bytes == stat.st_size and latest.mtime == mtime:
            return Registration(latest.id, latest.status, created=False)
    digest: str | None = None
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # Registered failed with the reason (no content hash), never dropped silently.
        problem = problem or UnreadableMedia(path, f"cannot read: {exc.strerror or exc}")
    try:
        with write_session(factory) as session:
            latest = _latest_version(session, source_id, rel_path)
            if _is_current(latest) and digest is not None and latest.sha256 == digest:
                latest.size_bytes, latest.mtime = stat.st_size, mtime
                return Registration(latest.id, latest.status, created=False)
            media = _new_media(session, source_id, rel_path, path, stat.st_size, mtime, digest, latest)
            set_registered(session, media, info, problem, skip_duplicates=duplicate_content == "skip")
            session.add(media)
            session.flush()
            registration = Registration(media.id, media.status, created=True)
    except IntegrityError:
        # Another process registered the same version first: that row is the one.
        with factory() as session:
            latest = _latest_version(session, source_id, rel_path)
            assert latest is not None
            return Registration(latest.id, latest.status, created=False)
    log.info(
        "registered media %d %s v%d (%s, %d bytes)%s",
        registration.media_id,
        path,
        media.version,
        media.status,
        stat.st_size,
        f": {media.error}" if media.error else "",
    )
    return registration


def known_versions(factory: sessionmaker[Session], source_id: int) -> dict[str, tuple[int, datetime]]:
    """(size, mtime) of the latest version of every file of a source, in one query: what a rescan diffs.
    Superseded versions are left out, so a rescan looks again at a file whose latest version was."""
    known: dict[str, tuple[int, datetime]] = {}
    with factory() as session:
        rows = session.execute(
            select(Media.rel_path, Media.size_bytes, Media.mtime)
            .where(Media.source_id == source_id, Media.status != MediaStatus.SUPERSEDED)
            .order_by(Media.rel_path, Media.version)
        )
        for rel_path, size, mtime in rows:
            known[rel_path] = (size, mtime)  # ascending versions: the latest one wins
    return known


def _is_current(latest: Media | None) -> TypeGuard[Media]:
    """A superseded latest version was never analysed: whatever is on disk now is the next version."""
    return latest is not None and latest.status != MediaStatus.SUPERSEDED


def _latest_version(session: Session, source_id: int, rel_path: str) -> Media | None:
    return session.scalar(
        select(Media)
        .where(Media.source_id == source_id, Media.rel_path == rel_path)
        .order_by(Media.version.desc())
        .limit(1)
    )


def _new_media(
    session: Session,
    source_id: int,
    rel_path: str,
    path: Path,
    size: int,
    mtime: datetime,
    digest: str | None,
    latest: Media | None,
) -> Media:
    return Media(
        source_id=source_id,
        rel_path=rel_path,
        path=os.fspath(path.absolute()),
        version=1 if latest is None else latest.version + 1,
        kind=media_kind(path) or "video",
        size_bytes=size,
        mtime=mtime,
        sha256=digest,
    )

"""Drop-folder automation after analysis (per source): move the file into `done/` or `failed/` under the
source, keeping its relative path, and/or write a JSON sidecar `<name>.vigil.json` next to it.

The original is never lost: the move is a hard link then an unlink (no-clobber, same filesystem), or an
`os.replace` onto a name checked free where links are not supported; a name already taken gets a suffix
(`clip-1.mp4`). The watcher ignores `done/`, `failed/` and `*.vigil.json`. The media row's `path` follows
the file; its `rel_path` keeps the name it arrived under (so the same file dropped again is known).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import Settings, SourceSettings
from vigil.store.db import write_session
from vigil.store.latest import newest_per_target
from vigil.store.schema import TERMINAL_STATUSES, Analysis, Detection, Media, MediaStatus, Source, Target

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".vigil.json"
MAX_SUFFIX = 10_000


def finalize_file(factory: sessionmaker[Session], settings: Settings, media_id: int) -> Path | None:
    """Apply the source's drop-folder settings to a media row whose analysis ended (call after commit).

    Returns where the file is now, or None when nothing was done (automation off, analysis not finished,
    source not configured, file gone).
    """
    with factory() as session:
        media = session.get(Media, media_id)
        if media is None or media.status not in TERMINAL_STATUSES:
            return None
        source = session.get_one(Source, media.source_id)
        conf = _source_settings(settings, source.name)
        if conf is None or (conf.after_analysis == "leave" and not conf.sidecar):
            return None
        document = sidecar_document(session, media, source) if conf.sidecar else None
        path, root, rel_path, status = Path(media.path), Path(source.path), media.rel_path, media.status
    if not path.is_file():
        log.warning("media %d: %s is gone; nothing to finalize", media_id, path)
        return None
    if conf.after_analysis == "move":
        outbox = "failed" if status == MediaStatus.FAILED else "done"
        path = move_no_clobber(path, root / outbox / rel_path)
        with write_session(factory) as session:
            session.get_one(Media, media_id).path = os.fspath(path)
        log.info("media %d moved to %s", media_id, path)
    if document is not None:
        write_sidecar(path, document)
    return path


def _source_settings(settings: Settings, name: str) -> SourceSettings | None:
    return next((s for s in settings.watch.sources if s.name == name), None)


def sidecar_path(media_path: Path) -> Path:
    return media_path.with_name(media_path.name + SIDECAR_SUFFIX)


def sidecar_document(session: Session, media: Media, source: Source) -> dict[str, Any]:
    analysis = session.scalar(
        select(Analysis).where(Analysis.media_id == media.id).order_by(Analysis.id.desc()).limit(1)
    )
    detections: list[dict[str, Any]] = []
    if analysis is not None:
        # The newest answer per target: a re-analysis of one target leaves the others' in their analyses.
        rows = session.execute(
            select(Detection, Target.name)
            .join(Target, Target.id == Detection.target_id)
            .where(Detection.media_id == media.id, newest_per_target())
            .order_by(Target.name, Detection.window_index)
        )
        detections = [
            {
                "target": name,
                "analysis_id": d.analysis_id,
                "window": d.window_index,
                "start_s": d.start_s,
                "end_s": d.end_s,
                "p_yes": d.p_yes,
                "matched": d.matched,
                "evidence": d.evidence,
            }
            for d, name in rows
        ]
    return {
        "vigil": 1,
        "media_id": media.id,
        "source": source.name,
        "rel_path": media.rel_path,
        "version": media.version,
        "status": media.status,
        "error": media.error,
        "sha256": media.sha256,
        "kind": media.kind,
        "duration_s": media.duration_s,
        "width": media.width,
        "height": media.height,
        "model": analysis.model_id if analysis else None,
        "analyzed_at": analysis.created_at.isoformat() if analysis else None,
        "detections": detections,
    }


def write_sidecar(media_path: Path, document: dict[str, Any]) -> Path:
    """Write `<name>.vigil.json` next to the file, atomically (a hidden temp name, then rename)."""
    target = sidecar_path(media_path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def move_no_clobber(src: Path, dest: Path) -> Path:
    """Move `src` to `dest` or `dest` with a numeric suffix, never overwriting anything. Returns the path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for candidate in _candidates(dest):
        try:
            os.link(src, candidate)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOTSUP):
                raise
            if candidate.exists():
                continue
            os.replace(src, candidate)  # the filesystem has no hard links
            return candidate
        os.unlink(src)
        return candidate
    raise FileExistsError(f"no free name for {dest} after {MAX_SUFFIX} tries")


def _candidates(dest: Path) -> Any:
    yield dest
    suffix = "".join(dest.suffixes[-1:])
    stem = dest.name[: len(dest.name) - len(suffix)] if suffix else dest.name
    for n in range(1, MAX_SUFFIX):
        yield dest.with_name(f"{stem}-{n}{suffix}")

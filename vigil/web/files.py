"""Files the pages serve, found by row id only: a media row's file, a detection's thumbnail, a target's
reference image (by the target's name and the image's position).

Nothing from the request names a path. A stored path is served only when it still resolves inside the
folder it belongs to (the source's folder, the thumbnails folder, the references folder): a symlink swapped
in later cannot make the page serve another file. A media file is served only while it is still the version
its row registered (`check_version`): a replaced file's old page never plays the new content.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.media.identity import Digests, version_change
from vigil.store.schema import Detection, Media, Source, Target

# Content types by suffix from the standard table, corrected for camera formats.
mimetypes.add_type("video/x-matroska", ".mkv")
for _suffix, _type in {".mts": "video/mp2t", ".ts": "video/mp2t", ".3gp": "video/3gpp"}.items():
    mimetypes.add_type(_type, _suffix)  # the system table calls .ts a translation file, .3gp audio


class NotThisVersion(Exception):
    """The file at a media row's path is no longer the version that row registered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_DIGESTS = Digests()  # hashes remembered under each file's stat identity: a player's range requests hash once


def check_version(media: Media, real: Path) -> None:
    """Raise NotThisVersion unless `real` is still the file `media` registered (size, mtime, sha256: the
    check the worker makes before analysing)."""
    try:
        reason = version_change(real, media, digests=_DIGESTS)
    except OSError:
        reason = "the file can no longer be read"
    if reason is not None:
        raise NotThisVersion(reason)


def _inside(path: Path, folder: Path) -> Path | None:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file() or not real.is_relative_to(folder.resolve()):
        return None
    return real


def media_file(session: Session, media_id: int) -> tuple[Path, str] | None:
    """The registered file of a media row and its content type, or None."""
    media = session.get(Media, media_id)
    if media is None:
        return None
    source = session.get_one(Source, media.source_id)
    real = _inside(Path(media.path), Path(source.path))
    if real is None:
        return None
    check_version(media, real)
    media_type, _ = mimetypes.guess_type(real.name)
    return real, media_type or "application/octet-stream"


def thumbnail_file(session: Session, detection_id: int, thumbnails_dir: Path) -> Path | None:
    detection = session.get(Detection, detection_id)
    if detection is None or not detection.thumbnail_path:
        return None
    return _inside(Path(detection.thumbnail_path), thumbnails_dir)


def reference_file(session: Session, name: str, index: int, references_dir: Path) -> tuple[Path, str] | None:
    """The stored copy of a target's reference image number ``index`` and its content type, or None."""
    target = session.scalar(select(Target).where(Target.name == name))
    images = (target.images or []) if target is not None else []
    if not 0 <= index < len(images):
        return None
    real = _inside(references_dir / str(images[index].get("file", "")), references_dir)
    if real is None:
        return None
    media_type, _ = mimetypes.guess_type(real.name)
    return real, media_type or "application/octet-stream"

"""Files the pages serve, found by row id only: a media row's file, a detection's thumbnail, a target's
reference image (by the target's name and the image's position).

Nothing from the request names a path, and no name decides what a file is:

- a stored path is served only when it still resolves inside the folder it belongs to (the source's
  folder, the thumbnails folder, the references folder);
- a media file only while it is the file its row registered: the same kind by name (the link and what it
  points to), the same version (size, mtime, sha256: `check_version`, the check the worker makes; a
  replaced file's old page never plays the new content), and bytes that are a video or image container
  of the row's kind.
  Its content type comes from those bytes (`vigil.formats.magic`), never from a name; the file is opened
  without following links and must be the very file that was checked (device, inode, size, mtime), so a
  link swapped in between is not read;
- a thumbnail only when its bytes are an image; a reference image only when its bytes hash to the digest
  it was checked and stored under, and are the raster its name says.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import FileResponse

from vigil.formats.magic import HEAD_BYTES, content_type, sniff
from vigil.formats.types import media_kind
from vigil.media.identity import Digests, file_mtime, version_change
from vigil.store.schema import Detection, Media, Source, Target

MAX_IMAGE_BYTES = 32 * 1024 * 1024  # a thumbnail or reference image read into memory to be served
SUFFIX_FAMILY = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".webp": "webp",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
}
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


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


@dataclass(frozen=True)
class Checked:
    """A media file that passed every check, and what it was when it did."""

    path: Path
    media_type: str
    stat: os.stat_result


def _inside(path: str, folder: str) -> Path | None:
    if "\x00" in path or "\x00" in folder:
        return None
    try:
        real = Path(path).resolve(strict=True)
        root = Path(folder).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return real if real.is_relative_to(root) else None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _read(real: Path, limit: int) -> tuple[os.stat_result, bytes] | None:
    """A regular file's stat and its first `limit` bytes, opened without following a link."""
    try:
        fd = os.open(real, OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return st, os.pread(fd, limit, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def media_file(session: Session, media_id: int) -> Checked | None:
    """The registered file of a media row and its content type, or None; NotThisVersion when the file there
    is another version now."""
    media = session.get(Media, media_id)
    if media is None:
        return None
    source = session.get_one(Source, media.source_id)
    real = _inside(media.path, source.path)
    if real is None or not media_kind(media.path) == media_kind(real) == media.kind:
        return None
    check_version(media, real)
    read = _read(real, HEAD_BYTES)
    if read is None:
        return None
    st, head = read
    if st.st_size != media.size_bytes or file_mtime(st) != media.mtime:
        return None  # no longer the file the row registered
    typed = content_type(head)
    if typed is None or typed[0] != media.kind:
        return None
    return Checked(real, typed[1], st)


class CheckedFileResponse(FileResponse):
    """A `FileResponse` (ranges and all) that reads only the file that was checked."""

    def __init__(self, checked: Checked, *, headers: dict[str, str]) -> None:
        super().__init__(
            checked.path, media_type=checked.media_type, stat_result=checked.stat, headers=headers
        )
        self.checked = checked

    def _opener(self, path: str, flags: int) -> int:
        fd = os.open(path, OPEN_FLAGS)
        if not _same_file(os.fstat(fd), self.checked.stat):
            os.close(fd)
            raise OSError(f"media file changed since it was checked: {Path(path).name}")
        return fd

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[Any]:
        file = await anyio.open_file(self.path, mode="rb", opener=self._opener)
        try:
            yield file
        finally:
            with anyio.CancelScope(shield=True):
                await file.aclose()


def thumbnail_file(session: Session, detection_id: int, thumbnails_dir: Path) -> tuple[bytes, str] | None:
    """A detection's thumbnail (bytes and content type), when it is an image inside the thumbnails folder."""
    detection = session.get(Detection, detection_id)
    if detection is None or not detection.thumbnail_path:
        return None
    real = _inside(detection.thumbnail_path, str(thumbnails_dir))
    read = _read(real, MAX_IMAGE_BYTES + 1) if real is not None else None
    if read is None or len(read[1]) > MAX_IMAGE_BYTES:
        return None
    typed = content_type(read[1][:HEAD_BYTES])
    return (read[1], typed[1]) if typed is not None and typed[0] == "image" else None


def reference_file(session: Session, name: str, index: int, references_dir: Path) -> tuple[bytes, str] | None:
    """The stored copy of a target's reference image number ``index`` (bytes and content type), or None."""
    target = session.scalar(select(Target).where(Target.name == name))
    images = (target.images or []) if target is not None else []
    if not 0 <= index < len(images) or not isinstance(images[index], dict):
        return None
    image = images[index]
    stored = str(image.get("file", ""))
    family = SUFFIX_FAMILY.get(Path(stored).suffix.lower())
    real = _inside(str(references_dir / stored), str(references_dir))
    if family is None or real is None or real.name != stored:
        return None
    read = _read(real, MAX_IMAGE_BYTES + 1)
    if read is None or hashlib.sha256(read[1]).hexdigest() != image.get("sha256"):
        return None
    data = read[1]
    typed = content_type(data[:HEAD_BYTES])
    if typed is None or sniff(data[:HEAD_BYTES]) != family:
        return None
    return data, typed[1]

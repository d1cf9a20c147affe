"""Thumbnails worth looking at: the best frame of a matched window, at source resolution.

The model sees frames shrunk to its input size (e.g. 224 px); a person reviewing an alert wants the real
picture. So the analysis's decode pass also converts each window's frames at source resolution (capped at
``THUMBNAIL_MAX_SIDE`` on the long side, ``FrameRequest.full_side``), and once a window's best frame is
known it is written as a JPEG: no frame is decoded again for a thumbnail. A matched window that gets no
best-frame search (an inherited window; a window that is not its run's best, ``model.evidence_windows``)
gets the middle of its sampled frames instead (``ThumbnailWriter.middle``).

Files are written atomically (temporary name, then rename) and created with mode 0666 minus the process
umask, like any file a user's program writes (``tempfile.mkstemp`` would force 0600, which a web server or
a Home Assistant running as another user cannot read). The returned path is absolute, so it means the same
thing to every process that reads it from the database, whatever its working directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from workers.decode.frames import Frames, fit_size

THUMBNAIL_MAX_SIDE = 1280
JPEG_QUALITY = 85


class ThumbnailWriter:
    """Writes the thumbnails of one media file into ``folder``; the frames come from the decode pass
    (``FrameRequest.full_side``), so a thumbnail costs no decoding of its own."""

    def __init__(self, folder: Path, *, max_side: int = THUMBNAIL_MAX_SIDE) -> None:
        self.folder = folder.absolute()
        self.max_side = max_side

    def write(self, name: str, rgb: np.ndarray) -> Path:
        """Write ``rgb`` (shrunk to ``max_side`` if larger) as ``folder/name``; the absolute path written."""
        return write_jpeg(rgb, self.folder / name, max_side=self.max_side)

    def middle(self, name: str, frames: Frames) -> Path:
        """The middle of a window's sampled frames (at source resolution when decoded so) as ``name``: the
        thumbnail of a matched window without a best-frame search, for no model time."""
        full = frames.full if frames.full is not None else frames.rgb
        return self.write(name, full[len(full) // 2])


def write_jpeg(rgb_frame: np.ndarray, path: Path, *, max_side: int | None = None) -> Path:
    """Write ``rgb_frame`` as a JPEG (shrunk to ``max_side`` if given), atomically; the absolute path."""
    out = path.absolute()
    h, w = rgb_frame.shape[:2]
    tw, th = fit_size((w, h), max_side)
    if (tw, th) != (w, h):
        rgb_frame = cv2.resize(rgb_frame, (tw, th), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(rgb_frame, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the thumbnail as JPEG")
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    created = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # os.open applies the umask to 0o666, as open() would; O_EXCL: never write through someone's file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        if created:
            tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write thumbnail {out}: {exc.strerror or exc}") from exc
    return out

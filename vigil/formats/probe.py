"""What kind of media a file is, and a quick check that it can be read (torch-free; the watcher uses it).

``probe`` is the watcher's completeness check, so it is cheap: open the container, read the geometry, decode
at most one frame. Containers lie about fps and frame counts (variable frame rate, live recordings cut
short, missing ``nb_frames``), so:

* fps missing, not finite, <= 0 or > 1000: ``FALLBACK_FPS`` (30.0, what most cameras and phones record).
* frame count missing, <= 0 or absurd (more than 48 h of frames): counted from the container's packets
  with OpenCV's raw (undecoded) read, which only demuxes (about 10 ms for a 60 s 720p clip), up to
  ``MAX_COUNTED_PACKETS``; if that fails too, the frame count is 1 (we know one frame decodes).
* duration = frame count / fps.

Images are read with ``cv2.imread``; files over ``IMAGE_PREFLIGHT_BYTES`` are first read at 1/8 scale so a
decompression bomb is refused before it is decoded at full size.

OpenCV errors never escape: they become ``UnreadableMedia`` (``UnsupportedMedia`` for unknown suffixes).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from vigil.errors import UnreadableMedia, UnsupportedMedia
from vigil.formats.types import MediaKind, media_kind

# Broken files are expected input: their reasons reach the database, not stderr. FFmpeg reads its level
# when its backend first opens a file, so setting it here, before any capture, silences it.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

log = logging.getLogger(__name__)

FALLBACK_FPS = 30.0
MAX_SIDE_PX = 16384
MAX_PIXELS = 80_000_000
MAX_FRAME_COUNT_HOURS = 48
MAX_COUNTED_PACKETS = 2_000_000
IMAGE_PREFLIGHT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class MediaInfo:
    kind: MediaKind
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    codec: str | None


def unreadable_from_cv2(path: str | os.PathLike[str], exc: cv2.error) -> UnreadableMedia:
    """The one translation of an OpenCV error: its last line (the reason) as ``UnreadableMedia``."""
    lines = str(exc).strip().splitlines()
    return UnreadableMedia(path, f"OpenCV error: {lines[-1] if lines else type(exc).__name__}")


def check_resolution(path: str | os.PathLike[str], width: int, height: int) -> None:
    """Raise ``UnreadableMedia`` for a zero or absurd geometry."""
    if width <= 0 or height <= 0:
        raise UnreadableMedia(path, f"no picture size ({width}x{height})")
    if width > MAX_SIDE_PX or height > MAX_SIDE_PX or width * height > MAX_PIXELS:
        raise UnreadableMedia(path, "resolution too large")


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Open ``path`` and return its geometry and timing, decoding at most one frame."""
    kind = media_kind(path)
    if kind is None:
        raise UnsupportedMedia(path, f"unsupported file type {Path(path).suffix or '(none)'!r}")
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise UnreadableMedia(path, f"cannot stat: {exc.strerror or exc}") from exc
    if size == 0:
        raise UnreadableMedia(path, "empty file")
    try:
        return _probe_image(path, size) if kind == "image" else _probe_video(path)
    except cv2.error as exc:
        raise unreadable_from_cv2(path, exc) from exc


def _probe_image(path: str | os.PathLike[str], size: int) -> MediaInfo:
    if not cv2.haveImageReader(str(path)):
        raise UnreadableMedia(path, "not a readable image")
    if size > IMAGE_PREFLIGHT_BYTES:
        small = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if small is None:
            raise UnreadableMedia(path, "image does not decode")
        check_resolution(path, small.shape[1] * 8 - 7, small.shape[0] * 8 - 7)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UnreadableMedia(path, "image does not decode")
    height, width = img.shape[:2]
    check_resolution(path, width, height)
    return MediaInfo(
        kind="image",
        width=width,
        height=height,
        fps=0.0,
        frame_count=1,
        duration_s=0.0,
        codec=Path(path).suffix.lower().lstrip(".") or None,
    )


@contextmanager
def open_capture(path: str | os.PathLike[str], *, raw: bool = False) -> Iterator[cv2.VideoCapture]:
    """A ``cv2.VideoCapture`` on the FFmpeg backend that is always released. ``raw`` reads undecoded
    packets (``CAP_PROP_FORMAT=-1``): demuxing only, for counting frames and finding keyframes."""
    params = [cv2.CAP_PROP_FORMAT, -1] if raw else []
    try:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    except cv2.error as exc:
        raise unreadable_from_cv2(path, exc) from exc
    try:
        if not cap.isOpened():
            raise UnreadableMedia(path, "not a readable video container")
        yield cap
    finally:
        cap.release()


def _probe_video(path: str | os.PathLike[str]) -> MediaInfo:
    with open_capture(path) as cap:
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width > 0 and height > 0:
            check_resolution(path, width, height)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UnreadableMedia(path, "no decodable frame")
        height, width = frame.shape[:2]
        check_resolution(path, width, height)
        fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
    if count <= 0 or count > fps * 3600 * MAX_FRAME_COUNT_HOURS:
        log.info("frame count %d of %s is missing or absurd; counting packets", count, path)
        count = max(1, count_packets(path))
    return MediaInfo(
        kind="video",
        width=width,
        height=height,
        fps=fps,
        frame_count=count,
        duration_s=count / fps,
        codec=codec,
    )


def _sane_fps(value: float) -> float:
    if not math.isfinite(value) or value <= 0 or value > 1000:
        return FALLBACK_FPS
    return float(value)


def _fourcc(value: float) -> str | None:
    code = int(value) if math.isfinite(value) else 0
    if code <= 0:
        return None
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
    return text if text.isprintable() and text else None


def count_packets(path: str | os.PathLike[str], *, limit: int = MAX_COUNTED_PACKETS) -> int:
    """Number of video packets (= frames for video streams) found by demuxing without decoding; 0 if the
    raw read is not possible."""
    try:
        with open_capture(path, raw=True) as cap:
            n = 0
            while n < limit and cap.grab():
                n += 1
            return n
    except (UnreadableMedia, cv2.error):
        return 0

"""One small real file per container family that uploaders deliver, written by real encoders (PyAV's
FFmpeg muxers, OpenCV's JPEG/PNG/MJPEG writers): the corpus for the completeness checks and the uploader
matrix. Each writer takes a path and returns it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from workers.testing.clips import iter_frames

PathArg = str | os.PathLike[str]
Size = tuple[int, int]
SMALL = (96, 72)


def _frames(count: int, size: tuple[int, int], salt: int) -> Iterator[np.ndarray]:
    """Noise frames; `salt` marks the first one so files of the same format differ in content."""
    for index, frame in enumerate(iter_frames(count, size, "noise")):
        if index == 0 and salt:
            frame = frame.copy()
            frame[:16, :16] = salt % 251
            frame[16:32, :16] = salt // 251 % 251
        yield frame


def _mux(
    path: str | os.PathLike[str],
    *,
    fmt: str | None,
    codec: str,
    frames: int,
    size: tuple[int, int],
    options: dict[str, str] | None = None,
    salt: int = 0,
) -> Path:
    import av

    out = Path(path)
    with av.open(str(out), mode="w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = size  # type: ignore[union-attr]
        stream.pix_fmt = "yuv420p"  # type: ignore[union-attr]
        stream.codec_context.gop_size = 5
        stream.codec_context.max_b_frames = 0
        if codec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast", "crf": "30"}
        for bgr in _frames(frames, size, salt):
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def write_faststart_mp4(path: PathArg, *, frames: int = 20, size: Size = SMALL, salt: int = 0) -> Path:
    """H.264 MP4 with its moov before the mdat (`movflags=faststart`)."""
    options = {"movflags": "faststart"}
    return _mux(path, fmt="mp4", codec="libx264", frames=frames, size=size, options=options, salt=salt)


def write_plain_mp4(path: PathArg, *, frames: int = 20, size: Size = SMALL, salt: int = 0) -> Path:
    """H.264 MP4 as FFmpeg writes it by default: mdat first, moov at the end."""
    return _mux(path, fmt="mp4", codec="libx264", frames=frames, size=size, salt=salt)


def write_fragmented_mp4(path: PathArg, *, frames: int = 20, size: Size = SMALL, salt: int = 0) -> Path:
    """H.264 fragmented MP4: an empty moov, then one moof+mdat pair per keyframe (as live cameras write)."""
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    return _mux(path, fmt="mp4", codec="libx264", frames=frames, size=size, options=options, salt=salt)


def write_mpegts(path: PathArg, *, frames: int = 20, size: Size = SMALL, salt: int = 0) -> Path:
    return _mux(path, fmt="mpegts", codec="libx264", frames=frames, size=size, salt=salt)


def write_mkv(path: PathArg, *, frames: int = 20, size: Size = SMALL, salt: int = 0) -> Path:
    return _mux(path, fmt="matroska", codec="libx264", frames=frames, size=size, salt=salt)


def write_mjpeg_avi(path: PathArg, *, frames: int = 20, size: Size = SMALL, salt: int = 0) -> Path:
    """Motion-JPEG AVI as OpenCV (and many IP cameras) write it."""
    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    for frame in _frames(frames, size, salt):
        writer.write(frame)
    writer.release()
    return out


def write_jpeg(path: PathArg, *, size: Size = (320, 240), salt: int = 0) -> Path:
    out = Path(path)
    frame = next(_frames(1, size, salt))
    if not cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise RuntimeError(f"OpenCV cannot write {out}")
    return out


def write_png(path: PathArg, *, size: Size = (160, 120), salt: int = 0) -> Path:
    out = Path(path)
    frame = next(_frames(1, size, salt))
    if not cv2.imwrite(str(out), frame):
        raise RuntimeError(f"OpenCV cannot write {out}")
    return out


def write_large_mjpeg_avi(path: PathArg, *, megabytes: float = 50, salt: int = 0) -> Path:
    """A 1280x720 MJPEG AVI of about `megabytes` (noise at quality 95: ~0.65 MB a frame, 10 fps)."""
    out = Path(path)
    size = (1280, 720)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for written, frame in enumerate(_frames(10_000, size, salt), start=1):
        writer.write(frame)
        if written % 10 == 0 and out.stat().st_size >= megabytes * 1e6:
            break
    writer.release()
    return out


WRITERS: dict[str, tuple[str, Callable[..., Path]]] = {
    "jpeg": (".jpg", write_jpeg),
    "png": (".png", write_png),
    "mjpeg-avi": (".avi", write_mjpeg_avi),
    "faststart-mp4": (".mp4", write_faststart_mp4),
    "fragmented-mp4": (".mp4", write_fragmented_mp4),
    "plain-mp4": (".mp4", write_plain_mp4),
    "mpeg-ts": (".ts", write_mpegts),
    "mkv": (".mkv", write_mkv),
}
"""Format name → (suffix, writer)."""

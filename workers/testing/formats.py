"""One small real file per container family that uploaders deliver, written by real encoders (PyAV's
FFmpeg muxers, OpenCV's JPEG/PNG/MJPEG writers): the corpus for the completeness checks and the uploader
matrix. Each writer takes a path and returns it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2

from workers.testing.clips import iter_frames

PathArg = str | os.PathLike[str]
SMALL = (96, 72)


def _mux(
    path: str | os.PathLike[str],
    *,
    fmt: str | None,
    codec: str,
    frames: int,
    size: tuple[int, int],
    options: dict[str, str] | None = None,
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
        for bgr in iter_frames(frames, size, "noise"):
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def write_faststart_mp4(path: PathArg, *, frames: int = 20, size: tuple[int, int] = SMALL) -> Path:
    """H.264 MP4 with its moov before the mdat (`movflags=faststart`)."""
    return _mux(path, fmt="mp4", codec="libx264", frames=frames, size=size, options={"movflags": "faststart"})


def write_plain_mp4(path: PathArg, *, frames: int = 20, size: tuple[int, int] = SMALL) -> Path:
    """H.264 MP4 as FFmpeg writes it by default: mdat first, moov at the end."""
    return _mux(path, fmt="mp4", codec="libx264", frames=frames, size=size)


def write_fragmented_mp4(
    path: PathArg, *, frames: int = 20, size: tuple[int, int] = SMALL
) -> Path:
    """H.264 fragmented MP4: an empty moov, then one moof+mdat pair per keyframe (as live cameras write)."""
    return _mux(
        path, fmt="mp4", codec="libx264", frames=frames, size=size,
        options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
    )


def write_mpegts(path: PathArg, *, frames: int = 20, size: tuple[int, int] = SMALL) -> Path:
    return _mux(path, fmt="mpegts", codec="libx264", frames=frames, size=size)


def write_mkv(path: PathArg, *, frames: int = 20, size: tuple[int, int] = SMALL) -> Path:
    return _mux(path, fmt="matroska", codec="libx264", frames=frames, size=size)


def write_mjpeg_avi(path: PathArg, *, frames: int = 20, size: tuple[int, int] = SMALL) -> Path:
    """Motion-JPEG AVI as OpenCV (and many IP cameras) write it."""
    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for frame in iter_frames(frames, size, "noise"):
        writer.write(frame)
    writer.release()
    return out


def write_jpeg(path: str | os.PathLike[str], *, size: tuple[int, int] = (320, 240)) -> Path:
    out = Path(path)
    frame = next(iter(iter_frames(1, size, "noise")))
    if not cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise RuntimeError(f"OpenCV cannot write {out}")
    return out


def write_png(path: str | os.PathLike[str], *, size: tuple[int, int] = (160, 120)) -> Path:
    out = Path(path)
    frame = next(iter(iter_frames(1, size, "noise")))
    if not cv2.imwrite(str(out), frame):
        raise RuntimeError(f"OpenCV cannot write {out}")
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

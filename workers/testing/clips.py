"""Synthetic media files for tests, benchmarks and ``vigil selftest``.

Every frame of a generated clip is distinguishable: it carries its index as a big number, a bar whose
position moves with the index, and a background colour that changes with the index. Frame-accuracy tests
compare arrays bit for bit, and a human looking at a thumbnail can read which frame it is.

``write_clip_mp4v`` needs only OpenCV. ``write_clip_h264`` and ``write_clip_mpeg4`` use PyAV (imported
lazily): OpenCV 5's mp4v writer puts a keyframe every couple of frames, unlike cameras, so
``write_clip_mpeg4`` writes the same codec (MPEG-4 Part 2, tag ``mp4v``) with a chosen keyframe interval
(default 12, as real camera files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

log = logging.getLogger(__name__)

CorruptKind = Literal["zero_bytes", "text", "truncated", "header_only"]
Pattern = Literal["counter", "noise"]


def _frame_bgr(index: int, size: tuple[int, int], pattern: Pattern) -> np.ndarray:
    """One BGR frame that encodes ``index`` visibly (colour, bar position, number)."""
    w, h = size
    if pattern == "noise":
        rng = np.random.default_rng(index)
        return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    colour = ((index * 37) % 200 + 30, (index * 91) % 200 + 30, (index * 53) % 200 + 30)
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = colour
    bar_w = max(2, w // 20)
    x = (index * max(1, bar_w // 2)) % max(1, w - bar_w)
    frame[:, x : x + bar_w] = (255, 255, 255)
    scale = max(0.4, h / 80.0)
    thickness = max(1, int(scale * 2))
    cv2.putText(
        frame,
        str(index),
        (max(2, w // 20), int(h * 0.7)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        thickness + 2,
        cv2.LINE_AA,
    )
    cv2.putText(
        frame,
        str(index),
        (max(2, w // 20), int(h * 0.7)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return frame


def iter_frames(count: int, size: tuple[int, int], pattern: Pattern = "counter") -> Iterator[np.ndarray]:
    """Yield ``count`` BGR frames of ``size`` (w, h) in the pattern the clip writers use."""
    for i in range(count):
        yield _frame_bgr(i, size, pattern)


def write_clip_mp4v(
    path: str | os.PathLike[str],
    *,
    seconds: float,
    fps: float = 30,
    size: tuple[int, int] = (160, 120),
    pattern: Pattern = "counter",
) -> Path:
    """Write an MPEG-4 Part 2 (``mp4v``) clip with OpenCV (OpenCV 5: a keyframe every ~2 frames)."""
    out = Path(path)
    count = max(1, round(seconds * fps))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v to {out}")
    try:
        for frame in iter_frames(count, size, pattern):
            writer.write(frame)
    finally:
        writer.release()
    log.debug("wrote %s (%d frames, %sx%s, mp4v)", out, count, *size)
    return out


def write_clip_h264(
    path: str | os.PathLike[str],
    *,
    seconds: float,
    fps: int = 30,
    size: tuple[int, int] = (160, 120),
    gop: int = 250,
    bframes: int = 2,
    pattern: Pattern = "counter",
) -> Path:
    """Write a long-GOP H.264 clip with B-frames using PyAV's libx264."""
    # keyint_min/scenecut keep keyframes exactly every `gop` frames (no scene-cut keyframes)
    options = {
        "preset": "ultrafast" if bframes == 0 else "veryfast",
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "bf": str(bframes),
        "crf": "23",
    }
    out = _write_av(
        path,
        "libx264",
        seconds=seconds,
        fps=fps,
        size=size,
        gop=gop,
        bframes=bframes,
        options=options,
        pattern=pattern,
    )
    log.debug("wrote %s (%sx%s, h264 gop=%d bframes=%d)", out, *size, gop, bframes)
    return out


def write_clip_mpeg4(
    path: str | os.PathLike[str],
    *,
    seconds: float,
    fps: int = 30,
    size: tuple[int, int] = (160, 120),
    gop: int = 12,
    pattern: Pattern = "counter",
    faststart: bool = False,
) -> Path:
    """Write an MPEG-4 Part 2 (``mp4v``) clip with a keyframe exactly every ``gop`` frames, using PyAV.
    ``faststart`` puts the MP4 index before the data (so a cut file still has its whole index)."""
    options = {"sc_threshold": "1000000000", "keyint_min": str(gop)}  # no scene-cut keyframes
    out = _write_av(
        path,
        "mpeg4",
        seconds=seconds,
        fps=fps,
        size=size,
        gop=gop,
        bframes=0,
        options=options,
        pattern=pattern,
        container_options={"movflags": "faststart"} if faststart else None,
    )
    log.debug("wrote %s (%sx%s, mpeg4 gop=%d)", out, *size, gop)
    return out


def _write_av(
    path: str | os.PathLike[str],
    codec: str,
    *,
    seconds: float,
    fps: int,
    size: tuple[int, int],
    gop: int,
    bframes: int,
    options: dict[str, str],
    pattern: Pattern,
    container_options: dict[str, str] | None = None,
) -> Path:
    try:
        import av
    except ImportError as exc:
        raise RuntimeError("writing this clip needs PyAV (`pip install av`)") from exc
    out = Path(path)
    count = max(1, round(seconds * fps))
    with av.open(str(out), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=int(fps))
        assert isinstance(stream, av.VideoStream)  # narrows the stream type for every PyAV release's stubs
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        if codec == "mpeg4":
            stream.codec_context.bit_rate = max(200_000, int(size[0] * size[1] * fps * 0.15))
        stream.codec_context.options = options
        for frame in iter_frames(count, size, pattern):
            video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return out


def write_image(path: str | os.PathLike[str], *, size: tuple[int, int] = (160, 120)) -> Path:
    """Write a still image (format from the suffix) with the counter pattern of frame 0."""
    out = Path(path)
    if not cv2.imwrite(str(out), _frame_bgr(0, size, "counter")):
        raise RuntimeError(f"OpenCV cannot write an image to {out}")
    return out


def write_corrupt(path: str | os.PathLike[str], kind: CorruptKind) -> Path:
    """Write a broken file: ``zero_bytes``, ``text`` (named as given), ``truncated`` (a valid mp4v clip cut
    in half) or ``header_only`` (the first 1 KiB of a valid clip)."""
    out = Path(path)
    if kind == "zero_bytes":
        out.write_bytes(b"")
    elif kind == "text":
        out.write_text("this is not a video, just text that happens to have a video suffix\n" * 20)
    elif kind in ("truncated", "header_only"):
        tmp = out.with_name(out.name + ".full.mp4")
        write_clip_mp4v(tmp, seconds=2, fps=15, size=(160, 120))
        data = tmp.read_bytes()
        tmp.unlink()
        out.write_bytes(data[: len(data) // 2] if kind == "truncated" else data[:1024])
    else:
        raise ValueError(f"unknown corrupt kind {kind!r}")
    return out


def write_audio_only(path: str | os.PathLike[str], *, seconds: float = 1.0) -> Path:
    """An MP4 holding only an AAC audio track (no video stream): a "video" file in the wrong codec. PyAV."""
    import av
    import numpy as np

    out = Path(path)
    rate, block = 16000, 1024
    with av.open(str(out), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"  # type: ignore[union-attr]
        for i in range(int(seconds * rate / block)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, block), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i * block
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode():  # type: ignore[union-attr]
            container.mux(packet)
    return out


def write_clip_vfr(
    path: str | os.PathLike[str], *, frames: int = 20, size: tuple[int, int] = (64, 48)
) -> Path:
    """An H.264 clip with variable frame durations (33, 100, 250, 16 ms, repeated). PyAV."""
    from fractions import Fraction

    import av

    out = Path(path)
    w, h = size
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"  # type: ignore[union-attr]
        stream.time_base = Fraction(1, 1000)
        pts = 0
        for i, bgr in enumerate(iter_frames(frames, size)):
            frame = av.VideoFrame.from_ndarray(
                np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += (33, 100, 250, 16)[i % 4]
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode():  # type: ignore[union-attr]
            container.mux(packet)
    return out


def write_zero_fps_avi(
    path: str | os.PathLike[str], *, frames: int = 10, size: tuple[int, int] = (64, 48)
) -> Path:
    """An MJPEG AVI whose headers claim 0 frames per second (avih and strh rates patched to 0)."""
    import struct

    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), 10, size)
    for frame in iter_frames(frames, size):
        writer.write(frame)
    writer.release()
    data = bytearray(out.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    if avih < 0 or strh < 0:
        raise RuntimeError("OpenCV wrote an AVI without avih/strh headers")
    struct.pack_into("<I", data, avih + 8, 0)  # dwMicroSecPerFrame
    struct.pack_into("<II", data, strh + 8 + 20, 0, 0)  # dwScale, dwRate
    out.write_bytes(bytes(data))
    return out


# ---- A camera-like corpus from real encoders (libx264, libx265, mjpeg), written at test time ----------

Codec = Literal["libx264", "libx265", "mjpeg", "mpeg4"]
Muxer = Literal["mp4", "mpegts", "avi", "matroska", "fmp4"]
SceneFrame = Callable[[int, float, tuple[int, int]], np.ndarray]  # (index, t, (w, h)) -> BGR frame


def camera_frame(index: int, t: float, size: tuple[int, int], *, cut_s: float) -> np.ndarray:
    """A camera-like BGR frame: a still textured scene that changes every ``cut_s`` seconds (a scene cut an
    encoder may answer with a keyframe), a box moving across it, and the frame's time written on it."""
    w, h = size
    scene = int(t // cut_s) if cut_s > 0 else 0
    rng = np.random.default_rng(scene)
    base = rng.integers(40, 200, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    frame = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    box = max(4, min(w, h) // 5)
    x = int((t * w / 4) % max(1, w - box))
    y = int(h / 2 + h / 4 * np.sin(t * 2))
    y = min(max(0, y - box // 2), h - box)
    frame[y : y + box, x : x + box] = (30, 220, 240)
    scale = max(0.3, h / 300)
    cv2.putText(frame, f"{index}", (2, max(10, h // 6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return frame


def write_camera_clip(
    path: str | os.PathLike[str],
    *,
    codec: Codec = "libx264",
    muxer: Muxer = "mp4",
    seconds: float = 4.0,
    fps: Fraction | int = 25,
    size: tuple[int, int] = (160, 96),
    gop_s: float = 2.0,
    bframes: int = 3,
    cut_s: float = 3.1,
    start_s: float = 0.0,
    times_s: list[float] | None = None,
    frame: SceneFrame | None = None,
    slices: int | None = None,
) -> Path:
    """Write a clip as a camera would: ``codec`` in ``muxer`` (``fmp4``: fragmented MP4 as cameras stream
    it), a keyframe at least every ``gop_s`` seconds plus the encoder's own scene-cut keyframes, a B-pyramid
    of ``bframes``, the first frame at ``start_s``. ``times_s`` gives every frame's timestamp instead of a
    regular ``1/fps`` (variable frame rate, dropped frames). ``frame(index, t, size)`` draws the picture
    instead of ``camera_frame`` (e.g. ``workers.testing.scenes``). ``slices``: libx264 cuts each picture into
    that many (hardware encoders often do; by default x264's count follows its thread count)."""
    import av

    out = Path(path)
    rate = Fraction(fps)
    times: list[Fraction] = (
        [Fraction(t) for t in times_s]
        if times_s is not None
        else [i / rate for i in range(max(1, round(seconds * rate)))]
    )
    gop = max(1, round(gop_s * rate))
    options = _encoder_options(codec, gop=gop, bframes=bframes, rate=rate)
    if slices is not None and codec == "libx264":
        options |= {"slices": str(slices), "threads": "1"}
    fragmented = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    fmt, container_options = ("mp4", fragmented) if muxer == "fmp4" else (muxer, {})
    tb = 1 / rate if muxer == "avi" else Fraction(1, 90000)  # AVI stores a constant rate, no timestamps
    with av.open(str(out), mode="w", format=fmt, options=container_options) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height = size  # type: ignore[union-attr]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"  # type: ignore[union-attr]
        stream.codec_context.time_base = tb
        stream.codec_context.gop_size = gop
        if codec == "mpeg4":
            stream.codec_context.bit_rate = max(200_000, int(size[0] * size[1] * float(rate) * 0.15))
        for i, t in enumerate(times):
            picture = frame(i, float(t), size) if frame else camera_frame(i, float(t), size, cut_s=cut_s)
            video_frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            video_frame.pts, video_frame.time_base = round((t + Fraction(start_s)) / tb), tb
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    log.debug("wrote %s (%s in %s, %d frames)", out, codec, muxer, len(times))
    return out


def _encoder_options(codec: Codec, *, gop: int, bframes: int, rate: Fraction) -> dict[str, str]:
    min_gop = str(max(1, round(rate)))  # scene-cut keyframes no closer than 1 s, as camera encoders do
    if codec == "libx264":
        return {
            "preset": "veryfast",
            "bf": str(bframes),
            "b_pyramid": "normal",
            "keyint_min": min_gop,
            "sc_threshold": "40",
            "crf": "26",
        }
    if codec == "libx265":
        params = f"keyint={gop}:min-keyint={min_gop}:bframes={bframes}:b-pyramid=1:scenecut=40"
        params += ":log-level=error"
        return {"preset": "veryfast", "x265-params": params, "crf": "28"}
    if codec == "mjpeg":
        return {"q:v": "5"}
    return {"sc_threshold": "1000000000", "keyint_min": str(gop)}

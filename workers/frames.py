"""The one place Vigil decodes media: uniform frame sampling and time windows.

``sample_frames`` is the one entry point. Videos are decoded with PyAV when it is importable (see
``workers/decode_av.py``: seek to the keyframe at or before each wanted frame and decode forward, no
16-frame back-off, swscale converts and resizes kept frames in one step), else with OpenCV as below;
``choose_backend`` makes that choice once per call. Images always go through OpenCV. Both backends return
the same frame indices; pixels differ slightly between them (different YUV->RGB paths, measured in
``tests/workers/test_frames.py``).

How a clip is sampled with OpenCV (FFmpeg backend):

1. The wanted frame indices are computed from the probe (uniform over the clip or a window, or at a rate).
2. The container's packets are scanned *without decoding* (OpenCV raw mode, ``CAP_PROP_FORMAT=-1``) up to the
   last wanted frame: this finds the keyframes (``CAP_PROP_LRF_HAS_KEY_FRAME``) and the real frame count,
   for about 10 ms per minute of 720p.
3. For each wanted frame the cheaper of two moves is taken, counted in decoded frames: ``grab()`` forward
   from where the decoder is, or seek. OpenCV's ``CAP_PROP_POS_FRAMES`` seek lands on the keyframe at or
   before ``target - 16`` and decodes forward to the target, so its cost is ``target - K(target - 16)``.
   Only kept frames are ``retrieve()``-d (colour conversion is most of a read's cost).
4. ``keyframe`` mode: when the exact frame is not cheap (more than ``KEYFRAME_SLACK`` decodes away), take the
   cheapest frame near it instead: ``K + 16`` for the keyframe ``K`` nearest the target, which OpenCV
   reaches by seeking to ``K`` and decoding 16 frames (seeking to ``K`` itself would decode a whole GOP
   because of the 16-frame back-off). Targets that snap to a frame already returned repeat it, so T is
   always the number asked for; ``indices``/``timestamps_s`` say which frames were really returned.
5. Each kept frame is resized once, right after retrieve, into a preallocated output array (at most one
   full-size frame is alive at a time), then converted to RGB.

Exact mode is frame-accurate on constant-frame-rate files (tested bit-identical to a sequential read, mp4v
and H.264 with B-frames). OpenCV derives frame numbers from timestamps, so variable-frame-rate files can be
off by a frame or so.
"""

from __future__ import annotations

import bisect
import importlib.util
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from vigil.errors import UnreadableMedia
from vigil.media import MediaInfo, open_capture, probe

log = logging.getLogger(__name__)

Mode = Literal["exact", "keyframe"]
Backend = Literal["pyav", "opencv"]

OPENCV_SEEK_BACKOFF = 16  # frames OpenCV's FFmpeg seek backs off before the target
SEEK_OVERHEAD = 4  # a seek's fixed cost (flush, demuxer seek), in decoded frames
KEYFRAME_SLACK = OPENCV_SEEK_BACKOFF + 2 * SEEK_OVERHEAD + 8  # keyframe mode: exact when this cheap
FALLBACK_SEEK_GAP_S = 2.0  # without a packet scan: seek when the next frame is further than this
SCAN_MARGIN = 300  # packets scanned past the last wanted frame (B-frame reordering, count lies)


@dataclass
class Frames:
    rgb: np.ndarray  # (T, H, W, 3) uint8 RGB
    indices: list[int]
    timestamps_s: list[float]
    source_size: tuple[int, int]  # (w, h) before resizing
    decoded: int = 0  # frames decoded to get these (seeks estimated from keyframes): a cost measure


@dataclass
class _Scan:
    keyframes: list[int] = field(default_factory=list)
    packets: int = 0
    complete: bool = False  # reached the end of the stream (so ``packets`` is the real frame count)


def sample_frames(
    path: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    mode: Mode = "exact",
    max_side: int | None = None,
    info: MediaInfo | None = None,
    backend: Backend | None = None,
) -> Frames:
    """Decode ``num_frames`` frames spread uniformly over ``[start_s, end_s)`` (or frames at ``fps``).

    ``backend`` forces a decoder (tests, benchmarks); by default ``choose_backend`` picks one."""
    if (num_frames is None) == (fps is None):
        raise ValueError("give exactly one of num_frames or fps")
    if num_frames is not None and num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    if fps is not None and not fps > 0:
        raise ValueError("fps must be > 0")
    if mode not in ("exact", "keyframe"):
        raise ValueError(f"unknown mode {mode!r}")
    info = info or probe(path)
    chosen = choose_backend(info, prefer=backend)
    log.debug("%s: sampling with %s", path, chosen)
    try:
        if info.kind == "image":
            return _read_image(path, max_side=max_side)
        sample = _sample_video_av if chosen == "pyav" else _sample_video
        return sample(
            path,
            info,
            num_frames=num_frames,
            fps=fps,
            start_s=start_s,
            end_s=end_s,
            mode=mode,
            max_side=max_side,
        )
    except cv2.error as exc:
        raise UnreadableMedia(path, f"OpenCV error: {str(exc).strip().splitlines()[-1]}") from exc


def pyav_available() -> bool:
    """Whether PyAV can be imported (without importing it)."""
    return importlib.util.find_spec("av") is not None


def choose_backend(info: MediaInfo, *, prefer: Backend | None = None) -> Backend:
    """The decoder for one call: OpenCV for images; for videos ``prefer`` if given, else PyAV when it is
    importable (it seeks without OpenCV's 16-frame back-off), else OpenCV."""
    if info.kind == "image":
        return "opencv"
    if prefer == "pyav" and not pyav_available():
        raise RuntimeError("the PyAV backend was asked for but `av` is not installed")
    if prefer is not None:
        return prefer
    return "pyav" if pyav_available() else "opencv"


def target_indices(
    info: MediaInfo,
    *,
    num_frames: int | None,
    fps: float | None,
    start_s: float,
    end_s: float | None,
    frame_count: int | None = None,
) -> list[int]:
    """Wanted frame indices (sorted, may repeat when more frames are asked than the window holds)."""
    first, stop = window_frames(info, start_s=start_s, end_s=end_s, frame_count=frame_count)
    span = stop - first
    if num_frames is not None:
        return [first + math.floor((k + 0.5) * span / num_frames) for k in range(num_frames)]
    assert fps is not None
    n = max(1, math.ceil(span / info.fps * fps - 1e-6))
    return [min(stop - 1, first + math.floor(j * info.fps / fps + 1e-6)) for j in range(n)]


def window_frames(
    info: MediaInfo, *, start_s: float, end_s: float | None, frame_count: int | None = None
) -> tuple[int, int]:
    """The window ``[start_s, end_s)`` as frame indices ``[first, stop)``."""
    count = frame_count or info.frame_count
    first = max(0, math.floor(start_s * info.fps + 1e-6))
    stop = count if end_s is None else min(count, math.ceil(end_s * info.fps - 1e-6))
    if first >= count or stop <= first:
        raise ValueError(f"window [{start_s}, {end_s}) s holds no frame of a {info.duration_s:.3f} s clip")
    return first, stop


def _sample_video(
    path: str | os.PathLike[str],
    info: MediaInfo,
    *,
    num_frames: int | None,
    fps: float | None,
    start_s: float,
    end_s: float | None,
    mode: Mode,
    max_side: int | None,
) -> Frames:
    targets = target_indices(info, num_frames=num_frames, fps=fps, start_s=start_s, end_s=end_s)
    scan = scan_packets(path, stop=targets[-1] + SCAN_MARGIN)
    if scan.complete and 0 < scan.packets < info.frame_count:
        log.info("%s: container says %d frames, stream holds %d", path, info.frame_count, scan.packets)
        targets = target_indices(
            info, num_frames=num_frames, fps=fps, start_s=start_s, end_s=end_s, frame_count=scan.packets
        )
    out_w, out_h = fit_size((info.width, info.height), max_side)
    with open_capture(path) as cap:
        reader = _Reader(cap, path, (out_w, out_h), info.fps)
        frames = _decode(reader, targets, scan, mode=mode, fps=info.fps)
    frames.source_size = (info.width, info.height)
    return frames


def _sample_video_av(
    path: str | os.PathLike[str],
    info: MediaInfo,
    *,
    num_frames: int | None,
    fps: float | None,
    start_s: float,
    end_s: float | None,
    mode: Mode,
    max_side: int | None,
) -> Frames:
    from workers.decode_av import sample_av  # PyAV is imported only when it is used

    out_size = fit_size((info.width, info.height), max_side)
    count = info.frame_count
    for _ in range(2):  # a second pass only when the stream ends before the container said it would
        targets = target_indices(
            info, num_frames=num_frames, fps=fps, start_s=start_s, end_s=end_s, frame_count=count
        )
        window = window_frames(info, start_s=start_s, end_s=end_s, frame_count=count)
        got = sample_av(path, targets, window=window, mode=mode, out_size=out_size, fps=info.fps)
        if got.ended_at is None or not 0 < got.ended_at < count:
            break
        log.info("%s: container says %d frames, stream holds %d", path, count, got.ended_at)
        count = got.ended_at
    return Frames(
        rgb=got.rgb,
        indices=got.indices,
        timestamps_s=got.timestamps_s,
        source_size=(info.width, info.height),
        decoded=got.decoded,
    )


def scan_packets(path: str | os.PathLike[str], *, stop: int) -> _Scan:
    """Keyframe positions and packet count up to ``stop`` packets, demuxing only (no decode)."""
    scan = _Scan()
    try:
        with open_capture(path, raw=True) as cap:
            while scan.packets < stop:
                if not cap.grab():
                    scan.complete = True
                    break
                if cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                    scan.keyframes.append(scan.packets)
                scan.packets += 1
    except (UnreadableMedia, cv2.error) as exc:
        log.debug("packet scan of %s failed (%s); seeking by distance only", path, exc)
        return _Scan()
    if not scan.keyframes:
        return _Scan()
    return scan


class _Reader:
    """A capture with a known decoder position; retrieves into a resized RGB output slot."""

    def __init__(
        self, cap: cv2.VideoCapture, path: str | os.PathLike[str], out_size: tuple[int, int], fps: float
    ) -> None:
        self.cap, self.path, self.out_size, self.fps = cap, path, out_size, fps
        self.pos = 0  # index of the next frame grab() decodes
        self.decoded = 0

    def seek(self, index: int, *, cost: int) -> None:
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self.pos = index
        self.decoded += cost - SEEK_OVERHEAD

    def skip_to(self, index: int) -> bool:
        while self.pos < index:
            if not self.cap.grab():
                return False
            self.pos += 1
            self.decoded += 1
        return True

    def read_into(self, slot: np.ndarray) -> tuple[int, float] | None:
        """Decode the next frame into ``slot``; its (index, timestamp) or None at the end of the stream."""
        if not self.cap.grab():
            return None
        self.decoded += 1
        index = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1
        ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        ok, bgr = self.cap.retrieve()
        if not ok or bgr is None:
            return None
        if index < 0:
            index = self.pos
        self.pos = index + 1
        _fit_rgb_into(bgr, slot)
        ts = ms / 1000.0 if math.isfinite(ms) and ms >= 0 else index / self.fps
        return index, ts


def _decode(reader: _Reader, targets: Sequence[int], scan: _Scan, *, mode: Mode, fps: float) -> Frames:
    w, h = reader.out_size
    out = np.empty((len(targets), h, w, 3), dtype=np.uint8)
    indices: list[int] = []
    stamps: list[float] = []
    for t in targets:
        want = _choose(t, reader.pos, scan, mode=mode, fps=fps)
        if indices and want < reader.pos:  # already decoded (a repeat): reuse the last frame
            out[len(indices)] = out[len(indices) - 1]
            indices.append(indices[-1])
            stamps.append(stamps[-1])
            continue
        if not _move_to(reader, want, scan, fps):
            break
        got = reader.read_into(out[len(indices)])
        if got is None:
            break
        indices.append(got[0])
        stamps.append(got[1])
    if not indices:
        raise UnreadableMedia(reader.path, "no decodable frame")
    if len(indices) < len(targets):
        log.info("%s: stream ended early; %d of %d frames", reader.path, len(indices), len(targets))
    return Frames(
        rgb=out[: len(indices)],
        indices=indices,
        timestamps_s=stamps,
        source_size=(0, 0),
        decoded=reader.decoded,
    )


def _seek_cost(target: int, keyframes: Sequence[int]) -> int:
    back = max(0, target - OPENCV_SEEK_BACKOFF)
    i = bisect.bisect_right(keyframes, back) - 1
    return target - (keyframes[i] if i >= 0 else 0) + SEEK_OVERHEAD


def _grab_cost(target: int, pos: int) -> float:
    return target - pos if target >= pos else math.inf


def _choose(target: int, pos: int, scan: _Scan, *, mode: Mode, fps: float) -> int:
    """The frame to decode for ``target``: itself (exact), or a cheap one near it (keyframe mode)."""
    if mode == "exact" or not scan.keyframes:
        return target
    if min(_grab_cost(target, pos), _seek_cost(target, scan.keyframes)) <= KEYFRAME_SLACK:
        return target
    landings = [k + OPENCV_SEEK_BACKOFF for k in scan.keyframes if k + OPENCV_SEEK_BACKOFF < scan.packets]
    if not landings:
        return target
    i = bisect.bisect_left(landings, target)
    near = [landings[j] for j in (i - 1, i) if 0 <= j < len(landings)]
    return min(near, key=lambda x: (abs(x - target), x))


def _move_to(reader: _Reader, target: int, scan: _Scan, fps: float) -> bool:
    """Put the decoder just before ``target`` by grabbing forward or seeking, whichever decodes less."""
    if scan.keyframes:
        cost = _seek_cost(target, scan.keyframes)
        seek = _grab_cost(target, reader.pos) > cost
    else:  # keyframes unknown: assume the seek decodes about the back-off plus a short GOP
        gap = target - reader.pos
        cost = OPENCV_SEEK_BACKOFF * 2 + SEEK_OVERHEAD
        seek = gap < 0 or gap > max(OPENCV_SEEK_BACKOFF * 2, FALLBACK_SEEK_GAP_S * fps)
    if seek:
        reader.seek(target, cost=cost)
        return True
    return reader.skip_to(target)


def fit_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(w, h) scaled down so the longest side is at most ``max_side``, keeping the aspect ratio."""
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale)))


def _fit_rgb_into(bgr: np.ndarray, slot: np.ndarray) -> None:
    h, w = slot.shape[:2]
    if bgr.shape[:2] != (h, w):
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=slot)


def _read_image(path: str | os.PathLike[str], *, max_side: int | None) -> Frames:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnreadableMedia(path, "image does not decode")
    src_h, src_w = bgr.shape[:2]
    w, h = fit_size((src_w, src_h), max_side)
    out = np.empty((1, h, w, 3), dtype=np.uint8)
    _fit_rgb_into(bgr, out[0])
    return Frames(rgb=out, indices=[0], timestamps_s=[0.0], source_size=(src_w, src_h))


def plan_windows(
    info: MediaInfo,
    *,
    window_s: float,
    frames_per_window: int,
    max_windows: int | None = None,
) -> list[tuple[float, float]]:
    """Consecutive (start_s, end_s) windows covering the clip.

    A window is widened so it holds at least ``frames_per_window`` source frames, and so that there are at
    most ``max_windows``; a last window shorter than half a window is merged into the one before it. An
    image or a clip no longer than one window is one window.
    """
    if window_s <= 0 or frames_per_window < 1:
        raise ValueError("window_s must be > 0 and frames_per_window >= 1")
    duration = info.duration_s
    if info.kind == "image" or duration <= 0:
        return [(0.0, max(0.0, duration))]
    width = max(window_s, frames_per_window / info.fps) if info.fps > 0 else window_s
    if max_windows is not None and max_windows >= 1:
        width = max(width, duration / max_windows)
    if duration <= width * 1.5:
        return [(0.0, duration)]
    n = math.floor(duration / width)
    if duration - n * width >= width / 2:
        n += 1
    if max_windows is not None and max_windows >= 1:
        n = min(n, max_windows)
    edges = [min(duration, i * width) for i in range(n)] + [duration]
    return [(edges[i], edges[i + 1]) for i in range(n)]

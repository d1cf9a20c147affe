"""The PyAV decode path of ``workers.frames`` (private: call ``workers.frames.sample_frames``).

Two handles on the file are opened: one decodes, the other only answers "which keyframe is at or before
(after) frame i?" by seeking the demuxer and reading one packet (about 0.05 ms on MP4, whose index makes a
seek exact), so the decoding handle never loses its place to a question.

Frame indices come from timestamps, ``round((pts - start_pts) * time_base * fps)``, which is what OpenCV
reports too. Each wanted frame is reached by decoding forward from where the decoder is, or by seeking to
the keyframe at or before it and decoding forward, whichever decodes fewer frames. Only the frames returned
are converted (swscale converts and resizes in one step, straight from YUV).

The timestamp arithmetic holds for constant-frame-rate streams only, so it is checked as frames come: a
frame without a timestamp, or two decoded frames whose indices are not consecutive (variable frame rate,
dropped frames), makes the call start again in *counting* mode: decode from the start, the index of a frame
is the number of frames before it (what a sequential OpenCV read reports), no seeks.

``keyframe`` mode returns the exact frame when that costs at most ``KEYFRAME_SLACK`` decodes, else the
keyframe nearest the target inside the window (distinct keyframes when there are at least as many as
targets), which costs one decode after a seek.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import av
import av.error
import numpy as np

from vigil.errors import UnreadableMedia

log = logging.getLogger(__name__)

Mode = Literal["exact", "keyframe"]

SEEK_OVERHEAD = 4  # a seek's fixed cost (decoder flush, demuxer seek), in decoded frames
KEYFRAME_SLACK = 16  # keyframe mode: decode the exact frame when it costs at most this many decodes
THREAD_TYPE = "SLICE"  # frame threads refill after every seek: measured slower here (2 cores, seek-heavy)
INTERPOLATION = "AREA"  # swscale's area averaging for downscaling, like OpenCV's INTER_AREA


@dataclass
class AvResult:
    rgb: np.ndarray
    indices: list[int]
    timestamps_s: list[float]
    decoded: int
    ended_at: int | None  # the stream ended before the last wanted frame: its real frame count


class _NotConstantRate(Exception):
    """Timestamps do not map one-to-one onto frame indices; decode again by counting frames."""


@dataclass(frozen=True)
class _Timeline:
    start_pts: int
    time_base: float
    fps: float

    def index(self, pts: int) -> int:
        return round((pts - self.start_pts) * self.time_base * self.fps)

    def pts(self, index: int) -> int:
        return self.start_pts + round(index / self.fps / self.time_base)

    def seconds(self, pts: int) -> float:
        return (pts - self.start_pts) * self.time_base


def sample_av(
    path: str | os.PathLike[str],
    targets: Sequence[int],
    *,
    window: tuple[int, int],
    mode: Mode,
    out_size: tuple[int, int],
    fps: float,
) -> AvResult:
    """Frames at ``targets`` (sorted frame indices inside ``window`` = [first, stop)) of ``path``."""
    try:
        with av.open(str(path)) as container, av.open(str(path)) as twin:
            stream = _video_stream(container, path)
            stream.thread_type = THREAD_TYPE
            timeline = _Timeline(stream.start_time or 0, float(stream.time_base or 0) or 1 / 90000, fps)
            keys = _KeyIndex(twin, _video_stream(twin, path), timeline)
            wants = list(targets) if mode == "exact" else _keyframe_wants(targets, keys, window)
            chosen_keys = frozenset(wants) - frozenset(targets)  # keyframes taken in place of a target
            decoder = _Decoder(container, stream, timeline, out_size)
            try:
                return _collect(decoder, wants, keys, path, keyframes=chosen_keys)
            except _NotConstantRate as exc:
                log.info("%s: %s; decoding by counting frames", path, exc)
                container.seek(0)
                counter = _Decoder(container, stream, timeline, out_size, counting=True)
                return _collect(counter, list(targets), None, path)
    except av.error.FFmpegError as exc:
        raise UnreadableMedia(path, f"FFmpeg: {_reason(exc)}") from exc


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike[str]) -> av.VideoStream:
    stream = container.streams.best("video")
    if not isinstance(stream, av.VideoStream):
        raise UnreadableMedia(path, "no video stream")
    return stream


def _reason(exc: av.error.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip()


class _KeyIndex:
    """Keyframe positions, asked of a second handle on the file (seek + read one packet)."""

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream, tl: _Timeline) -> None:
        self.container, self.stream, self.tl = container, stream, tl
        self._cache: dict[tuple[int, bool], int | None] = {}

    def at_or_before(self, index: int) -> int | None:
        back = 0
        while index - back >= 0:  # a demuxer may land after the time asked: ask earlier until it does not
            key = self._landing(index - back, backward=True)
            if key is None or key <= index:
                return key
            back = back * 2 + 16
        return self._landing(0, backward=True)

    def at_or_after(self, index: int) -> int | None:
        key = self._landing(index, backward=False)
        return key if key is not None and key >= index else None

    def _landing(self, index: int, *, backward: bool) -> int | None:
        if (index, backward) not in self._cache:
            self._cache[index, backward] = self._seek_and_peek(index, backward=backward)
        return self._cache[index, backward]

    def _seek_and_peek(self, index: int, *, backward: bool) -> int | None:
        try:
            self.container.seek(self.tl.pts(index), stream=self.stream, backward=backward, any_frame=False)
            for n, packet in enumerate(self.container.demux(self.stream)):
                if packet.pts is not None and packet.is_keyframe:
                    return self.tl.index(packet.pts)
                if n > 64:
                    break
        except av.error.FFmpegError:  # e.g. seeking forward past the last keyframe
            pass
        return None


class _Decoder:
    """A decoding handle that knows the index of the next frame it will yield (``pos``)."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        tl: _Timeline,
        out_size: tuple[int, int],
        *,
        counting: bool = False,
    ) -> None:
        self.container, self.stream, self.tl, self.out_size = container, stream, tl, out_size
        self.counting = counting
        self.pos: int | None = 0 if counting else None  # None: unknown until the first frame after a seek
        self.decoded = 0
        self.ended = False
        self._frames: Iterator[av.VideoFrame] = container.decode(stream)

    def seek(self, key: int | None) -> None:
        pts = self.tl.pts(key) if key is not None else self.tl.start_pts
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self._frames = self.container.decode(self.stream)
        self.pos = None
        self.decoded += SEEK_OVERHEAD

    def read_keyframe(self, key: int) -> tuple[int, av.VideoFrame] | None:
        """Seek to keyframe ``key`` and decode that one packet alone: draining the decoder right after it
        skips the frames a reordering decoder (B-frames) would otherwise decode before showing it."""
        self.seek(key)
        for packet in self.container.demux(self.stream):
            if packet.pts is None or not packet.is_keyframe:
                break
            frames = list(self.stream.decode(packet)) + list(self.stream.decode(None))
            self.stream.codec_context.flush_buffers()
            self._frames = self.container.decode(self.stream)
            self.pos = None  # the decoder was drained: the next read seeks
            self.decoded += 1
            if len(frames) == 1 and frames[0].pts is not None and self.tl.index(frames[0].pts) == key:
                return key, frames[0]
            break
        self.seek(key)  # not a lone keyframe after all: decode forward as usual
        return self.read_at_least(key)

    def read_at_least(self, target: int) -> tuple[int, av.VideoFrame] | None:
        """Decode forward to the first frame whose index is >= ``target``; None at the end of the stream."""
        for frame in self._frames:
            self.decoded += 1
            index = self._index_of(frame)
            self.pos = index + 1
            if index >= target:
                return index, frame
        self.ended = True
        return None

    def _index_of(self, frame: av.VideoFrame) -> int:
        if self.counting:
            assert self.pos is not None
            return self.pos
        if frame.pts is None:
            raise _NotConstantRate("a frame has no timestamp")
        index = self.tl.index(frame.pts)
        if self.pos is not None and index != self.pos:
            raise _NotConstantRate(f"frame {self.pos} has the timestamp of frame {index}")
        return index

    def timestamp(self, index: int, frame: av.VideoFrame) -> float:
        if frame.pts is None or not self.counting:
            return index / self.tl.fps
        return self.tl.seconds(frame.pts)

    def convert_into(self, frame: av.VideoFrame, slot: np.ndarray) -> None:
        w, h = self.out_size
        if (frame.width, frame.height) == (w, h):
            slot[...] = frame.to_ndarray(format="rgb24")
        else:
            small = frame.reformat(width=w, height=h, format="rgb24", interpolation=INTERPOLATION)
            slot[...] = small.to_ndarray()


def _move_to(decoder: _Decoder, want: int, keys: _KeyIndex | None) -> None:
    """Seek when decoding forward to ``want`` would decode more than seeking to its keyframe would."""
    pos = decoder.pos
    if keys is None or decoder.ended:
        if decoder.ended or pos is None or pos > want:
            decoder.seek(None)
            decoder.pos, decoder.ended = (0 if decoder.counting else None), False
        return
    key = keys.at_or_before(want)
    if pos is not None and pos <= want and (key is None or want - pos <= want - key + SEEK_OVERHEAD):
        return
    decoder.seek(key)


def _collect(
    decoder: _Decoder,
    wants: Sequence[int],
    keys: _KeyIndex | None,
    path: str | os.PathLike[str],
    *,
    keyframes: frozenset[int] = frozenset(),
) -> AvResult:
    w, h = decoder.out_size
    out = np.empty((len(wants), h, w, 3), dtype=np.uint8)
    indices: list[int] = []
    stamps: list[float] = []
    for want in sorted(wants):
        if indices and want <= indices[-1]:  # already returned (a repeat): reuse it
            out[len(indices)] = out[len(indices) - 1]
            indices.append(indices[-1])
            stamps.append(stamps[-1])
            continue
        got = _read(decoder, want, keys, path, have=len(indices), keyframes=keyframes)
        if got is None:
            break
        index, frame = got
        decoder.convert_into(frame, out[len(indices)])
        indices.append(index)
        stamps.append(decoder.timestamp(index, frame))
    if not indices:
        raise UnreadableMedia(path, "no decodable frame")
    ended_at = decoder.pos if decoder.ended and len(indices) < len(wants) else None
    return AvResult(out[: len(indices)], indices, stamps, decoder.decoded, ended_at)


def _read(
    decoder: _Decoder,
    want: int,
    keys: _KeyIndex | None,
    path: str | os.PathLike[str],
    *,
    have: int,
    keyframes: frozenset[int],
) -> tuple[int, av.VideoFrame] | None:
    """The frame at ``want`` (or the first after it); None when the stream ends or breaks after ``have``
    frames were already read (like a cut recording), an error when nothing was read yet. A keyframe chosen
    in keyframe mode that is not next in line is decoded alone."""
    try:
        pos = decoder.pos
        if want in keyframes and not (pos is not None and 0 <= want - pos <= SEEK_OVERHEAD):
            return decoder.read_keyframe(want)
        _move_to(decoder, want, keys)
        return decoder.read_at_least(want)
    except av.error.FFmpegError as exc:
        if have == 0:
            raise
        log.info("%s: decoding stopped at frame %s: %s", path, decoder.pos, _reason(exc))
        decoder.ended = True
        return None


def _keyframe_wants(targets: Sequence[int], keys: _KeyIndex, window: tuple[int, int]) -> list[int]:
    """For each target: itself when cheap, else a keyframe near it inside the window."""
    first, stop = window
    before = [keys.at_or_before(t) for t in targets]
    pool: set[int] = set()
    for t, k in zip(targets, before, strict=True):
        if k is None or t - k + SEEK_OVERHEAD > KEYFRAME_SLACK:  # not cheap on its own
            pool.update(x for x in (k, keys.at_or_after(t + 1)) if x is not None and first <= x < stop)
    fallback = _assign(targets, sorted(pool))
    wants: list[int] = []
    pos: int | None = None
    for t, k, alt in zip(targets, before, fallback, strict=True):
        forward = t - pos if pos is not None and pos <= t else math.inf
        from_key = t - k + SEEK_OVERHEAD if k is not None else math.inf
        want = t if alt is None or min(forward, from_key) <= KEYFRAME_SLACK else alt
        wants.append(want)
        pos = want + 1
    return sorted(wants)


def _assign(targets: Sequence[int], pool: Sequence[int]) -> list[int | None]:
    """A keyframe from ``pool`` for each target: the nearest, or, when the pool holds at least as many
    keyframes as there are targets, distinct ones in order (each the nearest of those still available)."""
    if not pool:
        return [None] * len(targets)
    n = len(targets)
    if len(pool) < n:
        return [_nearest(pool, t, 0, len(pool) - 1) for t in targets]
    picks: list[int | None] = []
    lo = 0
    for i, t in enumerate(targets):
        hi = len(pool) - (n - i)
        j = pool.index(_nearest(pool, t, lo, hi))
        picks.append(pool[j])
        lo = j + 1
    return picks


def _nearest(pool: Sequence[int], t: int, lo: int, hi: int) -> int:
    i = min(max(bisect.bisect_left(pool, t, lo, hi + 1), lo), hi)
    near = [pool[j] for j in (i - 1, i) if lo <= j <= hi]
    return min(near, key=lambda x: (abs(x - t), x))

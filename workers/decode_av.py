"""The decoding engine behind ``workers.frames`` (private: use ``workers.frames.open_media``).

One ``VideoSession`` per media file serves a sorted list of wanted points in one forward pass. A point is a
time in seconds from the stream's first frame; it is served by the first frame whose presentation timestamp
reaches it (what a player shows from that time on), or by one chosen keyframe (``Point.key``). Timestamps
come from the frames themselves, never from an average frame rate, so variable frame rates, dropped
frames, lying counts, edit lists and non-zero start times change nothing.

How the pass moves: the keyframes are known before decoding (the demuxer's index on MP4/MOV/MKV/AVI, else
one demux-only scan of the packets). To reach a point the decoder must start at the last keyframe at or
before it; when that keyframe lies ahead of where the decoder is, the packets in between are not decoded:
the decoder is drained (its last frames come out) and flushed, and the demuxer either seeks to the keyframe
(indexed containers, gaps over ``SEEK_MIN_GAP_S``) or reads on without decoding. A decoding run started at
keyframe K trusts only frames shown at or after K (leading pictures of an open GOP reference frames before
K). A keyframe point is served by decoding its packet alone and draining. H.264 non-reference pictures
shown before the next point are not decoded at all (``workers/disposable.py``). A frame is decoded at most
once (``redecoded`` counts exceptions: a demuxer landing after the point, corrected by going back).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import av
import av.error

from vigil.errors import UnreadableMedia
from workers.disposable import disposable, length_size

log = logging.getLogger(__name__)

SEEK_MIN_GAP_S = 2.0  # a demuxer seek only for jumps longer than this; shorter ones demux on (~11 us/packet)
# skip ahead to a keyframe only when that spares at least this many decodes: a jump drains the frame-thread
# pipeline (about cores + 1 frames in flight) and flushes the decoder, so shorter gaps are cheaper decoded
JUMP_MIN_FRAMES = 8
EPS_S = 1e-6  # a frame "reaches" a time it is within this of (float seconds of rational timestamps)
# Threads, measured here (bench/sampling.py) on 60 s of real 640x272 x264 footage joined by stream copy, at
# load ~8: a sequential decode took 2,733 ms with slice threads (x264 writes one slice a frame: one thread
# works) and 2,203 ms with frame threads; 8 / 32 exact frames 462 / 2,005 ms with slice threads, 180 / 759
# ms with frame threads. Frame threads keep frames in flight that a jump drains, which costs less than
# decoding on one core, so they are used around seeks too. Lone keyframes (keyframe mode) decode one packet
# and drain: a frame thread's hand-off is pure latency there (30-50 ms a keyframe vs 10 ms for 8 in slices).
THREAD_TYPE = "FRAME"
KEYFRAMES_ONLY_THREAD_TYPE = "SLICE"
THREAD_COUNT = 0  # FFmpeg's choice (a core each, +1); bench/throughput_overlap.py: why, beside the model


@dataclass(frozen=True)
class Point:
    t: float  # seconds from the stream's start
    key: int | None = None  # keyframe mode: the ordinal of the keyframe that serves this point


@dataclass(frozen=True)
class Keyframe:
    t: float  # presentation time in seconds from the stream's start (estimated from the index's dts)
    pos: int  # byte position of its packet, -1 when unknown


class VideoSession:
    """An open video file: its timeline, keyframes and real duration, and the one forward decoding pass."""

    def __init__(self, path: str | os.PathLike[str], *, fallback_duration_s: float) -> None:
        self.path = path
        self.decoded = 0  # packets sent to the decoder (= frames decoded)
        self.redecoded = 0  # of those, packets that had been decoded before in this session
        self._fed: set[tuple[int | None, int | None]] = set()
        self._resolved: set[int] = set()
        self.skipped = 0  # non-reference packets left out (``workers/disposable.py``)
        try:
            self.container = av.open(str(path))
            self.stream = _video_stream(self.container, path)
            self.tb = float(self.stream.time_base or 0) or 1 / 90000
            ctx = self.stream.codec_context
            self.nal_prefix = length_size(ctx.name, ctx.extradata)
            self._index_keys(fallback_duration_s)
        except av.error.FFmpegError as exc:
            self.close()
            raise UnreadableMedia(path, f"FFmpeg: {reason(exc)}") from exc

    def close(self) -> None:
        if getattr(self, "container", None) is not None:
            self.container.close()

    @property
    def size(self) -> tuple[int, int]:
        return self.stream.codec_context.width, self.stream.codec_context.height

    def seconds(self, pts: int) -> float:
        return (pts - self.origin) * self.tb

    def keyframes_in(self, start_s: float, end_s: float) -> list[int]:
        """Ordinals of the keyframes shown inside [start_s, end_s) (their exact times: see ``_resolve``)."""
        times = [k.t for k in self.keyframes]
        near = range(bisect.bisect_left(times, start_s - 1.0), bisect.bisect_left(times, end_s + 1.0))
        self._resolve(near)
        times = [k.t for k in self.keyframes]
        first, stop = bisect.bisect_left(times, start_s - EPS_S), bisect.bisect_left(times, end_s - EPS_S)
        return list(range(first, stop))

    def _resolve(self, ordinals: Iterable[int]) -> None:
        """Replace the index's estimated times of these keyframes by their packets' real timestamps (the
        index holds decode times; their offset to presentation times varies with a variable frame rate).
        The demuxer seeks to each and reads one packet (about 0.1 ms each on MP4), before the pass starts;
        a second handle would cost one more open, which parses the whole index (20 ms on 60 s of 720p)."""
        todo = [o for o in ordinals if o not in self._resolved and self.keyframes[o].pos >= 0]
        if not todo or not self.seekable:
            return
        for o in todo:
            key = self.keyframes[o]
            self._resolved.add(o)
            self.seek_to(key)
            for n, packet in enumerate(self._packets):
                if packet.pos == key.pos and packet.pts is not None:
                    self.keyframes[o] = Keyframe(self.seconds(packet.pts), key.pos)
                    break
                if n > 512 or (packet.pos is not None and packet.pos > key.pos):
                    break
        self.rewind()

    def _index_keys(self, fallback_duration_s: float) -> None:
        """Keyframes, origin and duration: from the demuxer's index when it has one, else by one scan."""
        first = next((p for p in self.container.demux(self.stream) if p.pts is not None), None)
        if first is None or first.pts is None:
            raise UnreadableMedia(self.path, "no video packet")
        first_pts: int = first.pts
        start = self.stream.start_time
        self.origin: int = start if start is not None else first_pts
        entries = [e for e in self.stream.index_entries if not e.is_discard]
        keys = [e for e in entries if e.is_keyframe]
        # A sample table (MP4, MOV, AVI) lists every frame; a cue index (MKV) only some keyframes, read
        # lazily; MPEG-TS has none and seeks by guessing byte offsets. Only a full table is trusted.
        full_table = len(keys) < len(entries) or all(e.is_keyframe for e in entries) and len(entries) > 1
        self.seekable = bool(keys) and full_table and self.container.format.name not in ("mpegts", "mpeg")
        if self.seekable:
            offset = first_pts - keys[0].timestamp  # index timestamps are dts in MP4: shift to pts
            self.keyframes = [Keyframe(self.seconds(e.timestamp + offset), e.pos) for e in keys]
            size = os.stat(self.path).st_size
            whole = [e for e in entries if e.pos + e.size <= size]  # a cut file keeps an index of all
            last = max((e.timestamp for e in whole), default=first_pts - offset)
            step = entries[1].timestamp - entries[0].timestamp if len(entries) > 1 else 0
            estimate = self.seconds(last + offset + step)  # exact at a constant rate only
            self.duration_s = max(self._tail_end(keys[-1].timestamp) or estimate, 1e-3)
            self.rewind()
        else:
            self._scan(first, first_pts)
        if self.duration_s <= 0:
            self.duration_s = fallback_duration_s

    def _step(self) -> int:
        return max(0, round(1 / (_rate(self) * self.tb)))  # a frame, for packets that carry no duration

    def _tail_end(self, last_key_dts: int) -> float | None:
        """The end of the last frame shown, from the packets after the last keyframe (demuxed, not decoded):
        at a variable frame rate the index's last decode time plus an offset falls short of it."""
        end: int | None = None
        try:
            self.container.seek(last_key_dts, stream=self.stream, backward=True, any_frame=False)
            for packet in self.container.demux(self.stream):
                if packet.pts is not None and packet.size:
                    stop = packet.pts + (packet.duration or self._step())
                    end = stop if end is None else max(end, stop)
        except av.error.FFmpegError as exc:  # a cut file: what was read before the cut stands
            log.debug("%s: reading the last packets stopped: %s", self.path, reason(exc))
        return self.seconds(end) if end is not None else None

    def _scan(self, first: av.Packet, first_pts: int) -> None:
        """Keyframes and duration by demuxing every packet once (no decoding): streams without an index."""
        keys: list[Keyframe] = []
        last = first_pts
        for packet in itertools.chain([first], self.container.demux(self.stream)):
            pts = packet.pts
            if pts is None:
                continue
            last = max(last, pts + (packet.duration or self._step()))
            if packet.is_keyframe:
                keys.append(Keyframe(self.seconds(pts), packet.pos if packet.pos is not None else -1))
        self.keyframes = keys or [Keyframe(self.seconds(first_pts), -1)]
        self.duration_s = self.seconds(last)
        self.rewind()

    def rewind(self) -> None:
        self.container.seek(0)  # to the start of the file (byte 0 for streams without an index)
        self._packets: Iterator[av.Packet] = self.container.demux(self.stream)

    def serve(self, points: Sequence[Point]) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield (point index, frame) for every point, in order, from one forward pass."""
        times = [k.t for k in self.keyframes]
        starts = {bisect.bisect_right(times, p.t + EPS_S) - 1 for p in points if p.key is None}
        self._resolve(sorted({k + d for k in starts for d in (-1, 0, 1)} & set(range(len(times)))))
        only_keys = all(p.key is not None for p in points)
        self.stream.thread_type = KEYFRAMES_ONLY_THREAD_TYPE if only_keys else THREAD_TYPE
        self.stream.thread_count = THREAD_COUNT
        run = _Run(self, points)
        try:
            yield from run.frames()
        except av.error.FFmpegError as exc:
            if run.last is None:
                raise UnreadableMedia(self.path, f"FFmpeg: {reason(exc)}") from exc
            stopped = self.seconds(run.last.pts or 0)
            log.info("%s: decoding stopped at %.3f s: %s", self.path, stopped, reason(exc))
        if run.last is None:
            raise UnreadableMedia(self.path, "no decodable frame")
        for i in range(run.next, len(points)):  # past the last frame: a player shows the last frame
            yield i, run.last

    def feed(self, packet: av.Packet) -> list[av.VideoFrame]:
        key = (packet.pos if packet.pos is not None and packet.pos >= 0 else None, packet.dts)
        if key in self._fed:
            self.redecoded += 1
        self._fed.add(key)
        self.decoded += 1
        return list(self.stream.codec_context.decode(packet))

    def drain(self) -> list[av.VideoFrame]:
        frames = list(self.stream.codec_context.decode(None))
        self.stream.codec_context.flush_buffers()
        return frames

    def seek_to(self, key: Keyframe) -> None:
        pts: int = self.origin + round(key.t / self.tb)
        self.container.seek(pts, stream=self.stream, backward=True, any_frame=False)
        self._packets = self.container.demux(self.stream)

    def next_packet(self) -> av.Packet | None:
        for packet in self._packets:
            if packet.size:
                return packet
        return None


class _Run:
    """The state of one forward pass: where the decoder is, which keyframe its run started at."""

    def __init__(self, session: VideoSession, points: Sequence[Point]) -> None:
        self.s, self.points = session, points
        self.next = 0  # the first point not served yet
        self.last: av.VideoFrame | None = None  # the last trusted frame
        self.trust: float | None = None  # decoding since the keyframe shown at this time; None: not decoding
        self.key = -1  # ordinal of the last keyframe packet read (fed or skipped)
        self.at = -1.0  # presentation time of the last packet read
        self.ordinal = {k.pos: i for i, k in enumerate(session.keyframes) if k.pos >= 0}
        self.key_times = [k.t for k in session.keyframes]
        self.half_frame = 0.5 / _rate(session)
        self.started = (-1, -1)  # (point, keyframe) of the last run started
        self.shown: dict[int, float] = {}  # keyframe ordinal -> its packet's real presentation time

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        while self.next < len(self.points):
            goal = self._start_for(self.points[self.next])
            if self.trust is not None and goal > self.key and self._saves(goal):
                yield from self._served(self.s.drain())  # end this run: what it decoded comes out
                self.trust = None
                continue
            if self.trust is None:
                if (self.next, goal) == self.started:  # a run at this keyframe did not reach the point
                    if self.last is None:
                        return
                    t = self.points[self.next].t
                    log.warning("%s: keyframe %d does not reach %.3f s", self.s.path, goal, t)
                    yield self.next, self.last
                    self.next += 1
                    continue
                self.started = (self.next, goal)
                started = self._start_run(goal, self.points[self.next])
                if started is None:
                    return
                frames, alone = started
                yield from self._served(frames)
                if alone:
                    self.trust = None
                continue
            packet = self.s.next_packet()
            if packet is None:
                yield from self._served(self.s.drain())
                return
            self._read(packet)
            if self._skippable(packet):
                continue
            yield from self._served(self.s.feed(packet))
            if self._keyframe_alone(packet):
                yield from self._served(self.s.drain())
                self.trust = None

    def _skippable(self, packet: av.Packet) -> bool:
        """A non-reference picture shown before the next point (and not near the end, where the last
        frame serves points past it): nothing will show it or refer to it."""
        if self.s.nal_prefix is None or packet.pts is None or packet.is_keyframe:
            return False
        t = self.points[self.next].t
        if t > self.s.duration_s - 1.0 or self.s.seconds(packet.pts) >= t - EPS_S:
            return False
        if not disposable(memoryview(packet), self.s.nal_prefix):
            return False
        self.s.skipped += 1
        return True

    def _start_for(self, point: Point) -> int:
        """Ordinal of the keyframe a run must start at to serve ``point``."""
        if point.key is not None:
            return point.key
        return max(0, bisect.bisect_right(self.key_times, point.t + EPS_S) - 1)

    def _saves(self, goal: int) -> bool:
        """Whether jumping to keyframe ``goal`` spares decoding enough frames to be worth a flush."""
        return (self.key_times[goal] - self.at) * _rate(self.s) >= JUMP_MIN_FRAMES

    def _start_run(self, goal: int, point: Point) -> tuple[list[av.VideoFrame], bool] | None:
        """Read on (or seek) to keyframe ``goal`` and feed it: its frames, and whether it was decoded alone
        (the decoder drained after it); None at the end of the stream."""
        target = self.s.keyframes[goal]
        if goal <= self.key or (self.s.seekable and target.t - max(self.at, 0.0) > SEEK_MIN_GAP_S):
            self._seek(goal)
        while True:
            packet = self.s.next_packet()
            if packet is None:
                return None
            self._read(packet)
            if not packet.is_keyframe or self.key < goal:
                continue
            shown = self.s.seconds(packet.pts) if packet.pts is not None else 0.0
            late = self.key > goal or (point.key is None and shown > point.t + EPS_S)
            if late and self.key > 0:  # the demuxer landed after the point: start one keyframe earlier
                goal = min(goal, self.key) - 1
                self._seek(goal)
                continue
            self.trust = -float("inf") if self.key == 0 else shown
            frames = self.s.feed(packet)
            alone = self._keyframe_alone(packet)
            return (frames + self.s.drain(), True) if alone else (frames, False)

    def _seek(self, goal: int) -> None:
        if goal <= 0:
            self.s.rewind()
        else:
            self.s.seek_to(self.s.keyframes[goal])
        self.key, self.at = goal - 1, -1.0

    def _read(self, packet: av.Packet) -> None:
        if packet.pts is not None:
            self.at = max(self.at, self.s.seconds(packet.pts))
        if packet.is_keyframe:
            self.key = self._ordinal_of(packet)
            if packet.pts is not None:
                self.shown[self.key] = self.key_times[self.key] = self.s.seconds(packet.pts)

    def _ordinal_of(self, packet: av.Packet) -> int:
        if packet.pos is not None and packet.pos in self.ordinal:
            return self.ordinal[packet.pos]
        t = self.s.seconds(packet.pts) if packet.pts is not None else 0.0
        i = bisect.bisect_left(self.key_times, t - self.half_frame)
        return max(self.key, min(i, len(self.key_times) - 1))

    def _keyframe_alone(self, packet: av.Packet) -> bool:
        """This keyframe serves the next point, and no point after it needs the frames that follow."""
        if not packet.is_keyframe or self.next >= len(self.points) or self.points[self.next].key != self.key:
            return False
        after = self.next + 1
        while after < len(self.points) and self.points[after].key == self.key:
            after += 1
        return after >= len(self.points) or self._start_for(self.points[after]) > self.key

    def _served(self, frames: list[av.VideoFrame]) -> Iterator[tuple[int, av.VideoFrame]]:
        for frame in frames:
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None or self.trust is None:
                continue
            t = self.s.seconds(pts)
            if t < self.trust - EPS_S:
                continue  # a leading picture of an open GOP: its references were not decoded
            self.last = frame
            while self.next < len(self.points) and self._reaches(self.points[self.next], t):
                yield self.next, frame
                self.next += 1

    def _reaches(self, point: Point, t: float) -> bool:
        if point.key is not None:
            return t >= self.shown.get(point.key, self.key_times[point.key] - self.half_frame) - EPS_S
        return t >= point.t - EPS_S


def _rate(session: VideoSession) -> float:
    rate = session.stream.average_rate or session.stream.guessed_rate
    return float(rate) if rate and float(rate) > 0 else 30.0


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike[str]) -> av.VideoStream:
    stream = container.streams.best("video")
    if not isinstance(stream, av.VideoStream):
        raise UnreadableMedia(path, "no video stream")
    return stream


def reason(exc: av.error.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip()

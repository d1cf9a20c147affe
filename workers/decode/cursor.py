"""Where a decoding pass is on a video's keyframe timeline: the points it serves, and the packet reader
both passes share (``workers/decode/forward_pass.py``, ``workers/decode/keyframe_pass.py``).

A point is a time in seconds from the stream's first frame, served by the first frame whose presentation
timestamp reaches it, or one chosen keyframe (``Point.key``). The cursor reads packets, knows which
keyframe the demuxer last passed and when, and reaches a keyframe's packet by reading on or seeking.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Protocol

import av

SEEK_MIN_GAP_S = 2.0  # a demuxer seek only for jumps longer than this; shorter ones demux on (~11 us/packet)
EPS_S = 1e-6  # a frame "reaches" a time it is within this of (float seconds of rational timestamps)


@dataclass(frozen=True)
class Point:
    t: float  # seconds from the stream's start
    key: int | None = None  # keyframe mode: the ordinal of the keyframe that serves this point


@dataclass(frozen=True)
class Keyframe:
    t: float  # presentation time in seconds from the stream's start (estimated from the index's dts)
    pos: int  # byte position of its packet, -1 when unknown


def frame_rate(stream: av.VideoStream) -> float:
    """The stream's average rate (a fallback frame duration), 30 where the container gives none."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate and float(rate) > 0 else 30.0


class Session(Protocol):
    """What a pass needs of the open video (``workers.decode.session.VideoSession`` is the one there is):
    declared here, below the passes, so the session can run them without an import circle."""

    path: str | os.PathLike[str]
    stream: av.VideoStream
    keyframes: list[Keyframe]
    seekable: bool
    duration_s: float
    nal_prefix: int | None
    skipped: int

    def seconds(self, pts: int) -> float: ...
    def rewind(self) -> None: ...
    def seek_to(self, key: Keyframe) -> None: ...
    def next_packet(self) -> av.Packet | None: ...
    def set_threads(self, thread_type: str) -> None: ...
    def feed(self, packet: av.Packet) -> list[av.VideoFrame]: ...
    def drain(self) -> list[av.VideoFrame]: ...


class Cursor:
    """The demuxer's place: the last keyframe packet read (``key``), the last time read (``at``)."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.key = -1  # ordinal of the last keyframe packet read (fed or skipped)
        self.at = -1.0  # presentation time of the last packet read
        self.ordinal = {k.pos: i for i, k in enumerate(session.keyframes) if k.pos >= 0}
        self.key_times = [k.t for k in session.keyframes]
        self.half_frame = 0.5 / frame_rate(session.stream)
        self.shown: dict[int, float] = {}  # keyframe ordinal -> its packet's real presentation time
        # indexed keyframes whose packets the stream passed without a keyframe flag (damaged: FFmpeg's
        # parser no longer sees an IDR picture); a run cannot start at them
        self.missing: set[int] = set()
        self._landed = True  # False from a seek until the first keyframe read after it

    def next_packet(self) -> av.Packet | None:
        packet = self.s.next_packet()
        if packet is not None:
            self._read(packet)
        return packet

    def to_keyframe(self, goal: int, *, shown_by_s: float | None = None) -> av.Packet | None:
        """Read on (or seek) to keyframe ``goal`` and return its packet. Where the demuxer lands past it
        (or, with ``shown_by_s``, on a keyframe shown after that time), the packet of an earlier keyframe
        is returned instead (``key`` says which). None at the end of the stream."""
        target = self.s.keyframes[goal]
        if goal <= self.key or (self.s.seekable and target.t - max(self.at, 0.0) > SEEK_MIN_GAP_S):
            self.seek(goal)
        while True:
            packet = self.next_packet()
            if packet is None:
                return None
            if not packet.is_keyframe or self.key < goal:
                continue
            shown = self.s.seconds(packet.pts) if packet.pts is not None else 0.0
            late = self.key > goal or (shown_by_s is not None and shown > shown_by_s + EPS_S)
            if late and self.key > 0:  # the demuxer landed after the point: start one keyframe earlier
                goal = min(goal, self.key) - 1
                self.seek(goal)
                continue
            return packet

    def seek(self, goal: int) -> None:
        if goal <= 0:
            self.s.rewind()
        else:
            self.s.seek_to(self.s.keyframes[goal])
        self.key, self.at, self._landed = goal - 1, -1.0, False

    def start_at_or_before(self, ordinal: int) -> int:
        """The last keyframe at or before ``ordinal`` that a decoding run can start at."""
        while ordinal > 0 and ordinal in self.missing:
            ordinal -= 1
        return ordinal

    def _read(self, packet: av.Packet) -> None:
        if packet.pts is not None:
            self.at = max(self.at, self.s.seconds(packet.pts))
        if packet.is_keyframe:
            ordinal = self._ordinal_of(packet)
            if self._landed and ordinal > self.key + 1 >= 1:  # read on past indexed keyframes: not there
                self.missing.update(range(self.key + 1, ordinal))
            self.key, self._landed = ordinal, True
            if packet.pts is not None:
                self.shown[self.key] = self.key_times[self.key] = self.s.seconds(packet.pts)

    def _ordinal_of(self, packet: av.Packet) -> int:
        if packet.pos is not None and packet.pos in self.ordinal:
            return self.ordinal[packet.pos]
        t = self.s.seconds(packet.pts) if packet.pts is not None else 0.0
        i = bisect.bisect_left(self.key_times, t - self.half_frame)
        return max(self.key, min(i, len(self.key_times) - 1))

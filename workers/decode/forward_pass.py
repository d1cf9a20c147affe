"""The forward decoding pass: serves sorted points (times, and keyframes in windows without enough of
them) in one pass over the file.

To reach a point the decoder must start at the last keyframe at or before it; when that keyframe lies
ahead of where the decoder is, the packets in between are not decoded: the decoder is drained (its last
frames come out) and flushed, and the demuxer either seeks to the keyframe (indexed containers, gaps over
``SEEK_MIN_GAP_S``) or reads on without decoding. A decoding run started at keyframe K trusts only frames
shown at or after K (leading pictures of an open GOP reference frames before K). A keyframe point is
served by decoding its packet alone and draining. H.264 non-reference pictures shown before the next point
are not decoded at all (``workers/decode/h264_nal.py``). A frame is decoded at most once (``redecoded`` counts
exceptions: a demuxer landing after the point, corrected by going back).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence

import av

from workers.decode.cursor import EPS_S, Cursor, Point, Session, frame_rate
from workers.decode.h264_nal import disposable

log = logging.getLogger(__name__)

# skip ahead to a keyframe only when that spares at least this many decodes: a jump drains the frame-thread
# pipeline (about cores + 1 frames in flight) and flushes the decoder, so shorter gaps are cheaper decoded
JUMP_MIN_FRAMES = 8


class ForwardPass:
    """The state of one forward pass: where the decoder is, which keyframe its run started at."""

    def __init__(self, session: Session, points: Sequence[Point]) -> None:
        self.s, self.points = session, points
        self.c = Cursor(session)
        self.next = 0  # the first point not served yet
        self.last: av.VideoFrame | None = None  # the last trusted frame
        self.trust: float | None = None  # decoding since the keyframe shown at this time; None: not decoding
        self.started = (-1, -1)  # (point, keyframe) of the last run started

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        while self.next < len(self.points):
            goal = self._start_for(self.points[self.next])
            if self.trust is not None and goal > self.c.key and self._saves(goal):
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
            packet = self.c.next_packet()
            if packet is None:
                yield from self._served(self.s.drain())
                return
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
        return self.c.start_at_or_before(max(0, bisect.bisect_right(self.c.key_times, point.t + EPS_S) - 1))

    def _saves(self, goal: int) -> bool:
        """Whether jumping to keyframe ``goal`` spares decoding enough frames to be worth a flush."""
        return (self.c.key_times[goal] - self.c.at) * frame_rate(self.s.stream) >= JUMP_MIN_FRAMES

    def _start_run(self, goal: int, point: Point) -> tuple[list[av.VideoFrame], bool] | None:
        """Read on (or seek) to keyframe ``goal`` (or an earlier one, see ``Cursor.to_keyframe``) and feed
        it: its frames, and whether it was decoded alone (the decoder drained after it); None at the end
        of the stream."""
        packet = self.c.to_keyframe(goal, shown_by_s=point.t if point.key is None else None)
        if packet is None:
            return None
        shown = self.s.seconds(packet.pts) if packet.pts is not None else 0.0
        self.trust = -float("inf") if self.c.key == 0 else shown
        frames = self.s.feed(packet)
        alone = self._keyframe_alone(packet)
        return (frames + self.s.drain(), True) if alone else (frames, False)

    def _keyframe_alone(self, packet: av.Packet) -> bool:
        """This keyframe serves the next point, and no point after it needs the frames that follow."""
        key = self.c.key
        if not packet.is_keyframe or self.next >= len(self.points) or self.points[self.next].key != key:
            return False
        after = self.next + 1
        while after < len(self.points) and self.points[after].key == key:
            after += 1
        return after >= len(self.points) or self._start_for(self.points[after]) > key

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
            key_time = self.c.key_times[point.key] - self.c.half_frame
            return t >= self.c.shown.get(point.key, key_time) - EPS_S
        return t >= point.t - EPS_S

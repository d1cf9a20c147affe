"""The keyframe pass: serves points that are all chosen keyframes (``keyframe`` mode), decoding each
keyframe's packet and nothing else.

How the packets are decoded was measured here, 2 cores, decoding 8-20 keyframes' packets from memory (as
``bench/sampling.py`` measures its keyframe floor) of its 60 s clips:
* one slice a picture (the real recordings): one keyframe at a time leaves a core idle (slice threads have
  one slice to share), and a frame thread's hand-off is pure latency when each is drained alone (720p: 79
  ms for 8, either way). IDR pictures (``workers/decode/h264_nal.py``) refer to nothing before them, so they
  are fed back to back to frame threads, which decode one on each core, and drained once a batch: 44 ms for
  the same 8.
* several slices a picture (the synthetic clips' x264 wrote 2): slice threads already share each picture
  between the cores; one at a time with slice threads was as fast as, or faster than, frame threads fed
  back to back (13.0 vs 16.6 ms for 8 at 640x360).
Keyframes that are not IDR pictures (open-GOP I pictures, HEVC's CRA) and codecs whose headers Vigil does
not read are decoded one at a time after a flush, as the forward pass does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import av

from workers.decode.cursor import Cursor, Point, Session
from workers.decode.h264_nal import idr_slices

log = logging.getLogger(__name__)

BACK_TO_BACK_THREAD_TYPE = "FRAME"  # single-slice IDR keyframes, fed without a flush between
ONE_AT_A_TIME_THREAD_TYPE = "SLICE"  # every other keyframe: decoded alone, the decoder drained after it
# A demuxer seek flushes the decoder (PyAV), so IDR packets are read first, this many at a time (a few MB
# at most), then fed back to back and drained once
BATCH_PACKETS = 8


def keyframe_idr_slices(packet: av.Packet, nal_prefix: int | None) -> int:
    """Slices of this keyframe's IDR picture; 0 when it is not one or its codec's headers are not read."""
    return idr_slices(memoryview(packet), nal_prefix) if nal_prefix is not None else 0


def thread_type_for(first_keyframe_slices: int) -> str:
    """Threads for a file whose first keyframe has this many IDR slices (see the module's measurements)."""
    return BACK_TO_BACK_THREAD_TYPE if first_keyframe_slices == 1 else ONE_AT_A_TIME_THREAD_TYPE


class KeyframePass:
    """Each wanted keyframe's packet, read in order (seeking or reading on) and decoded once."""

    def __init__(self, session: Session, points: Sequence[Point]) -> None:
        assert all(p.key is not None for p in points)
        self.s, self.points = session, points
        self.c = Cursor(session)
        self.next = 0  # the first point not served yet
        self.last: av.VideoFrame | None = None
        self.back_to_back: bool | None = None  # decided on the first keyframe's packet
        self.fed: dict[int, int] = {}  # a fed packet's pts -> its keyframe's ordinal
        self.last_fed = -1  # ordinal of the last keyframe read to be fed

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        batch: list[av.Packet] = []  # IDR packets read, to be fed back to back
        for goal in sorted({p.key for p in self.points if p.key is not None}):
            if goal <= self.last_fed:
                continue  # a stream without this keyframe's packet: the later one fed serves it
            packet = self._packet_of(goal)
            if packet is None:
                break
            slices = keyframe_idr_slices(packet, self.s.nal_prefix)
            if self.back_to_back is None:
                self.back_to_back = slices == 1
                self.s.set_threads(thread_type_for(slices))
            self.last_fed = self.c.key
            if packet.pts is not None:
                self.fed[packet.pts] = self.c.key
            if self.back_to_back and slices:
                batch.append(packet)
                if len(batch) >= BATCH_PACKETS:
                    yield from self._served(self._decoded(batch))
            else:  # alone, after what was read before it
                yield from self._served(self._decoded(batch) + self._decoded([packet]))
        yield from self._served(self._decoded(batch))

    def _packet_of(self, goal: int) -> av.Packet | None:
        """Keyframe ``goal``'s packet (a later keyframe's when the stream has no packet for it)."""
        packet = self.c.to_keyframe(goal)
        while packet is not None and not (packet.is_keyframe and self.c.key >= goal):
            packet = self.c.next_packet()  # the demuxer landed a keyframe early: read on to the goal
        return packet

    def _decoded(self, packets: list[av.Packet]) -> list[av.VideoFrame]:
        """Feed ``packets`` back to back, then drain the decoder; ``packets`` is emptied."""
        if not packets:
            return []
        frames = [frame for packet in packets for frame in self.s.feed(packet)] + self.s.drain()
        packets.clear()
        return frames

    def _served(self, frames: list[av.VideoFrame]) -> Iterator[tuple[int, av.VideoFrame]]:
        """Each frame serves the points of its keyframe, and any earlier one that gave no frame."""
        for frame in frames:
            pts = frame.pts if frame.pts is not None else frame.dts
            ordinal = self.fed.get(pts) if pts is not None else None
            if ordinal is None:
                log.debug("%s: a frame at pts %s matches no keyframe fed", self.s.path, pts)
                continue
            self.last = frame
            while self.next < len(self.points) and (self.points[self.next].key or 0) <= ordinal:
                yield self.next, frame
                self.next += 1

"""The decoding engine behind ``workers.decode.frames`` (private: use ``workers.decode.frames.open_media``).

One ``VideoSession`` per media file: its timeline (keyframes, origin, real duration) and one pass that
serves a sorted list of wanted points (``workers/decode/cursor.py``). Timestamps come from the frames
themselves, never from an average frame rate, so variable frame rates, dropped frames, lying counts, edit
lists and non-zero start times change nothing. The keyframes are known before decoding (the demuxer's
index on MP4/MOV/AVI, else one demux-only scan of the packets). Points that are all chosen keyframes are
served by the keyframe pass (``workers/decode/keyframe_pass.py``: their packets only); any other list by the
forward pass (``workers/decode/forward_pass.py``). A frame is decoded at most once (``redecoded`` counts
exceptions: a demuxer landing after the point, corrected by going back).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import av
import av.error

from vigil.errors import UnreadableMedia
from workers.decode.cursor import EPS_S, Keyframe, Point, frame_rate
from workers.decode.forward_pass import ForwardPass
from workers.decode.h264_nal import length_size
from workers.decode.keyframe_pass import KeyframePass

log = logging.getLogger(__name__)

# Threads of the forward pass, measured here (bench/sampling.py) on 60 s of real 640x272 x264 footage joined
# by stream copy, at load ~8: a sequential decode took 2,733 ms with slice threads (x264 writes one slice a
# frame: one thread works) and 2,203 ms with frame threads; 8 / 32 exact frames 462 / 2,005 ms with slice
# threads, 180 / 759 ms with frame threads. Frame threads keep frames in flight that a jump drains, which
# costs less than decoding on one core, so they are used around seeks too. The keyframe pass chooses its own
# (``workers/decode/keyframe_pass.py``).
THREAD_TYPE = "FRAME"
THREAD_COUNT = 0  # FFmpeg's choice (a core each, +1); bench/throughput_overlap.py: why, beside the model

# The open's stream probe (FFmpeg's find_stream_info) decodes an H.264 stream's first pictures, one thread,
# for their pixel format (Vigil reads it from the frames) and, where the stream does not state it, how deep
# it reorders pictures. In MP4/MOV the composition offsets give that depth without decoding (FFmpeg's
# mov_estimate_video_delay), so there the probe decodes nothing. Measured here, one open: 3.6 -> 0.6 ms at
# 640x360, 10.7 -> 0.7 ms at 720p, 18.9 -> 0.9 ms at 1080p; timing, index and frames are unchanged
# (tests/workers/test_open_probe.py). Other containers keep the full probe: there the decode can be the only
# source of the reorder depth, and the longer read of a probe that decodes nothing leaves part of a Matroska
# cluster index behind, which the index rule in ``_index_keys`` would take for the whole.
LIGHT_PROBE = {"skip_frame": "all"}
LIGHT_PROBE_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"  # FFmpeg's MP4/MOV demuxer

# How FFmpeg's demuxers seek, by format name: MPEG-TS and MPEG-PS by guessing byte offsets (never used to
# reach a keyframe); Matroska by the keyframes it has read, so precisely once ``_scan`` has read them all.
GUESSING_SEEK_FORMATS = ("mpegts", "mpeg")
SEEKS_AFTER_SCAN_FORMATS = ("matroska,webm",)


class VideoSession:
    """An open video file: its timeline, keyframes and real duration, and the one forward decoding pass."""

    def __init__(self, path: str | os.PathLike[str], *, fallback_duration_s: float) -> None:
        self.path = path
        self.decoded = 0  # packets sent to the decoder (= frames decoded)
        self.redecoded = 0  # of those, packets that had been decoded before in this session
        self._fed: set[tuple[int | None, int | None]] = set()
        self._resolved: set[int] = set()
        self.drains = 0  # times the decoder was drained and flushed (each ends a run of decoding)
        self.skipped = 0  # non-reference packets left out (``workers/decode/h264_nal.py``)
        self.damaged = 0  # packets the decoder refused as invalid data (left out, the pass goes on)
        try:
            self.container = open_container(path)
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
        self.seekable = bool(keys) and full_table and self.container.format.name not in GUESSING_SEEK_FORMATS
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
        """One frame's duration in time-base units, for packets that carry none."""
        return max(0, round(1 / (frame_rate(self.stream) * self.tb)))

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
        self._resolved = set(range(len(self.keyframes)))  # the packets' own times
        self.duration_s = self.seconds(last)
        # Matroska's demuxer indexes every keyframe it reads, so after this scan a seek lands on the wanted
        # keyframe's packet (measured: each of 6 in 60 s, 0.03 ms a seek, where reading on took 3.4 ms for
        # the file); should one land early, the cursor reads on. MPEG-TS seeks by guessing byte offsets.
        self.seekable = self.container.format.name in SEEKS_AFTER_SCAN_FORMATS
        self.rewind()

    def rewind(self) -> None:
        self.container.seek(0)  # to the start of the file (byte 0 for streams without an index)
        self._packets: Iterator[av.Packet] = self.container.demux(self.stream)

    def serve(self, points: Sequence[Point]) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield (point index, frame) for every point, in order, from one pass over the file."""
        times = [k.t for k in self.keyframes]
        starts = {bisect.bisect_right(times, p.t + EPS_S) - 1 for p in points if p.key is None}
        self._resolve(sorted({k + d for k in starts for d in (-1, 0, 1)} & set(range(len(times)))))
        only_keys = all(p.key is not None for p in points)
        run = KeyframePass(self, points) if only_keys else ForwardPass(self, points)
        if not only_keys:
            self.set_threads(THREAD_TYPE)
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

    def set_threads(self, thread_type: str) -> None:
        """How the decoder threads (before its first packet: FFmpeg fixes it when the decoder opens)."""
        self.stream.thread_type = thread_type
        self.stream.thread_count = THREAD_COUNT

    def feed(self, packet: av.Packet) -> list[av.VideoFrame]:
        key = (packet.pos if packet.pos is not None and packet.pos >= 0 else None, packet.dts)
        if key in self._fed:
            self.redecoded += 1
        self._fed.add(key)
        self.decoded += 1
        try:
            return list(self.stream.codec_context.decode(packet))
        except av.error.InvalidDataError as exc:  # one damaged packet: a player shows what comes after it
            self.damaged += 1
            at = self.seconds(packet.pts) if packet.pts is not None else -1.0
            log.info("%s: a damaged packet at %.3f s was left out: %s", self.path, at, reason(exc))
            return []

    def drain(self) -> list[av.VideoFrame]:
        self.drains += 1
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


def open_container(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """``path`` opened for demuxing, with the light probe where it is safe (see ``LIGHT_PROBE``)."""
    container = av.open(str(path), options=LIGHT_PROBE)
    if container.format.name == LIGHT_PROBE_FORMAT:
        return container
    container.close()
    return av.open(str(path))


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike[str]) -> av.VideoStream:
    stream = container.streams.best("video")
    if not isinstance(stream, av.VideoStream):
        raise UnreadableMedia(path, "no video stream")
    return stream


def reason(exc: av.error.FFmpegError) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip()

"""One segment of a stream: packets copied into an MP4 under a temporary name (`.recording-….mp4.part`,
which the watcher ignores) in the source's folder, then dated and renamed into place when complete.

The name is the segment's wall-clock start in UTC, one folder a day: `2026-12-07/15-46-00Z.mp4`. The file's
mtime is set to the segment's end (start + duration): Vigil reads a camera clip's mtime as its end, so the
media's recorded start (`mtime - duration`, as `detections_v.detected_at` computes it) is the stream's wall
clock at the segment's first packet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".part"


def segment_path(folder: Path, start_wall: float) -> Path:
    """Where a segment that began at `start_wall` (seconds since the epoch) goes, unused so far."""
    day = time.strftime("%Y-%m-%d", time.gmtime(start_wall))
    base = time.strftime("%H-%M-%S", time.gmtime(start_wall))
    path, n = folder / day / f"{base}Z.mp4", 2
    while path.exists() or path.with_name(path.name + TEMP_SUFFIX).exists():
        path, n = folder / day / f"{base}Z-{n}.mp4", n + 1
    return path


class Segment:
    """Packets of one video stream from one keyframe on, into `path` + ".part"; `finish()` renames."""

    def __init__(self, folder: Path, template: Any, *, first_dts: int) -> None:
        self.folder = folder
        # Named when finished: the start is known best then (`StreamClock`). Hidden and ".part": ignored.
        self.temp = folder / f".recording-{uuid.uuid4().hex[:12]}.mp4{TEMP_SUFFIX}"
        self.temp.parent.mkdir(parents=True, exist_ok=True)
        self.path: Path | None = None
        self.first_dts = first_dts
        self.last_dts = first_dts  # as written (`write` may move a packet by a tick)
        self.last_in = first_dts  # as it came
        self.last_duration = 0
        self.time_base: Fraction = template.time_base
        self.packets = 0
        self._out = av.open(str(self.temp), "w", format="mp4")
        try:
            self._stream = self._out.add_stream_from_template(template)
        except BaseException:
            self._out.close()
            self.temp.unlink(missing_ok=True)
            raise

    @property
    def seconds(self) -> float:
        """Stream time from the first packet to the end of the last one."""
        return float((self.last_dts - self.first_dts + self.last_duration) * self.time_base)

    def write(self, packet: Any) -> None:
        """Mux one packet (its timestamps shifted so the segment starts at 0). Where the stream's time
        stood still (a stream timed by arrival, Motion JPEG over HTTP at FFmpeg's 1/25 s, can give two
        pictures one time, which MP4 cannot hold), the packet is moved to the next tick; a stream whose
        time goes back is the muxer's error, as before."""
        dts = packet.dts
        if self.packets and self.last_in <= dts <= self.last_dts:
            dts = self.last_dts + 1
        self.last_in = packet.dts
        shift = dts - packet.dts - self.first_dts
        packet.dts = packet.dts + shift
        if packet.pts is not None:
            packet.pts = packet.pts + shift
        packet.stream = self._stream
        self._out.mux(packet)
        self.last_dts = dts
        self.last_duration = packet.duration or self.last_duration
        self.packets += 1

    def finish(self, start_wall: float) -> tuple[Path, int]:
        """Close the file (the MP4 index is written here), date it from `start_wall` (the wall-clock time of
        its first packet), rename it into place: (path, bytes)."""
        self._out.close()
        end_wall = start_wall + self.seconds
        os.utime(self.temp, (end_wall, end_wall))
        size = self.temp.stat().st_size
        self.path = segment_path(self.folder, start_wall)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.temp, self.path)
        return self.path, size

    def abandon(self) -> None:
        """Drop an unfinishable segment (its file could not be written): nothing is left behind."""
        with contextlib.suppress(Exception):
            self._out.close()
        self.temp.unlink(missing_ok=True)


START_CODE = b"\x00\x00\x01"
SPS_TYPE = {"h264": lambda header: header & 0x1F == 7, "hevc": lambda header: (header >> 1) & 0x3F == 33}


def sequence_parameters(data: bytes, codec: str) -> bytes | None:
    """The sequence parameter set (SPS) carried in a packet in Annex B form (as FFmpeg's RTP depacketisers
    hand H.264 and HEVC over), or None. A different one means a new resolution or profile: the segment's
    MP4 header, taken from the stream's description, would no longer describe its pictures."""
    is_sps = SPS_TYPE.get(codec)
    if is_sps is None:
        return None
    at = data.find(START_CODE)
    while at >= 0 and at + 3 < len(data):
        end = data.find(START_CODE, at + 3)
        if is_sps(data[at + 3]):
            return data[at + 3 : end if end >= 0 else len(data)].rstrip(b"\x00")
        at = end
    return None

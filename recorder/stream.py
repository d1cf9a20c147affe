"""Recording one stream source: connect, copy its video packets into segments cut at the first keyframe
after `segment_s`, and when the stream fails or ends, record the outage and connect again after a back-off
(doubling from `reconnect_min_s` to `reconnect_max_s`, each wait +-25% at random so that cameras behind one
switch do not reconnect in step).

A stream that is refused, unreachable, ends, stops sending for `read_timeout_s`, has no video, or sends no
keyframe for 3 x `read_timeout_s` is one outage with a one-line reason; the thread keeps trying, and the
other streams never notice. While it lasts, the camera_offline rules are asked (`offline`) whether one is
due; an outage outlives the recorder (one stopped mid-outage leaves it open, the next takes it over). The
disk guard: a segment is started only while the volume has half of `min_free` (retention's setting, which
prunes from `min_free` down) plus two segments free; a segment already started is always finished.

Credentials: the password is read (from `password_env` or `password_file`) when connecting and put in the
URL handed to FFmpeg only; every message that leaves this module goes through `Credentials.redact`.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import av

from recorder.segments import Segment, sequence_parameters
from vigil.config.retention import min_free_bytes
from vigil.config.settings import SourceSettings
from vigil.media.outages import OpenOutage, close_outage, count_attempt, open_outage
from vigil.ops import metrics
from vigil.terminal import safe

log = logging.getLogger(__name__)

Opener = Callable[..., Any]  # av.open's signature
# Given the open outage's id, fires the camera_offline rules that are due; seconds until one may be next.
OfflineCheck = Callable[[int], float | None]
RECHECK_S = 30.0  # at most this long between two checks of an outage (rules change, schedules open)


# An HLS playlist is joined at its newest segment (FFmpeg's default: 3 back): a quick reconnection fetches
# again at most that one, not the last three (what the playlist still holds from a longer outage is not
# fetched either), and the connection's first burst is shorter. Other formats ignore it.
HTTP_OPTIONS = {"live_start_index": "-1"}
# Formats whose packets carry no time (Motion JPEG as multipart/x-mixed-replace over HTTP: FFmpeg counts
# frames at an assumed 25 fps): opened again with each packet timed by its arrival.
UNTIMED_FORMATS = {"mpjpeg"}


class StreamFailure(Exception):
    """The stream stopped being recorded; the message (one line, credentials removed) says why."""


@dataclass(frozen=True)
class Credentials:
    """The URL FFmpeg gets (with the password) and the one everything else sees (without)."""

    url: str
    shown: str
    secrets: tuple[str, ...]

    @classmethod
    def of(cls, conf: SourceSettings) -> Credentials:
        assert conf.url is not None
        parts = urlsplit(conf.url)
        password = _password(conf)
        user = conf.username if conf.username is not None else parts.username
        if user is None and password is None:
            return cls(conf.url, conf.url, ())
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = host + (f":{parts.port}" if parts.port else "")
        auth = quote(user or "", safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        url = urlunsplit(parts._replace(netloc=f"{auth}@{netloc}"))
        shown_auth = quote(user or "", safe="") + (":***" if password is not None else "")
        shown = urlunsplit(parts._replace(netloc=f"{shown_auth}@{netloc}"))
        secrets = tuple(s for s in (url, password, quote(password or "", safe="")) if s)
        return cls(url, shown, secrets)

    def redact(self, text: object) -> str:
        line = " ".join(str(text).split())
        for secret in self.secrets:
            line = line.replace(secret, self.shown if secret == self.url else "***")
        return safe(line)


def _password(conf: SourceSettings) -> str | None:
    if conf.password_env:
        value = os.environ.get(conf.password_env)
        if value is None:
            raise StreamFailure(f"the environment variable {conf.password_env} (password_env) is not set")
        return value
    if conf.password_file:
        try:
            return conf.password_file.expanduser().read_text().rstrip("\r\n")
        except OSError as exc:
            raise StreamFailure(f"password_file {conf.password_file}: {exc.strerror or exc}") from exc
    return None


def backoff_s(failures: int, *, low: float, high: float, rng: random.Random) -> float:
    return min(high, low * 2 ** max(0, failures - 1)) * rng.uniform(0.75, 1.25)


class StreamRecorder:
    """Records one stream source until `stop` is set (run it in its own thread)."""

    def __init__(
        self,
        conf: SourceSettings,
        *,
        source_id: int,
        min_free: str | None,
        factory: Any,
        stop: threading.Event,
        opener: Opener = av.open,
        offline: OfflineCheck | None = None,
        taken_over: OpenOutage | None = None,
    ) -> None:
        self.conf, self.source_id, self.min_free = conf, source_id, min_free
        self.factory, self.stop, self.opener, self.offline = factory, stop, opener, offline
        self.folder = conf.path.expanduser().absolute()
        self.name = conf.name
        self.outage: int | None = taken_over.id if taken_over is not None else None  # left open before us
        self.next_offline_check = 0.0  # time.monotonic() of the next `_check_offline`
        self.last_packet = 0.0
        self.last_size = 0
        self.base: float | None = None  # wall-clock time of the stream's time 0 (`_observe`)
        self.sps: bytes | None = None  # the connection's sequence parameters (`_check_parameters`)
        self.video: Any = None
        self.rng = random.Random()
        metrics.STREAM_UP.labels(source=self.name).set(0)
        metrics.STREAM_LAG.labels(source=self.name).set_function(
            lambda: time.time() - self.last_packet if self.last_packet else 0.0
        )

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                recorded = self.record_once()
                reason = "the stream ended"
            except StreamFailure as exc:
                recorded, reason = False, str(exc)
            except Exception as exc:  # a bug or a library surprise: this stream's problem only
                log.exception("stream %s: recording failed", self.name)
                recorded, reason = False, f"recorder error: {type(exc).__name__}"
            if self.stop.is_set():
                break
            failures = 1 if recorded else failures + 1
            self._outage(reason)
            wait = backoff_s(
                failures, low=self.conf.reconnect_min_s, high=self.conf.reconnect_max_s, rng=self.rng
            )
            log.warning("stream %s: %s; reconnecting in %.1fs", self.name, reason, wait)
            if self._wait(wait):
                break
            metrics.STREAM_RECONNECTS.labels(source=self.name).inc()
        log.info("stream %s: recorder stopped", self.name)  # an outage stays open: the next one takes it

    def _wait(self, seconds: float) -> bool:
        """Sleep out a back-off (True: stopped), checking the offline rules on time meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, 1.0)):
                return True
            self._check_offline()
        return False

    def record_once(self) -> bool:
        """One connection: record until the stream fails or ends. True when a segment was started."""
        creds = Credentials.of(self.conf)
        rtsp = creds.url.startswith("rtsp")
        options: dict[str, str] = {"rtsp_transport": self.conf.rtsp_transport} if rtsp else HTTP_OPTIONS
        container = self._open(creds, options)
        if container.format.name in UNTIMED_FORMATS:
            container.close()
            container = self._open(creds, options | {"use_wallclock_as_timestamps": "1"})
        try:
            if not container.streams.video:
                raise StreamFailure(f"{creds.shown} has no video stream")
            return self._copy(container, container.streams.video[0], creds)
        finally:
            container.close()
            metrics.STREAM_UP.labels(source=self.name).set(0)

    def _open(self, creds: Credentials, options: dict[str, str]) -> Any:
        timeout = self.conf.read_timeout_s
        try:
            return self.opener(creds.url, options=options, timeout=(timeout, timeout))
        except (av.FFmpegError, OSError) as exc:
            raise StreamFailure(f"cannot open {creds.shown}: {creds.redact(exc)}") from None

    def _copy(self, container: Any, video: Any, creds: Credentials) -> bool:
        connected, started = time.time(), False
        segment: Segment | None = None
        unnamed: list[Segment] = []  # cut before the clock was pinned (`_observe`): finished once it is
        pinned = False
        self.base, self.video, self.sps = None, video, None
        try:
            for packet in container.demux(video):
                if self.stop.is_set():
                    break
                if packet.dts is None:  # the demuxer's empty packet at the end
                    continue
                now = time.time()
                silent = self._silence(now, connected)
                self.last_packet = now if silent is None else self.last_packet
                pinned = self._observe(packet, video, now) or pinned
                if pinned and unnamed:
                    self._finish(*unnamed)
                    unnamed.clear()
                if packet.is_keyframe:
                    self._check_parameters(packet, video, creds)
                if segment is not None and packet.is_keyframe and self._due(segment, packet, video):
                    if pinned:
                        self._finish(segment)
                    else:
                        unnamed.append(segment)
                    segment = None
                if segment is None and packet.is_keyframe:
                    segment = self._start(video, packet, now)
                    started = started or segment is not None
                elif segment is None and not started and now - connected > 3 * self.conf.read_timeout_s:
                    raise StreamFailure(f"{creds.shown}: no keyframe in {now - connected:.0f}s")
                if segment is not None:
                    segment.write(packet)
                if silent is not None:
                    raise StreamFailure(f"{creds.shown}: no packet for {silent:.1f}s (read_timeout_s)")
        except av.ExitError:  # PyAV's interrupt: a read blocked for read_timeout_s
            silent = time.time() - max(self.last_packet, connected)
            raise StreamFailure(f"{creds.shown}: no packet for {silent:.1f}s (read_timeout_s)") from None
        except av.FFmpegError as exc:
            raise StreamFailure(f"{creds.shown}: {creds.redact(exc)}") from None
        finally:
            # The stream broke: what it recorded is a whole, shorter segment.
            self._finish(*unnamed, *([segment] if segment is not None else []))
        return started

    def _silence(self, now: float, connected: float) -> float | None:
        """How long the stream was silent before a packet that came after `read_timeout_s` of nothing, or
        None. FFmpeg's RTSP demuxer, when the read is interrupted at `read_timeout_s`, hands over the frame
        it held back (it waits for the next one to know this one is complete), which would restart the
        timer: the silence would be noticed only at twice `read_timeout_s`. This packet is still copied,
        then the connection ends with the silence as its reason."""
        if self.last_packet < connected:  # the first packet of this connection: FFmpeg timed the open
            return None
        gap = now - self.last_packet
        return gap if gap >= self.conf.read_timeout_s else None

    def _observe(self, packet: Any, video: Any, now: float) -> bool:
        """Pin the stream's clock to the wall: the earliest `arrival - stream time` seen on this connection.
        FFmpeg reads the first seconds while probing and hands them over in a burst, late (an HLS source:
        a few of its segments); live packets arrive within the network's delay of being sent, so the
        minimum is the best estimate of when the stream's time 0 was on the wall (a camera whose clock
        drifts moves it by its drift, ppm). True when the clock is pinned: this packet did not move it
        back by a frame's worth (10 ms), as each packet of a backlog does."""
        base = now - float(packet.dts * video.time_base)
        pinned = self.base is not None and base > self.base - 0.01
        if self.base is None or base < self.base:
            self.base = base
        return pinned

    def _start_wall(self, segment: Segment, video: Any) -> float:
        assert self.base is not None
        return self.base + float(segment.first_dts * video.time_base)

    def _check_parameters(self, packet: Any, video: Any, creds: Credentials) -> None:
        """A new SPS in the stream (the camera changed resolution or profile) ends the connection: the
        segment so far is finished, and the next connection describes the new stream."""
        sps = sequence_parameters(bytes(packet), video.codec_context.name)
        if sps is None:
            return
        if self.sps is not None and sps != self.sps:
            raise StreamFailure(f"{creds.shown}: the stream changed (a new SPS: resolution or profile)")
        self.sps = sps

    def _due(self, segment: Segment, packet: Any, video: Any) -> bool:
        return float((packet.dts - segment.first_dts) * video.time_base) >= self.conf.segment_s

    def _start(self, video: Any, packet: Any, now: float) -> Segment | None:
        """A new segment from this keyframe, unless the volume is short of space (then an outage)."""
        short = self._short_of_space()
        if short:
            self._outage(short, attempt=False)
            return None
        segment = Segment(self.folder, video, first_dts=packet.dts)
        if self.outage is not None:
            close_outage(self.factory, self.outage, ended_at=datetime.fromtimestamp(now, UTC))
            log.info("stream %s: recording again", self.name)
            self.outage, self.next_offline_check = None, 0.0
        metrics.STREAM_UP.labels(source=self.name).set(1)
        return segment

    def _finish(self, *segments: Segment) -> None:
        for segment in segments:
            if segment.packets == 0:
                segment.abandon()
                continue
            try:
                path, size = segment.finish(self._start_wall(segment, self.video))
            except (av.FFmpegError, OSError) as exc:
                segment.abandon()
                log.error("stream %s: segment %s lost: %s", self.name, segment.temp, exc)
                continue
            self.last_size = size
            metrics.STREAM_SEGMENTS.labels(source=self.name).inc()
            metrics.STREAM_BYTES.labels(source=self.name).inc(size)
            log.info("stream %s: segment %s (%.1fs, %d bytes)", self.name, path, segment.seconds, size)

    def _short_of_space(self) -> str | None:
        """Why no segment may start now, or None. The floor is half of `min_free` plus two segments: below
        `min_free` retention prunes unalerted files (the recorder goes on meanwhile); the recorder stops
        only where retention could not keep up or may not delete (evidence), before the disk is full."""
        try:
            usage = shutil.disk_usage(_existing(self.folder))
        except OSError as exc:
            return f"cannot read free space of {self.folder}: {exc.strerror or exc}"
        wanted = min_free_bytes(self.min_free, usage.total) if self.min_free is not None else 0
        floor = wanted // 2 + 2 * self.last_size
        if usage.free >= floor:
            return None
        return f"disk: {usage.free} bytes free, below {floor} (half of min_free {self.min_free} + 2 segments)"

    def _outage(self, reason: str, *, attempt: bool = True) -> None:
        """Open an outage with `reason`, or count one more failed attempt in the open one."""
        metrics.STREAM_UP.labels(source=self.name).set(0)
        if self.outage is not None:
            if attempt:
                count_attempt(self.factory, self.outage)
            self._check_offline()
            return
        began = datetime.fromtimestamp(self.last_packet or time.time(), UTC)
        self.outage = open_outage(self.factory, self.source_id, started_at=began, reason=reason)
        log.error("stream %s: outage %d began: %s", self.name, self.outage, reason)
        self._check_offline()

    def _check_offline(self) -> None:
        """While an outage lasts, let the camera_offline rules that are due fire: asked again when the next
        one's after_s comes, and at least every RECHECK_S. Alerting never stops the recording."""
        if self.outage is None or self.offline is None or time.monotonic() < self.next_offline_check:
            return
        try:
            wait = self.offline(self.outage)
        except Exception:  # the database or a rule's problem: asked again later
            log.exception("stream %s: offline rules not checked for outage %d", self.name, self.outage)
            wait = None
        self.next_offline_check = time.monotonic() + min(RECHECK_S, wait if wait is not None else RECHECK_S)


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path

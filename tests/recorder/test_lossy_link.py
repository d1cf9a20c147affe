"""The camera behind a lossy link: GStreamer's RTSP server on a test host of its own (a network namespace,
tests/support/netns.py), the recorder in the test process, and nftables dropping a random share of the
packets between them in both directions (this kernel has no netem). Over TCP the loss costs re-sends
and nothing of the pictures; over UDP it costs RTP packets, so pictures arrive damaged, and the recorder
must go on writing whole files the decoder can read."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
import pytest

from tests.recorder.conftest import outages, segments, stream
from tests.support.netns import HostNet, available, host_net
from tests.support.rtsp import RtspServer
from tests.support.watching import wait_for

pytestmark = pytest.mark.slow

LOSSY_S = 16.0


@pytest.fixture(scope="module")
def camnet() -> Iterator[HostNet]:
    why = available()
    if why is not None:
        pytest.skip(f"a lossy link needs network namespaces and nftables: {why}")
    with host_net(["cam"]) as net:
        yield net


@dataclass
class Decoded:
    """One segment as the decoder reads it."""

    start: float  # wall clock
    seconds: float
    frames: int
    bytes_per_s: float
    errors: list[str]  # what the decoder logged as an error (a damaged slice it noticed)

    @classmethod
    def of(cls, path: Path) -> Decoded:
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with av.logging.Capture() as logs, av.open(str(path)) as container:
                video = container.streams.video[0]
                seconds = float(video.duration * video.time_base)
                packets = [p for p in container.demux(video) if p.size]
                frames = sum(len(video.codec_context.decode(p)) for p in packets)
        finally:
            av.logging.set_level(previous)
        end = path.stat().st_mtime
        size = sum(p.size for p in packets)
        return cls(end - seconds, seconds, frames, size / seconds, [message for _, _, message in logs])


def record_through_loss(
    net: HostNet,
    rtsp: Callable[..., RtspServer],
    recorders,
    make_settings,
    drop: Path,
    *,
    percent: int,
    transport: str,
) -> tuple[list[Decoded], list[Decoded], list[Decoded], dict[str, int]]:
    """Record with `percent` % loss for LOSSY_S seconds: the segments before, within and after it, and
    the packets the camera's host dropped ("out": camera to recorder, "in": the other way)."""
    server = rtsp(gop=10, host=net["cam"], pattern="snow")
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url, rtsp_transport=transport)])
    recorder = recorders(settings)
    try:
        wait_for(lambda: len(segments(drop / "gate")) >= 2, timeout=30)
        net.loss("cam", percent)
        began = time.time()
        time.sleep(LOSSY_S)
        dropped = net.dropped("cam")
    finally:
        net.heal("cam")
    ended = time.time()
    wait_for(lambda: any(s.stat().st_mtime > ended + 4 for s in segments(drop / "gate")), timeout=30)
    recorder.stop()
    decoded = [Decoded.of(p) for p in segments(drop / "gate")[:-1]]  # the last: cut short by stop()
    before = [d for d in decoded if d.start + d.seconds < began]
    within = [d for d in decoded if d.start > began + 0.5 and d.start + d.seconds < ended]
    after = [d for d in decoded if d.start > ended + 0.5]
    return before, within, after, dropped


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_tcp_through_10_percent_loss_records_every_picture_whole(
    camnet: HostNet, rtsp, recorders, make_settings, factory, drop: Path
) -> None:
    before, within, after, dropped = record_through_loss(
        camnet, rtsp, recorders, make_settings, drop, percent=10, transport="tcp"
    )
    # The loss was real (66 out and 42 in, in one run), and TCP made up for it. Not counted by the kernel's
    # RetransSegs: a segment dropped in the sender's own output hook is queued again as never sent, so that
    # counter grew by 2 to 5 in runs with this loss (CI's run saw 2).
    assert dropped["out"] >= 20 and dropped["in"] >= 10, dropped
    assert outages(factory) == []
    assert len(within) >= LOSSY_S / 2 - 3  # back to back, in step with the camera (2 s segments)
    for segment in within + after:  # every picture, whole: as many bytes as without loss
        assert (segment.seconds, segment.frames, segment.errors) == (2.0, 20, []), segment
        assert segment.bytes_per_s == pytest.approx(mean([b.bytes_per_s for b in before]), rel=0.06)


def test_udp_through_10_percent_loss_gives_damaged_pictures_in_whole_files(
    camnet: HostNet, rtsp, recorders, make_settings, factory, drop: Path
) -> None:
    before, within, after, dropped = record_through_loss(
        camnet, rtsp, recorders, make_settings, drop, percent=10, transport="udp"
    )
    assert dropped["out"] >= 20, dropped
    assert outages(factory) == []  # damaged pictures are no outage: the stream goes on
    assert len(within) >= LOSSY_S / 2 - 3
    # Whole files: every segment decodes to the end, a picture for (nearly) every 0.1 s. The decoder may
    # report an error in a damaged picture (seen once in 14 segments over two runs) or none.
    for segment in within + after:
        assert segment.seconds <= 3.05 and segment.frames >= 9 * segment.seconds, segment
    # What is lost is in the pictures: the lost RTP packets' slices are missing, about the share lost.
    sent = mean([b.bytes_per_s for b in before + after])
    received = mean([w.bytes_per_s for w in within])
    assert 0.75 < received / sent < 0.97, (received, sent)
    healed = min(a.bytes_per_s for a in after)
    assert healed > 0.95 * mean([b.bytes_per_s for b in before])  # whole again

"""What a real camera's stream does besides breaking: its media stops while the RTSP session stays up (the
server answers requests, sends no picture), it comes back in another codec on the same URL, and it carries
audio (AAC, or G.711 as many cameras send). GStreamer's RTSP server (tests/support/rtsp_server.py) serves
each case; the recorder and the files it leaves are checked."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.recorder.conftest import outages, segments, stream
from tests.support.rtsp import RtspServer
from tests.support.watching import wait_for


def answers_options(server: RtspServer) -> str:
    """The status line of the server's answer to an RTSP OPTIONS request on a new connection."""
    with socket.create_connection((server.address, server.port), timeout=3) as sock:
        sock.sendall(f"OPTIONS {server.url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        return sock.recv(256).split(b"\r\n")[0].decode()


def codec_of(path: Path) -> str:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert sum(1 for _ in container.decode(video)) == video.frames > 0
        return str(video.codec_context.name)


def test_media_stopped_with_the_session_up_is_one_outage_noticed_in_read_timeout_s_and_recorded_again(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, drop: Path
) -> None:
    server = rtsp(gop=10)
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url, read_timeout_s=3.0)])
    recorder = recorders(settings)
    wait_for(lambda: len(segments(drop / "gate")) >= 1, timeout=30)
    server.stop_media()
    stopped = time.time()
    (outage,) = wait_for(lambda: outages(factory), timeout=20)
    noticed = time.time() - stopped
    assert answers_options(server) == "RTSP/1.0 200 OK"  # the camera is up: only its media stopped
    time.sleep(4.0)  # reconnecting meanwhile: the session comes up, no media, the same outage
    assert len(outages(factory)) == 1 and outages(factory)[0].ended_at is None
    server.start_media()
    resumed = time.time()
    wait_for(lambda: outages(factory)[0].ended_at is not None, timeout=20)
    wait_for(lambda: any(s.stat().st_mtime > resumed + 1 for s in segments(drop / "gate")), timeout=20)
    recorder.stop()
    (outage,) = outages(factory)
    # Noticed at read_timeout_s (3 s) plus the poll and the row's write (a busy machine), not at twice it.
    assert 3.0 <= noticed < 4.5, noticed
    assert outage.started_at.timestamp() == pytest.approx(stopped, abs=1.0)  # its last live packet
    assert re.fullmatch(rf"{re.escape(server.url)}: no packet for 3\.\ds \(read_timeout_s\)", outage.reason)
    assert outage.attempts >= 1 and resumed < outage.ended_at.timestamp() < resumed + 10  # type: ignore[union-attr]
    for path in segments(drop / "gate"):  # before and after: whole, decodable files
        assert codec_of(path) == "h264"


def test_a_camera_back_in_another_codec_is_recorded_in_new_segments_of_that_codec(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, drop: Path
) -> None:
    server = rtsp(codec="h264", gop=10)
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url)])
    recorder = recorders(settings)
    wait_for(lambda: len(segments(drop / "gate")) >= 2, timeout=30)
    server.kill()
    server.codec = "h265"  # the camera's setting changed; it restarts on the same URL
    server.start()
    restarted = time.time()
    wait_for(lambda: any(s.stat().st_mtime > restarted + 2 for s in segments(drop / "gate")), timeout=30)
    recorder.stop()
    ordered = sorted(segments(drop / "gate"), key=lambda p: p.stat().st_mtime)
    codecs = [codec_of(p) for p in ordered]
    # The segment cut short by the kill is finished when the recorder notices, which may be after the
    # server is back: the files change codec once, and none in HEVC before the restart.
    switch = codecs.index("hevc") if "hevc" in codecs else len(codecs)
    assert switch >= 2 and set(codecs[:switch]) == {"h264"} and set(codecs[switch:]) == {"hevc"}, codecs
    assert all(p.stat().st_mtime > restarted for p in ordered[switch:]), codecs
    (outage,) = outages(factory)
    assert outage.ended_at is not None and "\n" not in outage.reason


@pytest.mark.parametrize(("audio", "sent"), [("aac", "aac"), ("pcmu", "pcm_mulaw")])
def test_a_stream_with_audio_is_recorded_as_video_only_segments(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, drop: Path, audio: str, sent: str
) -> None:
    server = rtsp(gop=10, audio=audio)
    with av.open(server.url, options={"rtsp_transport": "tcp"}, timeout=(5, 5)) as probe:
        assert [s.codec_context.name for s in probe.streams.audio] == [sent]  # the camera does send it
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url)])
    recorder = recorders(settings)
    wait_for(lambda: len(segments(drop / "gate")) >= 3, timeout=30)
    recorder.stop()
    assert outages(factory) == []
    for path in segments(drop / "gate"):
        with av.open(str(path)) as container:
            assert [s.type for s in container.streams] == ["video"]
            frames = sum(1 for _ in container.decode(video=0))
        assert codec_of(path) == "h264"
        last = path == segments(drop / "gate")[-1]  # cut short by stop()
        assert frames >= 20 or last  # whole 2 s segments

"""Streams over HTTP: a live HLS playlist (GStreamer's hlssink2 writing H.264 MPEG-TS segments, a real HTTP
server serving them, tests/support/hls.py) recorded into segments the real watcher registers, and the
web server going away and coming back as one outage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest

from tests.recorder.conftest import outages, segments, stream
from tests.support.http_cams import HlsSource, HttpStream
from tests.support.watching import media_rows, wait_for
from watcher.service import WatcherService


@pytest.fixture
def hls(tmp_path: Path) -> Iterator[HlsSource]:
    source = HlsSource(tmp_path / "www", tmp_path / "hls.log")
    source.start()
    yield source
    source.close()


def test_a_live_hls_playlist_is_recorded_and_its_web_server_away_is_one_outage(
    hls: HlsSource,
    recorders,
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
) -> None:
    settings = make_settings(sources=[stream("lobby", drop / "lobby", hls.url)])
    began = time.time()
    start_watcher(settings)
    recorder = recorders(settings)
    # More than the playlist ever lists at once (5 s): the recorder follows it as it grows.
    wait_for(lambda: len(media_rows(factory)) >= 4, timeout=40)
    hls.kill_http()
    killed = time.time()
    (outage,) = wait_for(lambda: outages(factory), timeout=20)
    time.sleep(2.0)  # reconnecting meanwhile: refused, the same outage
    hls.start_http()
    back = time.time()
    wait_for(lambda: outages(factory)[0].ended_at is not None, timeout=20)
    wait_for(lambda: any(s.stat().st_mtime > back + 2 for s in segments(drop / "lobby")), timeout=30)
    recorder.stop()
    files = segments(drop / "lobby")
    wait_for(lambda: len(media_rows(factory)) == len(files), timeout=10)
    rows = sorted(media_rows(factory), key=lambda m: m.mtime)
    for row in rows:
        assert (row.status, row.kind, row.width, row.height) == ("queued", "video", 320, 240), row.path
        with av.open(row.path) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == "h264"  # copied from the MPEG-TS segments
            assert sum(1 for _ in container.decode(video)) == row.frame_count
        start = row.mtime.timestamp() - (row.duration_s or 0)
        # The wall clock: the first picture is of the playlist's newest segment, up to ~2 s old on joining.
        assert began - 3 < start < time.time()
    before = [m for m in rows if m.mtime.timestamp() < killed]
    for row in before[:-1]:  # whole segments, cut at the keyframe at or after segment_s
        assert row.duration_s == pytest.approx(2.0, abs=0.05) and row.frame_count == 20
    # Back to back on the stream's clock, the first one too: it was named once the clock was pinned (the
    # first 2 s came in one burst, the playlist's newest segments, late).
    for earlier, later in zip(before, before[1:], strict=False):
        later_start = later.mtime.timestamp() - (later.duration_s or 0)
        assert later_start == pytest.approx(earlier.mtime.timestamp(), abs=0.2)
    # Nothing recorded twice: after the reconnection, the first segment begins after the last one before.
    first_after = next(m for m in rows if m.mtime.timestamp() > back)
    assert first_after.mtime.timestamp() - (first_after.duration_s or 0) > before[-1].mtime.timestamp() - 0.2
    (outage,) = outages(factory)
    # FFmpeg's HLS demuxer cannot reload the playlist and ends the stream. The start is its last packet:
    # the end of the last segment fetched, which it hands over up to a segment's time (1 s) later.
    assert outage.reason == "the stream ended"
    assert killed - 1.5 < outage.started_at.timestamp() < killed + 1.5
    assert back < outage.ended_at.timestamp() < back + 10  # type: ignore[union-attr]
    assert outage.attempts >= 2  # refused while the server was away


@pytest.mark.parametrize(("kind", "codec", "keyframes"), [("ts", "h264", 10), ("mjpeg", "mjpeg", 1)])
def test_an_endless_http_response_is_recorded(
    recorders,
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
    kind: str,
    codec: str,
    keyframes: int,
) -> None:
    """MPEG-TS, and Motion JPEG whose parts carry no time (each is timed by its arrival)."""
    camera = HttpStream(kind)
    try:
        settings = make_settings(sources=[stream("porch", drop / "porch", camera.url)])
        start_watcher(settings)
        recorder = recorders(settings)
        wait_for(lambda: len(media_rows(factory)) >= 3, timeout=30)
        recorder.stop()
    finally:
        camera.close()
    wait_for(lambda: len(media_rows(factory)) == len(segments(drop / "porch")), timeout=10)
    rows = sorted(media_rows(factory), key=lambda m: m.mtime)
    for row in rows[:-1]:  # 10 fps: 2 s, 20 pictures (the last one: cut short by stop())
        assert (row.status, row.width, row.height) == ("queued", 320, 240)
        assert row.duration_s == pytest.approx(2.0, abs=0.15) and row.frame_count in (19, 20, 21), row.path
        with av.open(row.path) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == codec
            frames = list(container.decode(video))
        assert len(frames) == row.frame_count and sum(f.key_frame for f in frames) * keyframes == len(frames)
    assert outages(factory) == []

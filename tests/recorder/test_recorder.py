"""The recorder against a real RTSP server (GStreamer, x264enc): segments cut at keyframes, copied without
re-encoding, registered by the real watcher with the stream's wall clock; the server killed and started
again (one outage row, reconnects); a dead camera and a wrong password beside a good one; the disk guard;
and credentials that never reach a log line or a row."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.recorder.conftest import outages, segments, stream
from tests.support.alerting import receiving
from tests.support.rtsp import RtspServer
from tests.support.services import free_port
from tests.support.volumes import tmpfs
from tests.support.watching import media_rows, wait_for
from vigil.config.settings import AlertSettings, ChannelSettings
from vigil.ops import metrics
from vigil.store.schema import Media
from watcher.service import WatcherService

PASSWORD = "s3cr:t@x/%"
PASSWORD_ENV = "VIGIL_TEST_CAMERA_PASSWORD"
MiB = 2**20


def everything_stored(factory: sessionmaker[Session]) -> str:
    """Every value of every table, as text: what a `vigil sql` user could read."""
    with factory() as session:
        names = session.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars().all()
        return "\n".join(
            str(row) for name in names for row in session.execute(text(f'SELECT * FROM "{name}"'))
        )


def test_segments_are_cut_at_keyframes_copied_and_registered_with_the_streams_wall_clock(
    rtsp: Callable[..., RtspServer],
    recorders,
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rtsp(gop=10, user="cam", password=PASSWORD)  # 10 fps: a keyframe every second
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    gate = stream("gate", drop / "gate", server.url, username="cam", password_env=PASSWORD_ENV)
    settings = make_settings(sources=[gate], settle_s=5.0)  # what uploads wait; whole segments do not
    began = datetime.now(UTC)
    with caplog.at_level(logging.DEBUG):
        start_watcher(settings)
        recorder = recorders(settings)
        wait_for(lambda: len(media_rows(factory)) >= 3, timeout=30)
        recorder.stop()
    assert not list((drop / "gate").rglob("*.part")), "a segment was left under its temporary name"
    files = segments(drop / "gate")
    wait_for(lambda: len(media_rows(factory)) == len(files), timeout=10)
    rows = sorted(media_rows(factory), key=lambda m: m.mtime)
    for row, path in zip(rows, files, strict=True):
        assert row.path == str(path) and (row.status, row.kind, row.width, row.height) == (
            "queued",
            "video",
            320,
            240,
        )
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            frames = list(container.decode(video))
            assert video.codec_context.name == "h264"  # copied, not re-encoded
        assert frames[0].key_frame
        start = row.mtime.timestamp() - (row.duration_s or 0)  # the media's recorded start
        assert path.stem.startswith(time.strftime("%H-%M-%S", time.gmtime(start)))
        assert began.timestamp() - 1 < start < time.time()
    # Registered within a second of the segment's end (its close), not after settle_s.
    assert max((m.created_at - m.mtime).total_seconds() for m in rows) < 1.5
    for row in rows[:-1]:  # whole segments: cut at the first keyframe at or after segment_s
        assert row.duration_s == pytest.approx(2.0, abs=0.05) and row.frame_count == 20
    for before, after in zip(rows, rows[1:], strict=False):  # back to back on the stream's clock
        assert after.mtime.timestamp() - (after.duration_s or 0) == pytest.approx(
            before.mtime.timestamp(), abs=0.2
        )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in logged and PASSWORD not in everything_stored(factory)
    assert outages(factory) == []


def test_hevc_is_copied_too(
    rtsp: Callable[..., RtspServer],
    recorders,
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
) -> None:
    server = rtsp(codec="h265", gop=10)
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url)])
    start_watcher(settings)
    recorders(settings)
    (row, *_) = wait_for(lambda: media_rows(factory), timeout=30)
    assert (row.status, row.width, row.height) == ("queued", 320, 240)
    with av.open(row.path) as container:
        assert container.streams.video[0].codec_context.name == "hevc"
        assert sum(1 for _ in container.decode(video=0)) == row.frame_count


def test_a_resolution_change_mid_stream_starts_a_new_segment_in_the_new_size(
    rtsp: Callable[..., RtspServer],
    recorders,
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
) -> None:
    server = rtsp(gop=10, resize_after=4)  # 320x240, then 640x480 (a new SPS in the stream)
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url)])
    start_watcher(settings)
    recorder = recorders(settings)
    wait_for(lambda: any(m.width == 640 for m in media_rows(factory)), timeout=40)
    recorder.stop()
    wait_for(lambda: len(media_rows(factory)) == len(segments(drop / "gate")), timeout=10)
    sizes = [(m.width, m.height) for m in sorted(media_rows(factory), key=lambda m: m.mtime)]
    assert sizes[0] == (320, 240) and sizes[-1] == (640, 480)
    assert sizes == sorted(sizes), sizes  # one change: the small segments, then the big ones
    for path in segments(drop / "gate"):  # each segment's pictures are the size its header says
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert {(f.width, f.height) for f in container.decode(video)} == {(video.width, video.height)}
    (outage,) = outages(factory)
    assert "the stream changed" in outage.reason and outage.ended_at is not None


def test_server_killed_and_restarted_is_one_outage_and_a_dead_camera_stops_no_other(
    rtsp: Callable[..., RtspServer],
    recorders,
    start_watcher: Callable[..., WatcherService],
    make_settings,
    factory,
    drop: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rtsp(gop=10)
    dead_url = f"rtsp://127.0.0.1:{free_port()}/cam"  # nothing listens there
    settings = make_settings(
        sources=[stream("gate", drop / "gate", server.url), stream("shed", drop / "shed", dead_url)]
    )
    start_watcher(settings)
    reconnects = metrics.STREAM_RECONNECTS.labels(source="gate")
    before = reconnects._value.get()
    recorder = recorders(settings)
    wait_for(lambda: len(segments(drop / "gate")) >= 2, timeout=30)
    killed = time.time()
    server.kill()
    time.sleep(2.5)
    restarted = time.time()
    server.start()
    wait_for(lambda: any(s.stat().st_mtime > restarted + 1 for s in segments(drop / "gate")), timeout=30)

    gate_outages = [o for o in outages(factory) if o.source_id == _source_id(factory, "gate")]
    (outage,) = gate_outages
    assert outage.started_at.timestamp() == pytest.approx(killed, abs=1.5)
    assert outage.ended_at is not None and restarted < outage.ended_at.timestamp() < restarted + 10
    assert "\n" not in outage.reason and outage.reason
    assert reconnects._value.get() >= before + 1
    (shed,) = [o for o in outages(factory) if o.source_id == _source_id(factory, "shed")]
    assert shed.ended_at is None and shed.attempts >= 2
    assert shed.reason.startswith(f"cannot open {dead_url}: ") and "refused" in shed.reason.lower()
    # The segment cut short by the kill was finished under its final name and registered like the others.
    recorder.stop()
    wait_for(lambda: len(media_rows(factory)) >= len(segments(drop / "gate")), timeout=10)
    assert not segments(drop / "shed") and not list((drop / "gate").rglob("*.part"))
    cut_short = [
        m for m in media_rows(factory) if m.mtime.timestamp() < restarted and (m.duration_s or 0) < 1.95
    ]
    assert len(cut_short) == 1 and cut_short[0].status == "queued"


def test_a_hung_camera_is_dropped_after_read_timeout_s_and_recorded_again_when_it_answers(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, drop: Path
) -> None:
    server = rtsp(gop=10)
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url, read_timeout_s=2.0)])
    recorder = recorders(settings)
    wait_for(lambda: len(segments(drop / "gate")) >= 1, timeout=30)
    server.pause()
    paused = time.time()
    try:
        (outage,) = wait_for(lambda: outages(factory), timeout=20)
        # Its last live packet (the frame the demuxer held back and hands over when the read times out is
        # copied, but is no sign of life).
        assert outage.started_at.timestamp() == pytest.approx(paused, abs=1.0)
        noticed = time.time() - paused
    finally:
        server.resume()
    resumed = time.time()
    wait_for(lambda: outages(factory)[0].ended_at is not None, timeout=30)
    wait_for(lambda: any(s.stat().st_mtime > resumed for s in segments(drop / "gate")), timeout=30)
    recorder.stop()
    # read_timeout_s (plus the poll, on a busy machine), not twice it; counted from the last live packet,
    # which may come up to a frame (0.1 s) before ``paused`` is read after pause() returns (seen: 1.996 s)
    assert 1.8 <= noticed < 3.5, noticed
    assert "\n" not in outages(factory)[0].reason


def test_garbage_instead_of_rtsp_is_a_one_line_outage_and_udp_transport_records(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, drop: Path
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def babble() -> None:  # answers every connection with bytes that are no protocol at all
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(os.urandom(4096) + b"\r\n\r\n")

    threading.Thread(target=babble, daemon=True).start()
    server = rtsp(gop=10)
    settings = make_settings(
        sources=[
            stream("noise", drop / "noise", f"rtsp://127.0.0.1:{port}/cam"),
            stream("gate", drop / "gate", server.url, rtsp_transport="udp"),
        ]
    )
    try:
        recorder = recorders(settings)
        wait_for(lambda: len(segments(drop / "gate")) >= 2, timeout=30)
        (outage,) = wait_for(lambda: [o for o in outages(factory) if o.attempts >= 2], timeout=20)
        recorder.stop()
    finally:
        listener.close()
    assert outage.reason.startswith(f"cannot open rtsp://127.0.0.1:{port}/cam: ")
    assert outage.reason.isprintable()  # one line, nothing of the garbage's control bytes
    assert not segments(drop / "noise")
    with av.open(str(segments(drop / "gate")[0])) as container:  # over UDP too: whole, decodable segments
        assert sum(1 for _ in container.decode(video=0)) >= 20


def test_a_camera_offline_for_a_rules_after_s_fires_it_once_through_the_outbox(
    recorders, make_settings, factory, drop: Path
) -> None:
    from tests.support.alerting import event_alerts  # here: the file's imports stay as they were
    from vigil.alerts.delivery import deliver
    from vigil.config.settings import RuleSettings

    dead_url = f"rtsp://127.0.0.1:{free_port()}/cam"
    with receiving() as hook:
        settings = make_settings(sources=[stream("shed", drop / "shed", dead_url)])
        rule = RuleSettings(
            name="shed-down", on="camera_offline", sources=["shed"], after_s=1.5, channels=["ops"]
        )
        settings.alerts = AlertSettings(
            channels=[ChannelSettings(name="ops", kind="webhook", url=hook.url)], rules=[rule]
        )
        recorders(settings)
        (alert,) = wait_for(lambda: event_alerts(factory, "camera_offline"), timeout=20)
        time.sleep(3.0)  # more failed attempts, more time: still the one alert
        assert len(event_alerts(factory, "camera_offline")) == 1
        (delivery,) = alert.deliveries
        assert deliver(factory, delivery.id, settings=settings).status == "delivered"  # the cpu task's body
        (request,) = hook.requests
    body, (outage,) = request.json(), outages(factory)
    assert (body["event"], body["source"]["name"], body["outage"]["reason"]) == (
        "camera_offline",
        "shed",
        outage.reason,
    )
    assert body["outage"]["id"] == outage.id and outage.attempts >= 3
    assert body["alert"]["message"].startswith("camera shed offline for ")
    assert (alert.fired_at - outage.started_at).total_seconds() >= 1.5


def _source_id(factory: sessionmaker[Session], name: str) -> int:
    from vigil.store.schema import Source

    with factory() as session:
        return session.scalars(select(Source.id).where(Source.name == name)).one()


def test_a_wrong_password_is_an_outage_that_never_shows_the_password(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, drop: Path, tmp_path: Path, caplog
) -> None:
    server = rtsp(user="cam", password=PASSWORD)
    secret = tmp_path / "gate.password"
    secret.write_text("not-" + PASSWORD + "\n")
    settings = make_settings(
        sources=[stream("gate", drop / "gate", server.url, username="cam", password_file=secret)]
    )
    with caplog.at_level(logging.DEBUG):
        recorders(settings)
        (outage,) = wait_for(lambda: [o for o in outages(factory) if o.attempts >= 2], timeout=20)
    assert outage.reason.startswith(f"cannot open rtsp://cam:***@127.0.0.1:{server.port}/cam: ")
    assert "401" in outage.reason or "unauthorized" in outage.reason.lower()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not-" + PASSWORD not in logged and "not-" + PASSWORD not in everything_stored(factory)
    assert not segments(drop / "gate")


def test_short_of_space_no_segment_starts_until_space_comes_back(
    rtsp: Callable[..., RtspServer], recorders, make_settings, factory, tmp_path: Path
) -> None:
    server = rtsp()
    with tmpfs(tmp_path / "volume", size="4m") as volume:
        junk = volume / "someone-elses.bin"  # nobody's media: retention may not free it
        junk.write_bytes(b"\0" * (3 * MiB + MiB // 2))
        cams = volume / "gate"
        # min_free 50% = 2 MiB: the recorder's floor is half of it, 1 MiB; about 0.5 MiB is free.
        settings = make_settings(sources=[stream("gate", cams, server.url, min_free="50%")])
        recorders(settings)
        (outage,) = wait_for(lambda: outages(factory), timeout=20)
        assert outage.reason.startswith("disk: ") and "half of min_free 50%" in outage.reason
        time.sleep(2.5)  # more than a segment's time: nothing written, the same outage
        assert not segments(cams) and len(outages(factory)) == 1
        junk.write_bytes(b"\0" * (2 * MiB + MiB // 2))  # 1.5 MiB free: below min_free, above the floor
        # Recording resumes there (retention, not the recorder, acts below min_free); the outage ends.
        wait_for(lambda: len(segments(cams)) >= 2, timeout=20)
        (outage,) = outages(factory)
        assert outage.ended_at is not None


def test_vigil_recorder_records_until_sigterm_and_leaves_whole_segments(
    rtsp: Callable[..., RtspServer], db_url: str, drop: Path, tmp_path: Path
) -> None:
    server = rtsp()
    config = tmp_path / "vigil.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
        "[metrics]\nenabled = false\n"
        f'[[watch.sources]]\nname = "gate"\npath = "{drop / "gate"}"\nurl = "{server.url}"\nsegment_s = 2\n'
    )
    env = {**os.environ, "VIGIL_CONFIG": str(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil", "recorder"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: len(segments(drop / "gate")) >= 1, timeout=30)
        time.sleep(1.0)  # mid-segment
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "recorder exited cleanly" in err
    assert len(segments(drop / "gate")) >= 2 and not list((drop / "gate").rglob("*.part"))
    for path in segments(drop / "gate"):
        with av.open(str(path)) as container:
            assert container.streams.video[0].frames > 0
    with Session(bind=_engine(db_url)) as session:
        assert session.scalars(select(Media)).all() == []  # the recorder registers nothing: the watcher does


def _engine(url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(url)

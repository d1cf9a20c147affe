"""camera_offline alert rules against a real RTSP server (GStreamer) and the real recorder: a camera killed
for longer than `after_s` fires exactly one alert, delivered by a real cpu worker to a real webhook
receiver that is down at first (the outbox retries it); a recorder restarted mid-outage takes the outage
over and does not fire again, while the next outage does; a rule outside its schedule, or not yet at its
`after_s`, does not fire while one inside it does."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from recorder.service import RecorderService
from tests.support.alerting import Receiver, event_alerts
from tests.support.rtsp import RtspServer
from tests.support.services import free_port
from tests.support.watching import wait_for
from vigil.config.settings import (
    AlertSettings,
    ChannelSettings,
    RuleSettings,
    Settings,
    SourceSettings,
    load_settings,
)
from vigil.ops.enqueue import Enqueuer
from vigil.store.schema import Alert, Delivery, StreamOutage

REPO = Path(__file__).resolve().parents[2]
FAST = {"segment_s": 2.0, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "read_timeout_s": 3.0}


@pytest.fixture
def recorders(
    factory: sessionmaker[Session], make_enqueuer: Callable[[Settings], Enqueuer]
) -> Iterator[Callable[[Settings], RecorderService]]:
    """Recorders handing their alerts' deliveries to the real queue (the embedded SQL broker)."""
    started: list[RecorderService] = []

    def start(settings: Settings) -> RecorderService:
        service = RecorderService(settings, factory=factory, enqueuer=make_enqueuer(settings))
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def stream(name: str, path: Path, url: str) -> SourceSettings:
    return SourceSettings(name=name, path=path, url=url, **FAST)  # type: ignore[arg-type]


def outages(factory: sessionmaker[Session]) -> list[StreamOutage]:
    with factory() as session:
        return list(session.scalars(select(StreamOutage).order_by(StreamOutage.id)))


def offline_rule(name: str, **keys: object) -> RuleSettings:
    return RuleSettings(name=name, on="camera_offline", cooldown_s=0, **keys)  # type: ignore[arg-type]


@pytest.fixture
def cpu_worker(
    tmp_path: Path, db_url: str, broker_url: str, drop: Path
) -> Iterator[Callable[[str, str], Path]]:
    """`start(camera_url, hook_url)`: the settings file, and a real Celery worker (`python -m workers --queue
    cpu`) running on it; stopped with SIGTERM at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(camera_url: str, hook_url: str) -> Path:
        config = tmp_path / "vigil.toml"
        config.write_text(
            f"""
[database]
url = "{db_url}"
[broker]
url = "{broker_url}"
[storage]
data_dir = "{tmp_path / "data"}"
[metrics]
enabled = false
[log]
level = "INFO"
format = "text"
[alerts]
retry_base_s = 0.5
retry_max_s = 1.0
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{hook_url}"
timeout_s = 2
[[alerts.rules]]
name = "gate-offline"
on = "camera_offline"
sources = ["gate"]
after_s = 2
cooldown_s = 0
severity = "critical"
channels = ["hook"]
[[watch.sources]]
name = "gate"
path = "{drop / "gate"}"
url = "{camera_url}"
segment_s = 2
reconnect_min_s = 0.2
reconnect_max_s = 1
read_timeout_s = 3
"""
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update(VIGIL_CONFIG=str(config), PYTHONPATH=str(REPO))
        with (tmp_path / "worker.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers", "--queue", "cpu", "--concurrency", "1"],
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        return config

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def delivery_of(factory: sessionmaker[Session], alert: Alert) -> Delivery:
    with factory() as session:
        return session.scalars(select(Delivery).where(Delivery.alert_id == alert.id)).one()


@pytest.mark.slow
def test_a_camera_killed_past_after_s_fires_one_alert_the_worker_delivers_once_the_receiver_is_up(
    rtsp: Callable[..., RtspServer],
    cpu_worker: Callable[[str, str], Path],
    recorders: Callable[[Settings], RecorderService],
    factory: sessionmaker[Session],
    drop: Path,
    tmp_path: Path,
) -> None:
    server = rtsp(gop=10)
    hook = Receiver()
    hook.port = free_port()  # nothing listens there yet: the receiver is down
    config = cpu_worker(server.url, hook.url)
    recorders(load_settings(config))
    wait_for(lambda: list((drop / "gate").rglob("*.mp4")), timeout=30)
    server.kill()

    (alert,) = wait_for(lambda: event_alerts(factory, "camera_offline"), timeout=30)
    (outage,) = outages(factory)
    assert alert.outage_id == outage.id and (alert.fired_at - outage.started_at).total_seconds() >= 2
    failed = wait_for(
        lambda: (d := delivery_of(factory, alert)).attempts >= 1 and d.last_error and d, timeout=90
    )
    assert failed.status == "pending" and "connect" in (failed.last_error or "").lower(), failed.last_error
    assert not hook.requests
    hook.start()  # the receiver comes up: the outbox's next attempt gets through
    try:
        done = wait_for(lambda: (d := delivery_of(factory, alert)).status == "delivered" and d, timeout=30)
        server.start()  # the camera is back: the outage ends, and nothing fires again
        wait_for(lambda: outages(factory)[0].ended_at is not None, timeout=30)
        time.sleep(1.0)
        (request,) = hook.requests
    finally:
        hook.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert done.attempts >= 2, log[-2000:]
    assert request.headers["webhook-id"] == done.idempotency_key
    body = request.json()
    assert (body["event"], body["source"]["name"], body["outage"]["id"]) == (
        "camera_offline",
        "gate",
        outage.id,
    )
    assert body["alert"]["severity"] == "critical" and body["alert"]["message"].startswith(
        "camera gate offline for 0."
    )
    assert [a.id for a in event_alerts(factory, "camera_offline")] == [alert.id] and len(
        outages(factory)
    ) == 1


def test_a_recorder_restarted_mid_outage_takes_it_over_and_fires_nothing_twice(
    rtsp: Callable[..., RtspServer],
    recorders: Callable[[Settings], RecorderService],
    make_settings: Callable[..., Settings],
    factory: sessionmaker[Session],
    drop: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rtsp(gop=10)
    settings = make_settings(sources=[stream("gate", drop / "gate", server.url)])
    settings.alerts = AlertSettings(rules=[offline_rule("gate-down", sources=["gate"], after_s=1.0)])
    first = recorders(settings)
    wait_for(lambda: list((drop / "gate").rglob("*.mp4")), timeout=30)
    server.kill()
    (alert,) = wait_for(lambda: event_alerts(factory, "camera_offline"), timeout=20)
    first.stop()
    (outage,) = outages(factory)
    assert outage.ended_at is None  # left open: the stream is not recorded while no recorder runs

    with caplog.at_level(logging.INFO):
        second = recorders(settings)
    assert "taking over 1 outage(s) left open by an earlier recorder" in caplog.text
    wait_for(lambda: outages(factory)[0].attempts >= outage.attempts + 3, timeout=20)  # the new one tries
    assert [a.id for a in event_alerts(factory, "camera_offline")] == [alert.id]
    assert [o.id for o in outages(factory)] == [outage.id]

    server.start()  # recorded again: the outage it took over ends there
    wait_for(lambda: outages(factory)[0].ended_at is not None, timeout=30)
    wait_for(lambda: second.recorders[0].outage is None, timeout=5)
    server.kill()  # a new outage is a new episode: the rule fires again (cooldown_s = 0)
    wait_for(lambda: len(event_alerts(factory, "camera_offline")) == 2, timeout=20)
    later = event_alerts(factory, "camera_offline")[1]
    assert later.outage_id == outages(factory)[1].id != outage.id


def test_a_rule_outside_its_schedule_or_short_of_its_after_s_does_not_fire(
    recorders: Callable[[Settings], RecorderService],
    make_settings: Callable[..., Settings],
    factory: sessionmaker[Session],
    drop: Path,
) -> None:
    hour = datetime.now(UTC).hour
    elsewhen = f"{(hour + 2) % 24:02d}-{(hour + 4) % 24:02d}"  # hours that do not hold now
    dead_url = f"rtsp://127.0.0.1:{free_port()}/cam"  # nothing listens there
    settings = make_settings(sources=[stream("shed", drop / "shed", dead_url)])
    settings.alerts = AlertSettings(
        channels=[ChannelSettings(name="ops", kind="log")],
        rules=[
            offline_rule("night-only", sources=["sh*"], after_s=0.5, hours=elsewhen, channels=["ops"]),
            offline_rule("much-later", sources=["shed"], after_s=3600),
            offline_rule("other-camera", sources=["gate"], after_s=0.5),
            offline_rule("now", sources=["*"], after_s=1.0, days=[], hours=None),
        ],
    )
    recorders(settings)
    (alert,) = wait_for(lambda: event_alerts(factory, "camera_offline"), timeout=20)
    time.sleep(3.0)  # time for the others, had they been due
    with factory() as session:
        fired = [row[0] for row in session.execute(select(Alert.rule_id)).all()]
    assert len(fired) == 1 and alert.message.startswith("camera shed offline for 0.")
    assert [a.id for a in event_alerts(factory, "camera_offline")] == [alert.id]
    assert alert.payload["alert"]["rule"] == "now"

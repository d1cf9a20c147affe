"""Rules that fire on events (camera_offline, disk_pressure) on a real SQLite database, through the real
outbox to a real HTTP receiver: the documents docs/alerts.md shows, once per episode, the cooldown, what
waits for its after_s, no verdict on an event, MQTT topics, and the CLI's view of event rules and alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.alerting import Receiver, event_alerts, factory_for, make_settings, sync_all
from tests.vigil.test_alerts_doc import example_json, key_paths
from vigil.alerts import events
from vigil.alerts.channels import MqttSender, Notification
from vigil.alerts.delivery import deliver
from vigil.cli import cli
from vigil.config.settings import ChannelSettings, Settings, diagnose_settings, load_settings
from vigil.errors import ConfigError
from vigil.feedback.verdicts import record_verdict
from vigil.media.deletion import Pressure
from vigil.media.outages import close_outage, open_outage
from vigil.store.db import write_session
from vigil.store.schema import Delivery, Source, utcnow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


def settings_for(url: str, hook: Receiver, *, cooldown_s: float = 300.0) -> Settings:
    return make_settings(
        url,
        channels=[{"name": "ops", "kind": "webhook", "url": hook.url}],
        rules=[
            {"name": "gate-offline", "on": "camera_offline", "sources": ["gate"], "after_s": 120,
             "severity": "critical", "channels": ["ops"], "cooldown_s": cooldown_s},
            {"name": "gate-much-later", "on": "camera_offline", "sources": ["gate"], "after_s": 3600},
            {"name": "disk-full", "on": "disk_pressure", "channels": ["ops"], "cooldown_s": cooldown_s,
             "message": "{host}: {volume} has {free_bytes} bytes free, {needed_bytes} needed"},
        ],
    )  # fmt: skip


def offline_since(factory: sessionmaker[Session], seconds: float) -> int:
    with factory() as session:
        gate = session.scalars(select(Source.id).where(Source.name == "gate")).one()
    return open_outage(factory, gate, started_at=utcnow() - timedelta(seconds=seconds), reason="refused")


def deliver_all(factory: sessionmaker[Session], settings: Settings, alert_ids: list[int]) -> None:
    with factory() as session:
        ids = session.scalars(select(Delivery.id).where(Delivery.alert_id.in_(alert_ids))).all()
    for delivery_id in ids:
        assert deliver(factory, delivery_id, settings=settings).status == "delivered"


def test_event_alerts_send_the_documented_documents(sqlite_url: str, receiver: Receiver) -> None:
    settings = settings_for(sqlite_url, receiver)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings, sources=("gate",))
    outage = offline_since(factory, 130)
    offline = events.camera_offline(factory, outage, settings=settings)
    pressure = Pressure("/srv", 1048576, 5242880, "25%")
    full = events.disk_pressure(factory, pressure, since=utcnow(), settings=settings)
    assert len(offline.alert_ids) == len(full.alert_ids) == 1
    assert offline.next_in_s == pytest.approx(3600 - 130, abs=5)  # gate-much-later waits its after_s
    deliver_all(factory, settings, offline.alert_ids + full.alert_ids)
    camera, disk = (request.json() for request in receiver.requests)
    assert key_paths(camera) == key_paths(example_json("camera-offline-document"))
    assert key_paths(disk) == key_paths(example_json("disk-pressure-document"))
    assert camera["alert"]["message"].startswith("camera gate offline for 2.2 min (since ")
    assert camera["alert"]["message"].endswith("): refused") and camera["outage"]["id"] == outage
    assert disk["alert"]["message"] == f"{disk['host']}: /srv has 1048576 bytes free, 5242880 needed"
    assert camera["media_url"] is None and disk["volume"]["min_free"] == "25%"


def test_once_per_outage_and_episode_then_the_cooldown(sqlite_url: str, receiver: Receiver) -> None:
    settings = settings_for(sqlite_url, receiver)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings, sources=("gate",))
    first = offline_since(factory, 200)
    assert len(events.camera_offline(factory, first, settings=settings).alert_ids) == 1
    assert events.camera_offline(factory, first, settings=settings).alert_ids == []  # the same outage
    close_outage(factory, first, ended_at=utcnow())
    assert events.camera_offline(factory, first, settings=settings).alert_ids == []  # over: nothing fires
    second = offline_since(factory, 150)  # a flapping camera: a new outage inside the cooldown
    assert events.camera_offline(factory, second, settings=settings).alert_ids == []
    short = offline_since(factory, 10)
    assert events.camera_offline(factory, short, settings=settings).next_in_s == pytest.approx(110, abs=5)

    pressure, since = Pressure("/srv", 1, 5, "10%"), utcnow() - timedelta(seconds=120)
    assert len(events.disk_pressure(factory, pressure, since=since, settings=settings).alert_ids) == 1
    assert events.disk_pressure(factory, pressure, since=since, settings=settings).alert_ids == []
    later = since + timedelta(seconds=60)  # a new episode inside the cooldown
    assert events.disk_pressure(factory, pressure, since=later, settings=settings).alert_ids == []
    other = Pressure("/data", 1, 5, "10%")  # another volume has its own
    assert len(events.disk_pressure(factory, other, since=later, settings=settings).alert_ids) == 1

    unhurried = settings_for(sqlite_url, receiver, cooldown_s=0)
    sync_all(factory, unhurried, sources=("gate",))
    assert len(events.camera_offline(factory, second, settings=unhurried).alert_ids) == 1
    twin = offline_since(factory, 200)  # a second recorder of the same camera (another machine): its own row
    assert events.camera_offline(factory, twin, settings=unhurried).alert_ids == []  # told, still open
    assert len(events.disk_pressure(factory, pressure, since=later, settings=unhurried).alert_ids) == 1
    assert (
        len(event_alerts(factory, "camera_offline")) == 2 and len(event_alerts(factory, "disk_pressure")) == 3
    )


def test_an_event_alert_takes_no_verdict_and_its_mqtt_topic_names_source_and_event(
    sqlite_url: str, receiver: Receiver
) -> None:
    settings = settings_for(sqlite_url, receiver)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings, sources=("gate",))
    (alert_id,) = events.camera_offline(factory, offline_since(factory, 130), settings=settings).alert_ids
    (disk_id,) = events.disk_pressure(
        factory, Pressure("/srv", 1, 5, "1%"), since=utcnow(), settings=settings
    ).alert_ids
    with write_session(factory) as session, pytest.raises(ConfigError) as refused:
        record_verdict(session, detection_id=1, verdict="right", alert_id=alert_id)
    assert (
        str(refused.value) == f"alert {alert_id} is a camera_offline alert: no detection to judge, no verdict"
    )
    mqtt = MqttSender(ChannelSettings(name="mq", kind="mqtt", mqtt_host="127.0.0.1"))
    for alert in event_alerts(factory, "camera_offline") + event_alerts(factory, "disk_pressure"):
        note = Notification.from_alert(alert, alert.deliveries[0], base_url="https://vigil.example.org")
        host = alert.host or ""
        expected = "vigil/gate/camera_offline" if alert.id == alert_id else f"vigil/{host}/disk_pressure"
        assert mqtt.topic(note) == expected and note.payload["media_url"] is None
    assert disk_id != alert_id


def vigil(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_the_cli_lists_event_rules_and_shows_event_alerts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    config = tmp_path / "vigil.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[broker]\nurl = "sqla+sqlite:///{tmp_path / "broker.db"}"\n'
        f'[[watch.sources]]\nname = "gate"\npath = "{tmp_path}"\nurl = "rtsp://cam/s"\n'
        '[[alerts.rules]]\nname = "gate-offline"\non = "camera_offline"\nsources = ["gate"]\nafter_s = 120\n'
        '[[alerts.rules]]\nname = "disk-full"\non = "disk_pressure"\nhours = "22-06"\n'
    )
    listed = vigil(config, "rules", "list")
    assert listed.exit_code == 0, listed.output
    assert (
        "gate-offline  on   on=camera_offline sources=gate after=120s cooldown=300s warning -> log"
        in listed.output
    )
    assert (
        "disk-full  on   on=disk_pressure when=daily 22-06 UTC cooldown=300s warning -> log" in listed.output
    )
    added = vigil(config, "rules", "add", "yard", "--on", "camera_offline", "--after", "60", "-s", "yard")
    assert added.exit_code == 0, added.output
    assert (
        "yard  on   on=camera_offline sources=yard after=60s cooldown=300s"
        in vigil(config, "rules", "list").output
    )
    bad = vigil(config, "rules", "add", "x", "--on", "camera_offline", "--after", "9", "-t", "van")
    assert (
        bad.exit_code == 2
        and 'targets: only for detection rules (this one has on = "camera_offline")' in bad.output
    )
    bad = vigil(config, "rules", "add", "x", "--on", "disk_pressure", "--after", "9")
    assert bad.exit_code == 2 and "after_s: only for camera_offline rules" in bad.output
    explained = vigil(config, "rules", "test", "gate-offline", "--media", "1")
    assert explained.exit_code == 2 and "fires on camera_offline, not on detections" in explained.output

    settings = load_settings(config)
    factory = factory_for(url)
    (alert_id,) = events.camera_offline(factory, offline_since(factory, 130), settings=settings).alert_ids
    shown = vigil(config, "alerts", "show", str(alert_id))
    assert shown.exit_code == 0, shown.output
    assert "event     camera_offline on host " in shown.output and "reason    refused" in shown.output
    listed = vigil(config, "alerts", "list")
    assert "gate-offline  warning  camera_offline  camera gate offline for 2.2 min" in listed.output
    assert "[log:pending]" in listed.output


def test_a_camera_offline_rule_on_a_folder_that_is_no_stream_is_a_warning(tmp_path: Path) -> None:
    rule = '[[alerts.rules]]\nname = "r"\non = "camera_offline"\nafter_s = 60\nsources = ["cam1"]\n'
    folder = f'[[watch.sources]]\nname = "cam1"\npath = "{tmp_path}"\n'
    config = tmp_path / "vigil.toml"
    config.write_text(folder + rule)
    found = diagnose_settings(config)
    expected = "alerts.rules[r].sources: cam1: not a stream (no url), so never offline: the rule never fires"
    assert not found.errors and [str(w).endswith(expected) for w in found.warnings] == [True]
    config.write_text(folder + 'url = "rtsp://cam/s"\n' + rule)
    assert diagnose_settings(config).warnings == []

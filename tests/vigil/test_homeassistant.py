"""Home Assistant over MQTT, checked by subscribing to the real Mosquitto (127.0.0.1:1883) as Home
Assistant would: retained discovery configs, ON then OFF, the score, the image bytes, and the last will."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.alerting import add_analysis, add_media, dispose_engines, factory_for, sync_all
from tests.support.mqtt import Mosquitto, MqttRecorder, ha_settings, topic_root
from vigil.alerts.channels import DeliveryFailed, MqttSender, Notification
from vigil.alerts.feed import DetectionFeed
from vigil.alerts.homeassistant import HomeAssistantBridge
from vigil.config.settings import ChannelSettings, Settings, load_settings
from vigil.store.db import write_session
from vigil.store.schema import Detection, Target
from workers.testing.clips import write_image

NOTE = Notification(
    "msg_test", {"media": {"source": "cam1"}, "target": {"name": "person"}}, "subject", "text", "info", None
)
HA_KEYS = {"name", "unique_id", "availability", "device", "origin"}


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def root() -> Iterator[str]:
    with topic_root("ha") as name:
        yield name


def detect(factory: sessionmaker[Session], scores: dict[str, list[float]], thumbnail: Path | None) -> None:
    with write_session(factory) as session:
        media = add_media(session)
        add_analysis(session, media, scores, thumbnail=str(thumbnail) if thumbnail else None)


def configs(messages: list[Any], root: str) -> dict[str, Any]:
    prefix = f"{root}/homeassistant/"
    return {m.topic: m for m in messages if m.topic.startswith(prefix) and m.topic.endswith("/config")}


def check_discovery(docs: dict[str, Any], root: str) -> None:
    """The configs Home Assistant needs: its keys, one unique id each, the topics the bridge writes."""
    assert all(doc.keys() >= HA_KEYS for doc in docs.values())
    assert len({doc["unique_id"] for doc in docs.values()}) == 6
    config = f"{root}/homeassistant/{{}}/{root}_vigil/{{}}/config".format
    binary = docs[config("binary_sensor", "cam1_person")]
    assert binary["state_topic"] == f"{root}/vigil/cam1/person/state"
    assert (binary["payload_on"], binary["payload_off"]) == ("ON", "OFF")
    availability = {"topic": f"{root}/vigil/availability", "payload_available": "online"}
    assert binary["availability"] == [{**availability, "payload_not_available": "offline"}]
    assert binary["device"]["identifiers"] == [f"vigil_{root}_vigil"]
    image = docs[config("image", "cam1_person")]
    assert image["image_topic"] == f"{root}/vigil/cam1/person/image" and image["content_type"] == "image/jpeg"
    assert docs[config("sensor", "cam1_van")]["state_topic"] == f"{root}/vigil/cam1/van/score"


def test_discovery_state_score_image_and_off_after_the_configured_time(
    sqlite_url: str, root: str, tmp_path: Path
) -> None:
    settings = ha_settings(sqlite_url, root, off_after_s=1.5)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    thumb = write_image(tmp_path / "w0000-t1.jpg", size=(320, 180))
    availability = f"{root}/vigil/availability"
    person = f"{root}/vigil/cam1/person"
    stop = threading.Event()
    bridge = HomeAssistantBridge(settings, factory)
    with MqttRecorder(f"{root}/#") as live:
        runner = threading.Thread(target=bridge.run, args=(stop,))
        runner.start()
        try:
            live.wait_payload(availability, b"online")
            with MqttRecorder(f"{root}/#") as late:  # what a Home Assistant starting now reads
                found = late.wait_for(lambda ms: len(configs(ms, root)) == 6 and configs(ms, root))
                initial = late.wait_for(lambda ms: [m for m in ms if m.topic == f"{person}/state"])
            assert all(m.retain for m in found.values())
            assert [(m.payload, m.retain) for m in initial] == [(b"OFF", True)]
            check_discovery({topic: json.loads(m.payload) for topic, m in found.items()}, root)

            stored = time.monotonic()
            detect(factory, {"person": [0.9], "van": [0.2]}, thumb)
            on = live.wait_payload(f"{person}/state", b"ON")
            off = live.wait_for(lambda ms: [m for m in ms if m.topic == on.topic and m.at > on.at])[0]
            assert off.payload == b"OFF"
            # off_after_s counts from the match's stored time (the bridge derives it from the row, so a
            # restart cannot shorten it), measured here from just before the commit
            assert off.at - stored >= 1.5
            assert live.on(f"{person}/image")[-1].payload == thumb.read_bytes()
            assert live.on(f"{person}/score")[-1].payload == b"0.9000"
            assert live.on(f"{root}/vigil/cam1/van/score")[-1].payload == b"0.2000"
            assert [m.payload for m in live.on(f"{root}/vigil/cam1/van/state")] == [b"OFF"]  # 0.2 < 0.7
            attrs = json.loads(live.on(f"{person}/attributes")[-1].payload)
            base = "http://vigil.lan:8765"
            assert attrs["media_url"] == f"{base}/media/{attrs['media_id']}"
            assert attrs["thumbnail_url"] == f"{base}/detections/{attrs['detection_id']}/thumbnail"
            assert attrs["score"] == 0.9 and attrs["evidence"] == "person in window 0"

            # Home Assistant restarted: it says online on its status topic and gets the configs again
            sent = lambda ms: len([m for m in ms if m.topic.endswith("/config")])  # noqa: E731
            assert sent(live.messages) == 6  # once at start
            live.client.publish(f"{root}/homeassistant/status", b"online", qos=1).wait_for_publish(5)
            live.wait_for(lambda ms: sent(ms) == 12)
        finally:
            stop.set()
            runner.join(30)
        assert not runner.is_alive()
        live.wait_payload(availability, b"offline")  # a clean stop says so itself


def test_a_removed_pair_loses_its_entities(sqlite_url: str, root: str) -> None:
    settings = ha_settings(sqlite_url, root)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    now = [0.0]
    bridge = HomeAssistantBridge(settings, factory, clock=lambda: now[0])
    van_config = f"{root}/homeassistant/binary_sensor/{root}_vigil/cam1_van/config"
    with MqttRecorder(f"{root}/#") as live:
        bridge.start()
        try:
            live.wait_for(lambda ms: len(configs(ms, root)) == 6)
            with write_session(factory) as session:
                session.execute(update(Target).where(Target.name == "van").values(enabled=False))
            now[0] = 31.0  # past the pairs refresh interval
            bridge.step()
            live.wait_payload(van_config, b"")
        finally:
            bridge.close()
    person_config = f"{root}/homeassistant/binary_sensor/{root}_vigil/cam1_person/config"
    assert live.on(person_config) and all(m.payload for m in live.on(person_config))


def test_the_last_will_says_offline_when_the_process_is_killed(
    sqlite_url: str, root: str, tmp_path: Path
) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(
        f"""
[database]
url = "{sqlite_url}"

[[targets]]
name = "person"
description = "a person"

[[alerts.channels]]
name = "mq"
kind = "mqtt"
mqtt_host = "127.0.0.1"

[homeassistant]
enabled = true
discovery_prefix = "{root}/homeassistant"
topic_prefix = "{root}/vigil"
poll_interval_s = 0.2

[[watch.sources]]
name = "cam1"
path = "{tmp_path}"
"""
    )
    settings = load_settings(config)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    availability = f"{root}/vigil/availability"
    env = {**os.environ, "VIGIL_CONFIG": str(config)}
    with MqttRecorder(f"{root}/vigil/#") as live:
        proc = subprocess.Popen([sys.executable, "-m", "vigil", "homeassistant"], env=env, cwd=tmp_path)
        try:
            live.wait_payload(availability, b"online", timeout=60)
            detect(factory, {"person": [0.8]}, None)
            live.wait_payload(f"{root}/vigil/cam1/person/state", b"ON")
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            live.wait_payload(availability, b"offline")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_a_broker_down_at_start_and_restarted_empty_gets_everything_again(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The bridge does not crash without its broker; once it is up (again, with no retained messages) the
    configs, states and availability are published anew."""
    broker = Mosquitto(tmp_path)
    settings = ha_settings(sqlite_url, "ha")
    channel = settings.alerts.channels[0].model_copy(update={"mqtt_port": broker.port})
    settings.alerts = settings.alerts.model_copy(update={"channels": [channel]})
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    stop = threading.Event()
    runner = threading.Thread(target=HomeAssistantBridge(settings, factory).run, args=(stop,))
    runner.start()
    try:
        detect(factory, {"person": [0.9]}, None)  # while the broker is down
        for _ in range(2):
            broker.start()
            with MqttRecorder("ha/#", port=broker.port) as late:
                late.wait_payload("ha/vigil/availability", b"online", timeout=60)
                late.wait_for(lambda ms: len(configs(ms, "ha")) == 6, timeout=60)
                state = late.wait_for(lambda ms: [m for m in ms if m.topic == "ha/vigil/cam1/person/state"])
                assert state[0].payload == b"ON"
            broker.stop()
    finally:
        stop.set()
        runner.join(60)
        broker.stop()
    assert not runner.is_alive()


def test_the_bridge_and_the_channel_log_in_with_the_channels_credentials(
    sqlite_url: str, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path, users={"vigil": "s3cret"})
    broker.start()
    settings = ha_settings(sqlite_url, "ha")
    login = {"mqtt_port": broker.port, "mqtt_user": "vigil", "mqtt_password": "s3cret", "timeout_s": 2}
    channel = ChannelSettings(**{**settings.alerts.channels[0].model_dump(), **login})
    settings.alerts = settings.alerts.model_copy(update={"channels": [channel]})
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    bridge = HomeAssistantBridge(settings, factory)
    try:
        with MqttRecorder("#", port=broker.port, auth=("vigil", "s3cret")) as live:
            bridge.start()
            live.wait_payload("ha/vigil/availability", b"online")
            wrong = ChannelSettings(**{**channel.model_dump(), "mqtt_password": "guess"})
            with pytest.raises(DeliveryFailed, match="refused") as refused:
                MqttSender(wrong).send(NOTE)
            assert not refused.value.retryable and "guess" not in str(refused.value)
            MqttSender(channel).send(NOTE)
            live.wait_for(lambda ms: [m for m in ms if m.topic == "vigil/cam1/person"])
    finally:
        bridge.close()
        broker.stop()


def test_settings_name_one_mqtt_channel() -> None:
    with pytest.raises(ValueError, match="0 are configured"):
        Settings(homeassistant={"enabled": True})
    webhook = {"name": "hook", "kind": "webhook", "url": "https://example.org/h"}
    with pytest.raises(ValueError, match="hook is a webhook channel, not mqtt"):
        Settings(homeassistant={"enabled": True, "channel": "hook"}, alerts={"channels": [webhook]})
    with pytest.raises(ValueError, match="no channel named nope"):
        Settings(homeassistant={"enabled": True, "channel": "nope"}, alerts={"channels": [webhook]})
    for bad in ("a/#", "a/+/b", "/a", "a//b", "a b", ""):
        with pytest.raises(ValueError, match="topic_prefix"):
            Settings(homeassistant={"topic_prefix": bad})
    mqtt = [{"name": f"m{i}", "kind": "mqtt", "mqtt_host": "h"} for i in range(2)]
    with pytest.raises(ValueError, match="2 are configured"):
        Settings(homeassistant={"enabled": True}, alerts={"channels": mqtt})
    chosen = Settings(homeassistant={"enabled": True, "channel": "m1"}, alerts={"channels": mqtt})
    assert chosen.homeassistant_channel().name == "m1"


def test_the_command_refuses_when_disabled(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vigil.cli import cli

    config = tmp_path / "vigil.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "v.db"}"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "homeassistant"])
    assert result.exit_code == 2 and "homeassistant.enabled is false" in result.output


def test_the_feed_sees_a_transaction_that_commits_after_a_later_one(pg_url: str) -> None:
    """PostgreSQL takes ids at INSERT: a detection whose transaction commits late has a lower id than one
    already read. The feed looks such gaps up again."""
    settings = ha_settings(pg_url, "unused")
    factory = factory_for(pg_url)
    sync_all(factory, settings)
    with write_session(factory) as session:
        media = add_media(session)
        analysis = add_analysis(session, media, {})
        media_id, analysis_id = media.id, analysis.id
        person = session.scalar(select(Target.id).where(Target.name == "person"))
    feed = DetectionFeed(factory)
    row = {"analysis_id": analysis_id, "media_id": media_id, "target_id": person, "p_yes": 0.9}
    new = insert(Detection).values(start_s=0.0, end_s=1.0, matched=True, **row).returning(Detection.id)
    slow, fast = factory(), factory()
    try:
        slow_id = slow.execute(new.values(window_index=0)).scalar_one()
        with fast.begin():
            fast_id = fast.execute(new.values(window_index=1)).scalar_one()
        assert slow_id < fast_id
        assert [d.id for d in feed.poll()] == [fast_id]
        slow.commit()
        assert [d.id for d in feed.poll()] == [slow_id]
        assert feed.poll() == []
    finally:
        slow.close()
        fast.close()


def test_a_restarted_feed_resumes_at_its_saved_position_and_looks_its_gaps_up_again(pg_url: str) -> None:
    """A bridge stopped while a lower id's transaction was still open: the next process of the same
    consumer starts where the first saved, and still sees that transaction once it commits."""
    settings = ha_settings(pg_url, "unused")
    factory = factory_for(pg_url)
    sync_all(factory, settings)
    with write_session(factory) as session:
        media = add_media(session)
        analysis = add_analysis(session, media, {})
        row = {"analysis_id": analysis.id, "media_id": media.id, "p_yes": 0.9, "matched": True}
        row["target_id"] = session.scalar(select(Target.id).where(Target.name == "person"))
    new = insert(Detection).values(start_s=0.0, end_s=1.0, **row).returning(Detection.id)
    first = DetectionFeed(factory, consumer="test")
    slow, fast = factory(), factory()
    try:
        slow_id = slow.execute(new.values(window_index=0)).scalar_one()
        with fast.begin():
            fast_id = fast.execute(new.values(window_index=1)).scalar_one()
        assert [d.id for d in first.poll()] == [fast_id]
        first.save(first.position())
        with write_session(factory) as session:  # committed while no feed runs
            later_id = session.execute(new.values(window_index=2)).scalar_one()
        slow.commit()
    finally:
        slow.close()
        fast.close()
    again = DetectionFeed(factory, consumer="test")
    assert [d.id for d in again.poll()] == [slow_id, later_id]
    assert DetectionFeed(factory, consumer="another").poll() == []  # a new consumer starts now

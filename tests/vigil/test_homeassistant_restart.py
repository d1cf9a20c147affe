"""The Home Assistant bridge across restarts and crashes, and what a Home Assistant user sees in its
discovery configs, checked by subscribing to the real Mosquitto (127.0.0.1:1883) with a real paho client:
matches committed while the bridge is down are published after it restarts, in order; a restart keeps a
sensor ON until `off_after_s` after its match; every window's score is published; entities are described as
Home Assistant expects (the real Home Assistant Core is in test_homeassistant_core.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.alerting import add_analysis, add_media, dispose_engines, factory_for, sync_all
from tests.support.mqtt import Mosquitto, MqttRecorder, ha_settings, topic_root
from vigil.alerts.homeassistant import HomeAssistantBridge
from vigil.config.settings import Settings, load_settings
from vigil.store.db import write_session
from vigil.store.schema import Detection, FeedPosition, Target
from workers.testing.clips import write_image


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def root() -> Iterator[str]:
    with topic_root("ha-restart") as name:
        yield name


def config_file(tmp_path: Path, url: str, root: str, *, off_after_s: float = 60) -> Path:
    config = tmp_path / "vigil.toml"
    config.write_text(
        f"""
[database]
url = "{url}"

[[targets]]
name = "person"
description = "a person"

[[targets]]
name = "van"
description = "a van"
threshold = 0.7

[[alerts.channels]]
name = "mq"
kind = "mqtt"
mqtt_host = "127.0.0.1"

[homeassistant]
enabled = true
discovery_prefix = "{root}/homeassistant"
topic_prefix = "{root}/vigil"
poll_interval_s = 0.2
off_after_s = {off_after_s}

[[watch.sources]]
name = "cam1"
path = "{tmp_path}"
"""
    )
    return config


@contextmanager
def running(bridge: HomeAssistantBridge) -> Iterator[HomeAssistantBridge]:
    stop = threading.Event()
    runner = threading.Thread(target=bridge.run, args=(stop,))
    runner.start()
    try:
        yield bridge
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()


@contextmanager
def bridge_process(config: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "VIGIL_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-m", "vigil", "homeassistant"], env=env, cwd=cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def detect(factory: Any, scores: dict[str, list[float]], thumbnail: Path | None = None) -> None:
    with write_session(factory) as session:
        add_analysis(session, add_media(session), scores, thumbnail=str(thumbnail) if thumbnail else None)


def age_every_detection(factory: Any, seconds: float) -> None:
    """Make every stored detection `seconds` older (as if it was stored that long ago)."""
    with write_session(factory) as session:
        for det in session.scalars(select(Detection)):
            det.created_at -= timedelta(seconds=seconds)


def payloads(recorder: MqttRecorder, topic: str) -> list[bytes]:
    return [m.payload for m in recorder.on(topic)]


def test_a_crashed_bridge_publishes_what_it_missed_in_order_after_a_restart(
    sqlite_url: str, root: str, tmp_path: Path
) -> None:
    """SIGKILLed, then started again: the matches committed meanwhile are published in id order; a match
    older than off_after_s updates score, image and attributes but leaves the state OFF; a newer one: ON."""
    config = config_file(tmp_path, sqlite_url, root)
    factory = factory_for(sqlite_url)
    sync_all(factory, load_settings(config))
    thumb = write_image(tmp_path / "t.jpg", size=(64, 36))
    base = f"{root}/vigil"
    with MqttRecorder(f"{base}/#") as first:
        with bridge_process(config, tmp_path) as proc:
            first.wait_payload(f"{base}/availability", b"online", timeout=60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        first.wait_payload(f"{base}/availability", b"offline")
    # while it is down: a van match stored two minutes ago, then person windows of which 0.6 matches
    detect(factory, {"person": [0.9, 0.2], "van": [0.75]}, thumb)
    age_every_detection(factory, 120)
    detect(factory, {"person": [0.3, 0.6]}, thumb)
    newest = factory().scalar(select(Detection.id).order_by(Detection.id.desc()).limit(1))
    with MqttRecorder(f"{base}/#") as live, bridge_process(config, tmp_path):
        live.wait_for(
            lambda ms: len([m for m in ms if m.topic == f"{base}/cam1/person/score"]) == 4, timeout=60
        )
        live.wait_payload(f"{base}/cam1/person/state", b"ON")
        live.wait_for(lambda ms: [m for m in ms if m.topic == f"{base}/cam1/van/attributes"])
    assert payloads(live, f"{base}/cam1/person/score") == [b"0.9000", b"0.2000", b"0.3000", b"0.6000"]
    assert json.loads(live.on(f"{base}/cam1/person/attributes")[-1].payload)["detection_id"] == newest
    assert live.on(f"{base}/cam1/person/image")[-1].payload == thumb.read_bytes()
    assert payloads(live, f"{base}/cam1/van/score") == [b"0.7500"]
    assert b"ON" not in payloads(live, f"{base}/cam1/van/state")  # its match is two minutes old
    assert payloads(live, f"{base}/cam1/van/state")[-1] == b"OFF"


def test_the_position_is_kept_per_topic_prefix_and_a_new_prefix_starts_now(
    sqlite_url: str, root: str
) -> None:
    factory = factory_for(sqlite_url)
    first = ha_settings(sqlite_url, root)
    sync_all(factory, first)
    detect(factory, {"person": [0.9]})  # before any bridge ran: history, not replayed
    with MqttRecorder(f"{root}/#") as live:
        with running(HomeAssistantBridge(first, factory)):
            live.wait_payload(f"{root}/vigil/availability", b"online")
        detect(factory, {"person": [0.4]})  # the first prefix's bridge is down
        other = ha_settings(sqlite_url, root, topic_prefix=f"{root}/other")
        with running(HomeAssistantBridge(other, factory)), running(HomeAssistantBridge(first, factory)):
            live.wait_payload(f"{root}/vigil/cam1/person/score", b"0.4000")
            live.wait_payload(f"{root}/other/availability", b"online")
            detect(factory, {"person": [0.7]})
            live.wait_payload(f"{root}/other/cam1/person/score", b"0.7000")
            live.wait_payload(f"{root}/vigil/cam1/person/score", b"0.7000")
    assert payloads(live, f"{root}/vigil/cam1/person/score") == [b"0.4000", b"0.7000"]
    assert payloads(live, f"{root}/other/cam1/person/score") == [b"0.7000"]
    with factory() as session:
        saved = {p.consumer: p.last_id for p in session.scalars(select(FeedPosition))}
        top = session.scalar(select(Detection.id).order_by(Detection.id.desc()).limit(1))
    assert saved == {f"homeassistant:{root}/vigil": top, f"homeassistant:{root}/other": top}


def test_a_restart_keeps_the_sensor_on_until_off_after_s_after_the_match(sqlite_url: str, root: str) -> None:
    off_after_s = 4.0
    settings = ha_settings(sqlite_url, root, off_after_s=off_after_s)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    state = f"{root}/vigil/cam1/person/state"
    with MqttRecorder(f"{root}/#") as live:
        with running(HomeAssistantBridge(settings, factory)):
            live.wait_payload(f"{root}/vigil/availability", b"online")
            detect(factory, {"person": [0.9]})
            on = live.wait_payload(state, b"ON")
        with running(HomeAssistantBridge(settings, factory)):  # restarted (a deploy)
            off = live.wait_for(
                lambda ms: [m for m in ms if m.topic == state and m.payload == b"OFF" and m.at > on.at]
            )
    after = [m.payload for m in live.on(state) if on.at <= m.at < off[0].at]
    assert set(after) == {b"ON"}  # the restarted bridge said ON again, never OFF early
    assert off_after_s - 0.5 <= off[0].at - on.at <= off_after_s + 2.0


def test_every_windows_score_is_published_in_order(sqlite_url: str, root: str) -> None:
    """Two clips that finish within one poll: eight windows, eight score messages, in window order."""
    settings = ha_settings(sqlite_url, root)
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    bridge = HomeAssistantBridge(settings, factory)
    score = f"{root}/vigil/cam1/person/score"
    first, second = [0.1, 0.6, 0.2, 0.7], [0.3, 0.8, 0.4, 0.9]
    with MqttRecorder(f"{root}/#") as live:
        bridge.start()
        try:
            live.wait_payload(f"{root}/vigil/availability", b"online")
            detect(factory, {"person": first})
            detect(factory, {"person": second})
            bridge.step()
            live.wait_for(lambda ms: len([m for m in ms if m.topic == score]) == 8)
        finally:
            bridge.close()
    assert payloads(live, score) == [f"{p:.4f}".encode() for p in first + second]
    attrs = json.loads(live.on(f"{root}/vigil/cam1/person/attributes")[-1].payload)
    assert (attrs["score"], attrs["start_s"]) == (0.9, 30.0)  # the newest match's


def test_entities_read_as_a_home_assistant_user_expects(
    sqlite_url: str, root: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ha_settings(sqlite_url, root, device_class="motion")
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    now = [1.0e9]
    bridge = HomeAssistantBridge(settings, factory, clock=lambda: now[0])
    node = f"{root}_vigil"
    config = f"{root}/homeassistant/{{}}/{node}/{{}}/config".format
    with MqttRecorder(f"{root}/#") as live:
        bridge.start()
        try:
            live.wait_payload(f"{root}/vigil/availability", b"online")
            with write_session(factory) as session:  # `vigil targets add dog` while the bridge runs
                session.add(Target(name="dog", description="a dog", threshold=0.5))
            now[0] += 31.0  # past the pairs refresh interval
            bridge.step()
            live.wait_payload(f"{root}/vigil/cam1/dog/state", b"OFF")
            live.wait_for(lambda ms: [m for m in ms if m.topic == config("binary_sensor", "cam1_dog")])
        finally:
            with caplog.at_level(logging.INFO, logger="vigil.alerts.homeassistant"):
                bridge.close()
    binary = json.loads(live.on(config("binary_sensor", "cam1_person"))[-1].payload)
    score = json.loads(live.on(config("sensor", "cam1_person"))[-1].payload)
    image = json.loads(live.on(config("image", "cam1_person"))[-1].payload)
    assert binary["device_class"] == "motion"
    assert (binary["name"], binary["object_id"]) == ("cam1 person", f"{node}_cam1_person")
    assert (score["object_id"], image["object_id"]) == (f"{node}_cam1_person_score", f"{node}_cam1_person")
    assert "unit_of_measurement" not in score
    assert (score["state_class"], score["suggested_display_precision"]) == ("measurement", 2)
    assert score["icon"].startswith("mdi:") and image["icon"].startswith("mdi:")
    assert binary["device"]["configuration_url"] == "http://vigil.lan:8765/"
    assert binary["device"]["name"] == f"Vigil {root}/vigil"
    assert "reconnecting" not in caplog.text and "disconnected from the MQTT broker" in caplog.text


def test_the_default_prefix_names_the_device_vigil_once(sqlite_url: str) -> None:
    from vigil.alerts.ha_discovery import Pair, Topics, discovery_configs

    conf = Settings(homeassistant={"topic_prefix": "vigil"}).homeassistant
    configs = discovery_configs(Pair("cam1", "person"), Topics(conf), conf, None)
    binary = configs["homeassistant/binary_sensor/vigil/cam1_person/config"]
    assert binary["device"]["name"] == "Vigil" and binary["object_id"] == "vigil_cam1_person"
    assert binary["device_class"] == "occupancy" and "configuration_url" not in binary["device"]
    with pytest.raises(ValueError, match="device_class"):
        Settings(homeassistant={"device_class": "person"})


def test_what_the_broker_never_acknowledged_is_published_by_the_next_bridge(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The broker goes away, a match is stored, the bridge stops before the broker is back: its position
    did not pass that match, so the next bridge publishes it."""
    broker = Mosquitto(tmp_path)
    settings = ha_settings(sqlite_url, "ha")
    channel = settings.alerts.channels[0].model_copy(update={"mqtt_port": broker.port, "timeout_s": 1})
    settings.alerts = settings.alerts.model_copy(update={"channels": [channel]})
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    broker.start()
    try:
        with MqttRecorder("ha/#", port=broker.port) as live, running(HomeAssistantBridge(settings, factory)):
            live.wait_payload("ha/vigil/availability", b"online")
            broker.stop()
            detect(factory, {"person": [0.9]})
            time.sleep(1.0)  # several polls while the broker is away
        broker.start()
        with MqttRecorder("ha/#", port=broker.port) as live, running(HomeAssistantBridge(settings, factory)):
            live.wait_payload("ha/vigil/cam1/person/score", b"0.9000")
            live.wait_payload("ha/vigil/cam1/person/state", b"ON")
    finally:
        broker.stop()

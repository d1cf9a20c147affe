"""MQTT for tests: a subscriber that records every message (topic, payload, retained flag, arrival time),
the Mosquitto on 127.0.0.1:1883 (tests use a unique topic root so parallel runs never meet), and a
Mosquitto of a test's own on a free port, for tests that stop and start the broker."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import free_port, missing_service
from vigil.config.settings import Settings

BROKER = ("127.0.0.1", 1883)


def require_broker() -> None:
    try:
        with socket.create_connection(BROKER, timeout=2):
            pass
    except OSError as exc:
        missing_service(f"Mosquitto at {BROKER[0]}:{BROKER[1]}: {exc}")


class Mosquitto:
    """A broker of the test's own, on a free port, that can be stopped and started again."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.users = users or {}  # with users, anonymous clients are refused
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            missing_service("mosquitto is not installed")
        conf = self.workdir / "mosquitto.conf"
        # run as whoever runs the tests: as root, mosquitto would switch to its own user, which cannot
        # read a password file in pytest's private temporary folder
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"user {getpass.getuser()}"]
        if self.users:
            passwords = self.workdir / "mosquitto.passwd"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def unique_root(name: str) -> str:
    return f"vigil-test-{name}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival


class MqttRecorder:
    def __init__(self, topic: str, *, port: int = BROKER[1], auth: tuple[str, str] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.port = port
        if auth is not None:
            self.client.username_pw_set(*auth)

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))
            self.cond.notify_all()

    def __enter__(self) -> MqttRecorder:
        self.client.connect(BROKER[0], self.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscription was not acknowledged"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Message]:
        with self.cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, check: Callable[[list[Message]], Any], *, timeout: float = 30.0) -> Any:
        """Wait until `check(messages)` is truthy; return its value (fails the test at the deadline)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = check(list(self.messages))
                if found:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; got {[(m.topic, m.payload[:60]) for m in self.messages]}"
                self.cond.wait(left)

    def wait_payload(self, topic: str, payload: bytes, *, timeout: float = 30.0) -> Message:
        found: Message = self.wait_for(
            lambda ms: next((m for m in ms if m.topic == topic and m.payload == payload), None),
            timeout=timeout,
        )
        return found


def clear_retained(root: str, topics: list[str]) -> None:
    """Remove the retained messages a test left on the shared broker (an empty retained payload)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    try:
        for topic in topics:
            if topic.startswith(root):
                client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


@contextmanager
def topic_root(prefix: str) -> Iterator[str]:
    """A topic root of this test's own on the local broker; every retained message under it is cleared
    after (a test's Home Assistant bridge leaves its discovery and state retained)."""
    require_broker()
    name = unique_root(prefix)
    with MqttRecorder(f"{name}/#") as everything:
        yield name
    clear_retained(name, sorted({msg.topic for msg in everything.messages if msg.retain or msg.payload}))


def ha_settings(url: str, root: str, **ha: Any) -> Settings:
    """Settings of a Home Assistant bridge under ``root`` with two targets and one local MQTT channel."""
    return Settings(
        database={"url": url},
        targets=[
            {"name": "person", "description": "a person", "threshold": 0.5},
            {"name": "van", "description": "a van", "threshold": 0.7},
        ],
        alerts={"channels": [{"name": "mq", "kind": "mqtt", "mqtt_host": "127.0.0.1", "mqtt_port": 1883}]},
        homeassistant={
            "enabled": True,
            "discovery_prefix": f"{root}/homeassistant",
            "topic_prefix": f"{root}/vigil",
            "poll_interval_s": 0.1,
            **ha,
        },
        web={"base_url": "http://vigil.lan:8765"},
    )

"""A real MQTT subscriber that records every message (topic, payload, retained flag, arrival time), for
tests against the Mosquitto on 127.0.0.1:1883. Tests use a unique topic root so parallel runs never meet."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

BROKER = ("127.0.0.1", 1883)


def require_broker() -> None:
    """Skip without the broker, or fail with VIGIL_REQUIRE_SERVICES=1 as CI sets (decided here: importing
    `conftest` is ambiguous when tests of several folders with their own conftest.py run together)."""
    try:
        with socket.create_connection(BROKER, timeout=2):
            pass
    except OSError as exc:
        reason = f"Mosquitto at {BROKER[0]}:{BROKER[1]}: {exc}"
        if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required service unavailable: {reason}", pytrace=False)
        pytest.skip(reason)


def unique_root(name: str) -> str:
    return f"vigil-test-{name}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival


class MqttRecorder:
    def __init__(self, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))
            self.cond.notify_all()

    def __enter__(self) -> MqttRecorder:
        self.client.connect(*BROKER)
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

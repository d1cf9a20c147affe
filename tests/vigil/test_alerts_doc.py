"""docs/alerts.md against what the code really sends: one fired alert delivered through the real outbox to a
real HTTP receiver, a real SMTP server (aiosmtpd), the real Mosquitto and a real child process; and the Home
Assistant bridge's discovery configs. Each example of the document is compared key by key."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.alerting import (
    Receiver,
    add_analysis,
    add_media,
    dispose_engines,
    factory_for,
    make_settings,
    sync_all,
)
from tests.support.mqtt import MqttRecorder, clear_retained, require_broker, unique_root
from tests.support.smtp import SmtpHandler, smtp_server
from vigil.alerts.delivery import deliver
from vigil.alerts.evaluation import evaluate_analysis
from vigil.alerts.homeassistant import HomeAssistantBridge
from vigil.config.settings import HomeAssistantSettings, Settings
from vigil.store.db import write_session
from workers.testing.clips import write_image

DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BASE_URL = "https://vigil.example.org"
TRANSPORT_HEADERS = {"host", "accept", "accept-encoding", "connection", "content-length"}
MIME_HEADERS = {"content-type", "mime-version", "content-transfer-encoding"}


def examples() -> dict[str, str]:
    text = DOC.read_text()
    found = dict(re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)\n```", text, flags=re.DOTALL))
    assert found, "no examples found in docs/alerts.md"
    return found


def example_json(name: str) -> Any:
    return json.loads(examples()[name])


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key of a JSON document as a dotted path (list items as `[]`), so nesting is compared too."""
    if isinstance(value, dict):
        paths = set()
        for key, item in value.items():
            paths.add(prefix + key)
            paths |= key_paths(item, f"{prefix}{key}.")
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{prefix}[].") for item in value)) if value else set()
    return set()


@dataclass
class Sent:
    webhook: Any
    email: EmailMessage
    mqtt_topic: str
    mqtt_payload: bytes
    command_stdin: bytes
    thumbnail: Path


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def root() -> Iterator[str]:
    require_broker()
    name = unique_root("doc")
    with MqttRecorder(f"{name}/#") as everything:
        yield name
    clear_retained(name, sorted({m.topic for m in everything.messages}))


def channels(hook: Receiver, smtp_port: int, root: str, stdin_file: Path) -> list[dict[str, Any]]:
    script = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"
    return [
        {"name": "hook", "kind": "webhook", "url": hook.url, "secret": SECRET, "timeout_s": 5},
        {
            "name": "mail",
            "kind": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_security": "none",
            "mail_from": "vigil@example.org",
            "mail_to": ["ops@example.org", "me@example.org"],
        },
        {"name": "mq", "kind": "mqtt", "mqtt_host": "127.0.0.1", "mqtt_topic": root + "/{source}/{target}"},
        {"name": "cmd", "kind": "command", "argv": [sys.executable, "-c", script, str(stdin_file)]},
    ]


def fire_and_deliver(settings: Settings, factory: sessionmaker[Session], thumbnail: Path) -> None:
    with write_session(factory) as session:
        media = add_media(session)
        analysis = add_analysis(session, media, {"person": [0.2, 0.93]}, thumbnail=str(thumbnail))
        ids = evaluate_analysis(session, analysis, settings=settings)
    assert len(ids) == 4
    for delivery_id in ids:
        outcome = deliver(factory, delivery_id, settings=settings)
        assert outcome.status == "delivered", outcome


def send_everywhere(url: str, root: str, tmp_path: Path, *, base_url: str | None) -> Sent:
    handler = SmtpHandler()
    stdin_file = tmp_path / "stdin.json"
    thumbnail = write_image(tmp_path / "w0001-t1.jpg", size=(320, 180))
    with smtp_server(handler) as smtp_port:
        hook = Receiver().start()
        try:
            settings = make_settings(
                url,
                rules=[{"name": "night", "targets": ["person"], "channels": ["hook", "mail", "mq", "cmd"]}],
                channels=channels(hook, smtp_port, root, stdin_file),
            )
            settings.web = settings.web.model_copy(update={"base_url": base_url})
            factory = factory_for(url)
            sync_all(factory, settings)
            with MqttRecorder(f"{root}/#") as mqtt:
                fire_and_deliver(settings, factory, thumbnail)
                message = mqtt.wait_for(lambda ms: ms[-1] if ms else None)
        finally:
            hook.stop()
    assert len(hook.requests) == 1 and len(handler.messages) == 1
    email = message_from_bytes(handler.messages[0], policy=policy.default)
    assert isinstance(email, EmailMessage)
    return Sent(hook.requests[0], email, message.topic, message.payload, stdin_file.read_bytes(), thumbnail)


@pytest.fixture
def sent(sqlite_url: str, root: str, tmp_path: Path) -> Sent:
    return send_everywhere(sqlite_url, root, tmp_path, base_url=BASE_URL)


def test_every_channel_sends_the_documented_document(sent: Sent) -> None:
    documented = key_paths(example_json("alert-document"))
    body = sent.webhook.json()
    assert key_paths(body) == documented
    assert key_paths(json.loads(sent.mqtt_payload)) == documented
    assert key_paths(json.loads(sent.command_stdin)) == documented
    text = sent.email.get_body(("plain",))
    assert text is not None
    content = text.get_content().replace("\r\n", "\n")
    assert key_paths(json.loads(content[content.index("\n{") :])) == documented
    assert body["media_url"] == f"{BASE_URL}/media/{body['media']['id']}"
    assert re.fullmatch(rf"{BASE_URL}/detections/\d+/thumbnail", body["thumbnail_url"])
    assert f"\nView: {body['media_url']}\n" in content
    assert body["thumbnail_path"] == str(sent.thumbnail)


def test_without_a_base_url_the_links_are_null(sqlite_url: str, root: str, tmp_path: Path) -> None:
    plain = send_everywhere(sqlite_url, root, tmp_path, base_url=None)
    body = plain.webhook.json()
    assert key_paths(body) == key_paths(example_json("alert-document"))
    assert body["media_url"] is None and body["thumbnail_url"] is None
    text = plain.email.get_body(("plain",))
    assert text is not None and "View:" not in text.get_content()


def test_webhook_headers_and_the_documented_verification(sent: Sent) -> None:
    request_line, *header_lines = examples()["webhook-request"].splitlines()
    assert request_line.split()[0] == "POST"
    documented = {line.split(":", 1)[0].lower() for line in header_lines}
    assert set(sent.webhook.headers) - TRANSPORT_HEADERS == documented
    scope: dict[str, Any] = {}
    exec(examples()["webhook-verify"], scope)  # the doc's own snippet, run against the real request
    verify = scope["verify"]
    assert verify(SECRET, sent.webhook.headers, sent.webhook.body)
    assert not verify(SECRET, sent.webhook.headers, sent.webhook.body + b" ")


def test_email_headers_and_attachment(sent: Sent) -> None:
    documented = {line.split(":", 1)[0].lower() for line in examples()["email-headers"].splitlines()}
    assert {key.lower() for key in sent.email} - MIME_HEADERS == documented
    body = sent.webhook.json()
    key = sent.email["X-Vigil-Idempotency-Key"]
    assert key.startswith("msg_") and sent.email["Message-ID"] == f"<{key}@vigil>"
    assert sent.email["Subject"] == f"[vigil warning] {body['alert']['message']}"
    attachments = list(sent.email.iter_attachments())
    assert [(a.get_content_type(), a.get_filename()) for a in attachments] == [
        ("image/jpeg", sent.thumbnail.name)
    ]
    assert attachments[0].get_content() == sent.thumbnail.read_bytes()


def test_mqtt_topic_is_the_documented_template(sent: Sent, root: str) -> None:
    assert examples()["mqtt-message"].splitlines()[0] == "topic: vigil/cam1/person"
    assert sent.mqtt_topic == f"{root}/cam1/person"


def test_home_assistant_examples(sqlite_url: str, root: str, tmp_path: Path) -> None:
    documented = tomllib.loads(DOC.read_text().split("[homeassistant]\n", 1)[1].split("```", 1)[0])
    HomeAssistantSettings(**documented)  # the documented section is valid as written
    settings = make_settings(
        sqlite_url, channels=[{"name": "mqtt", "kind": "mqtt", "mqtt_host": "127.0.0.1"}]
    )
    settings.homeassistant = HomeAssistantSettings(
        **{**documented, "discovery_prefix": f"{root}/homeassistant", "topic_prefix": f"{root}/vigil"}
    )
    settings.web = settings.web.model_copy(update={"base_url": BASE_URL})
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    bridge = HomeAssistantBridge(settings, factory)
    thumbnail = write_image(tmp_path / "t.jpg")
    with MqttRecorder(f"{root}/#") as live:
        bridge.start()
        try:
            live.wait_payload(f"{root}/vigil/availability", b"online")
            with write_session(factory) as session:
                add_analysis(session, add_media(session), {"person": [0.93]}, thumbnail=str(thumbnail))
            bridge.step()
            live.wait_payload(f"{root}/vigil/cam1/person/state", b"ON")
        finally:
            bridge.close()
    node = f"{root}_vigil"
    entities = [("ha-binary-sensor", "binary_sensor"), ("ha-score-sensor", "sensor"), ("ha-image", "image")]
    for name, component in entities:
        config = live.on(f"{root}/homeassistant/{component}/{node}/cam1_person/config")[-1]
        assert key_paths(json.loads(config.payload)) == key_paths(example_json(name)), name
    attributes = json.loads(live.on(f"{root}/vigil/cam1/person/attributes")[-1].payload)
    assert key_paths(attributes) == key_paths(example_json("ha-attributes"))

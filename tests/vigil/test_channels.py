"""Channels against real receivers on loopback: an HTTP server, an aiosmtpd SMTP server, a mosquitto of
our own, a real child process. The webhook signature is verified here independently, from the spec."""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import smtp as smtp_support
from tests.support.alerting import Reply, receiving
from tests.support.mqtt import Mosquitto
from tests.support.services import free_port
from tests.support.smtp import SmtpHandler, smtp_server
from vigil.alerts.channels import (
    CommandSender,
    DeliveryFailed,
    EmailSender,
    LogSender,
    MqttSender,
    Notification,
    WebhookSender,
    parse_retry_after,
    sign,
)
from vigil.config.settings import ChannelSettings

SECRET_BYTES = b"0123456789abcdef0123456789abcdef"
WHSEC = "whsec_" + base64.b64encode(SECRET_BYTES).decode()


def note(*, thumbnail: Path | None = None, key: str = "msg_abc") -> Notification:
    payload = {
        "type": "vigil.alert",
        "alert": {"id": 7, "rule": "night", "severity": "critical", "message": "person at cam/1"},
        "media": {"id": 3, "path": "/srv/cam1/a.mp4", "source": "cam/1"},
        "target": {"id": 1, "name": "person"},
        "score": 0.91,
        "window": {"start_s": 10.0, "end_s": 20.0},
        "thumbnail_path": str(thumbnail) if thumbnail else None,
    }
    return Notification(
        key, payload, "[vigil critical] person at cam/1", "person at cam/1", "critical", thumbnail
    )


def verify_standard_webhook(
    secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = 300
) -> None:
    """An independent verifier written from the Standard Webhooks spec (not using our `sign`)."""
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(ts)) < tolerance_s
    key = base64.b64decode(secret[len("whsec_") :]) if secret.startswith("whsec_") else secret.encode()
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest())
    signatures = [s.split(",", 1) for s in headers["webhook-signature"].split(" ")]
    assert any(v == "v1" and hmac.compare_digest(sig.encode(), expected) for v, sig in signatures)


# ---------------------------------------------------------------- webhook


@pytest.mark.parametrize("secret", [WHSEC, "a plain shared secret"])
def test_webhook_is_signed_per_standard_webhooks(secret: str) -> None:
    with receiving() as hook:
        conf = ChannelSettings(
            name="hook", kind="webhook", url=hook.url, secret=secret, headers={"authorization": "Bearer t"}
        )
        WebhookSender(conf).send(note())
    [req] = hook.requests
    assert req.headers["webhook-id"] == "msg_abc"
    assert req.headers["authorization"] == "Bearer t"
    assert req.headers["content-type"] == "application/json"
    verify_standard_webhook(secret, req.headers, req.body)
    assert req.json()["alert"]["rule"] == "night" and req.json()["thumbnail_path"] is None
    tampered = dict(req.headers, **{"webhook-id": "msg_other"})
    with pytest.raises(AssertionError):
        verify_standard_webhook(secret, tampered, req.body)


def test_signature_matches_the_spec_example() -> None:
    # The example in the Standard Webhooks specification (svix/standard-webhooks README).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    ("status", "retryable", "gone"),
    [
        (500, True, False),
        (503, True, False),
        (408, True, False),
        (429, True, False),
        (400, False, False),
        (404, False, False),
        (410, False, True),
        (301, False, False),
    ],
)
def test_webhook_status_codes(status: int, retryable: bool, gone: bool) -> None:
    with (
        receiving(lambda _n, _r: Reply(status, {"retry-after": "7"})) as hook,
        pytest.raises(DeliveryFailed) as err,
    ):
        WebhookSender(ChannelSettings(name="h", kind="webhook", url=hook.url)).send(note())
    assert (err.value.retryable, err.value.gone) == (retryable, gone)
    assert err.value.reason.startswith(f"HTTP {status}")
    if status in (429, 503):
        assert err.value.retry_after_s == 7.0


def test_webhook_down_or_slow_is_retryable() -> None:
    port = free_port()
    conf = ChannelSettings(name="h", kind="webhook", url=f"http://127.0.0.1:{port}/", timeout_s=0.5)
    with pytest.raises(DeliveryFailed, match="request failed") as err:
        WebhookSender(conf).send(note())
    assert err.value.retryable
    with receiving(lambda _n, _r: Reply(delay_s=2.0)) as hook:
        began = time.monotonic()
        with pytest.raises(DeliveryFailed, match="timed out after 0.5 s") as err:
            WebhookSender(conf.model_copy(update={"url": hook.url})).send(note())
        assert time.monotonic() - began < 1.5 and err.value.retryable


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_secrets_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    conf = ChannelSettings(
        name="h", kind="webhook", url=f"http://127.0.0.1:{free_port()}/", secret="s3cr3t-value"
    )
    with caplog.at_level("DEBUG"), pytest.raises(DeliveryFailed) as err:
        WebhookSender(conf).send(note())
    assert "s3cr3t-value" not in caplog.text and "s3cr3t-value" not in str(err.value)
    assert "s3cr3t-value" not in repr(conf)


def test_log_channel(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="vigil.alerts.channels"):
        LogSender(ChannelSettings(name="log", kind="log")).send(note())
    assert "ALERT critical: person at cam/1 (msg_abc)" in caplog.text


# ---------------------------------------------------------------- email


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpHandler, int]]:
    handler = SmtpHandler()
    with smtp_server(handler) as port:
        yield handler, port


def test_the_smtp_server_takes_another_port_when_its_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race CI hit: the chosen port is bound by someone else first. The helper closes the failed
    server's event loop (left open, it warns later as an unclosed resource: an error here) and retries."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        monkeypatch.setattr(smtp_support, "free_port", lambda: next(ports, None) or free_port())
        with smtp_server(SmtpHandler()) as port:
            assert port != taken.getsockname()[1]
        assert next(ports, None) is None  # the taken port was tried first
    gc.collect()


def email_conf(port: int) -> ChannelSettings:
    return ChannelSettings(
        name="mail",
        kind="email",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        mail_from="vigil@example.org",
        mail_to=["ops@example.org", "me@example.org"],
        timeout_s=5,
    )


def test_email_with_thumbnail(smtp: tuple[SmtpHandler, int], tmp_path: Path) -> None:
    handler, port = smtp
    thumb = tmp_path / "thumb.jpg"
    thumb.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    EmailSender(email_conf(port)).send(note(thumbnail=thumb))
    [raw] = handler.messages
    msg = message_from_bytes(raw)
    assert msg["Subject"] == "[vigil critical] person at cam/1"
    assert msg["To"] == "ops@example.org, me@example.org"
    assert msg["X-Vigil-Idempotency-Key"] == "msg_abc"
    parts = {part.get_filename(): part for part in msg.walk() if part.get_filename()}
    assert parts["thumb.jpg"].get_content_type() == "image/jpeg"
    assert parts["thumb.jpg"].get_payload(decode=True) == thumb.read_bytes()


def test_email_without_thumbnail_file(smtp: tuple[SmtpHandler, int], tmp_path: Path) -> None:
    handler, port = smtp
    EmailSender(email_conf(port)).send(note(thumbnail=tmp_path / "gone.jpg"))
    msg = message_from_bytes(handler.messages[0])
    assert not [p for p in msg.walk() if p.get_filename()]


def test_email_rejections(smtp: tuple[SmtpHandler, int]) -> None:
    handler, port = smtp
    handler.reply = "554 Transaction failed"
    with pytest.raises(DeliveryFailed, match="SMTP 554") as err:
        EmailSender(email_conf(port)).send(note())
    assert not err.value.retryable
    handler.reply = "451 Try again later"
    with pytest.raises(DeliveryFailed, match="SMTP 451") as err:
        EmailSender(email_conf(port)).send(note())
    assert err.value.retryable
    with pytest.raises(DeliveryFailed) as err:
        EmailSender(email_conf(free_port())).send(note())
    assert err.value.retryable


# ---------------------------------------------------------------- MQTT


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def subscribe(port: int, topic: str, *, count: int = 1, timeout: float = 5.0) -> list[Any]:
    import paho.mqtt.client as mqtt

    got: list[Any] = []
    done = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        got.append(message)
        if len(got) >= count:
            done.set()

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return got


def test_mqtt_publish_retained_with_topic_per_source_and_target(mosquitto: Mosquitto) -> None:
    conf = ChannelSettings(
        name="mq",
        kind="mqtt",
        mqtt_host="127.0.0.1",
        mqtt_port=mosquitto.port,
        mqtt_retain=True,
        mqtt_topic="home/{source}/{target}/{severity}",
        timeout_s=5,
    )
    MqttSender(conf).send(note())
    # Subscribing after the publish: only a retained message (acknowledged by the broker) arrives.
    [message] = subscribe(mosquitto.port, "home/#")
    assert message.topic == "home/cam_1/person/critical"
    assert message.retain and json.loads(message.payload)["alert"]["id"] == 7


def test_mqtt_broker_down_then_up(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    conf = ChannelSettings(name="mq", kind="mqtt", mqtt_host="127.0.0.1", mqtt_port=broker.port, timeout_s=2)
    with pytest.raises(DeliveryFailed, match="MQTT connect failed") as err:
        MqttSender(conf).send(note())
    assert err.value.retryable
    broker.start()
    try:
        MqttSender(conf.model_copy(update={"mqtt_retain": True})).send(note())
        assert len(subscribe(broker.port, "vigil/#")) == 1
    finally:
        broker.stop()


def test_mqtt_topic_template_is_checked() -> None:
    from vigil.errors import ConfigError

    conf = ChannelSettings(name="mq", kind="mqtt", mqtt_host="127.0.0.1", mqtt_topic="x/{target.__class__}")
    with pytest.raises(ConfigError, match="not allowed"):
        MqttSender(conf).topic(note())


# ---------------------------------------------------------------- command


def test_command_gets_the_alert_on_stdin_and_no_shell(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    script = (
        "import json, sys; d = json.load(sys.stdin); d['argv'] = sys.argv[1:]; "
        "open(sys.argv[1], 'w').write(json.dumps(d))"
    )
    argv = [sys.executable, "-c", script, str(out), "$(touch pwned); touch pwned"]
    CommandSender(ChannelSettings(name="cmd", kind="command", argv=argv)).send(note())
    got = json.loads(out.read_text())
    assert got["alert"]["id"] == 7 and got["argv"][1] == "$(touch pwned); touch pwned"
    assert not (Path.cwd() / "pwned").exists()


def test_command_failure_and_timeout() -> None:
    script = "import sys; sys.stderr.write('x' * 2000 + 'the receiver said no'); sys.exit(3)"
    conf = ChannelSettings(name="cmd", kind="command", argv=[sys.executable, "-c", script])
    with pytest.raises(DeliveryFailed, match="exited with 3: x+the receiver said no$") as err:
        CommandSender(conf).send(note())
    assert err.value.retryable and len(err.value.reason) < 600
    slow = conf.model_copy(
        update={"argv": [sys.executable, "-c", "import time; time.sleep(10)"], "timeout_s": 0.5}
    )
    began = time.monotonic()
    with pytest.raises(DeliveryFailed, match="timed out after 0.5 s"):
        CommandSender(slow).send(note())
    assert time.monotonic() - began < 5
    missing = conf.model_copy(update={"argv": ["/nonexistent/notify"]})
    with pytest.raises(DeliveryFailed, match="cannot run") as err:
        CommandSender(missing).send(note())
    assert not err.value.retryable

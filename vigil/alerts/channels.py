"""Notification channels: log, webhook (Standard Webhooks), email (SMTP), MQTT and a command.

Each sender sends one notification or raises `DeliveryFailed`, which says whether a retry can help, how long
the receiver asked us to wait (`Retry-After`), and whether the receiver is gone for good (HTTP 410). Every
send has a timeout. Secrets (webhook secret, SMTP and MQTT passwords) are never logged or put in errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import queue
import smtplib
import ssl
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from vigil.alerts.http import Answer, DeadlineExceeded, client_for, post
from vigil.config.settings import ChannelSettings, Settings
from vigil.config.template import render
from vigil.errors import VigilError
from vigil.store.schema import Alert, Delivery
from vigil.web.urls import media_links

log = logging.getLogger(__name__)

LOG_CHANNEL = "log"
ERROR_TAIL = 500


class DeliveryFailed(VigilError):
    """A notification was not accepted. `retryable`: worth trying again; `gone`: disable the channel."""

    def __init__(
        self, reason: str, *, retryable: bool, retry_after_s: float | None = None, gone: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.gone = gone


@dataclass(frozen=True)
class Notification:
    """What every channel sends: the alert's JSON document plus a human subject and text."""

    idempotency_key: str
    payload: dict[str, Any]
    subject: str
    text: str
    severity: str
    thumbnail: Path | None

    @classmethod
    def from_alert(cls, alert: Alert, delivery: Delivery, *, base_url: str | None = None) -> Notification:
        """The alert's stored document, plus its id, this delivery, and links to `vigil web` under
        `base_url` (null without one: receivers see the same keys either way)."""
        payload = dict(alert.payload)
        payload["alert"] = {"id": alert.id, **payload.get("alert", {})}
        thumbnail = payload.get("thumbnail_path")
        links = (
            media_links(base_url, media_id=alert.media_id, detection_id=alert.detection_id)
            if alert.media_id is not None  # an event alert (camera offline, disk pressure) has no media
            else {}
        )
        payload["thumbnail_url"] = links.get("thumbnail_url") if thumbnail else None
        payload["media_url"] = links.get("media_url")
        payload["delivery"] = {"id": delivery.id, "channel": delivery.channel, "attempt": delivery.attempts}
        return cls(
            idempotency_key=delivery.idempotency_key,
            payload=payload,
            subject=f"[vigil {alert.severity}] {alert.message}",
            text=alert.message,
            severity=alert.severity,
            thumbnail=Path(thumbnail) if thumbnail else None,
        )

    def body(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()

    def field(self, section: str, key: str, default: str = "") -> str:
        value = self.payload.get(section, {}).get(key)
        return default if value is None else str(value)


class Sender(Protocol):
    def send(self, note: Notification) -> None: ...


def channel_configs(settings: Settings) -> dict[str, ChannelSettings]:
    """Configured channels by name, plus the always-available log channel."""
    configs = {c.name: c for c in settings.alerts.channels}
    configs.setdefault(LOG_CHANNEL, ChannelSettings(name=LOG_CHANNEL, kind="log"))
    return configs


def build_sender(conf: ChannelSettings) -> Sender:
    senders: dict[str, type[Any]] = {
        "log": LogSender,
        "webhook": WebhookSender,
        "email": EmailSender,
        "mqtt": MqttSender,
        "command": CommandSender,
    }
    return senders[conf.kind](conf)  # type: ignore[no-any-return]


class LogSender:
    def __init__(self, conf: ChannelSettings) -> None:
        self.conf = conf

    def send(self, note: Notification) -> None:
        log.warning("ALERT %s: %s (%s)", note.severity, note.text, note.idempotency_key)


# ---------------------------------------------------------------- webhook


def webhook_secret_bytes(secret: str) -> bytes:
    """Standard Webhooks secrets are "whsec_" + base64; any other string is used as raw bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1," + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(webhook_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class WebhookSender:
    def __init__(self, conf: ChannelSettings) -> None:
        self.conf = conf

    def headers(self, note: Notification, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        headers = dict(self.conf.headers)
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": "vigil",
                "webhook-id": note.idempotency_key,
                "webhook-timestamp": str(timestamp),
            }
        )
        if self.conf.secret is not None:
            secret = self.conf.secret.get_secret_value()
            headers["webhook-signature"] = sign(secret, note.idempotency_key, timestamp, body)
        return headers

    def send(self, note: Notification) -> None:
        assert self.conf.url is not None
        body = note.body()
        client = client_for(self.conf.name, self.conf.timeout_s)
        try:
            headers = self.headers(note, body)
            url, deadline = self.conf.url, self.conf.timeout_s
            answer = post(client, url, content=body, headers=headers, deadline_s=deadline)
        except (DeadlineExceeded, httpx.TimeoutException) as exc:
            reason = f"timed out after {self.conf.timeout_s:g} s: {exc}"
            raise DeliveryFailed(reason, retryable=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"request failed: {exc!r}", retryable=True) from exc
        check_response(answer)


def check_response(answer: Answer) -> None:
    code = answer.status_code
    if 200 <= code < 300:
        return
    reason = f"HTTP {code}: {answer.head[:200]}"
    if code == 410:
        raise DeliveryFailed(reason, retryable=False, gone=True)
    if code in (408, 429) or code >= 500:
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        raise DeliveryFailed(reason, retryable=True, retry_after_s=retry_after)
    raise DeliveryFailed(reason, retryable=False)


# ---------------------------------------------------------------- email


class EmailSender:
    def __init__(self, conf: ChannelSettings) -> None:
        self.conf = conf

    def message(self, note: Notification) -> EmailMessage:
        assert self.conf.mail_from is not None
        msg = EmailMessage()
        msg["Subject"] = note.subject
        msg["From"] = self.conf.mail_from
        msg["To"] = ", ".join(self.conf.mail_to)
        msg["Message-ID"] = f"<{note.idempotency_key}@vigil>"
        msg["X-Vigil-Idempotency-Key"] = note.idempotency_key
        view = f"\nView: {note.payload['media_url']}" if note.payload.get("media_url") else ""
        msg.set_content(note.text + view + "\n\n" + json.dumps(note.payload, indent=2, ensure_ascii=False))
        if note.thumbnail is not None and note.thumbnail.is_file():
            kind = mimetypes.guess_type(note.thumbnail.name)[0] or "application/octet-stream"
            maintype, subtype = kind.split("/", 1)
            msg.add_attachment(
                note.thumbnail.read_bytes(), maintype=maintype, subtype=subtype, filename=note.thumbnail.name
            )
        return msg

    def send(self, note: Notification) -> None:
        conf = self.conf
        assert conf.smtp_host is not None
        port = conf.smtp_port or {"ssl": 465, "starttls": 587, "none": 25}[conf.smtp_security]
        msg = self.message(note)
        try:
            if conf.smtp_security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    conf.smtp_host, port, timeout=conf.timeout_s, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(conf.smtp_host, port, timeout=conf.timeout_s)
            with smtp:
                if conf.smtp_security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if conf.smtp_user:
                    password = conf.smtp_password.get_secret_value() if conf.smtp_password else ""
                    smtp.login(conf.smtp_user, password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _msg in exc.recipients.values()]
            retryable = any(c < 500 for c in codes)
            raise DeliveryFailed(f"recipients refused: {codes}", retryable=retryable) from exc
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace")[:200] if isinstance(exc.smtp_error, bytes) else ""
            raise DeliveryFailed(f"SMTP {exc.smtp_code}: {text}", retryable=exc.smtp_code < 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"SMTP failed: {exc!r}", retryable=True) from exc


# ---------------------------------------------------------------- MQTT


def _topic_part(value: str) -> str:
    return value.replace("/", "_").replace("+", "_").replace("#", "_") or "_"


def mqtt_client(conf: ChannelSettings, *, client_id: str) -> Any:
    """A paho client for an mqtt channel: MQTT 3.1.1, its credentials, its timeout (not connected yet).
    The channel's sends and the Home Assistant bridge both connect through this."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
    )
    client.connect_timeout = conf.timeout_s
    if conf.mqtt_user:
        password = conf.mqtt_password.get_secret_value() if conf.mqtt_password else None
        client.username_pw_set(conf.mqtt_user, password)
    return client


def mqtt_keepalive(conf: ChannelSettings) -> int:
    return max(5, int(conf.timeout_s) * 2)


MQTT_SERVER_UNAVAILABLE = 136  # the one refusal worth retrying (bad credentials, not authorised: no)


def check_connack(answers: queue.Queue[Any], timeout_s: float) -> None:
    """Raise DeliveryFailed unless the broker accepted the connection within `timeout_s`."""
    try:
        reason = answers.get(timeout=timeout_s)
    except queue.Empty:
        raise DeliveryFailed(f"MQTT broker did not answer in {timeout_s:g} s", retryable=True) from None
    if reason.is_failure:
        retry = reason.value == MQTT_SERVER_UNAVAILABLE
        raise DeliveryFailed(f"MQTT broker refused the connection: {reason}", retryable=retry)


class MqttSender:
    def __init__(self, conf: ChannelSettings) -> None:
        self.conf = conf

    def topic(self, note: Notification) -> str:
        """An event alert's {source} is its stream source (else its host) and its {target} the event."""
        event = str(note.payload.get("event") or "detection")
        source = (
            note.field("media", "source") or note.field("source", "name") or str(note.payload.get("host"))
        )
        values = {
            "source": _topic_part(source),
            "target": _topic_part(note.field("target", "name") if event == "detection" else event),
            "rule": _topic_part(note.field("alert", "rule")),
            "severity": note.severity,
        }
        return render(self.conf.mqtt_topic, values, where=f"alerts.channels[{self.conf.name}].mqtt_topic")

    def send(self, note: Notification) -> None:
        conf = self.conf
        assert conf.mqtt_host is not None
        client = mqtt_client(conf, client_id=f"vigil-{note.idempotency_key}")
        answers: queue.Queue[Any] = queue.Queue()
        client.on_connect = lambda _c, _u, _f, reason, _p: answers.put(reason)
        try:
            client.connect(conf.mqtt_host, conf.mqtt_port, keepalive=mqtt_keepalive(conf))
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(f"MQTT connect failed: {exc!r}", retryable=True) from exc
        client.loop_start()
        try:
            check_connack(answers, conf.timeout_s)
            info = client.publish(self.topic(note), note.body(), qos=1, retain=conf.mqtt_retain)
            info.wait_for_publish(timeout=conf.timeout_s)
            if not info.is_published():
                raise DeliveryFailed(f"MQTT publish not acknowledged in {conf.timeout_s:g} s", retryable=True)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryFailed(f"MQTT publish failed: {exc}", retryable=True) from exc
        finally:
            client.disconnect()
            client.loop_stop()


# ---------------------------------------------------------------- command


class CommandSender:
    """Runs `argv` (never through a shell) with the alert JSON on stdin; a non-zero exit is a failure."""

    def __init__(self, conf: ChannelSettings) -> None:
        self.conf = conf

    def send(self, note: Notification) -> None:
        argv = self.conf.argv
        try:
            proc = subprocess.run(
                argv, input=note.body(), capture_output=True, timeout=self.conf.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            reason = f"{argv[0]} timed out after {self.conf.timeout_s:g} s"
            raise DeliveryFailed(reason, retryable=True) from exc
        except OSError as exc:
            raise DeliveryFailed(f"cannot run {argv[0]}: {exc}", retryable=False) from exc
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip()[-ERROR_TAIL:]
            raise DeliveryFailed(f"{argv[0]} exited with {proc.returncode}: {tail}", retryable=True)

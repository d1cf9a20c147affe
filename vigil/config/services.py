"""The settings sections of where Vigil keeps its files and what it serves: storage, logs, metrics, the
review pages and Home Assistant.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from vigil.config.base import Name, Seconds, Section


def default_data_dir() -> Path:
    """Where the embedded database, broker and thumbnails live unless set: $XDG_DATA_HOME/vigil."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "vigil"


class StorageSettings(Section):
    data_dir: Path = Field(default_factory=default_data_dir)

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    @property
    def references_dir(self) -> Path:
        """Targets' reference images, one file per content hash."""
        return self.data_dir / "references"


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "text", "json"] = "auto"


class MetricsSettings(Section):
    """Prometheus endpoints: the watcher serves `watcher_port`; the gpu worker `worker_port`, the cpu worker
    `worker_port + 1`; the recorder `recorder_port`. Port 0 turns a process's endpoint off. Prefork workers
    aggregate their children through prometheus_client's multiprocess mode in `multiproc_dir` (a fresh
    temporary folder when unset).
    """

    enabled: bool = True
    # The address every endpoint binds. Off loopback it needs `password` (HTTP Basic, any user name): the
    # metrics carry source and target names. Or keep loopback and scrape through a reverse proxy.
    host: str = "127.0.0.1"
    watcher_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    worker_port: Annotated[int, Field(ge=0, le=65534)] = 9465
    recorder_port: Annotated[int, Field(ge=0, le=65535)] = 9467
    multiproc_dir: Path | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _password_off_loopback(self) -> MetricsSettings:
        refuse_off_loopback("metrics", self.host, self.password)
        return self


# A host name, an IPv6 address in brackets, or "*".
HOST_NAME_PATTERN = r"^(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))$"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret_value(secret: SecretStr | None) -> str | None:
    """A configured password, or None when it is unset or empty (an empty variable means unset)."""
    return (secret.get_secret_value() or None) if secret is not None else None


def refuse_off_loopback(section: str, host: str, password: SecretStr | None) -> None:
    """The one rule for every port Vigil opens: off the loopback interface, only with a password."""
    if not is_loopback(host) and secret_value(password) is None:
        raise ValueError(f"host {host} is not a loopback address: set {section}.password to bind it")


class WebSettings(Section):
    """The review page (`vigil web`, started by `vigil run` when enabled). Off the loopback interface it
    needs a password (HTTP Basic, any user name): the pages show every clip and accept feedback."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8765
    # Public address of the pages, e.g. https://vigil.example.org: alert payloads link to it when set.
    base_url: str | None = None
    password: SecretStr | None = None
    # Host names a request may carry (checked before anything else: DNS rebinding). Empty: the loopback
    # names, `host` (unless a wildcard) and the host of `base_url`. "*" allows any (a proxy checks).
    allowed_hosts: list[Annotated[str, Field(pattern=HOST_NAME_PATTERN)]] = Field(default_factory=list)
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (login throttling is per
    # client address; behind a proxy every client would otherwise be the proxy).
    trusted_proxies: list[str] = Field(default_factory=list)

    def hosts(self) -> frozenset[str]:
        """The Host names this page answers (lower case, without port)."""
        if self.allowed_hosts:
            return frozenset(h.lower() for h in self.allowed_hosts)
        names = set(LOOPBACK_NAMES) | {"[::1]"}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(f"[{self.host}]" if ":" in self.host else self.host.lower())
        if self.base_url:
            names.add(urlsplit(self.base_url).netloc.rpartition("@")[2].lower().rsplit(":", 1)[0])
        return frozenset(names)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http:// or https:// address without query or fragment")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_network(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _password_off_loopback(self) -> WebSettings:
        refuse_off_loopback("web", self.host, self.password)
        return self


MQTT_TOPIC_PATTERN = r"^[^/+#\s\x00]+(/[^/+#\s\x00]+)*$"  # levels without wildcards, no empty level
# Home Assistant's binary sensor device classes (2024.3): what the card says, e.g. occupancy: Detected/Clear.
BinarySensorDeviceClass = Literal[
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
]  # fmt: skip


class HomeAssistantSettings(Section):
    """Home Assistant over MQTT (`vigil homeassistant`, started by `vigil run` when enabled): discovery
    messages for a binary sensor, a score sensor and an image per source x target, state from the matching
    detections, and an availability topic with a last will. Broker and credentials come from `channel`."""

    enabled: bool = False
    # An alerts.channels entry of kind mqtt; may be left out when exactly one mqtt channel is configured.
    channel: Name | None = None
    discovery_prefix: Annotated[str, Field(pattern=MQTT_TOPIC_PATTERN)] = "homeassistant"
    # Root of the state, score, image and availability topics, and the device id: one per Vigil install.
    topic_prefix: Annotated[str, Field(pattern=MQTT_TOPIC_PATTERN)] = "vigil"
    # A binary sensor turns off this long after its last matching detection.
    off_after_s: Seconds = 60.0
    poll_interval_s: Seconds = 1.0
    # Home Assistant's device class of every binary sensor: occupancy and motion read Detected/Clear (each
    # with its icon), presence reads Home/Away.
    device_class: BinarySensorDeviceClass = "occupancy"

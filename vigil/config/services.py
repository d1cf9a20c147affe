"""The settings sections of where Vigil keeps its files and what it serves: storage, logs, metrics, the
review pages and Home Assistant.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

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
    watcher_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    worker_port: Annotated[int, Field(ge=0, le=65534)] = 9465
    recorder_port: Annotated[int, Field(ge=0, le=65535)] = 9467
    multiproc_dir: Path | None = None


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebSettings(Section):
    """The review page (`vigil web`, started by `vigil run` when enabled). Off the loopback interface it
    needs a password (HTTP Basic, any user name): the pages show every clip and accept feedback."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8765
    # Public address of the pages, e.g. https://vigil.example.org: alert payloads link to it when set.
    base_url: str | None = None
    password: SecretStr | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http:// or https:// address without query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _password_off_loopback(self) -> WebSettings:
        if not is_loopback(self.host) and not (self.password and self.password.get_secret_value()):
            raise ValueError(f"host {self.host} is not a loopback address: set web.password to bind it")
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

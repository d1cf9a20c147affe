"""The settings sections of what to look for and whom to tell: targets, channels, rules (`[[targets]]`,
`[alerts]`). Each checks its own values with `vigil.config.checks`; the references between them are
checked on the whole tree (`vigil.config.settings.Settings`).
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from vigil.config import checks as checks
from vigil.config.base import Name, Seconds, Section
from vigil.errors import ConfigError

# The folder of the TOML file being loaded: relative reference-image paths are relative to it.
CONFIG_DIR: ContextVar[Path | None] = ContextVar("vigil_config_dir", default=None)


class TargetSettings(Section):
    name: Name
    description: Annotated[str, Field(min_length=3, max_length=500)]
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    enabled: bool = True
    # Reference images ("this car"): paths relative to the config file; checked here, copied into
    # <data_dir>/references under their content hash when the target is stored.
    images: list[Path] = Field(default_factory=list)

    @field_validator("images")
    @classmethod
    def _readable_images(cls, images: list[Path]) -> list[Path]:
        from vigil.formats.reference_images import check_references

        base = CONFIG_DIR.get() or Path.cwd()
        resolved = [(p if p.is_absolute() else base / p).absolute() for p in images]
        try:
            check_references(resolved)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return resolved


class ChannelSettings(Section):
    name: Name
    kind: Literal["log", "webhook", "email", "mqtt", "command"]
    # webhook
    url: str | None = None
    secret: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: Seconds = 10.0
    # email
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str | None = None
    mail_to: list[str] = Field(default_factory=list)
    # mqtt
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_topic: str = "vigil/{source}/{target}"
    mqtt_retain: bool = False
    mqtt_user: str | None = None
    mqtt_password: SecretStr | None = None
    # command: argv, never a shell
    argv: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _required_per_kind(self) -> ChannelSettings:
        required = {
            "webhook": ["url"],
            "email": ["smtp_host", "mail_from", "mail_to"],
            "mqtt": ["mqtt_host"],
            "command": ["argv"],
            "log": [],
        }[self.kind]
        missing = [key for key in required if not getattr(self, key)]
        if missing:
            raise ValueError(f"a {self.kind} channel needs {', '.join(missing)}")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("kind") == "webhook":
            checks.check_webhook_url(value)
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            checks.check_webhook_secret(value.get_secret_value())
        return value


RuleEvent = Literal["detection", "camera_offline", "disk_pressure"]
DEFAULT_MESSAGES: dict[str, str] = {
    "detection": "{target} seen at {source} ({score:.2f}) in {path}",
    "camera_offline": "camera {source} offline for {minutes:.1f} min (since {since}): {reason}",
    "disk_pressure": "disk pressure on {host}: {volume} has {free_bytes} bytes free, below min_free "
    "{min_free} ({needed_bytes} bytes), and nothing there may be pruned",
}


class RuleSettings(Section):
    name: Name
    # What fires it: a detection (the default); a stream source whose outage has lasted `after_s`
    # (fired by the recorder); a volume that retention left below min_free (fired by the watcher).
    on: RuleEvent = "detection"
    targets: list[Name] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=lambda: ["*"])
    min_score: Annotated[float, Field(ge=0, le=1)] | None = None
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    hours: str | None = None  # "22-06" wraps midnight
    timezone: str = "UTC"
    min_consecutive: Annotated[int, Field(ge=1)] = 1
    after_s: Annotated[float, Field(ge=0)] | None = None
    cooldown_s: Annotated[float, Field(ge=0)] = 300.0
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str = DEFAULT_MESSAGES["detection"]  # each event has its own default (_default_message)
    channels: list[Name] = Field(default_factory=lambda: ["log"])
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_message(cls, data: Any) -> Any:
        if isinstance(data, dict) and "message" not in data and data.get("on") in DEFAULT_MESSAGES:
            return {**data, "message": DEFAULT_MESSAGES[data["on"]]}
        return data

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        return None if value is None else checks.check_hours(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return checks.check_timezone(value)

    @field_validator("message")
    @classmethod
    def _message(cls, value: str, info: ValidationInfo) -> str:
        return checks.check_template_text(value, on=info.data.get("on", "detection"))

    @model_validator(mode="after")
    def _keys_of_its_event(self) -> RuleSettings:
        checks.check_rule_keys(self.on, given=self.model_fields_set, after_s=self.after_s)
        return self


class AlertSettings(Section):
    channels: list[ChannelSettings] = Field(default_factory=list)
    rules: list[RuleSettings] = Field(default_factory=list)
    retry_horizon_s: Seconds = 24 * 3600.0
    retry_base_s: Seconds = 5.0
    retry_max_s: Seconds = 3600.0

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[ChannelSettings]) -> list[ChannelSettings]:
        return checks.require_unique_names(channels, "channel")

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[RuleSettings]) -> list[RuleSettings]:
        return checks.require_unique_names(rules, "rule")

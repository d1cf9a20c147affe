"""One typed settings tree: defaults < `vigil.toml` < `VIGIL_*` environment < explicit overrides.

Nested keys use a double underscore in the environment: ``VIGIL_DATABASE__URL``, ``VIGIL_MODEL__ID``.
The TOML file is ``--config PATH``, else ``$VIGIL_CONFIG``, else ``./vigil.toml`` when it exists.
Unknown keys are rejected everywhere, so a typo is an error with its location, never a silent default.

Here: the root, the sections of watching and analysis, the checks across sections and the loading. The
sections of targets and alerts are in `vigil.config.alerts`, those of storage and services in
`vigil.config.services`; every name is re-exported from here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vigil.config import checks as checks
from vigil.config.alerts import CONFIG_DIR, AlertSettings, ChannelSettings, RuleSettings, TargetSettings
from vigil.config.base import NAME_PATTERN, Name, Problem, Seconds, Section, error_message
from vigil.config.diagnose import VALIDATING_INPUTS, Diagnosis, diagnose
from vigil.config.inputs import read_inputs
from vigil.config.retention import Days, RetentionSettings, check_evidence_kept_longer, check_min_free
from vigil.config.services import (
    HomeAssistantSettings,
    LogSettings,
    MetricsSettings,
    StorageSettings,
    WebSettings,
    default_data_dir,
    is_loopback,
)
from vigil.config.streams import StreamFields, stream_problems
from vigil.errors import ConfigError
from vigil.formats.types import MEDIA_EXTENSIONS

# Every section is importable from here, where it always was.
__all__ = [
    "CONFIG_DIR",
    "NAME_PATTERN",
    "AlertSettings",
    "BrokerSettings",
    "ChannelSettings",
    "DatabaseSettings",
    "HomeAssistantSettings",
    "LogSettings",
    "MetricsSettings",
    "ModelSettings",
    "Name",
    "RetentionSettings",
    "RuleSettings",
    "Seconds",
    "Section",
    "Settings",
    "SourceSettings",
    "StorageSettings",
    "TargetSettings",
    "WatchSettings",
    "WebSettings",
    "WorkSettings",
    "config_path",
    "diagnose_settings",
    "default_data_dir",
    "format_validation_error",
    "is_loopback",
    "load_settings",
]

DEFAULT_INCLUDE = [f"*{ext}" for ext in sorted(MEDIA_EXTENSIONS)]  # patterns match case-insensitively
DEFAULT_IGNORE = ["*.part", "*.tmp", "*.crdownload", "*.partial", "*.filepart", ".*", "*~", "~*"]


class DatabaseSettings(Section):
    # Unset: sqlite in storage.data_dir (see Settings._embedded_files_in_data_dir).
    url: str = "sqlite:///vigil.db"
    # `vigil sql` runs here when set (e.g. a PostgreSQL role that may only SELECT).
    readonly_url: str | None = None
    query_timeout_s: Seconds = 30.0
    busy_timeout_s: Seconds = 30.0
    # PostgreSQL over a network: how long a connection attempt may take, and how long sent data may stay
    # unacknowledged (TCP user timeout; keepalives probe idle connections within the same bound) before
    # the connection is given up. Without them a partition holds a query for TCP's retransmission backoff
    # (minutes): tests/faults/test_network_faults.py measured a worker silent for 107 s after 90 s.
    connect_timeout_s: Seconds = 10.0
    network_timeout_s: Seconds = 20.0


class BrokerSettings(Section):
    url: str = "sqla+sqlite:///vigil-broker.db"
    # Redis over a network: a read unanswered this long fails and the connection is made again.
    network_timeout_s: Seconds = 20.0
    # Longer than the longest task: a message not acknowledged by then is delivered again.
    visibility_timeout_s: Seconds = 4 * 3600.0
    task_time_limit_s: Seconds = 3600.0

    @property
    def soft_time_limit_s(self) -> float:
        """When a task is told to stop (SoftTimeLimitExceeded): up to a minute before the hard limit kills
        its process, time for the analysis to give its row back with the reason."""
        return self.task_time_limit_s - min(60.0, self.task_time_limit_s * 0.25)

    @model_validator(mode="after")
    def _limit_below_visibility(self) -> BrokerSettings:
        if self.task_time_limit_s >= self.visibility_timeout_s:
            raise ValueError("task_time_limit_s must be below visibility_timeout_s")
        return self


class SourceSettings(StreamFields):
    """A watched folder; with `url`, a stream recorded into it (vigil.config.streams)."""

    name: Name
    path: Path
    recursive: bool = True
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE))
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))
    # Names of the targets asked about for this source; None means every enabled target.
    targets: list[Name] | None = None
    observer: Literal["native", "polling"] = "native"
    poll_interval_s: Seconds = 5.0
    after_analysis: Literal["leave", "move"] = "leave"
    sidecar: bool = False
    # Static-scene gate (workers/analysis/static_gate.py): a window whose picture moved less than this many
    # grey levels anywhere inherits the last scored window's scores; 0: off (for a stream: streams.py).
    static_gate: Annotated[float, Field(ge=0, le=255)] = 0.0
    # Retention: unset takes `[retention]`'s value (vigil.config.retention).
    keep_days: Days | None = None
    keep_alerted_days: Days | None = None
    min_free: str | None = None

    _min_free = field_validator("min_free", mode="before")(classmethod(lambda cls, v: check_min_free(v)))


class WatchSettings(Section):
    sources: list[SourceSettings] = Field(default_factory=list)
    settle_s: Annotated[float, Field(ge=0)] = 2.0
    ready_deadline_s: Seconds = 600.0
    # A file its writer has closed whose structure stays incomplete (a truncated upload) fails this long
    # after its last change, with the structural reason; never later than ready_deadline_s.
    incomplete_after_close_s: Seconds = 120.0
    rescan_interval_s: Seconds = 300.0
    duplicate_content: Literal["skip", "analyze"] = "skip"

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceSettings]) -> list[SourceSettings]:
        return checks.require_unique_names(sources, "source")


class WorkSettings(Section):
    """How analysis work is leased, retried and given up on."""

    lease_s: Seconds = 120.0
    # A queued row sent longer ago than this is sent again, unless the broker still holds its message.
    requeue_after_s: Seconds = 300.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    reconcile_interval_s: Seconds = 30.0
    gpu_concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    cpu_concurrency: Annotated[int, Field(ge=1, le=64)] = 2


class ModelSettings(Section):
    # A hub id or a local directory. The default runs on a CPU-only machine; use
    # llava-hf/LLaVA-NeXT-Video-7B-hf or Qwen/Qwen2.5-VL-7B-Instruct on a GPU.
    id: str = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    attn_implementation: str | None = None
    # Weights: "int8" quantizes the Linear layers (CPU only, float32), "float" keeps them in `dtype`;
    # "auto" picks by device (docs/operations.md, Sizing, says which and why).
    precision: Literal["auto", "float", "int8"] = "auto"
    frames_per_window: Annotated[int, Field(ge=1, le=256)] = 8
    window_s: Seconds = 10.0
    max_windows: Annotated[int, Field(ge=1)] = 360
    sampling: Literal["exact", "keyframe"] = "exact"
    evidence: bool = True
    # Which matched windows get evidence (text) and the best-frame search (thumbnail): "best_of_run", for
    # each target the best window (highest P(yes), the first among equals) of each run of consecutive matched
    # windows, the one an alert on it carries (its run's other windows: the middle frame); "every_match", all.
    evidence_windows: Literal["best_of_run", "every_match"] = "best_of_run"
    evidence_max_tokens: Annotated[int, Field(ge=1, le=512)] = 48
    # Also caption every analysed file (stored in media.caption); costs one generation per file.
    caption: bool = False
    caption_max_tokens: Annotated[int, Field(ge=1, le=1024)] = 96
    # Windows decoded ahead of the model in a background thread (frames of at most this many windows wait
    # in memory besides the ones being scored); 0 decodes in line, one window at a time.
    prefetch_windows: Annotated[int, Field(ge=0, le=64)] = 2
    # Torch threads of a worker process; 0: every core it may run on (workers.decode.prefetch.model_threads
    # says why). Set it when several workers share one machine.
    threads: Annotated[int, Field(ge=0, le=256)] = 0
    # Score consecutive windows of a file as one batch while their video prefixes total at most this many
    # tokens (LLaVA-NeXT-Video-7B: 144 a frame); 0 scores window by window. Costs memory, helps a GPU.
    window_batch_tokens: Annotated[int, Field(ge=0)] = 0

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("must be auto, cpu, mps, cuda or cuda:N")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    work: WorkSettings = Field(default_factory=WorkSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    targets: list[TargetSettings] = Field(default_factory=list)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)

    @model_validator(mode="after")
    def _across_sections(self) -> Settings:
        """References between sections; when the tree is built by `diagnose`, it makes these checks itself,
        knowing also the names of the items it had to leave out."""
        if not VALIDATING_INPUTS.get() and (problems := self.problems_across_sections()):
            raise ValueError("\n".join(str(p) for p in problems))
        return self

    def problems_across_sections(self, declared: Mapping[str, set[str]] | None = None) -> list[Problem]:
        """Rules naming channels that do not exist, Home Assistant without its mqtt channel. `declared`:
        the names the input declared by list, valid or not (not reported as missing again)."""
        channels = {c.name for c in self.alerts.channels} | (declared or {}).get("alerts.channels", set())
        problems = checks.reference_problems(channels=channels, rules=self.alerts.rules)
        problems += self._stream_and_retention_problems()
        refused = (declared or {}).get("alerts.channels", set()) - {c.name for c in self.alerts.channels}
        if self.homeassistant.enabled and self.homeassistant.channel not in refused:  # else reported as is
            try:
                self.homeassistant_channel()
            except ValueError as exc:
                key = "homeassistant.channel"
                problems.append(Problem(key, str(exc).removeprefix(f"{key}: ")))
        return problems

    def homeassistant_channel(self) -> ChannelSettings:
        """The MQTT channel Home Assistant's messages go through (`homeassistant.channel`)."""
        mqtt = [c for c in self.alerts.channels if c.kind == "mqtt"]
        name = self.homeassistant.channel
        if name is None:
            if len(mqtt) != 1:
                raise ValueError(
                    f"homeassistant.channel: name the mqtt channel to use ({len(mqtt)} are configured)"
                )
            return mqtt[0]
        for conf in self.alerts.channels:
            if conf.name == name:
                if conf.kind != "mqtt":
                    raise ValueError(f"homeassistant.channel: {name} is a {conf.kind} channel, not mqtt")
                return conf
        raise ValueError(f"homeassistant.channel: no channel named {name} in alerts.channels")

    # The TOML file these settings were read from (set by load_settings); it owns what it declares.
    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> Path | None:
        return self._config_file

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[TargetSettings]) -> list[TargetSettings]:
        return checks.require_unique_names(targets, "target")

    def retention_of(self, source: SourceSettings) -> tuple[float | None, float | None, str | None]:
        """A source's (keep_days, keep_alerted_days, min_free): its own, else `[retention]`'s."""
        default = self.retention
        return (
            source.keep_days if source.keep_days is not None else default.keep_days,
            source.keep_alerted_days if source.keep_alerted_days is not None else default.keep_alerted_days,
            source.min_free if source.min_free is not None else default.min_free,
        )

    def _stream_and_retention_problems(self) -> list[Problem]:
        """Stream sources' keys that go together, and evidence kept at least as long as plain files, for
        each source."""
        problems = stream_problems(self.watch.sources)
        for source in self.watch.sources:
            try:
                check_evidence_kept_longer(*self.retention_of(source)[:2])
            except ValueError as exc:
                problems.append(Problem(f"watch.sources[{source.name}]", str(exc)))
        return problems

    @model_validator(mode="after")
    def _embedded_files_in_data_dir(self) -> Settings:
        """The embedded database and broker live in the data dir, never in the current directory."""
        data_dir = self.storage.data_dir.expanduser().absolute()
        if "url" not in self.database.model_fields_set:
            self.database.url = f"sqlite:///{data_dir / 'vigil.db'}"
        if "url" not in self.broker.model_fields_set:
            self.broker.url = f"sqla+sqlite:///{data_dir / 'vigil-broker.db'}"
        return self

    def warnings(self, declared: Mapping[str, set[str]] | None = None) -> list[Problem]:
        """Problems that may fix themselves (a folder not mounted yet): reported, never refused."""
        sources = {s.name for s in self.watch.sources} | (declared or {}).get("watch.sources", set())
        streams = {s.name for s in self.watch.sources if s.url is not None}
        rules = checks.source_warnings(sources=sources, rules=self.alerts.rules, streams=streams)
        return rules + checks.path_warnings(sources=self.watch.sources, model_id=self.model.id)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if VALIDATING_INPUTS.get():  # `diagnose` read the sources itself (read_inputs)
            return (init_settings,)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The TOML file in use: explicit, else $VIGIL_CONFIG, else ./vigil.toml if present."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("VIGIL_CONFIG")
    if from_env:
        return Path(from_env)
    default = Path("vigil.toml")
    return default if default.is_file() else None


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings tree, raising ConfigError with one line per problem: where, key, what."""
    diagnosis = diagnose_settings(config, **overrides)
    diagnosis.raise_errors()
    settings: Settings = diagnosis.remainder
    return settings


def diagnose_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Diagnosis:
    """Every error and warning of the settings in one pass (`vigil config check`); without errors, its
    `remainder` is the settings."""
    path = config_path(config)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    inputs, read_errors = read_inputs(Settings, path, overrides)
    token = CONFIG_DIR.set(path.parent.absolute() if path is not None else None)
    try:
        diagnosis = diagnose(Settings, inputs, read_errors=read_errors)
    finally:
        CONFIG_DIR.reset(token)
    settings = diagnosis.remainder
    if settings is not None:
        settings._config_file = path.resolve() if path is not None else None
        diagnosis.add_errors(settings.problems_across_sections(diagnosis.declared))
        diagnosis.add_warnings(settings.warnings(diagnosis.declared))
    return diagnosis


def format_validation_error(exc: ValidationError, path: Path | None = None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"{len(exc.errors())} invalid setting(s){where}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        message = error_message(err)
        if key:
            lines.append(f"  {key}: {message}")
        else:  # a whole-tree check: each line already names its key
            lines.extend(f"  {line}" for line in message.splitlines())
    count = sum(len(line) > 2 and line.startswith("  ") for line in lines)
    lines[0] = f"{count} invalid setting(s){where}:"
    return "\n".join(lines)

"""The SQL schema: SQLAlchemy 2 typed models. The database is the source of truth; the broker carries ids.

Every timestamp is stored in UTC (timezone-aware in Python; PostgreSQL `timestamptz`). Constraint names
follow one convention so Alembic migrations name them stably on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeclaredMixin:
    """Who owns the row: the settings file that declares it (its path), or NULL when made with the CLI."""

    declared_in: Mapped[str | None] = mapped_column(Text)


class MediaStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"  # the file changed after registration: never analysed, the next version is


TERMINAL_STATUSES = frozenset(
    {MediaStatus.DONE, MediaStatus.FAILED, MediaStatus.SKIPPED, MediaStatus.SUPERSEDED}
)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Source(DeclaredMixin, TimestampMixin, Base):
    """A watched folder (or camera dump root)."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    # Target names asked about for this source; NULL means every enabled target.
    target_names: Mapped[list[Any] | None] = mapped_column(JSON)
    # The static-scene gate's threshold for this source's media (settings: watch.sources[].static_gate).
    static_gate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")

    media: Mapped[list[Media]] = relationship(back_populates="source")


class Media(TimestampMixin, Base):
    """One version of one file. A file rewritten in place with new content is a new version."""

    __tablename__ = "media"
    __table_args__ = (
        UniqueConstraint("source_id", "rel_path", "version"),
        Index("ix_media_status_enqueued_at", "status", "enqueued_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    rel_path: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)
    kind: Mapped[str] = mapped_column(String(16))  # video | image
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[datetime]
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("media.id", ondelete="SET NULL"))
    duration_s: Mapped[float | None]
    fps: Mapped[float | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    frame_count: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default=MediaStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    sends: Mapped[int] = mapped_column(default=0)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    # Re-analysis asks only these targets; NULL asks every target that applies to the source.
    pending_target_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    # Retention deleted the file (vigil.media.retention); the row, its detections and thumbnails stay.
    pruned_at: Mapped[datetime | None]
    prune_reason: Mapped[str | None] = mapped_column(Text)

    source: Mapped[Source] = relationship(back_populates="media")
    analyses: Mapped[list[Analysis]] = relationship(back_populates="media", cascade="all, delete-orphan")


class Target(DeclaredMixin, TimestampMixin, Base):
    """An entity described in words and, optionally, shown by reference images; asked as a yes/no question."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text)
    threshold: Mapped[float] = mapped_column(Float, default=0.5)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    prompt_version: Mapped[int] = mapped_column(default=1)
    # Reference images, in prompt order: {"sha256", "file" (under <data_dir>/references), "name", "width",
    # "height"}. Changing them is a new prompt version, like changing the description.
    images: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")


class Analysis(Base):
    """One run of one model over one media file."""

    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(Text)
    template_version: Mapped[int]
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    windows: Mapped[int] = mapped_column(default=0)
    frames_decoded: Mapped[int] = mapped_column(default=0)
    decode_ms: Mapped[float] = mapped_column(default=0.0)
    model_ms: Mapped[float] = mapped_column(default=0.0)
    total_ms: Mapped[float] = mapped_column(default=0.0)
    worker: Mapped[str | None] = mapped_column(String(255))
    # The file as this analysis read it (equal to the media row's: a changed file is superseded, not read).
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    file_mtime: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    media: Mapped[Media] = relationship(back_populates="analyses")
    detections: Mapped[list[Detection]] = relationship(
        back_populates="analysis", cascade="all, delete-orphan"
    )


class Detection(Base):
    """One target in one time window of one media file."""

    __tablename__ = "detections"
    __table_args__ = (
        UniqueConstraint("analysis_id", "target_id", "window_index"),
        Index("ix_detections_target_id_created_at", "target_id", "created_at"),
        # The review page's timeline: matched windows newest first, all or one target's (keyset on id).
        Index("ix_detections_matched_id", "matched", "id"),
        Index("ix_detections_target_id_matched_id", "target_id", "matched", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"))
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    window_index: Mapped[int]
    start_s: Mapped[float]
    end_s: Mapped[float]
    p_yes: Mapped[float]
    matched: Mapped[bool]
    inherited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    evidence: Mapped[str | None] = mapped_column(Text)
    thumbnail_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    analysis: Mapped[Analysis] = relationship(back_populates="detections")
    target: Mapped[Target] = relationship()


class FeedPosition(TimestampMixin, Base):
    """How far a process that follows the detections has published them (the Home Assistant bridge, one row
    per topic prefix), so that a restart resumes there instead of at "now"."""

    __tablename__ = "feed_positions"

    id: Mapped[int] = mapped_column(primary_key=True)
    consumer: Mapped[str] = mapped_column(String(255), unique=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    # ids below last_id not seen yet (a transaction still open when a higher id was read): looked up again
    gaps: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")


class Channel(TimestampMixin, Base):
    """Runtime state of a notification channel configured in settings (e.g. disabled after HTTP 410)."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class AlertRule(DeclaredMixin, TimestampMixin, Base):
    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # What fires it: detection, camera_offline (after `after_s` of an outage) or disk_pressure.
    event: Mapped[str] = mapped_column(String(16), default="detection", server_default="detection")
    after_s: Mapped[float | None]
    target_names: Mapped[list[Any]] = mapped_column(JSON, default=list)  # empty: every target
    source_globs: Mapped[list[Any]] = mapped_column(JSON, default=list)  # empty: every source
    min_score: Mapped[float | None]
    days: Mapped[list[Any]] = mapped_column(JSON, default=list)  # empty: every day
    hours: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    min_consecutive: Mapped[int] = mapped_column(default=1)
    cooldown_s: Mapped[float] = mapped_column(default=300.0)
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    message: Mapped[str] = mapped_column(Text)
    channel_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Alert(Base):
    """A rule that fired, on a detection or on an event (a camera offline, disk pressure); never twice.

    A detection alert has its media, target, detection, score and window; an event alert (`event`) its
    outage (camera_offline) or volume (disk_pressure). The dedup key is unique: re-analysing a file, or a
    recorder restarted mid-outage, never fires the same alert twice."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_rule_id_fired_at", "rule_id", "fired_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(16), default="detection", server_default="detection")
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int | None] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    detection_id: Mapped[int | None] = mapped_column(
        ForeignKey("detections.id", ondelete="SET NULL"), index=True
    )
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    outage_id: Mapped[int | None] = mapped_column(
        ForeignKey("stream_outages.id", ondelete="SET NULL"), index=True
    )
    volume: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float | None]
    start_s: Mapped[float | None]
    end_s: Mapped[float | None]
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="alert", cascade="all, delete-orphan")


class Delivery(TimestampMixin, Base):
    """One alert to one channel: the outbox row that delivery retries until done or given up."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]

    alert: Mapped[Alert] = relationship(back_populates="deliveries")


class Verdict(enum.StrEnum):
    RIGHT = "right"
    WRONG = "wrong"


class Feedback(TimestampMixin, Base):
    """A person's verdict on what Vigil decided for one detection: right or wrong. One per detection (the
    latest wins); a verdict given on an alert is a verdict on the alert's detection and names the alert.

    Whether the target was really there follows from the verdict and the decision judged (the detection's
    `matched`, fixed when it was stored): a right match or a wrong non-match means present.
    """

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id", ondelete="CASCADE"), unique=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    verdict: Mapped[str] = mapped_column(String(8))  # right | wrong
    note: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16), default="web")  # web | cli


class Installation(Base):
    """This installation's identity: one row (id 1) with a random `uid`, made by its migration. Webhook ids
    (the deliveries' idempotency keys) include it, so two sites alerting on the same file never share one."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StreamOutage(Base):
    """A time a stream source was not recorded: the camera unreachable or refusing, the stream ended or
    broke, no keyframe came, or the disk was below min_free. Open (`ended_at` NULL) while it lasts."""

    __tablename__ = "stream_outages"
    __table_args__ = (Index("ix_stream_outages_source_id_started_at", "source_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)  # connection attempts that failed during it

"""event alerts: rules that fire on a camera offline or on disk pressure, through the one alert lifecycle

alert_rules gains `event` (detection, camera_offline, disk_pressure) and `after_s`; alerts gains `event`,
`outage_id`, `volume` and `host`, and its detection columns (media, target, source, score, window) may be
NULL: an event alert has no detection. alerts_v joins what it has (LEFT JOIN) and shows the event's columns.

On SQLite, dropping NOT NULL copies the table (batch mode): alerts_v is dropped first (a view on the old
table would make the rename fail), and the environment runs migrations with foreign keys off (else dropping
the old table would cascade into deliveries and feedback; migrations/env.py checks them before commit).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:30:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DETECTION_COLUMNS = {
    "media_id": sa.Integer(),
    "target_id": sa.Integer(),
    "source_id": sa.Integer(),
    "score": sa.Double(),
    "start_s": sa.Double(),
    "end_s": sa.Double(),
}


def _views_0002() -> ModuleType:
    """Revision 0002's view definitions (its date arithmetic, and the alerts_v a downgrade restores)."""
    spec = importlib.util.spec_from_file_location("views_0002", Path(__file__).with_name("0002_views.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alerts_v(dialect: str) -> str:
    detected_at = _views_0002()._plus_seconds("m.mtime", "a.start_s - COALESCE(m.duration_s, 0)", dialect)
    return f"""
SELECT a.id AS alert_id, a.event, a.fired_at, r.name AS rule, a.severity, s.name AS source,
       t.name AS target, m.path, a.score, a.start_s, a.end_s, {detected_at} AS detected_at, a.message,
       o.started_at AS outage_started_at, o.ended_at AS outage_ended_at, o.reason AS outage_reason,
       a.volume, a.host,
       (SELECT COUNT(*) FROM deliveries dl WHERE dl.alert_id = a.id AND dl.status = 'pending')
           AS deliveries_pending,
       (SELECT COUNT(*) FROM deliveries dl WHERE dl.alert_id = a.id AND dl.status = 'delivered')
           AS deliveries_delivered,
       (SELECT COUNT(*) FROM deliveries dl WHERE dl.alert_id = a.id AND dl.status = 'failed')
           AS deliveries_failed,
       a.media_id, a.detection_id, a.rule_id, a.target_id, a.source_id, a.outage_id
FROM alerts a
JOIN alert_rules r ON r.id = a.rule_id
LEFT JOIN sources s ON s.id = a.source_id
LEFT JOIN targets t ON t.id = a.target_id
LEFT JOIN media m ON m.id = a.media_id
LEFT JOIN stream_outages o ON o.id = a.outage_id"""


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.execute("DROP VIEW IF EXISTS alerts_v")
    # Plain ALTER TABLE ADD COLUMN on both dialects: alert_rules keeps its rows and its table.
    op.add_column(
        "alert_rules", sa.Column("event", sa.String(length=16), server_default="detection", nullable=False)
    )
    op.add_column("alert_rules", sa.Column("after_s", sa.Double(), nullable=True))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event", sa.String(length=16), server_default="detection", nullable=False)
        )
        batch_op.add_column(sa.Column("outage_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("volume", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        for name, type_ in DETECTION_COLUMNS.items():
            batch_op.alter_column(name, existing_type=type_, nullable=True)
        batch_op.create_index(batch_op.f("ix_alerts_outage_id"), ["outage_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_alerts_outage_id_stream_outages"),
            "stream_outages",
            ["outage_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.execute(f"CREATE VIEW alerts_v AS{_alerts_v(dialect)}")


def downgrade() -> None:
    """Event rules and alerts cannot be kept by the old schema (an alert without media; a rule without its
    event would fire on every detection): they go, with their deliveries."""
    dialect = op.get_context().dialect.name
    op.execute("DROP VIEW IF EXISTS alerts_v")
    events = "SELECT id FROM alerts WHERE event <> 'detection'"
    op.execute(f"DELETE FROM deliveries WHERE alert_id IN ({events})")
    op.execute(f"UPDATE feedback SET alert_id = NULL WHERE alert_id IN ({events})")
    op.execute("DELETE FROM alerts WHERE event <> 'detection'")
    op.execute("DELETE FROM alert_rules WHERE event <> 'detection'")  # else they would fire on detections
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_alerts_outage_id_stream_outages"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_alerts_outage_id"))
        for name, type_ in DETECTION_COLUMNS.items():
            batch_op.alter_column(name, existing_type=type_, nullable=False)
        batch_op.drop_column("host")
        batch_op.drop_column("volume")
        batch_op.drop_column("outage_id")
        batch_op.drop_column("event")
    op.drop_column("alert_rules", "after_s")
    op.drop_column("alert_rules", "event")
    op.execute(f"CREATE VIEW alerts_v AS{_views_0002()._views(dialect)['alerts_v']}")

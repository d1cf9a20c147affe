"""feedback: right/wrong verdicts on detections (and alerts), feedback_v, timeline indexes

One verdict per detection. ``feedback_v`` names the target, source and file and says whether the target
was present (a right match or a wrong non-match), which is what thresholds are fitted from.

Revision ID: 0005
Revises: 0006
Create Date: 2026-12-01 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vigil.store.schema

revision: str = "0005"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FEEDBACK_V = """
SELECT f.id AS feedback_id, f.verdict,
       CASE WHEN d.matched = (f.verdict = 'right') THEN 1 ELSE 0 END AS target_present,
       f.note, t.name AS target, s.name AS source, m.path, d.p_yes AS score, d.matched,
       d.start_s, d.end_s, d.window_index, f.origin, f.updated_at AS judged_at,
       d.media_id, f.detection_id, f.alert_id, d.analysis_id, d.target_id
FROM feedback f
JOIN detections d ON d.id = f.detection_id
JOIN media m ON m.id = d.media_id
JOIN sources s ON s.id = m.source_id
JOIN targets t ON t.id = d.target_id"""


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("created_at", vigil.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", vigil.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_feedback_alert_id_alerts"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_feedback_detection_id_detections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("detection_id", name=op.f("uq_feedback_detection_id")),
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index("ix_detections_matched_id", ["matched", "id"], unique=False)
        batch_op.create_index(
            "ix_detections_target_id_matched_id", ["target_id", "matched", "id"], unique=False
        )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_detection_id"), ["detection_id"], unique=False)
    op.execute(f"CREATE VIEW feedback_v AS{FEEDBACK_V}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS feedback_v")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_detection_id"))
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index("ix_detections_target_id_matched_id")
        batch_op.drop_index("ix_detections_matched_id")
    op.drop_table("feedback")

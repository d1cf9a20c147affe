"""static-scene gate: detections.inherited (scores copied from the last scored window of an unchanged
scene, no model run) and sources.static_gate (the source's gate threshold; 0 is off)

detections_v (and latest_detections_v, which selects from it) gains the `inherited` column.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-06 01:10:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REDEFINED = ("detections_v", "latest_detections_v")  # latest_detections_v reads detections_v: both go


def _views_0002() -> ModuleType:
    """Revision 0002's view definitions (its date arithmetic, and what a downgrade restores)."""
    spec = importlib.util.spec_from_file_location("views_0002", Path(__file__).with_name("0002_views.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _detections_v(dialect: str, views: ModuleType) -> str:
    detected_at = views._plus_seconds("m.mtime", "d.start_s - COALESCE(m.duration_s, 0)", dialect)
    return f"""
SELECT d.id AS detection_id, {detected_at} AS detected_at, s.name AS source, m.path, t.name AS target,
       d.p_yes AS score, d.matched, d.inherited, d.start_s, d.end_s, d.window_index, d.evidence,
       d.thumbnail_path AS thumbnail, an.model_id AS model, m.mtime AS file_mtime, d.media_id,
       d.analysis_id, d.target_id, d.created_at AS analysed_at
FROM detections d
JOIN media m ON m.id = d.media_id
JOIN sources s ON s.id = m.source_id
JOIN targets t ON t.id = d.target_id
JOIN analyses an ON an.id = d.analysis_id"""


def _drop_views() -> None:
    for name in reversed(REDEFINED):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    views = _views_0002()
    _drop_views()
    # Plain ALTER TABLE on both dialects: a batch copy of the tables would break the other views on them.
    op.add_column("detections", sa.Column("inherited", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("sources", sa.Column("static_gate", sa.Float(), server_default="0", nullable=False))
    op.execute(f"CREATE VIEW detections_v AS{_detections_v(dialect, views)}")
    op.execute(f"CREATE VIEW latest_detections_v AS{views._views(dialect)['latest_detections_v']}")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    old = _views_0002()._views(dialect)
    _drop_views()
    op.drop_column("sources", "static_gate")
    op.drop_column("detections", "inherited")
    for name in REDEFINED:
        op.execute(f"CREATE VIEW {name} AS{old[name]}")

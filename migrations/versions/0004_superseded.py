"""superseded media versions; analyses record the size and mtime of the file they read

A worker that finds a file changed since its row was registered ends that row `superseded` (a terminal
status, no new column) and never analyses it; the new content is registered as the next version. Each
analysis now stores the size and mtime of the file it actually read, shown in `analyses_v`.

Revision ID: 0004
Revises: 0005
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vigil.store.schema

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYSES_V = """
SELECT an.id AS analysis_id, an.media_id, s.name AS source, m.path, an.model_id AS model,
       an.prompt_version, m.duration_s, an.windows, an.frames_decoded,
       an.decode_ms / 1000.0 AS decode_s, an.model_ms / 1000.0 AS model_s, an.total_ms / 1000.0 AS total_s,
       an.worker, an.created_at AS analysed_at,
       (SELECT COUNT(*) FROM detections d WHERE d.analysis_id = an.id AND d.matched) AS matched_windows{extra}
FROM analyses an JOIN media m ON m.id = an.media_id JOIN sources s ON s.id = m.source_id"""
READ_COLUMNS = ",\n       an.size_bytes AS read_size_bytes, an.file_mtime AS read_file_mtime"


def upgrade() -> None:
    op.add_column("analyses", sa.Column("size_bytes", sa.BigInteger(), nullable=True))
    op.add_column("analyses", sa.Column("file_mtime", vigil.store.schema.UTCDateTime(timezone=True), nullable=True))
    op.execute("DROP VIEW IF EXISTS analyses_v")
    op.execute(f"CREATE VIEW analyses_v AS{ANALYSES_V.format(extra=READ_COLUMNS)}")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS analyses_v")
    # Plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch copy would break the views on `analyses`.
    op.drop_column("analyses", "file_mtime")
    op.drop_column("analyses", "size_bytes")
    op.execute(f"CREATE VIEW analyses_v AS{ANALYSES_V.format(extra='')}")

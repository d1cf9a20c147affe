"""stream sources: stream_outages, one row per time a stream source was not recorded (start, end, reason)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vigil.store.schema

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("started_at", vigil.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", vigil.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_stream_outages_source_id_sources"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_outages")),
    )
    op.create_index(
        "ix_stream_outages_source_id_started_at", "stream_outages", ["source_id", "started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_stream_outages_source_id_started_at", table_name="stream_outages")
    op.drop_table("stream_outages")

"""feed_positions: where a follower of the detections (the Home Assistant bridge, one per topic prefix) has
published up to, so that after a restart it publishes what it missed

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import vigil.store.schema

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_positions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consumer", sa.String(length=255), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("created_at", vigil.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", vigil.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_positions")),
        sa.UniqueConstraint("consumer", name=op.f("uq_feed_positions_consumer")),
    )


def downgrade() -> None:
    op.drop_table("feed_positions")

"""retention: media.pruned_at and media.prune_reason (the file was deleted by retention; the row stays)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vigil.store.schema import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects: a batch copy of media would break the views that read it.
    op.add_column("media", sa.Column("pruned_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("media", sa.Column("prune_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("media", "prune_reason")
    op.drop_column("media", "pruned_at")

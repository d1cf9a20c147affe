"""target reference images: targets.images (JSON list, empty for targets given in words)

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-01 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("targets", sa.Column("images", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35): a batch copy of the table would break the views that use it.
    op.drop_column("targets", "images")

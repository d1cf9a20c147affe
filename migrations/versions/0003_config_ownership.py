"""config ownership: sources, targets and alert rules say which settings file declares them

NULL means the row was made with the CLI and is owned by the database. Rows that exist before this
revision are NULL until the next process applies its settings file, which claims the ones it declares.

Revision ID: 0003
Revises: 0004
Create Date: 2026-12-01 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("sources", "targets", "alert_rules")


# Plain ALTER TABLE on both dialects (SQLite >= 3.35 drops columns in place): a batch copy of the table
# would break the views of 0002 that read it.


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("declared_in", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "declared_in")

"""analyses.prompt_version becomes analyses.template_version: it is the version of the recogniser's
question templates, not of a target's prompt (that is targets.prompt_version, unchanged)

analyses_v shows the column under its new name.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:30:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD, NEW = "prompt_version", "template_version"


def _analyses_v_0004() -> str:
    """analyses_v as revision 0004 defined it (selecting an.prompt_version)."""
    spec = importlib.util.spec_from_file_location("views_0004", Path(__file__).with_name("0004_superseded.py"))
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.ANALYSES_V.format(extra=module.READ_COLUMNS))


def _analyses_v(column: str) -> str:
    body = _analyses_v_0004()
    assert body.count(f"an.{OLD},") == 1, "analyses_v of 0004 no longer selects the column once"
    return body.replace(f"an.{OLD},", f"an.{column},")


def _rename(old: str, new: str) -> None:
    # PostgreSQL keeps a view's column names when the table's column is renamed, so the view is made again.
    # ALTER TABLE ... RENAME COLUMN on both dialects (SQLite >= 3.25): a batch copy of `analyses` would
    # break the other views on it and, with foreign keys on, cascade its drop to detections.
    op.execute("DROP VIEW IF EXISTS analyses_v")
    op.alter_column("analyses", old, new_column_name=new)
    op.execute(f"CREATE VIEW analyses_v AS{_analyses_v(new)}")


def upgrade() -> None:
    _rename(OLD, NEW)


def downgrade() -> None:
    _rename(NEW, OLD)

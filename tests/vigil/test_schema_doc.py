"""docs/schema.md is what the generator writes, and covers every table, column and view."""

from __future__ import annotations

from pathlib import Path

from vigil.store.schema import Base
from vigil.store.schema_doc import EXAMPLES, VIEW_DOCS, generate, view_columns

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_schema_doc_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == generate(), (
        "docs/schema.md is out of date: run `python -m vigil.store.schema_doc > docs/schema.md`"
    )


def test_schema_doc_covers_every_table_column_view_and_example() -> None:
    text = generate()
    for table in Base.metadata.tables.values():
        assert f"### `{table.name}`" in text
        for column in table.columns:
            assert f"| `{column.name}` |" in text
    for view, columns in view_columns().items():
        assert f"### `{view}`" in text and columns
        assert set(VIEW_DOCS[view][1]) <= set(columns), f"{view}: notes for columns it does not have"
    for example in EXAMPLES:
        assert example.sqlite in text and example.postgresql in text

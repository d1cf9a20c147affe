"""What one `vigil sql` query returned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    elapsed_s: float
    # Where and why rows stopped at a cap ("truncated at 1000 rows ..."); None when all rows came.
    truncated: str | None = None

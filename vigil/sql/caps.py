"""What one `vigil sql` query may cost: a time limit over execution, fetching and rendering, and row and
byte caps on what is held. Rows are streamed and counted as they come; the first row past a cap ends the
query with a "truncated at N rows" note, and no row larger than the byte cap is ever sent whole.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vigil.errors import QueryRefused

DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_BYTES = 1_000_000


def check_time_limit(seconds: float) -> float:
    """A time limit must be a finite number of seconds above zero (nan, inf, 0 and negatives are refused)."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds <= 0:
        raise QueryRefused(
            f"refused: the time limit must be a finite number of seconds above zero, not {seconds}"
        )
    return float(seconds)


@dataclass(frozen=True)
class Caps:
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_bytes < 1:
            raise QueryRefused("refused: --max-rows and --max-bytes must be at least 1")


class Deadline:
    """One time limit for a whole query: execution, fetching and rendering."""

    def __init__(self, seconds: float) -> None:
        self.limit_s = check_time_limit(seconds)
        self._at = time.monotonic() + self.limit_s

    def left(self) -> float:
        return max(0.0, self._at - time.monotonic())

    def refusal(self) -> QueryRefused:
        limit = f"{self.limit_s:g} s"
        return QueryRefused(f"query stopped at the time limit of {limit} (change it with --timeout)")

    def check(self) -> None:
        if time.monotonic() > self._at:
            raise self.refusal()


@dataclass(frozen=True)
class Collected:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: str | None


def collect(
    columns: list[str], sized_rows: Iterable[tuple[int, tuple[Any, ...]]], deadline: Deadline, caps: Caps
) -> Collected:
    """Take (size in bytes, row) pairs until a cap; the note says where and why it stopped."""
    rows: list[tuple[Any, ...]] = []
    total = 0
    for size, row in sized_rows:
        deadline.check()
        if len(rows) == caps.max_rows:
            return Collected(columns, rows, f"truncated at {len(rows)} rows (raise it with --max-rows)")
        total += size
        if total > caps.max_bytes:
            what = "row" if size > caps.max_bytes else "rows"
            note = f"truncated at {len(rows)} rows: the next {what} would pass {caps.max_bytes} bytes"
            return Collected(columns, rows, f"{note} (raise it with --max-bytes)")
        rows.append(row)
    deadline.check()
    return Collected(columns, rows, None)


def value_size(value: Any) -> int:
    """A value's size as text, the way the byte cap counts it."""
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview):
        return 2 * len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(str(value))

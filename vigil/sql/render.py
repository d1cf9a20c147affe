"""`vigil sql`'s output formats. Table and Markdown are for people: every control character in them is
shown escaped (``\\x1b``), so a file name cannot rewrite the terminal. CSV and JSON lines stay exact.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any, Literal

from vigil.errors import ConfigError
from vigil.sql.caps import Deadline
from vigil.sql.result import QueryResult
from vigil.terminal import display_width, pad, safe

Format = Literal["table", "csv", "jsonl", "markdown"]
FORMATS: tuple[Format, ...] = ("table", "csv", "jsonl", "markdown")


def render(result: QueryResult, fmt: Format, *, deadline: Deadline | None = None) -> Iterator[str]:
    """The result as lines of text (no trailing newlines) in the given format, within the deadline."""
    if fmt == "csv":
        lines = _csv(result)
    elif fmt == "jsonl":
        lines = _jsonl(result)
    elif fmt == "markdown":
        lines = _markdown(result)
    elif fmt == "table":
        lines = _table(result)
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    for line in lines:
        if deadline is not None:
            deadline.check()
        yield line


def _jsonl(result: QueryResult) -> Iterator[str]:
    for row in result.rows:
        values = (_json_value(v) for v in row)
        yield json.dumps(dict(zip(result.columns, values, strict=True)), ensure_ascii=False)


def _text(value: Any) -> str:
    """A value as people read it: NULL empty, booleans true/false, JSON as JSON, times ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | dtime):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return _text(value)


def _csv(result: QueryResult) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in [result.columns, *([_text(v) for v in r] for r in result.rows)]:
        writer.writerow(row)
        yield buffer.getvalue().removesuffix("\n")
        buffer.seek(0)
        buffer.truncate()


def _numeric_columns(result: QueryResult) -> list[bool]:
    def numeric(i: int) -> bool:
        values = [r[i] for r in result.rows if r[i] is not None]
        return bool(values) and all(
            isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values
        )

    return [numeric(i) for i in range(len(result.columns))]


def _table(result: QueryResult) -> Iterator[str]:
    cells = [[safe(_text(v)) for v in row] for row in result.rows]
    names = [safe(c) for c in result.columns]
    widths = [max([display_width(c)] + [display_width(r[i]) for r in cells]) for i, c in enumerate(names)]
    numeric = _numeric_columns(result)

    def line(values: list[str]) -> str:
        parts = [pad(v, w, right=n) for v, w, n in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    yield line(names)
    yield "  ".join("-" * w for w in widths)
    for row in cells:
        yield line(row)
    count = f"{len(cells)} row{'' if len(cells) == 1 else 's'}"
    yield f"({count}; {result.truncated})" if result.truncated else f"({count})"


def _markdown(result: QueryResult) -> Iterator[str]:
    def cell(value: Any) -> str:
        text = _text(value).replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")
        return safe(text)

    numeric = _numeric_columns(result)
    yield "| " + " | ".join(cell(c) for c in result.columns) + " |"
    yield "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"
    for row in result.rows:
        yield "| " + " | ".join(cell(v) for v in row) + " |"

"""What the pages accept from a request, checked before it reaches SQL: row ids in the database's range,
dates that exist in UTC, finite numbers. A bad value is a 4xx naming it, never a 500."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query

from vigil.web import queries

MAX_ID = 2**63 - 1  # BIGINT / SQLite INTEGER
ID_RULE = f"a whole number from 1 to {MAX_ID}"
# Path and query parameters that hold a row id (FastAPI answers 422 outside the range).
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalRowId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Index = Annotated[int, Path(ge=0, le=1000)]


def row_id(raw: object, name: str) -> int:
    """A form field holding a row id; 400 unless it is ``ID_RULE``."""
    text = str(raw if raw is not None else "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 1 <= int(text) <= MAX_ID:
        raise HTTPException(400, f"{name}: must be {ID_RULE}")
    return int(text)


def _when(params: Any, key: str) -> datetime | None:
    raw = params.get(key) or ""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise HTTPException(400, f"{key}: not a date and time in range: {raw[:40]!r}") from None


def _number(params: Any, key: str, kind: type) -> Any:
    raw = params.get(key) or ""
    try:
        value = kind(raw) if raw else None
    except (ValueError, OverflowError):
        raise HTTPException(400, f"{key}: not a number: {raw[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise HTTPException(400, f"{key}: not a number: {raw[:40]!r}")
    return value


def parse_filter(params: Any) -> queries.TimelineFilter:
    """The timeline's query string; a bad value is a 400 naming it."""
    feedback = params.get("feedback") or ""
    if feedback not in queries.FEEDBACK_STATES:
        raise HTTPException(400, f"feedback: one of none, right, wrong, not {feedback[:40]!r}")
    before = params.get("before") or None
    return queries.TimelineFilter(
        target=params.get("target") or "",
        source=params.get("source") or "",
        since=_when(params, "since"),
        until=_when(params, "until"),
        min_score=_number(params, "min_score", float),
        feedback=feedback,
        alerts_only=params.get("alerts") == "1",
        before=row_id(before, "before") if before is not None else None,
    )


def validation_message(errors: list[Any]) -> str:
    """FastAPI's validation errors as one line: the parameter and what it must be."""
    parts = []
    for error in errors[:3]:
        where = str(error.get("loc", ["?"])[-1])
        ctx = error.get("ctx") or {}
        if error.get("type") in ("int_parsing", "greater_than_equal", "less_than_equal") and where.endswith(
            "_id"
        ):
            parts.append(f"{where}: must be {ID_RULE}")
        elif "ge" in ctx or "le" in ctx:
            parts.append(f"{where}: must be from {ctx.get('ge', '…')} to {ctx.get('le', '…')}")
        else:
            parts.append(f"{where}: {str(error.get('msg', 'invalid'))[:80]}")
    return "; ".join(parts)

"""What every settings section shares: unknown keys refused, assignments validated, names and durations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"  # NAME_PATTERN, said
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Seconds = Annotated[float, Field(gt=0)]


def error_message(error: Mapping[str, Any]) -> str:
    """One pydantic error in words: a bad name is explained, not shown as the regular expression."""
    if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NAME_PATTERN:
        return f"{error['input']!r} is not a name: {NAME_RULE}"
    return str(error["msg"]).removeprefix("Value error, ")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

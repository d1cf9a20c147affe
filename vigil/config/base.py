"""What every settings section shares: unknown keys refused, assignments validated, names and durations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

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


@dataclass(frozen=True)
class Problem:
    """One problem of the settings: the key path (`alerts.rules[night].hours`), what is wrong, and where the
    value came from (the TOML file, an environment variable) once that is known."""

    key: str
    message: str
    origin: str | None = None

    def __str__(self) -> str:
        return ": ".join(part for part in (self.origin, self.key, self.message) if part)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # Keys this section had once, each with where its setting went: an old file is told, not just refused.
    moved_keys: ClassVar[dict[str, str]] = {}

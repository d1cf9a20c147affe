"""The retention settings: how long media files and thumbnails are kept, and the free space a volume must
keep (`[retention]`, overridable per source in `[[watch.sources]]`). `vigil.media.retention` applies them.

Nothing is deleted unless these are set: `keep_days` unset keeps files for ever, `keep_alerted_days` unset
keeps evidence (files that fired an alert or got a verdict) for ever, `min_free` unset watches no volume.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import Field, field_validator, model_validator

from vigil.config.base import Seconds, Section

Days = Annotated[float, Field(gt=0)]

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_FREE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|[a-zA-Z]*)\s*$")


def check_min_free(value: str | int | None) -> str | None:
    """`min_free` as written: bytes ("5000000000", "5GB", "4.5GiB") or a share of the volume ("10%")."""
    if value is None:
        return None
    text = str(value)
    found = _FREE.match(text)
    unit = found.group(2).lower() if found else ""
    if found is None or (unit != "%" and unit not in SIZE_UNITS):
        raise ValueError(
            f"{text!r} is not a size: bytes (e.g. 5GB, 500MiB, 1000000) or a percentage (e.g. 10%)"
        )
    if unit == "%" and not 0 < float(found.group(1)) < 100:
        raise ValueError(f"{text!r}: a percentage of the volume is between 0 and 100")
    return text.strip()


def min_free_bytes(value: str, total_bytes: int) -> int:
    """The free bytes `value` asks for on a volume of `total_bytes` (value checked by `check_min_free`)."""
    found = _FREE.match(value)
    assert found is not None, value
    number, unit = float(found.group(1)), found.group(2).lower()
    if unit == "%":
        return int(total_bytes * number / 100)
    return int(number * SIZE_UNITS[unit])


class RetentionSettings(Section):
    """The default policy of every source (each may override a field) and the schedule the watcher runs it
    on (`vigil prune` applies it once)."""

    keep_days: Days | None = None
    keep_alerted_days: Days | None = None
    min_free: str | None = None
    interval_s: Seconds = 600.0
    moved_keys: ClassVar[dict[str, str]] = {
        "alert_channels": 'write an [[alerts.rules]] with on = "disk_pressure" and channels '
        "(docs/operations.md)"
    }

    _min_free = field_validator("min_free", mode="before")(classmethod(lambda cls, v: check_min_free(v)))

    @model_validator(mode="after")
    def _evidence_kept_longer(self) -> RetentionSettings:
        check_evidence_kept_longer(self.keep_days, self.keep_alerted_days)
        return self


def check_evidence_kept_longer(keep_days: float | None, keep_alerted_days: float | None) -> None:
    if keep_alerted_days is not None and (keep_days is None or keep_alerted_days < keep_days):
        raise ValueError(
            f"keep_alerted_days ({keep_alerted_days:g}) must be at least keep_days "
            f"({'unset: kept for ever' if keep_days is None else f'{keep_days:g}'}): evidence is kept longer"
        )

"""Rule schedules: hours of the day (wrapping midnight) and IANA time zones, parsed with errors that name
the rule and key."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vigil.errors import ConfigError

log = logging.getLogger(__name__)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"(\d{1,2})(?::(\d{2}))?-(\d{1,2})(?::(\d{2}))?")


@dataclass(frozen=True)
class Hours:
    """Minutes of the day [start, end); start > end wraps midnight ("22-06")."""

    start: int
    end: int

    @property
    def wraps(self) -> bool:
        return self.start > self.end

    def contains(self, minute: int) -> bool:
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end


def parse_hours(text: str, *, where: str) -> Hours:
    """ "22-06", "08:30-17:00", "0-24"; hours 0-24, minutes 0-59, start != end."""
    match = _HOURS.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f'{where}.hours: {text!r} is not HH-HH or HH:MM-HH:MM (e.g. "22-06")')
    h1, m1, h2, m2 = (int(g) if g else 0 for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start >= 24 * 60 or end > 24 * 60 or start == end:
        raise ConfigError(f"{where}.hours: {text!r} is not a valid range of hours")
    return Hours(start, end)


def parse_zone(name: str, *, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}.timezone: {name!r} is not an IANA time zone (e.g. Europe/Paris)") from exc

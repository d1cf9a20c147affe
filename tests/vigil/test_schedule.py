"""Rule schedules as pure functions: hours, zones, days and nights past midnight, with no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vigil.alerts.compiled import CompiledRule
from vigil.config.schedule import DAYS, Hours, parse_hours, parse_zone
from vigil.errors import ConfigError


def rule(*, hours: str | None = None, days: tuple[str, ...] = (), zone: str = "UTC") -> CompiledRule:
    return CompiledRule(
        id=1,
        name="r",
        targets=frozenset(),
        sources=(),
        min_score=None,
        days=frozenset(DAYS.index(d) for d in days),
        hours=parse_hours(hours, where="r") if hours else None,
        zone=ZoneInfo(zone),
        min_consecutive=1,
        cooldown_s=0,
        severity="info",
        message="",
        channels=("log",),
    )


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("22-06", 22 * 60, 6 * 60),
        ("08:30-17:00", 8 * 60 + 30, 17 * 60),
        ("0-24", 0, 24 * 60),
        (" 9-10 ", 540, 600),
    ],
)
def test_parse_hours(text: str, start: int, end: int) -> None:
    assert parse_hours(text, where="r") == Hours(start, end)


@pytest.mark.parametrize("text", ["25-99", "24-01", "8-8", "08:60-09", "8", "eight-nine", "8-9-10", ""])
def test_bad_hours_name_the_rule_and_key(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^alerts\.rules\[r\]\.hours: "):
        parse_hours(text, where="alerts.rules[r]")


def test_hours_are_half_open_and_wrap_midnight() -> None:
    night = Hours(22 * 60, 6 * 60)
    assert night.wraps
    assert [night.contains(m) for m in (22 * 60, 23 * 60 + 59, 0, 6 * 60 - 1, 6 * 60, 12 * 60)] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    day = Hours(8 * 60, 18 * 60)
    assert not day.wraps
    assert [day.contains(m) for m in (8 * 60 - 1, 8 * 60, 18 * 60 - 1, 18 * 60)] == [False, True, True, False]


def test_zones_are_iana_names() -> None:
    assert parse_zone("Europe/Paris", where="r").key == "Europe/Paris"
    for name in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(ConfigError, match=r"timezone: .* is not an IANA time zone"):
            parse_zone(name, where="r")


def test_a_night_past_midnight_counts_for_its_eve() -> None:
    """`fri` 22-06 covers Friday 23:00 and Saturday 03:00, not Friday 03:00 (Thursday's night)."""
    friday_night = rule(hours="22-06", days=("fri",))
    assert friday_night.in_schedule(datetime(2026, 6, 5, 23, 0))  # Friday
    assert friday_night.in_schedule(datetime(2026, 6, 6, 3, 0))  # Saturday morning, Friday's night
    assert not friday_night.in_schedule(datetime(2026, 6, 5, 3, 0))  # Friday morning: Thursday's night
    assert not friday_night.in_schedule(datetime(2026, 6, 6, 23, 0))  # Saturday night


def test_days_without_hours_and_no_schedule() -> None:
    weekend = rule(days=("sat", "sun"))
    assert weekend.in_schedule(datetime(2026, 6, 6, 12, 0))
    assert not weekend.in_schedule(datetime(2026, 6, 8, 12, 0))
    always = rule()
    assert all(always.in_schedule(datetime(2026, 6, 1) + timedelta(hours=h)) for h in range(0, 24 * 7, 5))


def test_wall_clock_hours_follow_daylight_saving() -> None:
    """08-09 in Paris is 06:00-07:00 UTC in summer and 07:00-08:00 UTC in winter (zoneinfo, not offsets)."""
    morning = rule(hours="08-09", zone="Europe/Paris")
    summer = datetime(2026, 7, 1, 6, 30, tzinfo=UTC).astimezone(morning.zone)
    winter = datetime(2026, 1, 15, 6, 30, tzinfo=UTC).astimezone(morning.zone)
    assert morning.in_schedule(summer)
    assert not morning.in_schedule(winter)
    assert morning.in_schedule(datetime(2026, 1, 15, 7, 30, tzinfo=UTC).astimezone(morning.zone))

"""Alert rules: validation, matching (score, schedule with time zones and DST, consecutive windows),
cooldown and dedup decided from the alerts table. Evaluation runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from tests.support.alerting import (
    T0,
    add_analysis,
    add_media,
    factory_for,
    make_settings,
    sync_all,
)
from vigil.alerts.evaluation import evaluate_analysis, explain_rule
from vigil.config.schedule import parse_hours
from vigil.config.settings import format_validation_error
from vigil.config.template import check_template
from vigil.errors import ConfigError
from vigil.store.db import write_session
from vigil.store.schema import Alert, Channel, Delivery, Media

HOOK = {"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/x"}


def rule(**values: Any) -> dict[str, Any]:
    return {"name": "r1", "targets": ["person"], "cooldown_s": 0, **values}


def setup(url: str, *rules: dict[str, Any], sources: tuple[str, ...] = ("cam1",), **kw: Any):  # type: ignore[no-untyped-def]
    settings = make_settings(url, rules=list(rules), channels=[HOOK], **kw)
    factory = factory_for(url)
    sync_all(factory, settings, sources)
    return settings, factory


def run(factory, settings, scores: dict[str, list[float]], *, now: datetime | None = None, **media: Any):  # type: ignore[no-untyped-def]
    """Store one analysis of a new media file and evaluate it in the same transaction."""
    with write_session(factory) as session:
        m = add_media(session, **media)
        analysis = add_analysis(session, m, scores)
        ids = evaluate_analysis(session, analysis, settings=settings, now=now or T0)
        return m.id, ids


def alerts(factory) -> list[Alert]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"targets": ["ghost"]}, "rules[r1].targets: no target named ghost in the settings or the database"),
        ({"channels": ["pager"]}, "alerts.rules[r1].channels: no channel named pager"),
        ({"timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not an IANA time zone"),
        ({"hours": "22-6pm"}, "hours: '22-6pm' is not HH-HH"),
        ({"hours": "25-06"}, "hours: '25-06' is not a valid range"),
        ({"hours": "25-99"}, "hours: '25-99' is not a valid range"),
        ({"hours": "06-06"}, "hours: '06-06' is not a valid range"),
        ({"message": "{target.__class__}"}, "message: template field {target.__class__}"),
    ],
)
def test_bad_rule_config_is_a_clear_error(sqlite_url: str, values: dict[str, Any], expected: str) -> None:
    """Refused by the settings model itself, before any database is opened (config check is the truth)."""
    with pytest.raises((ValidationError, ConfigError)) as err:
        setup(sqlite_url, rule(**values))
    error = err.value
    assert expected in (format_validation_error(error) if isinstance(error, ValidationError) else str(error))


def test_duplicate_rule_names_are_refused(sqlite_url: str) -> None:
    with pytest.raises(ValidationError, match="repeated: r1"):
        setup(sqlite_url, rule(), rule())


@pytest.mark.parametrize(
    "template",
    [
        "{target.__class__}",
        "{target.__class__.__init__.__globals__}",
        "{path[0]}",
        "{0}",
        "{}",
        "{settings}",
        "{score:{score}}",
        "{score:>999999999}",
        "{target!a}",
        "{score:d}",
        "{unclosed",
    ],
)
def test_message_template_injection_is_refused(template: str) -> None:
    with pytest.raises(ConfigError):
        check_template(template, where="alerts.rules[r].message")


def test_message_template_allows_plain_fields_and_formats(sqlite_url: str) -> None:
    msg = "{severity}: {target} at {source} ({score:.0%}) {file} {start_s:.0f}-{end_s:.0f}s #{media_id}"
    settings, factory = setup(sqlite_url, rule(message=msg))
    media_id, _ = run(factory, settings, {"person": [0.2, 0.93]})
    assert alerts(factory)[0].message == f"warning: person at cam1 (93%) 0-clip.mp4 10-20s #{media_id}"


def test_hours_parse_and_wrap() -> None:
    night = parse_hours("22-06", where="r")
    assert (night.start, night.end, night.wraps) == (22 * 60, 6 * 60, True)
    assert night.contains(23 * 60) and night.contains(0) and night.contains(5 * 60 + 59)
    assert not night.contains(6 * 60) and not night.contains(12 * 60)
    day = parse_hours("08:30-17", where="r")
    assert day.contains(8 * 60 + 30) and not day.contains(8 * 60 + 29) and not day.contains(17 * 60)


def test_applying_settings_upserts_rules_by_name(sqlite_url: str) -> None:
    settings, factory = setup(sqlite_url, rule(min_score=0.8))
    changed = make_settings(sqlite_url, rules=[rule(min_score=0.6)], channels=[HOOK])
    sync_all(factory, changed)
    with factory() as session:
        from vigil.store.schema import AlertRule

        rows = list(session.scalars(select(AlertRule)))
    assert [(r.name, r.min_score) for r in rows] == [("r1", 0.6)]


# ---------------------------------------------------------------- evaluation (SQLite and PostgreSQL)


def test_fires_once_with_a_delivery_per_channel(db_url: str) -> None:
    settings, factory = setup(db_url, rule(channels=["log", "hook"], severity="critical"))
    media_id, ids = run(factory, settings, {"person": [0.1, 0.8, 0.6], "van": [0.99, 0.99, 0.99]})
    [alert] = alerts(factory)
    assert (alert.media_id, alert.score, alert.start_s, alert.end_s) == (media_id, 0.8, 10.0, 30.0)
    assert alert.severity == "critical"
    assert alert.payload["target"]["name"] == "person"
    assert alert.payload["window"] == {
        "start_s": 10.0,
        "end_s": 30.0,
        "best_index": 1,
        "windows": 2,
        "local_time": "2026-06-01T12:00:10+00:00",
    }
    with factory() as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.channel)))
    assert sorted(ids) == sorted(r.id for r in rows)
    assert [(r.channel, r.status, r.attempts) for r in rows] == [
        ("hook", "pending", 0),
        ("log", "pending", 0),
    ]
    assert len({r.idempotency_key for r in rows}) == 2


def test_min_score_defaults_to_the_target_threshold(db_url: str) -> None:
    settings, factory = setup(db_url, rule(name="vans", targets=["van"]), rule(name="strict", min_score=0.95))
    run(factory, settings, {"van": [0.69], "person": [0.9]})
    assert alerts(factory) == []
    run(factory, settings, {"van": [0.7], "person": [0.96]})
    assert sorted(a.score for a in alerts(factory)) == [0.7, 0.96]


def test_reanalysis_of_the_same_media_never_fires_twice(db_url: str) -> None:
    settings, factory = setup(db_url, rule())
    with write_session(factory) as session:
        media = add_media(session)
        first = evaluate_analysis(session, add_analysis(session, media, {"person": [0.9]}), settings=settings)
    with write_session(factory) as session:
        media = session.get_one(type(media), media.id)
        again = evaluate_analysis(session, add_analysis(session, media, {"person": [0.9]}), settings=settings)
    assert len(first) == 1 and again == []
    assert len(alerts(factory)) == 1


def test_cooldown_per_rule_and_source_from_the_alerts_table(db_url: str) -> None:
    settings, factory = setup(db_url, rule(cooldown_s=300), sources=("cam1", "cam2"))
    run(factory, settings, {"person": [0.9]}, now=T0)
    run(factory, settings, {"person": [0.9]}, now=T0 + timedelta(seconds=299))  # same source: cooled down
    run(factory, settings, {"person": [0.9]}, now=T0 + timedelta(seconds=10), source="cam2")  # other source
    run(factory, settings, {"person": [0.9]}, now=T0 + timedelta(seconds=301))  # cooldown over
    fired = [(a.source_id, a.fired_at) for a in alerts(factory)]
    assert [f for _s, f in fired] == [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=301)]
    assert fired[0][0] != fired[1][0] and fired[0][0] == fired[2][0]


def test_cooldown_within_one_clip_keeps_the_first_run(db_url: str) -> None:
    settings, factory = setup(db_url, rule(cooldown_s=60), rule(name="every", cooldown_s=0))
    run(factory, settings, {"person": [0.9, 0.1, 0.9, 0.1, 0.9]})
    by_rule: dict[int, list[float]] = {}
    for a in alerts(factory):
        by_rule.setdefault(a.rule_id, []).append(a.start_s)
    assert sorted(by_rule.values()) == [[0.0], [0.0, 20.0, 40.0]]


def test_minimum_consecutive_windows(db_url: str) -> None:
    settings, factory = setup(db_url, rule(min_consecutive=3))
    run(factory, settings, {"person": [0.9, 0.9, 0.2, 0.9, 0.9]})
    assert alerts(factory) == []
    run(factory, settings, {"person": [0.9, 0.9, 0.2, 0.9, 0.95, 0.9, 0.1]})
    [alert] = alerts(factory)
    assert (alert.start_s, alert.end_s, alert.score) == (30.0, 60.0, 0.95)


def test_source_globs_and_target_lists(db_url: str) -> None:
    settings, factory = setup(
        db_url, rule(sources=["front-*"], targets=[]), sources=("front-door", "back-yard")
    )
    run(factory, settings, {"person": [0.9]}, source="back-yard")
    run(factory, settings, {"van": [0.9]}, source="front-door")
    [alert] = alerts(factory)
    assert alert.payload["media"]["source"] == "front-door" and alert.payload["target"]["name"] == "van"


def test_night_schedule_wraps_midnight_in_the_rules_zone(db_url: str) -> None:
    # 22-06 in Europe/Paris (UTC+2 in June): 21:30 UTC is 23:30 there, 04:30 UTC is 06:30 there.
    settings, factory = setup(db_url, rule(hours="22-06", timezone="Europe/Paris"))
    run(factory, settings, {"person": [0.9]}, mtime=datetime(2026, 6, 1, 21, 30, tzinfo=UTC))
    run(factory, settings, {"person": [0.9]}, mtime=datetime(2026, 6, 2, 4, 30, tzinfo=UTC))
    run(factory, settings, {"person": [0.9]}, mtime=datetime(2026, 6, 2, 3, 59, 55, tzinfo=UTC))
    assert [a.payload["window"]["local_time"] for a in alerts(factory)] == [
        "2026-06-01T23:30:00+02:00",
        "2026-06-02T05:59:55+02:00",
    ]


def test_schedule_uses_media_mtime_plus_window_start(db_url: str) -> None:
    # The clip starts at 05:59:30 local; only windows starting before 06:00 are in "22-06".
    settings, factory = setup(db_url, rule(hours="22-06"))
    run(
        factory,
        settings,
        {"person": [0.1, 0.1, 0.1, 0.9, 0.9]},
        mtime=datetime(2026, 6, 2, 5, 59, 30, tzinfo=UTC),
    )
    assert alerts(factory) == []
    run(
        factory,
        settings,
        {"person": [0.1, 0.1, 0.9, 0.9, 0.9]},
        mtime=datetime(2026, 6, 2, 5, 59, 30, tzinfo=UTC),
    )
    assert [(a.start_s, a.end_s) for a in alerts(factory)] == [(20.0, 30.0)]


def test_days_count_a_night_for_its_eve(db_url: str) -> None:
    # "friday night" 22-06: Saturday 02:00 belongs to Friday's night; Friday 02:00 belongs to Thursday's.
    settings, factory = setup(db_url, rule(days=["fri"], hours="22-06", timezone="UTC"))
    run(factory, settings, {"person": [0.9]}, mtime=datetime(2026, 6, 6, 2, 0, tzinfo=UTC))  # Sat 02:00
    run(factory, settings, {"person": [0.9]}, mtime=datetime(2026, 6, 5, 2, 0, tzinfo=UTC))  # Fri 02:00
    run(factory, settings, {"person": [0.9]}, mtime=datetime(2026, 6, 5, 23, 0, tzinfo=UTC))  # Fri 23:00
    assert [a.payload["window"]["local_time"][:16] for a in alerts(factory)] == [
        "2026-06-06T02:00",
        "2026-06-05T23:00",
    ]


@pytest.mark.parametrize(
    ("hours", "utc", "fires", "local"),
    [
        # 2026-03-08: New York springs forward at 02:00 EST (07:00 UTC) to 03:00 EDT.
        ("03-04", datetime(2026, 3, 8, 7, 30, tzinfo=UTC), True, "2026-03-08T03:30:00-04:00"),
        ("02-03", datetime(2026, 3, 8, 7, 30, tzinfo=UTC), False, None),  # a fixed -05:00 would say 02:30
        ("01-02", datetime(2026, 3, 8, 6, 30, tzinfo=UTC), True, "2026-03-08T01:30:00-05:00"),
        # 2026-11-01: falls back at 02:00 EDT (06:00 UTC) to 01:00 EST; 01:30 happens twice.
        ("01-02", datetime(2026, 11, 1, 5, 30, tzinfo=UTC), True, "2026-11-01T01:30:00-04:00"),
        ("01-02", datetime(2026, 11, 1, 6, 30, tzinfo=UTC), True, "2026-11-01T01:30:00-05:00"),
        ("01-02", datetime(2026, 11, 1, 7, 30, tzinfo=UTC), False, None),  # 02:30 EST
    ],
)
def test_schedule_is_dst_correct(
    db_url: str, hours: str, utc: datetime, fires: bool, local: str | None
) -> None:
    settings, factory = setup(db_url, rule(hours=hours, timezone="America/New_York"))
    run(factory, settings, {"person": [0.9]}, mtime=utc)
    assert [a.payload["window"]["local_time"] for a in alerts(factory)] == ([local] if fires else [])


def test_disabled_or_unconfigured_channel_gets_a_failed_delivery(db_url: str) -> None:
    settings, factory = setup(db_url, rule(channels=["hook", "log"]))
    with write_session(factory) as session:
        session.add(Channel(name="hook", kind="webhook", disabled_at=T0, disabled_reason="HTTP 410"))
    _, ids = run(factory, settings, {"person": [0.9]})
    with factory() as session:
        rows = {r.channel: r for r in session.scalars(select(Delivery))}
    assert ids == [rows["log"].id]
    assert rows["hook"].status == "failed" and "disabled: HTTP 410" in (rows["hook"].last_error or "")


def test_explain_says_why_not(db_url: str) -> None:
    settings, factory = setup(db_url, rule(min_consecutive=2, hours="22-06", cooldown_s=600))
    media_id, _ = run(
        factory,
        settings,
        {"person": [0.9, 0.3, 0.9, 0.9]},
        mtime=datetime(2026, 6, 1, 21, 59, 50, tzinfo=UTC),
    )
    with factory() as session:
        why = explain_rule(session, "r1", media_id, now=T0)
    checks = [(c.window_index, c.score_ok, c.schedule_ok, c.run) for c in why.checks]
    assert checks == [(0, True, False, 0), (1, False, True, 0), (2, True, True, 2), (3, True, True, 2)]
    [(candidate, reason)] = why.outcomes
    assert candidate.windows[0][1].window_index == 2
    assert reason is not None and reason.startswith("already fired as alert")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_explain_reads_the_newest_answer_per_target_after_a_one_target_reanalysis(db_url: str) -> None:
    """`vigil reanalyze --target van` adds an analysis of van alone: the person windows that fired stay the
    newest answers for person, and `rules test` still explains the alert they fired (issue 24)."""
    settings, factory = setup(db_url, rule(targets=["person", "van"]))
    media_id, _ = run(factory, settings, {"person": [0.9, 0.2], "van": [0.1, 0.1]})
    with write_session(factory) as session:
        media = session.get_one(Media, media_id)
        first_van = add_analysis(session, media, {"van": [0.2, 0.3]})
        newest = add_analysis(session, media, {"van": [0.1, 0.8]})
    with factory() as session:
        why = explain_rule(session, "r1", media_id, now=T0)
    by_target = {(c.target, c.window_index): (c.score, c.analysis_id) for c in why.checks}
    assert by_target[("person", 0)][0] == 0.9 and by_target[("person", 0)][1] < first_van.id
    assert by_target[("van", 1)] == (0.8, newest.id)  # the newest van answer, not the first re-analysis
    assert len(by_target) == 4
    outcomes = [(c.target.name, c.windows[0][1].window_index, reason) for c, reason in why.outcomes]
    assert outcomes[0][:2] == ("person", 0) and (outcomes[0][2] or "").startswith("already fired as alert")
    assert outcomes[1] == ("van", 1, None)


def test_rules_added_outside_settings_survive_sync(sqlite_url: str) -> None:
    from vigil.alerts.sync import upsert_rule
    from vigil.config.settings import RuleSettings

    settings, factory = setup(sqlite_url, rule())
    with write_session(factory) as session:
        upsert_rule(session, RuleSettings(name="cli-rule", targets=["van"]))
    sync_all(factory, settings)
    with factory() as session:
        from vigil.store.schema import AlertRule

        assert sorted(session.scalars(select(AlertRule.name))) == ["cli-rule", "r1"]

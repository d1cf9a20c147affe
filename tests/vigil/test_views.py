"""The views for people, and the documented example queries, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from tests.support.sql import reader
from vigil.config.settings import DatabaseSettings
from vigil.sql import QueryResult, run_query
from vigil.store.db import is_sqlite, make_engine, session_factory, write_session
from vigil.store.migrate import alembic_config
from vigil.store.schema import (
    Alert,
    AlertRule,
    Analysis,
    Delivery,
    Detection,
    Media,
    Source,
    StreamOutage,
    Target,
    utcnow,
)
from vigil.store.schema_doc import EXAMPLES, VIEW_DOCS

VIEWS = set(VIEW_DOCS)


def day_start(engine: Engine) -> datetime:
    """Today's midnight as the database sees it (what the examples' 'last night' is relative to)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            value = datetime.fromisoformat(
                conn.execute(text("SELECT datetime('now', 'start of day')")).scalar()
            )
            return value.replace(tzinfo=UTC)
        return conn.execute(text("SELECT date_trunc('day', now())")).scalar().astimezone(UTC)


def _media(source: Source, name: str, *, at: datetime, status: str = "done", **kw: Any) -> Media:
    duration = kw.pop("duration_s", 60.0)
    return Media(
        source=source,
        rel_path=name,
        path=f"{source.path}/{name}",
        kind="video",
        size_bytes=1000,
        mtime=at + timedelta(seconds=duration - 10.0),
        duration_s=duration,
        status=status,
        **kw,
    )


def seed(engine: Engine) -> dict[str, Any]:
    """Two cameras, two targets, a re-analysed clip, an old clip, a failed clip, an alert."""
    night = day_start(engine) - timedelta(hours=1)  # 23:00 last night; windows start 10 s into the clips
    factory = session_factory(engine)
    with write_session(factory) as s:
        cam1, cam2 = Source(name="cam1", path="/cams/1"), Source(name="cam2", path="/cams/2")
        van, person = (
            Target(name="van", description="a white van"),
            Target(name="person", description="a person"),
        )
        s.add_all([cam1, cam2, van, person])
        started = night + timedelta(minutes=5)
        m1 = _media(
            cam2,
            "night.mp4",
            at=night,
            enqueued_at=started - timedelta(seconds=1),
            started_at=started,
            finished_at=started + timedelta(seconds=2.5),
            attempts=1,
        )
        m2 = _media(cam2, "old.mp4", at=night - timedelta(hours=30))
        m3 = _media(cam1, "other.mp4", at=night)
        m4 = _media(
            cam2,
            "broken.mp4",
            at=night,
            status="failed",
            error="no decodable frame",
            attempts=3,
            finished_at=started,
        )
        s.add_all([m1, m2, m3, m4])
        s.flush()
        first = Analysis(
            media=m1, model_id="tiny", template_version=1, total_ms=2500, decode_ms=500, model_ms=1800
        )
        again = Analysis(
            media=m1, model_id="tiny", template_version=2, total_ms=900, decode_ms=100, model_ms=700
        )
        a2 = Analysis(media=m2, model_id="tiny", template_version=1, total_ms=4000)
        a3 = Analysis(media=m3, model_id="tiny", template_version=1, total_ms=100)
        s.add_all([first, again, a2, a3])
        s.flush()

        def det(an: Analysis, target: Target, p: float, evidence: str | None = None) -> Detection:
            return Detection(
                analysis=an,
                media_id=an.media_id,
                target=target,
                window_index=0,
                start_s=10.0,
                end_s=20.0,
                p_yes=p,
                matched=p >= 0.5,
                evidence=evidence,
            )

        d_old = det(first, van, 0.6)
        d_new = det(again, van, 0.95, "a white van by the gate")
        s.add_all([d_old, d_new, det(first, person, 0.2), det(a2, van, 0.9), det(a3, van, 0.8)])
        rule = AlertRule(name="vans", message="{target} at {source}")
        s.add(rule)
        s.flush()
        alert = Alert(
            dedup_key="k1",
            rule_id=rule.id,
            media_id=m1.id,
            target_id=van.id,
            detection_id=d_new.id,
            source_id=cam2.id,
            score=0.95,
            start_s=10.0,
            end_s=20.0,
            severity="warning",
            message="van",
        )
        s.add(alert)
        s.flush()
        s.add_all(
            [
                Delivery(alert_id=alert.id, channel="log", idempotency_key="i1", status="pending"),
                Delivery(alert_id=alert.id, channel="hook", idempotency_key="i2", status="delivered"),
            ]
        )
        # An alert on an event: cam2 offline since 10 minutes ago (no media, target or score).
        outage = StreamOutage(
            source_id=cam2.id, started_at=utcnow() - timedelta(minutes=10), reason="refused"
        )
        s.add(outage)
        s.flush()
        s.add(
            Alert(
                event="camera_offline", dedup_key="k2", rule_id=rule.id, source_id=cam2.id,
                outage_id=outage.id, host="nvr", severity="critical", message="cam2 offline",
            )
        )  # fmt: skip
        ids = {"m1": m1.id, "m2": m2.id, "m4": m4.id, "first": first.id, "again": again.id, "night": night}
    return ids


# The readonly_url `vigil sql` reads each PostgreSQL test database with (the role `vigil db reader` makes).
READERS: dict[str, str] = {}


@pytest.fixture
def seeded(db_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    engine = make_engine(DatabaseSettings(url=db_url))
    try:
        ids = seed(engine)
    finally:
        engine.dispose()
    if is_sqlite(db_url):
        yield db_url, ids
        return
    with reader(db_url) as readonly_url:
        READERS[db_url] = readonly_url
        yield db_url, ids
        READERS.pop(db_url)


def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    settings = DatabaseSettings(url=url, readonly_url=READERS.get(url))
    result: QueryResult = run_query(settings, sql, params=params)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)


def test_views_exist_and_autogenerate_sees_no_drift(db_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=db_url))
    assert set(inspect(engine).get_view_names()) >= VIEWS
    assert not VIEWS & set(inspect(engine).get_table_names())
    engine.dispose()
    command.check(alembic_config(db_url))  # raises when views (or anything) look like drift


def test_downgrade_drops_the_views(db_url: str) -> None:
    command.downgrade(alembic_config(db_url), "0001")
    engine = make_engine(DatabaseSettings(url=db_url))
    assert not VIEWS & set(inspect(engine).get_view_names())
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")


def test_detections_view_joins_names_and_wall_clock(seeded: tuple[str, dict[str, Any]]) -> None:
    url, ids = seeded
    rows = query(
        url,
        "SELECT * FROM detections_v WHERE media_id = :m ORDER BY analysis_id, target DESC",
        m=str(ids["m1"]),
    )
    assert [(r["target"], r["score"], bool(r["matched"])) for r in rows] == [
        ("van", 0.6, True),
        ("person", 0.2, False),
        ("van", 0.95, True),
    ]
    assert {r["source"] for r in rows} == {"cam2"} and rows[0]["path"] == "/cams/2/night.mp4"
    assert rows[0]["model"] == "tiny" and rows[2]["evidence"] == "a white van by the gate"
    assert (rows[0]["start_s"], rows[0]["end_s"]) == (10.0, 20.0)
    # mtime is the end of the 60 s clip; the window starts 10 s in
    assert as_utc(rows[0]["detected_at"]) == ids["night"]


def test_latest_detections_keep_only_the_newest_analysis_per_media_and_target(
    seeded: tuple[str, dict[str, Any]],
) -> None:
    url, ids = seeded
    rows = query(
        url,
        "SELECT target, analysis_id, score FROM latest_detections_v WHERE media_id = :m ORDER BY target",
        m=str(ids["m1"]),
    )
    assert rows == [
        {"target": "person", "analysis_id": ids["first"], "score": 0.2},  # not asked again: still shown
        {"target": "van", "analysis_id": ids["again"], "score": 0.95},
    ]


def test_media_and_analyses_views_speak_seconds(seeded: tuple[str, dict[str, Any]]) -> None:
    url, ids = seeded
    (m1,) = query(url, "SELECT * FROM media_v WHERE media_id = :m", m=str(ids["m1"]))
    assert m1["source"] == "cam2" and m1["status"] == "done" and m1["attempts"] == 1
    assert m1["processing_s"] == pytest.approx(2.5, abs=0.01)
    assert m1["wait_s"] == pytest.approx(1.0, abs=0.01)
    (an,) = query(url, "SELECT * FROM analyses_v WHERE analysis_id = :a", a=str(ids["first"]))
    assert (an["total_s"], an["decode_s"], an["model_s"], an["matched_windows"]) == (2.5, 0.5, 1.8, 1)


def test_alerts_view_counts_deliveries(seeded: tuple[str, dict[str, Any]]) -> None:
    url, ids = seeded
    alert, offline = query(url, "SELECT * FROM alerts_v ORDER BY alert_id")
    assert (offline["event"], offline["source"], offline["outage_reason"], offline["host"]) == (
        "camera_offline",
        "cam2",
        "refused",
        "nvr",
    )  # its detection columns are NULL, and it is listed all the same (LEFT JOIN)
    assert (offline["target"], offline["path"], offline["score"], offline["detected_at"]) == (None,) * 4
    assert offline["outage_ended_at"] is None and offline["deliveries_pending"] == 0
    assert (alert["event"], alert["rule"], alert["source"], alert["target"], alert["path"]) == (
        "detection",
        "vans",
        "cam2",
        "van",
        "/cams/2/night.mp4",
    )
    assert (alert["deliveries_pending"], alert["deliveries_delivered"], alert["deliveries_failed"]) == (
        1,
        1,
        0,
    )
    assert as_utc(alert["detected_at"]) == ids["night"]


def test_documented_examples_run_and_answer_right(seeded: tuple[str, dict[str, Any]]) -> None:
    url, ids = seeded
    dialect = "sqlite" if is_sqlite(url) else "postgresql"
    last_night, per_hour, failed, slowest, offline = (query(url, e.for_dialect(dialect)) for e in EXAMPLES)
    assert [(r["path"], r["score"]) for r in last_night] == [("/cams/2/night.mp4", 0.95)]
    assert sum(r["files"] for r in per_hour if r["target"] == "van") == 3  # night, old, other camera
    assert {r["target"] for r in per_hour} == {"van"}
    assert [(r["path"], r["error"], r["attempts"]) for r in failed] == [
        ("/cams/2/broken.mp4", "no decodable frame", 3)
    ]
    assert [r["total_s"] for r in slowest] == [4.0, 2.5, 0.9, 0.1]
    assert [(r["source"], r["outage_reason"], r["outage_ended_at"]) for r in offline] == [
        ("cam2", "refused", None)
    ]


def test_template_version_rename_keeps_every_row(seeded: tuple[str, dict[str, Any]]) -> None:
    """0008 renames analyses.prompt_version to template_version (analyses_v too), both ways, keeping rows."""
    url, ids = seeded

    def versions(column: str) -> list[tuple[int, int, int]]:
        engine = make_engine(DatabaseSettings(url=url))
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT v.analysis_id, v.{column}, (SELECT COUNT(*) FROM detections d"
                    f" WHERE d.analysis_id = v.analysis_id) FROM analyses_v v ORDER BY v.analysis_id"
                )
            )
            found = [(int(a), int(version), int(n)) for a, version, n in rows]
        engine.dispose()
        return found

    at_head = versions("template_version")
    assert (ids["first"], 1, 2) in at_head and (ids["again"], 2, 1) in at_head
    command.downgrade(alembic_config(url), "0007")
    assert versions("prompt_version") == at_head
    command.upgrade(alembic_config(url), "head")
    assert versions("template_version") == at_head

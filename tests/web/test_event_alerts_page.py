"""The review page's Events page against a real server process, on SQLite and PostgreSQL: an alert fired on a
camera offline (through `vigil.alerts.events`, as the recorder fires it) is listed with its outage and
delivery, without verdict buttons and with the one line that says why; a verdict posted on it is a 400."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import select

from tests.support.alerting import factory_for
from tests.support.web import Review
from tests.web.test_doors import session_with_token
from vigil.alerts.events import camera_offline
from vigil.config.settings import DatabaseSettings, Settings
from vigil.media.outages import open_outage
from vigil.store.db import write_session
from vigil.store.schema import AlertRule, Source, utcnow


def fire_camera_offline(url: str) -> int:
    factory = factory_for(url)
    with write_session(factory) as session:
        session.add(
            AlertRule(
                name="cam1-offline", event="camera_offline", after_s=60, severity="critical",
                message="camera {source} offline since {since}: {reason}", channel_names=["log"],
            )
        )  # fmt: skip
        source_id = session.scalars(select(Source.id).where(Source.name == "cam1")).one()
    reason = "cannot open rtsp://192.0.2.7:554/live: Connection refused"
    began = utcnow() - timedelta(minutes=3)
    outage = open_outage(factory, source_id, started_at=began, reason=reason)
    settings = Settings(database=DatabaseSettings(url=url))
    (alert_id,) = camera_offline(factory, outage, settings=settings).alert_ids
    return alert_id


def test_the_events_page_shows_an_event_alert_without_verdicts(review: Review) -> None:
    alert_id = fire_camera_offline(review.db_url)
    page = httpx.get(review.base + "/events")
    assert page.status_code == 200
    html = page.text
    row = re.search(rf'<tr data-alert="{alert_id}" data-event="camera_offline">(.*?)</tr>', html, re.DOTALL)
    assert row is not None, html[-3000:]
    cells = row.group(1)
    assert "camera offline" in cells and "cam1-offline" in cells and "critical" in cells
    assert "still offline" in cells and "Connection refused" in cells
    assert "camera cam1 offline since " in cells and "log: pending" in cells
    assert "<form" not in cells and "verdict" not in cells  # no right/wrong on an event
    assert "there is no detection to judge, so they take no right/wrong verdict" in html
    # The timeline, fed by detections, is untouched by an alert without one.
    assert httpx.get(review.base + "/").status_code == 200
    assert httpx.get(review.base + "/?alerts=1").status_code == 200

    client, token = session_with_token(review)
    verdict = {"detection_id": str(review.seeded.alert_detection_id), "verdict": "wrong"}
    refused = client.post("/feedback", data=verdict | {"alert_id": str(alert_id), "csrf_token": token})
    client.close()
    assert refused.status_code == 400
    assert (
        refused.text
        == f"400: alert {alert_id} is a camera_offline alert: no detection to judge, no verdict\n"
    )

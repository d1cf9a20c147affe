"""The pages in a real browser (Debian's Chromium through Playwright) against a real server process, on
SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, text

from tests.support.processes import wait_for
from tests.support.web import Review, bulk_detections


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def timeline_ids(page: Page) -> list[int]:
    return [
        int(x)
        for x in page.locator("#timeline tbody tr").evaluate_all("rs => rs.map(r => r.dataset.detection)")
    ]


def test_timeline_shows_matches_newest_first_with_thumbnail_alert_and_deliveries(
    review: Review, page: Page
) -> None:
    page.goto(review.base + "/")
    assert timeline_ids(page) == review.seeded.matched_ids
    alerted = page.locator(f"tr[data-detection='{review.seeded.alert_detection_id}']")
    expect(alerted.locator(".pill.alert")).to_have_text("people-at-night")
    expect(alerted.locator(".pill.delivered")).to_have_text("ops: delivered")
    expect(alerted.locator(".pill.pending")).to_have_text("phone: pending")
    expect(alerted).to_contain_text("0.930")
    expect(alerted).to_contain_text("A person in a dark coat")
    # The thumbnail really loaded (served by detection id).
    width = alerted.locator("img.thumb").evaluate("img => img.complete && img.naturalWidth")
    assert width == 320
    # Shown in the viewer's zone (Europe/Paris, UTC+1 in November): the window at 6 s of a clip whose file
    # time is 21:15:00 UTC and which lasts 12 s started at 21:14:54 UTC, 22:14:54 in Paris.
    expect(alerted.locator("time")).to_contain_text("10:14:54")


def test_clicking_wrong_stores_feedback_and_updates_the_targets_page(review: Review, page: Page) -> None:
    detection = review.seeded.alert_detection_id
    page.goto(review.base + "/")
    row = page.locator(f"tr[data-detection='{detection}']")
    row.locator("input[name=note]").fill("a scarecrow")
    row.locator("button.wrong").click()
    expect(row.locator("button.wrong")).to_have_class("wrong on")

    def stored() -> bool:
        return bool(rows(review.db_url, f"SELECT 1 FROM feedback WHERE detection_id = {detection}"))

    wait_for(stored, timeout=30, what="the feedback row")
    (verdict,) = rows(
        review.db_url,
        "SELECT verdict, target_present, note, alert_id, origin FROM feedback_v "
        f"WHERE detection_id = {detection}",
    )
    assert verdict == ("wrong", 0, "a scarecrow", review.seeded.alert_id, "web")
    page.goto(review.base + "/targets")
    card = page.locator(".target[data-target='person']")
    expect(card).to_contain_text("1 judged windows (0 present, 1 absent)")
    expect(card.locator(".refusal")).to_contain_text("has 0 present and 1 absent")
    # The timeline remembers the verdict; the feedback filter finds it.
    page.goto(review.base + "/?feedback=wrong")
    assert timeline_ids(page) == [detection]
    expect(page.locator("button.wrong.on")).to_have_count(1)
    page.goto(review.base + "/?feedback=none")
    assert timeline_ids(page) == [i for i in review.seeded.matched_ids if i != detection]


def test_player_seeks_to_a_window_when_its_row_is_clicked(review: Review, page: Page) -> None:
    page.goto(review.base + f"/media/{review.seeded.media_id}")
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(12, abs=0.2)
    page.locator("tr.window[data-start='6.0']").click()
    page.wait_for_function("document.getElementById('player').currentTime >= 6")
    assert 6 <= page.evaluate("document.getElementById('player').currentTime") < 8
    # The grid holds P(yes) per window and target; matched cells are marked.
    expect(page.locator("#grid tr.window")).to_have_count(6)
    expect(page.locator("#grid td.cell.matched")).to_have_count(5)
    # A link from the timeline lands on the window too.
    page.goto(review.base + f"/media/{review.seeded.media_id}#t=8.0")
    page.wait_for_function("document.getElementById('player').currentTime >= 8")


def test_filters_and_keyset_paging(review: Review, page: Page) -> None:
    bulk_detections(review.db_url, 600)  # 60 clips x 10 windows, about a third matched
    matched = [r[0] for r in rows(review.db_url, "SELECT id FROM detections WHERE matched ORDER BY id DESC")]
    page.goto(review.base + "/")
    seen: list[int] = []
    while True:
        seen += timeline_ids(page)
        older = page.locator("#older")
        if older.count() == 0:
            break
        older.click()
    assert seen == matched  # every match once, newest first, across pages
    page.goto(review.base + "/")
    page.select_option("select[name=target]", "van")
    page.select_option("select[name=source]", "cam1")
    page.click("button[type=submit]")
    expect(page.locator("#timeline tbody tr")).to_have_count(2)
    assert all(t == "van" for t in page.locator("#timeline tbody tr td:nth-child(2)").all_inner_texts())
    page.goto(review.base + "/")
    page.fill("input[name=min_score]", "0.9")
    page.click("button[type=submit]")
    assert (
        timeline_ids(page)
        == [
            r[0]
            for r in rows(
                review.db_url, "SELECT id FROM detections WHERE matched AND p_yes >= 0.9 ORDER BY id DESC"
            )
        ][:50]
    )
    page.goto(review.base + "/")
    page.check("input[name=alerts]")
    page.click("button[type=submit]")
    assert timeline_ids(page) == [review.seeded.alert_detection_id]
    # Time range, typed in the viewer's zone: the bulk clips' files are a minute apart before T0.
    page.goto(review.base + "/")
    page.fill("input[data-utc=since]", "2026-11-30T22:10")  # Paris = 21:10 UTC
    page.fill("input[data-utc=until]", "2026-11-30T22:14")
    page.click("button[type=submit]")
    assert "since=2026-11-30T21%3A10" in page.url or "since=2026-11-30T21:10" in page.url
    expected = rows(
        review.db_url,
        "SELECT d.id FROM detections d JOIN media m ON m.id = d.media_id WHERE d.matched "
        "AND m.mtime >= '2026-11-30 21:10:00' AND m.mtime < '2026-11-30 21:14:00' ORDER BY d.id DESC",
    )
    assert expected and timeline_ids(page) == [r[0] for r in expected]

"""The review page on a phone and at a desk (issue 24): Debian's Chromium at 360, 390 and 414 px wide and
at desktop sizes; no page scrolls sideways (`scrollWidth <= innerWidth`), the verdict buttons are big and
on screen, the player is full width; on a desktop, j/k and y/n (or r/w) triage the timeline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, select, text

from tests.support.processes import wait_for
from tests.support.web import Seeded, bulk_detections, judge_bulk, seed_review, start_web, stop

PHONES = [(360, 740), (390, 844), (414, 896)]
DESKTOPS = [(1366, 768), (1920, 1080)]
THUMB_PX = 44  # the smallest touch target the platforms' guidelines allow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One seeded server for every size (SQLite; the layout does not depend on the database)."""
    from vigil.store.migrate import upgrade

    root = tmp_path_factory.mktemp("phone")
    url = f"sqlite:///{root / 'vigil.store.db'}"
    upgrade(url)
    seeded = seed_review(url, root)
    bulk_detections(url, 600)
    judge_bulk(url, count=60)
    failed_id = register_failed(url, seeded)
    process, base, _ = start_web(root, url)
    yield Site(base, seeded, url, failed_id)
    stop(process)


@dataclass
class Site:
    base: str
    seeded: Seeded
    url: str
    failed_id: int


FAILED_NAME = "a-very-long-camera-file-name-without-any-break-2026-11-30T21-15-00-front-door.mp4"


def register_failed(url: str, seeded: Seeded) -> int:
    """An empty file with a long name, failed at registration as the watcher fails it."""
    from vigil.config.settings import DatabaseSettings
    from vigil.errors import UnreadableMedia
    from vigil.media.registry import register_file
    from vigil.store.db import make_engine, session_factory
    from vigil.store.schema import Source

    path = seeded.source_dir / FAILED_NAME
    path.write_bytes(b"")
    engine = make_engine(DatabaseSettings(url=url))
    factory = session_factory(engine)
    with factory() as session:
        source_id = session.scalars(select(Source.id).where(Source.name == "cam1")).one()
    registration = register_file(
        factory, source_id=source_id, root=seeded.source_dir, path=path, info=None,
        problem=UnreadableMedia(path, "empty file"),
    )  # fmt: skip
    engine.dispose()
    return registration.media_id


def pages(site: Site) -> dict[str, str]:
    return {
        "timeline": "/",
        "timeline, filtered": "/?source=cam1&min_score=0.5&feedback=none",
        "media": f"/media/{site.seeded.media_id}",
        "failed media": f"/media/{site.failed_id}",
        "targets": "/targets",
        "events": "/events",
    }


def open_page(browser: Any, size: tuple[int, int], url: str, *, phone: bool) -> Page:
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]},
        is_mobile=phone,
        has_touch=phone,
        device_scale_factor=1,
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(url, wait_until="load")
    return page


def sideways(page: Page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


@pytest.mark.parametrize("size", PHONES + DESKTOPS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_page_scrolls_sideways(browser: Any, site: Site, size: tuple[int, int]) -> None:
    base = site.base
    phone = size in PHONES
    for name, path in pages(site).items():
        page = open_page(browser, size, base + path, phone=phone)
        scroll_width, inner_width = sideways(page)
        # A mobile browser widens its layout viewport to content that overflows (and zooms out): the
        # window must also stay as wide as the screen.
        assert scroll_width <= inner_width == size[0], f"{name} at {size}: {scroll_width} px in {inner_width}"
        page.context.close()


@pytest.mark.parametrize("size", PHONES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_on_a_phone_the_verdict_buttons_are_big_and_the_player_full_width(
    browser: Any, site: Site, size: tuple[int, int]
) -> None:
    base, seeded = site.base, site.seeded
    page = open_page(browser, size, base + "/?source=cam1", phone=True)
    card = page.locator(f"tr[data-detection='{seeded.alert_detection_id}']")
    card.scroll_into_view_if_needed()
    for verdict in ("right", "wrong"):
        box = card.locator(f"button.{verdict}").bounding_box()
        assert box is not None
        assert box["height"] >= THUMB_PX and box["width"] >= size[0] / 3, (verdict, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= size[0], (verdict, box)
    thumb = card.locator("img.thumb").bounding_box()
    assert thumb is not None and thumb["width"] >= size[0] * 0.8
    page.goto(f"{base}/media/{seeded.media_id}")
    player = page.locator("#player").bounding_box()
    assert player is not None and player["width"] >= size[0] - 2 * 12, player
    page.context.close()


def test_keyboard_triage_on_a_desktop(browser: Any, site: Site) -> None:
    base, seeded, url = site.base, site.seeded, site.url
    page = open_page(browser, DESKTOPS[0], base + "/?source=cam1", phone=False)
    expect(page.locator("header .keys")).to_be_visible()
    rows = page.locator("#timeline tbody tr")
    ids = [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.detection)")]
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(rows.nth(1)).to_have_class("selected")
    page.keyboard.press("y")  # right, then on to the next
    expect(rows.nth(1).locator("button.right")).to_have_class("right on")
    expect(rows.nth(2)).to_have_class("selected")
    page.keyboard.press("w")
    expect(rows.nth(2).locator("button.wrong")).to_have_class("wrong on")
    page.keyboard.press("k")
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class("selected")
    page.keyboard.press("n")  # a second verdict replaces the first
    expect(rows.nth(1).locator("button.wrong")).to_have_class("wrong on")

    def verdicts() -> dict[int, str]:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                query = "SELECT detection_id, verdict FROM feedback WHERE detection_id IN ({}, {})"
                found = conn.execute(text(query.format(ids[1], ids[2])))
                return {int(d): str(v) for d, v in found}
        finally:
            engine.dispose()

    wait_for(lambda: verdicts() == {ids[1]: "wrong", ids[2]: "wrong"}, timeout=30, what="the verdicts stored")
    page.keyboard.press("o")  # opens the selected row's file
    page.wait_for_url(f"**/media/{seeded.media_id}#t=*")
    page.context.close()


def test_the_page_has_no_inline_script_or_style(site: Site, browser: Any) -> None:
    """Scripts and styles come from /static (the CSP allows no inline code)."""
    base = site.base
    page = open_page(browser, DESKTOPS[0], base + "/", phone=False)
    for path in pages(site).values():
        page.goto(base + path)
        inline = page.evaluate(
            "['script:not([src])', 'style', '[style]'].map(css => document.querySelectorAll(css).length)"
        )
        assert inline == [0, 0, 0], (path, inline)
    page.context.close()


def test_targets_page_draws_the_histogram(site: Site, browser: Any, tmp_path: Path) -> None:
    base = site.base
    page = open_page(browser, PHONES[0], base + "/targets", phone=True)
    card = page.locator(".target[data-target='person']")
    bars = card.locator("svg.hist rect.unlabelled").evaluate_all("rs => rs.map(r => r.getBBox().height)")
    assert len(bars) == 20 and max(bars) == 100 and sum(bars) > 100
    page.context.close()

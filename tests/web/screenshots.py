"""Screenshots of each page for docs/review.md, from the same seeded rows the tests use, at a desk and on a
phone (390 x 844, as the issue measured it):

    PYTHONPATH=. python -m tests.web.screenshots docs/img

Verdicts are given through the page (clicks) and, for the targets page's fit, in bulk on synthetic
windows whose truth is known (present above 0.7), as `vigil feedback` would store them. Each page's width
(`scrollWidth` against the window's) is printed: on a phone it must not exceed the screen.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from tests.support.web import Seeded, bulk_detections, judge_bulk, seed_review, start_web, stop
from vigil.store.migrate import upgrade

DESK = {"width": 1360, "height": 820}
PHONE = {"width": 390, "height": 844}


def width(page: Any) -> str:
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return f"{scroll} px in {inner}"


def shoot(browser: Any, base: str, seeded: Seeded, out: Path, *, phone: bool) -> list[Path]:
    # bypass_csp: wait_for_function evaluates a string, which the pages' CSP refuses.
    context = browser.new_context(
        viewport=PHONE if phone else DESK, is_mobile=phone, has_touch=phone, device_scale_factor=1,
        bypass_csp=True,
    )  # fmt: skip
    page = context.new_page()
    suffix = "-phone" if phone else ""
    shots = [out / f"{name}{suffix}.png" for name in ("timeline", "media", "targets")]
    page.goto(base + "/?source=cam1")
    if not phone:
        page.locator(f"tr[data-detection='{seeded.matched_ids[0]}'] button.wrong").click()
        page.locator(f"tr[data-detection='{seeded.alert_detection_id}'] button.right").click()
        page.wait_for_timeout(300)
        page.reload()
    print(f"timeline{suffix}: {width(page)}")
    page.screenshot(path=shots[0])
    page.goto(f"{base}/media/{seeded.media_id}")
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    page.locator("tr.window[data-start='6.0']").click()
    page.wait_for_function("document.getElementById('player').currentTime >= 6")
    page.evaluate("document.getElementById('player').pause()")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    print(f"media{suffix}: {width(page)}")
    page.screenshot(path=shots[1], full_page=not phone)
    page.goto(base + "/targets")
    print(f"targets{suffix}: {width(page)}")
    page.screenshot(path=shots[2])
    context.close()
    return shots


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'vigil.db'}"
        upgrade(url)
        seeded = seed_review(url, root)
        bulk_detections(url, 2_000)
        judge_bulk(url)
        process, base, _ = start_web(root, url)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                shots = shoot(browser, base, seeded, out, phone=False)
                shots += shoot(browser, base, seeded, out, phone=True)
                browser.close()
        finally:
            stop(process)
    print("\n".join(str(shot) for shot in shots))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))

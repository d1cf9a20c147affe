"""Screenshots of each page for the README, from the same seeded rows the tests use:

    PYTHONPATH=. python -m tests.web.screenshots docs/img

Verdicts are given through the page (clicks) and, for the targets page's fit, in bulk on synthetic
windows whose truth is known (present above 0.7), as `vigil feedback` would store them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.web import bulk_detections, judge_bulk, seed_review, start_web, stop
from vigil.store.migrate import upgrade


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
                # bypass_csp: wait_for_function evaluates a string, which the pages' CSP refuses.
                page = browser.new_page(
                    viewport={"width": 1360, "height": 820}, device_scale_factor=1, bypass_csp=True
                )
                page.goto(base + "/?source=cam1")
                page.locator(f"tr[data-detection='{seeded.matched_ids[0]}'] button.wrong").click()
                page.locator(f"tr[data-detection='{seeded.alert_detection_id}'] button.right").click()
                page.wait_for_timeout(300)
                page.reload()
                page.screenshot(path=out / "timeline.png")
                page.goto(f"{base}/media/{seeded.media_id}")
                page.wait_for_function("document.getElementById('player').readyState >= 1")
                page.locator("tr.window[data-start='6.0']").click()
                page.wait_for_function("document.getElementById('player').currentTime >= 6")
                page.evaluate("document.getElementById('player').pause()")
                page.wait_for_timeout(300)
                page.screenshot(path=out / "media.png", full_page=True)
                page.goto(base + "/targets")
                page.screenshot(path=out / "targets.png")
                browser.close()
        finally:
            stop(process)
    print("\n".join(str(out / n) for n in ("timeline.png", "media.png", "targets.png")))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))

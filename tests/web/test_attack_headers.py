"""The review page's headers against Mozilla Observatory's kind of rules, with and without a password, and
the pages working in Chromium under their own Content-Security-Policy (the attacks: test_attacks.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.attacks import assert_clean, csp_directives, feedback_count, observatory_problems
from tests.support.web import Review, seed_review, start_web, stop

PASSWORD = "correct horse"


@pytest.mark.parametrize("password", [None, PASSWORD])
def test_headers_pass_observatory_rules(sqlite_url: str, tmp_path: Path, password: str | None) -> None:
    seeded = seed_review(sqlite_url, tmp_path)
    env = {"VIGIL_WEB__PASSWORD": password} if password else {}
    process, base, _ = start_web(tmp_path, sqlite_url, env=env)
    auth = ("me", password) if password else None
    try:
        client = httpx.Client(base_url=base, auth=auth)
        for path in ["/", "/targets", f"/media/{seeded.media_id}", "/nothing", "/?before=x", "/media/0"]:
            response = client.get(path)
            assert observatory_problems(response) == [], (path, observatory_problems(response))
            assert_clean(response, str(tmp_path))
            if response.status_code == 200:
                assert response.headers["cache-control"] == "no-store", path
                assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), f"inline script on {path}"
                assert not re.search(r"\son[a-z]+=", response.text), f"inline handler on {path}"
        for path in [f"/media/{seeded.media_id}/file", f"/detections/{seeded.matched_ids[0]}/thumbnail"]:
            served = client.get(path)
            assert served.status_code == 200 and served.headers["x-content-type-options"] == "nosniff"
            csp = csp_directives(served)
            assert "sandbox" in csp and csp["default-src"] == ["'none'"], path
            assert served.headers["cache-control"] == ("no-store" if password else "private, max-age=3600")
            assert served.headers["cross-origin-resource-policy"] == "same-origin"
        script = client.get("/static/vigil.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        if password:
            assert httpx.get(base + "/").status_code == 401
            assert observatory_problems(httpx.get(base + "/")) == []
        client.close()
    finally:
        stop(process)


def test_the_pages_work_under_their_own_csp(review: Review, browser: Any) -> None:
    """In Chromium with the CSP enforced: the script runs (times localised, one-click verdicts post) and
    the browser reports no violation."""
    context = browser.new_context(timezone_id="Europe/Paris")
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(review.base + "/")
        first = page.locator("time[datetime]").first
        expect(first).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\dT"))  # rewritten by the script
        before = feedback_count(review.db_url)
        row = page.locator(f"tr[data-detection='{review.seeded.matched_ids[0]}']")
        row.locator("button.wrong").click()
        expect(row.locator("button.wrong")).to_have_class(re.compile(r"\bon\b"))
        assert feedback_count(review.db_url) == before + 1  # type: ignore[operator]
        page.goto(review.base + f"/media/{review.seeded.media_id}")
        page.locator("tr.window[data-start='6.0']").click()
        expect(page.locator("tr.window.playing")).to_have_count(1)  # the row handler ran
        assert violations == []
    finally:
        context.close()

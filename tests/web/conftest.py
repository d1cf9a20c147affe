"""The review page under test: a real `python -m vigil.web` process (uvicorn) over a seeded database, and
Debian's Chromium driven by Playwright (its own browser download is not used)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import missing_service
from tests.web.web_support import Seeded, seed_review, start_web, stop

CHROMIUM = (
    os.environ.get("VIGIL_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)


@dataclass
class Review:
    base: str
    db_url: str
    seeded: Seeded
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def review(db_url: str, tmp_path: Path) -> Iterator[Review]:
    seeded = seed_review(db_url, tmp_path)
    process, base, log = start_web(tmp_path, db_url)
    yield Review(base, db_url, seeded, process, log)
    stop(process)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        missing_service("chromium is not installed (make tools installs Debian's)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A viewer in another zone than the server's UTC: times must show in the viewer's.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="Europe/Paris")
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()

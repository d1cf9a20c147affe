"""The review page under test: a real `python -m vigil.web` process (uvicorn) over a seeded database, and
Debian's Chromium driven by Playwright (its own browser download is not used)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import free_port, missing_service
from tests.process_support import wait_for
from tests.web.web_support import Seeded, seed_review

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


def start_web(
    root: Path, db_url: str, *, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = root / f"web-{port}.log"
    child_env = (
        {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        | {
            "VIGIL_DATABASE__URL": db_url,
            "VIGIL_STORAGE__DATA_DIR": str(root / "data"),
            "VIGIL_WEB__PORT": str(port),
            "VIGIL_LOG__FORMAT": "text",
        }
        | (env or {})
    )
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vigil.web"], cwd=root, env=child_env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"web exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(base + "/healthz-none", timeout=2).status_code in (401, 404)
        except httpx.TransportError:
            return False

    wait_for(answering, timeout=60, what="the review page to answer")
    return process, base, log


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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

"""A clip dropped into a watched folder shows on the review page within seconds of its analysis: real
watcher, worker and web processes (the embedded default), Debian's Chromium reading the page."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from tests.e2e.test_end_to_end import drop
from tests.support.processes import Stack, wait_for
from tests.support.web import wait_answering
from workers.testing.clips import write_clip_h264

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
    )
    yield stack
    stack.stop_all()


def test_a_dropped_clip_shows_on_the_timeline_within_seconds_of_its_analysis(
    stack: Stack, page: Page
) -> None:
    assert stack.vigil("db", "upgrade").returncode == 0
    assert stack.vigil("targets", "add", "person", "a person walking", "--threshold", "0").returncode == 0
    base = f"http://127.0.0.1:{stack.env['VIGIL_WEB__PORT']}"
    web = stack.spawn("web", "-m", "vigil.web")
    wait_answering(base, web, stack.root / "web.log")
    stack.spawn("worker", "-m", "workers", "--queue", "gpu")
    stack.spawn("watcher", "-m", "watcher")
    page.goto(base + "/")
    assert page.locator("#timeline tbody tr").count() == 0
    drop(stack, "porch.mp4", lambda p: write_clip_h264(p, seconds=2, fps=10, size=(128, 96), gop=10))
    try:
        wait_for(lambda: stack.statuses() == {"porch.mp4": "done"}, what="the clip analysed")
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{stack.dump_logs()}")
    done = time.monotonic()
    while page.locator("#timeline tbody tr").count() == 0:  # a person reloads the page
        assert time.monotonic() - done < 10, "the timeline did not show the clip within 10 s of its analysis"
        page.wait_for_timeout(500)
        page.reload()
    rows = page.locator("#timeline tbody tr")
    assert rows.count() == 2  # two 1 s windows, threshold 0: both matched
    assert "porch.mp4" in rows.first.inner_text() and "person" in rows.first.inner_text()
    # The thumbnail the worker wrote (absolute path, source resolution) is served by detection id.
    width = rows.first.locator("img.thumb").evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert width == 128
    # Its media page plays the clip.
    rows.first.locator("a").first.click()
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(2, abs=0.2)


def test_vigil_run_serves_the_review_page_and_stops_it_cleanly(stack: Stack) -> None:
    assert stack.vigil("db", "upgrade").returncode == 0
    base = f"http://127.0.0.1:{stack.env['VIGIL_WEB__PORT']}"
    run = stack.spawn("run", "-m", "vigil", "run", "--watch", str(stack.inbox))
    try:
        wait_answering(base, run, stack.root / "run.log", timeout=120)
        assert httpx.get(base + "/").status_code == 200
        assert httpx.get(base + "/targets").status_code == 200
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{stack.dump_logs()}")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 0, stack.dump_logs()
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/", timeout=2)

"""Every reader tells the database's truth (issue 24): after a re-analysis of one target the pages show the
newest answer per target, each from its analysis, and an alert keeps the window that fired it; a replaced
file's old page never plays the new content; a failed file's page shows the failure. A real server process,
real files, Debian's Chromium; `vigil rules test` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import select

from tests.support.web import Review, add_reanalysis
from vigil.config.settings import DatabaseSettings
from vigil.errors import UnreadableMedia
from vigil.formats.probe import probe
from vigil.media.registry import register_file
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Detection, Media, Source
from workers.testing.clips import write_clip_h264


def timeline_ids(page: Page) -> list[int]:
    return [
        int(x)
        for x in page.locator("#timeline tbody tr").evaluate_all("rs => rs.map(r => r.dataset.detection)")
    ]


def column_analyses(page: Page) -> dict[str, int]:
    heads = page.locator("#grid thead th[data-target]")
    return {
        h.get_attribute("data-target") or "": int(h.get_attribute("data-analysis") or 0) for h in heads.all()
    }


def rules_test(review: Review, rule: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_DATABASE__URL": review.db_url, "VIGIL_PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "vigil", "rules", "test", rule, "--media", str(review.seeded.media_id)],
        env=env | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=review.log.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_one_target_reanalysis_leaves_the_other_targets_answers_on_every_reader(
    review: Review, page: Page
) -> None:
    seeded = review.seeded
    dog = add_reanalysis(review.db_url, seeded.media_id, {"dog": [0.1, 0.2, 0.7, 0.3, 0.1, 0.1]})
    # The media page: every target's column, each from the analysis that answered it.
    page.goto(f"{review.base}/media/{seeded.media_id}")
    first = column_analyses(page)
    assert first["dog"] == dog and first["person"] == first["van"] < dog, first
    expect(page.locator("#grid td.cell.matched")).to_have_count(6)  # person 3, van 2, dog 1
    # The alert lower on the page is explained: its window's score, analysis and thumbnail.
    fired_by = page.locator(f"#alerts tr[data-alert='{seeded.alert_id}'] td.fired-by")
    expect(fired_by).to_contain_text("0.930")
    expect(fired_by).to_contain_text(f"analysis {first['person']}")
    assert fired_by.locator("img").evaluate("img => img.complete && img.naturalWidth") == 320
    # The timeline: the earlier matches stay, the dog's match joins them.
    page.goto(review.base + "/")
    ids = timeline_ids(page)
    assert set(seeded.matched_ids) < set(ids) and len(ids) == len(seeded.matched_ids) + 1
    # `vigil rules test`: the person windows that fired are still the newest person answers.
    out = rules_test(review, "people-at-night")
    assert "no detections" not in out and "would not fire" not in out, out
    assert (
        "person window 3 (6.0–8.0 s): score 0.93 >= 0.50" in out and f"analysis {first['person']}" in out
    ), out

    # Now person itself is asked again: its old matches leave the timeline, except the window an alert
    # fired on, which stays with that alert and says it was answered again since.
    person = add_reanalysis(review.db_url, seeded.media_id, {"person": [0.1, 0.1, 0.1, 0.6, 0.1, 0.1]})
    page.goto(review.base + "/")
    rows = page.locator("#timeline tbody tr")
    alerted = page.locator(f"tr[data-detection='{seeded.alert_detection_id}']")
    expect(alerted.locator(".pill.old")).to_contain_text("since re-analysed")
    expect(alerted.locator(".pill.alert")).to_have_text("people-at-night")
    person_rows = [t for t in rows.locator("td:nth-child(2) strong").all_inner_texts() if t == "person"]
    assert len(person_rows) == 2  # the new analysis's one match and the alerted window
    page.goto(f"{review.base}/media/{seeded.media_id}")
    assert column_analyses(page) == {"dog": dog, "person": person, "van": first["van"]}
    fired_by = page.locator(f"#alerts tr[data-alert='{seeded.alert_id}'] td.fired-by")
    expect(fired_by.locator(".pill.old")).to_have_text("since re-analysed")
    assert fired_by.locator("img").evaluate("img => img.complete && img.naturalWidth") == 320
    # The targets page's histogram counts each window's newest answer once.
    page.goto(f"{review.base}/targets")
    expect(page.locator(".target[data-target='person']")).to_contain_text("· 6 unlabelled")
    # One analysis on its own, when asked for.
    page.goto(f"{review.base}/media/{seeded.media_id}?analysis={dog}")
    assert column_analyses(page) == {"dog": dog}


def replace_file(seeded_clip: Path, url: str, source_dir: Path) -> int:
    """`cp other.mp4 drop/driveway.mp4`, registered as the watcher registers it: version 2."""
    other = write_clip_h264(source_dir.parent / "other.mp4", seconds=5, fps=10, size=(160, 120), gop=10)
    seeded_clip.write_bytes(other.read_bytes())
    engine = make_engine(DatabaseSettings(url=url))
    factory = session_factory(engine)
    with factory() as session:
        source_id = session.scalars(select(Source.id).where(Source.name == "cam1")).one()
    registration = register_file(
        factory, source_id=source_id, root=source_dir, path=seeded_clip, info=probe(seeded_clip)
    )
    engine.dispose()
    assert registration.created
    return registration.media_id


def test_a_replaced_files_old_page_never_plays_the_new_content(review: Review, page: Page) -> None:
    seeded = review.seeded
    old = seeded.media_id
    before = httpx.get(f"{review.base}/media/{old}/file")
    assert before.status_code == 200 and before.content == seeded.clip.read_bytes()
    new = replace_file(seeded.clip, review.db_url, seeded.source_dir)
    answer = httpx.get(f"{review.base}/media/{old}/file")
    assert answer.status_code == 410, answer.text[:200]
    assert answer.text.startswith(f"410: media {old}: not this version's file any more: file changed")
    assert httpx.get(f"{review.base}/media/{new}/file").content == seeded.clip.read_bytes()
    # The old page says it was replaced, links to the current version, plays nothing; its thumbnails,
    # taken from what this version showed, remain.
    page.goto(f"{review.base}/media/{old}")
    expect(page.locator(".notice.superseded")).to_contain_text("replaced")
    expect(page.locator(f".notice.superseded a[href='/media/{new}']")).to_have_count(1)
    expect(page.locator("#player")).to_have_count(0)
    expect(page.locator(".unplayable")).to_contain_text("no longer this version")
    thumbs = page.locator(".thumbs img")
    expect(thumbs).to_have_count(5)
    assert all(w == 320 for w in thumbs.evaluate_all("is => is.map(i => i.complete && i.naturalWidth)"))
    # The new version's page plays it.
    page.goto(f"{review.base}/media/{new}")
    expect(page.locator(".notice.superseded")).to_have_count(0)
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    # A same-size rewrite with its mtime put back is caught by the content hash, as the worker catches it.
    stat = seeded.clip.stat()
    data = bytearray(seeded.clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seeded.clip.write_bytes(bytes(data))
    os.utime(seeded.clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    answer = httpx.get(f"{review.base}/media/{new}/file")
    assert answer.status_code == 410 and "new sha256" in answer.text, answer.text[:200]


def test_a_failed_files_page_shows_the_failure_not_a_player(review: Review, page: Page) -> None:
    empty = review.seeded.source_dir / "empty.mp4"
    empty.write_bytes(b"")
    engine = make_engine(DatabaseSettings(url=review.db_url))
    factory = session_factory(engine)
    with write_session(factory) as session:
        source = session.scalars(select(Source).where(Source.name == "cam1")).one()
        assert session.scalar(select(Detection.id).limit(1)) is not None
    registration = register_file(
        factory, source_id=source.id, root=review.seeded.source_dir, path=empty, info=None,
        problem=UnreadableMedia(empty, "empty file"),
    )  # fmt: skip
    with factory() as session:
        assert session.get_one(Media, registration.media_id).status == "failed"
    engine.dispose()
    page.goto(f"{review.base}/media/{registration.media_id}")
    expect(page.locator(".notice.failure")).to_contain_text("Analysis failed")
    expect(page.locator(".notice.failure")).to_contain_text("empty file")
    expect(page.locator("#player")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("Not analysed yet")

"""A media row whose file retention pruned: the page says so, the thumbnails are still served, the file is
not (the row outlives the file)."""

from __future__ import annotations

import html
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.support.web import Review


def test_the_page_of_a_pruned_file_says_so_and_still_serves_its_thumbnails(review: Review) -> None:
    seeded = review.seeded
    engine = create_engine(review.db_url)
    try:
        with engine.begin() as conn:
            # What vigil.media.retention leaves behind: the file gone, the row marked, detections kept.
            conn.execute(
                text("UPDATE media SET pruned_at = :at, prune_reason = :why WHERE id = :id"),
                {"at": "2026-12-01 03:00:00.000000", "why": "age: past keep_days=3", "id": seeded.media_id},
            )
    finally:
        engine.dispose()
    Path(seeded.clip).unlink()
    with httpx.Client(base_url=review.base, timeout=30) as client:
        page = client.get(f"/media/{seeded.media_id}")
        assert page.status_code == 200
        assert "the file was pruned by retention on" in page.text
        assert html.escape("age: past keep_days=3") in page.text
        assert client.get(f"/media/{seeded.media_id}/file").status_code == 404
        thumbnail = client.get(f"/detections/{seeded.alert_detection_id}/thumbnail")
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"

"""The review page marks windows the static-scene gate inherited: in the media page's windows x targets grid,
on its matches, and on the timeline; scored windows carry no marker."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.alerting import (
    add_analysis,
    add_media,
    factory_for,
    make_settings,
    sync_all,
)
from vigil.store.db import write_session
from vigil.web.app import create_app

MARK = "scene unchanged: scores inherited from the last scored window"


def test_inherited_windows_are_marked_where_windows_are_listed(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(sqlite_url)
    settings.storage.data_dir = tmp_path / "data"
    factory = factory_for(sqlite_url)
    sync_all(factory, settings)
    with write_session(factory) as session:
        media = add_media(session)
        # windows 0 and 2 scored, 1 inherits 0, 3 inherits 2; person matches in 0 and 1 only
        add_analysis(
            session, media, {"person": [0.9, 0.9, 0.2, 0.2], "van": [0.1, 0.1, 0.3, 0.3]}, inherited={1, 3}
        )
        media_id = media.id
    client = TestClient(create_app(settings, factory), base_url="http://127.0.0.1")
    page = client.get(f"/media/{media_id}")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="window".*?</tr>', page.text, flags=re.DOTALL)
    assert [MARK in row for row in rows] == [False, True, False, True]
    figures = re.findall(r"<figure.*?</figure>", page.text, flags=re.DOTALL)
    assert [("0.0–10.0" in f, "10.0–20.0" in f, MARK in f) for f in figures] == [
        (True, False, False),
        (False, True, True),
    ]
    timeline = client.get("/")
    rows = re.findall(r"<tr data-detection=.*?</tr>", timeline.text, flags=re.DOTALL)
    assert [("0.0–10.0 s" in r, MARK in r) for r in rows] == [(False, True), (True, False)]  # newest first

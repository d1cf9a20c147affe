"""The review page under test: a real `python -m vigil.web` process (uvicorn) over a seeded database.
The browser (`browser`, `page`) comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.web import Review, seed_review, start_web, stop


@pytest.fixture
def review(db_url: str, tmp_path: Path) -> Iterator[Review]:
    seeded = seed_review(db_url, tmp_path)
    process, base, log = start_web(tmp_path, db_url)
    yield Review(base, db_url, seeded, process, log)
    stop(process)

"""The review page under test: a real `python -m vigil.web` process (uvicorn) over a seeded database.
The browser (`browser`, `page`) comes from tests/conftest.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.web.web_support import Seeded, seed_review, start_web, stop


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

"""Helpers for the watcher's tests: polling with a deadline, the media rows, a broker nobody listens on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.store.schema import Media

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def media_rows(factory: sessionmaker[Session]) -> list[Media]:
    with factory() as session:
        return list(session.scalars(select(Media).order_by(Media.id)))


def rows_for(factory: sessionmaker[Session], rel_path: str) -> list[Media]:
    return [m for m in media_rows(factory) if m.rel_path == rel_path]

"""The review page stays responsive while the daemon writes: a writer holding its transaction open (SQLite's
write lock; PostgreSQL row and table locks) does not hold up any page, and pages show what was committed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from tests.support.sql import libpq
from tests.support.web import Review

# Far below the writer's hold and SQLite's busy timeout: a page that waited for the lock would miss it.
PAGE_BUDGET_S = 3.0
UNCOMMITTED = "caption written by a transaction still open"


@contextmanager
def writer_holding_locks(url: str, media_id: int) -> Iterator[None]:
    """A daemon-like writer mid-transaction: it changed the media row and holds the database's write lock."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # the write lock, as the worker's write_session takes it
        conn.execute("UPDATE media SET caption = ? WHERE id = ?", (UNCOMMITTED, media_id))
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(libpq(url)) as pg:
        pg.execute("UPDATE media SET caption = %s WHERE id = %s", (UNCOMMITTED, media_id))
        pg.execute("UPDATE detections SET evidence = evidence WHERE media_id = %s", (media_id,))
        pg.execute("LOCK TABLE analyses, alerts, deliveries IN EXCLUSIVE MODE")  # blocks writers, not readers
        try:
            yield
        finally:
            pg.rollback()


def assert_writes_blocked(url: str, media_id: int) -> None:
    """The writer really holds the lock: another write waits for it (and gives up here)."""
    if url.startswith("sqlite"):
        other = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.1, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
        return
    with psycopg.connect(libpq(url)) as other:
        other.execute("SET lock_timeout = 100")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("UPDATE media SET caption = 'x' WHERE id = %s", (media_id,))


def test_pages_answer_while_a_writer_holds_its_transaction(review: Review) -> None:
    media_id = review.seeded.media_id
    thumbnail = f"/detections/{review.seeded.alert_detection_id}/thumbnail"
    pages = [
        "/",
        "/?alerts=1",
        f"/media/{media_id}",
        f"/media/{media_id}/file",
        thumbnail,
        "/targets",
        "/events",
    ]
    with writer_holding_locks(review.db_url, media_id), httpx.Client(base_url=review.base) as client:
        assert_writes_blocked(review.db_url, media_id)
        for path in pages:
            started = time.monotonic()
            answer = client.get(path, timeout=PAGE_BUDGET_S * 3)
            took = time.monotonic() - started
            assert answer.status_code == 200, (path, answer.text[:300])
            assert took < PAGE_BUDGET_S, f"{path} took {took:.2f} s behind a writer"
            assert UNCOMMITTED.encode() not in answer.content
        media = client.get(f"/media/{media_id}").text
    assert "A quiet driveway" in media  # the committed caption

"""The delivery outbox against a real loopback webhook receiver: leases, backoff with jitter, Retry-After,
final and gone answers, a receiver down for a while, a slow receiver beside a fast one, the reconciler."""

from __future__ import annotations

import base64
import json
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.alerting import (
    Receiver,
    Reply,
    add_analysis,
    add_media,
    factory_for,
    make_settings,
    sync_all,
)
from vigil.alerts.delivery import backoff_s, deliver, reconcile_deliveries, take_lease
from vigil.alerts.evaluation import evaluate_analysis
from vigil.config.settings import AlertSettings, BrokerSettings, Settings
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import write_session
from vigil.store.schema import Channel, Delivery, utcnow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


def setup(url: str, channels: dict[str, str], **alerts: Any) -> tuple[Settings, sessionmaker[Session]]:
    """A rule sending every person alert to the given webhook channels (name -> url)."""
    settings = make_settings(
        url,
        rules=[{"name": "r", "targets": ["person"], "cooldown_s": 0, "channels": list(channels)}],
        channels=[{"name": n, "kind": "webhook", "url": u, "timeout_s": 1.0} for n, u in channels.items()],
        **alerts,
    )
    factory = factory_for(url)
    sync_all(factory, settings)
    return settings, factory


def fire(factory: sessionmaker[Session], settings: Settings, count: int = 1) -> list[int]:
    ids: list[int] = []
    for _ in range(count):
        with write_session(factory) as session:
            analysis = add_analysis(session, add_media(session), {"person": [0.9]})
            ids += evaluate_analysis(session, analysis, settings=settings)
    return ids


def row(factory: sessionmaker[Session], delivery_id: int) -> Delivery:
    with factory() as session:
        return session.get_one(Delivery, delivery_id)


def make_due(factory: sessionmaker[Session], delivery_id: int) -> None:
    """Time passes: the row's next attempt is now."""
    with write_session(factory) as session:
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=utcnow()))


def test_delivered_once_and_a_duplicate_message_does_nothing(sqlite_url: str, receiver: Receiver) -> None:
    settings, factory = setup(sqlite_url, {"hook": receiver.url})
    [delivery_id] = fire(factory, settings)
    assert deliver(factory, delivery_id, settings=settings).status == "delivered"
    assert deliver(factory, delivery_id, settings=settings).status == "skipped"
    done = row(factory, delivery_id)
    assert (done.status, done.attempts, done.lease_until, done.delivered_at is not None) == (
        "delivered",
        1,
        None,
        True,
    )
    assert receiver.ids() == [done.idempotency_key]
    body = receiver.requests[0].json()
    assert body["delivery"] == {"id": delivery_id, "channel": "hook", "attempt": 1}
    assert body["target"]["name"] == "person" and body["score"] == 0.9


def test_a_held_lease_is_not_taken_twice(sqlite_url: str, receiver: Receiver) -> None:
    settings, factory = setup(sqlite_url, {"hook": receiver.url})
    [delivery_id] = fire(factory, settings)
    first = take_lease(factory, delivery_id, settings=settings)
    assert first is not None and first.attempts == 1
    assert take_lease(factory, delivery_id, settings=settings) is None
    assert deliver(factory, delivery_id, settings=settings).status == "skipped"
    assert receiver.requests == []


def test_receiver_down_then_up_gets_each_alert_exactly_once(sqlite_url: str) -> None:
    receiver = Receiver().start()
    settings, factory = setup(sqlite_url, {"hook": receiver.url}, retry_base_s=0.05, retry_max_s=0.2)
    receiver.stop()  # down: connection refused on its port
    ids = fire(factory, settings, count=4)
    outcomes: Counter[str] = Counter()

    def drain() -> None:  # two senders racing over every due row, as duplicate messages would
        for delivery_id in ids:
            outcomes[deliver(factory, delivery_id, settings=settings).status] += 1

    began = time.monotonic()
    while time.monotonic() - began < 20:
        if receiver.server is None and time.monotonic() - began > 1.0:
            receiver.start()  # back up, same port
        threads = [threading.Thread(target=drain) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if all(row(factory, i).status == "delivered" for i in ids):
            break
        time.sleep(0.05)
    receiver.stop()
    rows = [row(factory, i) for i in ids]
    assert [r.status for r in rows] == ["delivered"] * 4
    assert Counter(receiver.ids()) == Counter({r.idempotency_key: 1 for r in rows})
    assert outcomes["retry"] >= 4 and all(r.attempts >= 2 for r in rows)
    assert outcomes["delivered"] == 4


def test_server_errors_retry_with_growing_jittered_backoff(sqlite_url: str) -> None:
    with_500 = Receiver(lambda _n, _r: Reply(500, body=b"boom")).start()
    try:
        settings, factory = setup(sqlite_url, {"hook": with_500.url}, retry_base_s=1, retry_max_s=8)
        [delivery_id] = fire(factory, settings)
        delays = []
        for attempt in range(1, 7):
            before = utcnow()
            outcome = deliver(factory, delivery_id, settings=settings)
            after = row(factory, delivery_id)
            nominal = min(8.0, 2.0 ** (attempt - 1))
            assert outcome.status == "retry" and after.status == "pending" and after.attempts == attempt
            assert after.last_error == "HTTP 500: boom" and after.lease_until is None
            delay = (after.next_attempt_at - before).total_seconds()  # type: ignore[operator]
            assert nominal / 2 - 0.01 <= delay <= nominal + 0.5, (attempt, delay)
            assert nominal / 2 <= outcome.retry_in_s <= nominal  # type: ignore[operator]
            delays.append(outcome.retry_in_s)
            make_due(factory, delivery_id)
        assert len(with_500.requests) == 6
    finally:
        with_500.stop()


def test_backoff_jitter_bounds_and_spread() -> None:
    conf = AlertSettings(retry_base_s=5, retry_max_s=3600)
    rng = random.Random(1)
    for attempts, nominal in [(1, 5), (2, 10), (5, 80), (12, 3600), (40, 3600)]:
        values = [backoff_s(attempts, conf, rng=rng) for _ in range(200)]
        assert min(values) >= nominal / 2 and max(values) <= nominal
        assert max(values) - min(values) > nominal / 4  # really jittered, not constant
    assert backoff_s(1, conf, rng=rng, retry_after_s=120) == 120
    assert 40 <= backoff_s(5, conf, rng=rng, retry_after_s=1) <= 80


def test_retry_after_is_honoured(sqlite_url: str) -> None:
    when = format_datetime(datetime.now().astimezone() + timedelta(seconds=600), usegmt=False)
    replies = [Reply(503, {"retry-after": "120"}), Reply(429, {"retry-after": when})]
    hook = Receiver(lambda n, _r: replies[n - 1] if n <= len(replies) else Reply()).start()
    try:
        settings, factory = setup(sqlite_url, {"hook": hook.url}, retry_base_s=1)
        [delivery_id] = fire(factory, settings)
        before = utcnow()
        assert deliver(factory, delivery_id, settings=settings).retry_in_s == 120
        wait = (row(factory, delivery_id).next_attempt_at - before).total_seconds()  # type: ignore[operator]
        assert 119.9 < wait < 121
        make_due(factory, delivery_id)
        retry_in = deliver(factory, delivery_id, settings=settings).retry_in_s
        assert retry_in is not None and 595 < retry_in <= 600
        make_due(factory, delivery_id)
        assert deliver(factory, delivery_id, settings=settings).status == "delivered"
    finally:
        hook.stop()


def test_gives_up_after_the_retry_horizon(sqlite_url: str) -> None:
    hook = Receiver(lambda _n, _r: Reply(502)).start()
    try:
        settings, factory = setup(sqlite_url, {"hook": hook.url}, retry_base_s=10, retry_horizon_s=30)
        [delivery_id] = fire(factory, settings)
        statuses = []
        for _ in range(5):
            statuses.append(deliver(factory, delivery_id, settings=settings).status)
            make_due(factory, delivery_id)
        final = row(factory, delivery_id)
        # base 10 s: delays in [5, 10], [10, 20], [20, 40]: the third cannot fit in 30 s.
        assert statuses[-1] == "skipped" and "failed" in statuses and statuses[0] == "retry"
        assert final.status == "failed" and final.last_error.startswith(
            f"gave up after {final.attempts} attempts"
        )
    finally:
        hook.stop()


def test_client_errors_are_final(sqlite_url: str) -> None:
    hook = Receiver(lambda _n, _r: Reply(400, body=b"bad payload")).start()
    try:
        settings, factory = setup(sqlite_url, {"hook": hook.url})
        [delivery_id] = fire(factory, settings)
        assert deliver(factory, delivery_id, settings=settings).status == "failed"
        failed = row(factory, delivery_id)
        assert (failed.status, failed.attempts, failed.last_error) == ("failed", 1, "HTTP 400: bad payload")
        assert deliver(factory, delivery_id, settings=settings).status == "skipped"
        assert len(hook.requests) == 1
    finally:
        hook.stop()


def test_gone_disables_the_channel(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    hook = Receiver(lambda _n, _r: Reply(410, body=b"unsubscribed")).start()
    try:
        settings, factory = setup(sqlite_url, {"hook": hook.url})
        first, second = fire(factory, settings, count=2)
        with caplog.at_level("ERROR", logger="vigil.alerts.delivery"):
            assert deliver(factory, first, settings=settings).status == "failed"
        assert "channel hook disabled: receiver answered HTTP 410: unsubscribed" in caplog.text
        with factory() as session:
            channel = session.scalar(select(Channel).where(Channel.name == "hook"))
        assert channel is not None and channel.disabled_at is not None
        assert deliver(factory, second, settings=settings).status == "failed"
        assert "channel hook is disabled" in (row(factory, second).last_error or "")
        assert len(hook.requests) == 1
        # New alerts to a disabled channel are recorded failed at once, not sent.
        assert fire(factory, settings) == []
    finally:
        hook.stop()


def test_a_slow_receiver_does_not_block_other_deliveries(sqlite_url: str, receiver: Receiver) -> None:
    slow = Receiver(lambda _n, _r: Reply(delay_s=3.0)).start()
    try:
        settings, factory = setup(sqlite_url, {"slow": slow.url, "fast": receiver.url})
        ids = fire(factory, settings)
        with factory() as session:
            by_channel = {
                d.channel: d.id for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))
            }
        results: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: results.update(slow=deliver(factory, by_channel["slow"], settings=settings))
        )
        thread.start()
        time.sleep(0.2)  # the slow send is in flight
        began = time.monotonic()
        assert deliver(factory, by_channel["fast"], settings=settings).status == "delivered"
        fast_s = time.monotonic() - began
        assert thread.is_alive() and fast_s < 0.5
        thread.join()
        assert results["slow"].status == "retry" and "timed out after 1 s" in results["slow"].error
    finally:
        slow.stop()


def test_reconciler_resends_lost_and_expired_deliveries(
    sqlite_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings, factory = setup(sqlite_url, {"hook": receiver.url})
    lost, leased, expired, not_due = fire(factory, settings, count=4)
    now = utcnow()
    with write_session(factory) as session:
        past = now - timedelta(seconds=120)
        session.execute(update(Delivery).where(Delivery.id == lost).values(next_attempt_at=past))
        session.execute(
            update(Delivery)
            .where(Delivery.id == leased)
            .values(next_attempt_at=past, lease_until=now + timedelta(seconds=60))
        )
        session.execute(
            update(Delivery)
            .where(Delivery.id == expired)
            .values(next_attempt_at=past, lease_until=now - timedelta(seconds=1))
        )
        session.execute(
            update(Delivery).where(Delivery.id == not_due).values(next_attempt_at=now + timedelta(seconds=30))
        )
    broker_db = tmp_path / "broker.db"
    app = make_celery(Settings(broker=BrokerSettings(url=f"sqla+sqlite:///{broker_db}")))
    enqueuer = Enqueuer(app, factory)
    assert reconcile_deliveries(factory, enqueuer, grace_s=60) == 2
    assert reconcile_deliveries(factory, enqueuer, grace_s=60) == 0  # re-sent at most once per grace period
    with sqlite3.connect(broker_db) as conn:
        payloads = [r[0] for r in conn.execute("SELECT payload FROM kombu_message")]
    assert len(payloads) == 2
    messages = [json.loads(p) for p in payloads]
    assert {m["headers"]["task"] for m in messages} == {"vigil.deliver"}
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert sorted(b[1]["payload"]["delivery_id"] for b in bodies) == [lost, expired]
    # The resent rows are due now, so the messages deliver them.
    assert deliver(factory, lost, settings=settings).status == "delivered"
    assert deliver(factory, expired, settings=settings).status == "delivered"
    early = deliver(factory, not_due, settings=settings)  # early message: waits for its time, sends nothing
    assert early.status == "retry" and 25 < early.retry_in_s <= 30  # type: ignore[operator]
    assert row(factory, not_due).attempts == 0
    app.close()


def test_reconciler_does_not_pile_messages_onto_a_queue_no_worker_reads(
    sqlite_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """An alerts worker down for hours: each pending row keeps one message waiting, not one per minute;
    when messages are lost (the broker's queue emptied), the rows are sent again."""
    settings, factory = setup(sqlite_url, {"hook": receiver.url})
    ids = fire(factory, settings, count=3)
    broker_db = tmp_path / "broker.db"
    app = make_celery(Settings(broker=BrokerSettings(url=f"sqla+sqlite:///{broker_db}")))
    enqueuer = Enqueuer(app, factory)

    def overdue() -> None:
        with write_session(factory) as session:
            past = utcnow() - timedelta(seconds=120)
            session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(next_attempt_at=past))

    def queued() -> int:
        with sqlite3.connect(broker_db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM kombu_message WHERE visible").fetchone()[0])

    overdue()
    assert reconcile_deliveries(factory, enqueuer, grace_s=60) == 3
    for _ in range(3):  # three grace periods later, nobody has read the queue
        overdue()
        assert reconcile_deliveries(factory, enqueuer, grace_s=60) == 0
    assert queued() == 3
    with sqlite3.connect(broker_db) as conn:  # the broker lost them
        conn.execute("DELETE FROM kombu_message")
    overdue()
    assert reconcile_deliveries(factory, enqueuer, grace_s=60) == 3
    assert queued() == 3
    app.close()

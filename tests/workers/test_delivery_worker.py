"""A real Celery worker process on the cpu queue delivers alerts to a loopback webhook, retrying a 503."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.alerting import (
    Receiver,
    Reply,
    add_analysis,
    add_media,
    dispose_engines,
    factory_for,
    sync_all,
)
from vigil.alerts.evaluation import evaluate_analysis
from vigil.config.settings import load_settings
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import write_session
from vigil.store.migrate import upgrade
from vigil.store.schema import Delivery

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    # The first request of each alert gets a 503 with Retry-After: 1, the next ones 200.
    seen: set[str] = set()

    def reply(_n: int, req: object) -> Reply:
        key = req.headers["webhook-id"]  # type: ignore[attr-defined]
        if key in seen:
            return Reply(200)
        seen.add(key)
        return Reply(503, {"retry-after": "1"})

    hook = Receiver(reply).start()
    yield hook
    hook.stop()


@pytest.fixture
def worker(tmp_path: Path, receiver: Receiver) -> Iterator[Path]:
    config = tmp_path / "vigil.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "vigil.db"}"
[broker]
url = "sqla+sqlite:///{tmp_path / "broker.db"}"
[log]
level = "INFO"
format = "text"
[[targets]]
name = "person"
description = "a person"
[alerts]
retry_base_s = 0.2
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{receiver.url}"
timeout_s = 2
[[alerts.rules]]
name = "any"
targets = ["person"]
cooldown_s = 0
channels = ["hook"]
"""
    )
    upgrade(f"sqlite:///{tmp_path / 'vigil.db'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_CONFIG=str(config), PYTHONPATH=str(REPO))
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "--queue", "cpu", "--concurrency", "2"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield config
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        dispose_engines()


def test_real_worker_delivers_each_alert_once_after_a_retry(
    worker: Path, receiver: Receiver, tmp_path: Path
) -> None:
    settings = load_settings(worker)
    factory = factory_for(settings.database.url)
    sync_all(factory, settings)
    ids: list[int] = []
    for _ in range(3):
        with write_session(factory) as session:
            analysis = add_analysis(session, add_media(session), {"person": [0.2, 0.9]})
            ids += evaluate_analysis(session, analysis, settings=settings)
    app = make_celery(settings)
    enqueuer = Enqueuer(app, factory)
    for delivery_id in ids:
        assert enqueuer.deliver(delivery_id)
        assert enqueuer.deliver(delivery_id)  # a duplicate message must not send twice
    deadline = time.monotonic() + 60
    rows: list[Delivery] = []
    while time.monotonic() < deadline:
        with factory() as session:
            rows = list(session.scalars(select(Delivery).where(Delivery.id.in_(ids))))
        if rows and all(r.status == "delivered" for r in rows):
            break
        time.sleep(0.2)
    app.close()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert [r.status for r in rows] == ["delivered"] * 3, log[-3000:]
    assert all(r.attempts == 2 for r in rows), [r.attempts for r in rows]
    ok = [
        r.headers["webhook-id"]
        for r, status in zip(receiver.requests, _statuses(receiver), strict=True)
        if status
    ]
    assert sorted(ok) == sorted(r.idempotency_key for r in rows)  # each accepted exactly once


def _statuses(receiver: Receiver) -> list[bool]:
    seen: set[str] = set()
    accepted = []
    for req in receiver.requests:
        key = req.headers["webhook-id"]
        accepted.append(key in seen)
        seen.add(key)
    return accepted

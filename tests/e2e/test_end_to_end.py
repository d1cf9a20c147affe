"""The whole path with real processes: a clip dropped into a watched folder becomes detection rows.

A real watcher process and a real Celery worker process (or `vigil run`, which starts both) run against
the embedded default (SQLite + the serverless SQLAlchemy broker) and against PostgreSQL + Redis.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.alerting import receiving
from tests.support.processes import Stack, wait_for
from tests.support.sql import drop_role
from vigil.sql.roles import reader_role_name
from workers.testing.clips import write_clip_mp4v, write_corrupt, write_image

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
    )
    yield stack
    stack.stop_all()


def drop(stack: Stack, name: str, make: Callable[[Path], Path]) -> Path:
    """Write a file elsewhere, then move it in, as uploaders that rename at the end do."""
    staging = stack.root / "staging"
    staging.mkdir(exist_ok=True)
    made = make(staging / name)
    target = stack.inbox / name
    shutil.move(made, target)
    return target


def setup_targets(stack: Stack) -> None:
    assert stack.vigil("db", "upgrade").returncode == 0
    for name, description, threshold in [("person", "a person walking", "0"), ("van", "a white van", "1")]:
        result = stack.vigil("targets", "add", name, description, "--threshold", threshold)
        assert result.returncode == 0, result.stderr


def check_results(stack: Stack) -> None:
    rows = stack.rows(
        "SELECT m.rel_path, t.name, d.window_index, d.p_yes, d.matched, d.thumbnail_path "
        "FROM detections d JOIN media m ON m.id = d.media_id JOIN targets t ON t.id = d.target_id "
        "ORDER BY m.rel_path, d.window_index, t.name"
    )
    clip_rows = [r for r in rows if r[0] == "clip.mp4"]
    assert [(r[1], r[2]) for r in clip_rows] == [("person", 0), ("van", 0), ("person", 1), ("van", 1)]
    assert all(0.0 < float(r[3]) < 1.0 for r in rows)  # type: ignore[arg-type]
    assert all(bool(r[4]) == (r[1] == "person") for r in rows)
    assert all(Path(str(r[5])).is_file() for r in rows if r[1] == "person")
    assert [(r[1], r[2]) for r in rows if r[0] == "snap.png"] == [("person", 0), ("van", 0)]
    analyses = stack.rows("SELECT media_id, COUNT(*) FROM analyses GROUP BY media_id")
    assert all(count == 1 for _, count in analyses), analyses


def test_watcher_and_worker_processes_turn_a_dropped_clip_into_detections(embedded: Stack) -> None:
    stack = embedded
    setup_targets(stack)
    stack.spawn("worker", "-m", "workers", "--queue", "gpu")
    stack.spawn("watcher", "-m", "watcher")
    drop(stack, "clip.mp4", lambda p: write_clip_mp4v(p, seconds=2, fps=10, size=(96, 72)))
    drop(stack, "snap.png", lambda p: write_image(p, size=(64, 48)))
    drop(stack, "broken.mp4", lambda p: write_corrupt(p, "text"))
    try:
        wait_for(
            lambda: stack.statuses() == {"clip.mp4": "done", "snap.png": "done", "broken.mp4": "failed"},
            what="all media terminal",
        )
    except AssertionError:
        pytest.fail(f"statuses {stack.statuses()}\n{stack.dump_logs()}")
    check_results(stack)
    (error,) = stack.rows("SELECT error FROM media WHERE rel_path = 'broken.mp4'")[0]
    assert error
    sql = stack.vigil("sql", "SELECT COUNT(*) AS n FROM detections", "--format", "csv")
    assert sql.returncode == 0, sql.stderr  # `vigil sql` is the people's door to the same rows
    assert sql.stdout.split() == ["n", "6"]


def test_vigil_run_starts_everything_with_one_command_and_alerts_reach_a_webhook(embedded: Stack) -> None:
    stack = embedded
    setup_targets(stack)
    with receiving() as hook:
        config = stack.root / "vigil.toml"
        config.write_text(
            f"""
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{hook.url}"
secret = "whsec_{base64.b64encode(b"e2e-secret").decode()}"

[[alerts.rules]]
name = "people"
targets = ["person"]
channels = ["hook"]
cooldown_s = 0
message = "{{target}} at {{source}}: {{score:.2f}}"
"""
        )
        run = stack.spawn("run", "-m", "vigil", "--config", str(config), "run", "--watch", str(stack.inbox))
        drop(stack, "clip.mp4", lambda p: write_clip_mp4v(p, seconds=2, fps=10, size=(96, 72)))
        drop(stack, "snap.png", lambda p: write_image(p, size=(64, 48)))
        try:
            wait_for(lambda: stack.statuses() == {"clip.mp4": "done", "snap.png": "done"}, what="media done")
            check_results(stack)
            # threshold 0 for "person": one run of matching windows per file, so one alert per file
            wait_for(lambda: len(hook.requests) >= 2, what="two webhook deliveries")
        except AssertionError as exc:
            pytest.fail(f"{exc}: statuses {stack.statuses()}\n{stack.dump_logs()}")
        time.sleep(1.0)  # nothing else may arrive: each alert exactly once
        assert len(hook.requests) == 2 and len(set(hook.ids())) == 2
        bodies = [r.json() for r in hook.requests]
        assert all("person at inbox" in json.dumps(b) for b in bodies)
        statuses = stack.rows("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        assert statuses == [("delivered", 2)]
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 0, stack.dump_logs()


def test_postgresql_and_redis_run_the_same_path(
    tmp_path: Path, tiny_llava: Path, pg_empty_url: str, redis_server: object
) -> None:
    stack = Stack(tmp_path, db_url=pg_empty_url, broker_url=redis_server.url, model_dir=tiny_llava)  # type: ignore[attr-defined]
    try:
        setup_targets(stack)
        stack.spawn("run", "-m", "vigil", "run", "--watch", str(stack.inbox))
        drop(stack, "clip.mp4", lambda p: write_clip_mp4v(p, seconds=2, fps=10, size=(96, 72)))
        drop(stack, "snap.png", lambda p: write_image(p, size=(64, 48)))
        try:
            wait_for(lambda: stack.statuses() == {"clip.mp4": "done", "snap.png": "done"}, what="media done")
        except AssertionError:
            pytest.fail(f"statuses {stack.statuses()}\n{stack.dump_logs()}")
        check_results(stack)
        # `vigil sql` on PostgreSQL reads as the role `vigil db reader` makes (trust auth: no password)
        made = stack.vigil("db", "reader", "--no-password")
        assert made.returncode == 0, made.stderr
        sql = stack.vigil("sql", "SELECT COUNT(*) AS n FROM detections", "--format", "csv")
        assert sql.returncode == 0 and sql.stdout.split()[0] == "n", sql.stderr
    finally:
        stack.stop_all()
        drop_role(pg_empty_url, reader_role_name(make_url(pg_empty_url).database or ""))

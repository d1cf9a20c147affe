"""A GPU worker started with its own settings file (a webhook channel and a rule) applies it at start, so
its rule fires: the report was a detection at 0.58 over a 0.3 threshold with `alert_rules` left empty.
Real processes: a watcher with no file, a gpu and a cpu worker with `--config so.toml`, a tiny model."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.alerting import Receiver
from tests.support.processes import Stack, wait_for
from vigil.store.migrate import upgrade
from workers.testing.clips import write_clip_mp4v

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    db_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    upgrade(db_url)
    made = Stack(
        tmp_path,
        db_url=db_url,
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
        extra_env={"VIGIL_METRICS__ENABLED": "false"},
    )
    try:
        yield made
    finally:
        made.stop_all()


def test_a_gpu_worker_with_its_own_file_fires_its_rule(stack: Stack, tmp_path: Path) -> None:
    hook = Receiver().start()
    so = tmp_path / "so.toml"
    so.write_text(
        f"""
[[targets]]
name = "person"
description = "a person"
threshold = 0.0
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{hook.url}"
[[alerts.rules]]
name = "so"
targets = ["person"]
channels = ["hook"]
cooldown_s = 0
"""
    )
    try:
        gpu = ["-m", "workers", "--queue", "gpu", "--name", "gpu@%h", "--config", str(so)]
        stack.spawn("gpu", *gpu)
        stack.spawn("cpu", "-m", "workers", "--queue", "cpu", "--name", "cpu@%h", "--config", str(so))
        wait_for(lambda: stack.rows("SELECT name FROM alert_rules") == [("so",)], what="the worker's rule")
        stack.spawn("watcher", "-m", "watcher")  # no settings file: its env declares the inbox only
        clip = write_clip_mp4v(tmp_path / "clip.mp4", seconds=1, fps=10, size=(96, 72))
        clip.rename(stack.inbox / "clip.mp4")  # arrives whole
        wait_for(lambda: stack.rows("SELECT count(*) FROM alerts") == [(1,)], what="an alert", timeout=240)
        wait_for(lambda: len(hook.requests) == 1, what="the webhook delivery", timeout=120)
    finally:
        hook.stop()
    ((declared_in,),) = stack.rows("SELECT declared_in FROM alert_rules WHERE name = 'so'")
    assert declared_in == str(so.resolve())
    assert stack.rows("SELECT r.name FROM alerts a JOIN alert_rules r ON r.id = a.rule_id") == [("so",)]
    ((key, status),) = stack.rows("SELECT idempotency_key, status FROM deliveries")
    assert (hook.requests[0].headers["webhook-id"], status) == (key, "delivered")
    # analyses.worker is the worker's --name, not host:pid
    assert stack.rows("SELECT worker FROM analyses") == [(f"gpu@{socket.gethostname()}",)]
    log = (tmp_path / "gpu.log").read_text(errors="replace")
    assert "settings differ from the database" not in log

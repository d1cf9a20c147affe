"""Celery's own tools against a real worker on a real Redis: `celery -A vigil.ops.celery_app inspect ping`,
`control enable_events`, `events`, Flower's workers API, and `vigil workers`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import wait_for
from tests.support.services import RedisServer, free_port
from vigil.config.settings import Settings
from vigil.ops.celery_app import NO_REMOTE_CONTROL, make_celery, task_queues
from vigil.ops.contracts import CPU_QUEUE, GPU_QUEUE
from vigil.store.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    db = f"sqlite:///{tmp_path / 'vigil.db'}"
    upgrade(db)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return clean | {
        "VIGIL_DATABASE__URL": db,
        "VIGIL_BROKER__URL": redis_server.url,
        "VIGIL_METRICS__ENABLED": "false",
        "VIGIL_LOG__FORMAT": "text",
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real delivery worker (cpu queue: no model to load) named cpu1@<host>."""
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "--queue", "cpu", "--name", "cpu1@%h"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: b"ready" in (tmp_path / "worker.log").read_bytes(), timeout=60, what="worker ready")
        yield "cpu1@" + os.uname().nodename
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def celery(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CELERY, "-A", "vigil.ops.celery_app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_each_queue_has_its_own_exchange() -> None:
    queues = {q.name: q for q in task_queues()}
    assert {name: (q.exchange.name, q.exchange.type, q.routing_key) for name, q in queues.items()} == {
        GPU_QUEUE: ("gpu", "direct", "gpu"),
        CPU_QUEUE: ("cpu", "direct", "cpu"),
    }
    app = make_celery(Settings(broker={"url": "redis://127.0.0.1:1/0"}))
    route = app.amqp.router.route({}, "vigil.analyze")
    assert (route["queue"].name, route["queue"].exchange.name) == ("gpu", "gpu")
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event


def test_celery_inspect_ping_and_enable_events_answer(env: dict[str, str], worker: str) -> None:
    ping = celery(env, "inspect", "ping", "--timeout", "10")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"->  {worker}: OK" in ping.stdout and "pong" in ping.stdout
    enable = celery(env, "control", "enable_events", "--timeout", "10")
    assert enable.returncode == 0, enable.stdout + enable.stderr
    assert f"->  {worker}: OK" in enable.stdout and "unavailable" not in enable.stdout
    queues = celery(env, "inspect", "active_queues", "--timeout", "10", "--json")
    assert queues.returncode == 0, queues.stderr
    (declared,) = json.loads(queues.stdout)[worker]
    assert (declared["name"], declared["exchange"]["name"]) == ("cpu", "cpu")


def test_celery_events_sees_the_worker_heartbeat(env: dict[str, str], worker: str, tmp_path: Path) -> None:
    dump = tmp_path / "events.log"
    with dump.open("wb") as out:  # `celery events --dump` runs until stopped
        proc = subprocess.Popen(
            [CELERY, "-A", "vigil.ops.celery_app", "events", "--dump"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: b"heartbeat" in dump.read_bytes(), timeout=90, what="a worker heartbeat event")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert f"{worker} [".encode() in dump.read_bytes()


def test_flower_lists_the_worker(env: dict[str, str], worker: str, tmp_path: Path) -> None:
    pytest.importorskip("flower")
    port = free_port()
    log = (tmp_path / "flower.log").open("wb")
    proc = subprocess.Popen(
        [CELERY, "-A", "vigil.ops.celery_app", "flower", f"--port={port}", "--address=127.0.0.1"],
        env=env | {"FLOWER_UNAUTHENTICATED_API": "true"},  # Flower 2 serves its API only with auth or this
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
    try:
        workers: dict[str, object] = {}

        def listed() -> bool:
            nonlocal workers
            try:
                with urllib.request.urlopen(url, timeout=10) as reply:
                    workers = json.loads(reply.read())
            except OSError:
                return False
            return worker in workers

        wait_for(listed, timeout=90, what="flower lists the worker")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert worker in workers


def test_vigil_workers_lists_live_workers_with_queue_and_model(env: dict[str, str], worker: str) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "vigil", "workers", "--timeout", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [worker, "queue", "cpu", "model", "-"]


def test_vigil_workers_says_when_none_answers(env: dict[str, str]) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "vigil", "workers", "--timeout", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 1
    assert "no worker answered within 1 s" in listed.stderr


def test_vigil_health_asks_redis_which_workers_run(env: dict[str, str], worker: str) -> None:
    """Over Redis the running workers answer `vigil_info`: the named delivery worker passes; with no analysis
    worker running, `workers` fails (it used to say ok for a worker that was not running)."""

    def health(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil", "health", "--component", "worker", "--timeout", "10", *args],
            env=env | {"HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    named = health("--name", "cpu1@%h")
    assert f"ok   workers  {worker} running, queue cpu" in named.stdout, named.stdout + named.stderr
    anyone = health()
    assert anyone.returncode == 1
    assert "FAIL workers  no analysis (gpu) worker is running (asked redis://" in anyone.stdout, anyone.stdout


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    """The embedded default: broker and database in the data directory, as `vigil run` makes them."""
    data = tmp_path / "data"
    data.mkdir()
    upgrade(f"sqlite:///{data / 'vigil.db'}")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return clean | {"VIGIL_STORAGE__DATA_DIR": str(data), "PYTHONPATH": str(REPO)}


def test_celery_report_works_on_the_embedded_broker(embedded_env: dict[str, str], tmp_path: Path) -> None:
    report = celery(embedded_env, "report")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "Traceback" not in report.stderr and "KeyError" not in report.stderr
    assert f"broker_url: 'sqlite:///{tmp_path / 'data' / 'vigil-broker.db'}'" in report.stdout


@pytest.mark.parametrize(
    "command", [("inspect", "ping"), ("status",), ("control", "enable_events"), ("events", "--dump")]
)
def test_celery_remote_control_on_the_embedded_broker_says_it_needs_redis_or_rabbitmq(
    embedded_env: dict[str, str], command: tuple[str, ...]
) -> None:
    """It used to say "unable to open database file", or `events` retried for ever."""
    result = celery(embedded_env, *command, timeout=60)
    assert result.returncode == 69, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {NO_REMOTE_CONTROL}"], result.stderr
    assert "need a Redis or RabbitMQ broker" in NO_REMOTE_CONTROL and "Traceback" not in result.stderr

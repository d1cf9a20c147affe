"""`vigil health`: each check against the real thing (SQLite, PostgreSQL, Redis, a saved tiny model), and
the command's exit status as a container health check reads it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import BertConfig

from tests.support.processes import Stack, wait_for
from vigil.cli.health import check_model, worker_checks
from vigil.config.settings import Settings
from vigil.ops.health import CORE_CHECKS, check_broker, check_database, run_checks, url_for_display

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def settings_for(db_url: str, broker_url: str, model: str = "unused") -> Settings:
    return Settings(database={"url": db_url}, broker={"url": broker_url}, model={"id": model})


def test_a_migrated_sqlite_database_and_the_embedded_broker_pass(sqlite_url: str, tmp_path: Path) -> None:
    checks = run_checks(settings_for(sqlite_url, f"sqla+sqlite:///{tmp_path / 'b.db'}"), CORE_CHECKS)
    assert [(c.name, c.ok) for c in checks] == [("database", True), ("broker", True)], checks
    assert "revision" in checks[0].message


def test_a_missing_sqlite_file_fails_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    check = check_database(settings_for(f"sqlite:///{path}", "memory://"))
    assert not check.ok
    assert check.message == f"no database at {path} yet: `vigil run` or `vigil db upgrade` creates it"
    assert not path.exists()


def test_an_unmigrated_postgresql_database_fails_with_the_revision_needed(pg_empty_url: str) -> None:
    check = check_database(settings_for(pg_empty_url, "memory://"))
    assert not check.ok and "needs" in check.message, check


def test_a_migrated_postgresql_database_passes_and_hides_the_password(pg_url: str) -> None:
    check = check_database(settings_for(pg_url, "memory://"))
    assert check.ok, check


def test_postgresql_unreachable_fails_quickly() -> None:
    check = check_database(settings_for("postgresql+psycopg://u:secret@127.0.0.1:1/x", "memory://"))
    assert not check.ok and "unreachable" in check.message
    assert "secret" not in check.message


def test_redis_reachable_passes_and_unreachable_fails_within_the_timeout(redis_server: Any) -> None:
    assert check_broker(settings_for("sqlite://", redis_server.url)).ok
    began = time.monotonic()
    check = check_broker(settings_for("sqlite://", UNREACHABLE_REDIS), timeout_s=1.0)
    assert not check.ok and "unreachable" in check.message
    assert time.monotonic() - began < 5


def test_the_model_check_reads_only_the_configuration(tiny_llava: Path, tmp_path: Path) -> None:
    good = check_model(settings_for("sqlite://", "memory://", str(tiny_llava)))
    assert good.ok and "llava_next_video" in good.message, good
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert not check_model(settings_for("sqlite://", "memory://", str(empty))).ok
    bert = tmp_path / "bert"
    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    config.save_pretrained(bert)
    unsupported = check_model(settings_for("sqlite://", "memory://", str(bert)))
    assert not unsupported.ok and "bert" in unsupported.message.lower(), unsupported


def vigil_health(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return subprocess.run(
        [sys.executable, "-m", "vigil", "health", *args],
        cwd=tmp_path,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_exits_0_when_healthy_and_1_with_one_line_per_check(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {"VIGIL_DATABASE__URL": sqlite_url, "VIGIL_BROKER__URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}"}
    healthy = vigil_health(tmp_path, env, "--component", "watcher")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert [line.split()[:2] for line in healthy.stdout.splitlines()] == [
        ["ok", "database"],
        ["ok", "broker"],
    ]
    sick = vigil_health(tmp_path, env | {"VIGIL_BROKER__URL": UNREACHABLE_REDIS}, "--component", "watcher")
    assert sick.returncode == 1
    lines = sick.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("FAIL broker"), sick.stdout


@pytest.mark.parametrize("component", ["watcher", "worker", "all"])
def test_components_choose_their_checks(component: str, sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, f"sqla+sqlite:///{tmp_path / 'b.db'}", "/nowhere")
    checks = list(CORE_CHECKS)
    if component != "watcher":
        checks += worker_checks(settings, model=None, name=None, timeout_s=1)
    names = [c.name for c in run_checks(settings, checks)]
    assert names == (
        ["database", "broker"] if component == "watcher" else ["database", "broker", "workers", "model"]
    )


def test_urls_show_no_password_and_a_url_without_one_as_it_is() -> None:
    assert url_for_display("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"  # not redis://:**@
    assert url_for_display("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    shown = url_for_display("postgresql+psycopg://u:s3cret@db/vigil")
    assert "s3cret" not in shown and shown.startswith("postgresql+psycopg://u:")


@pytest.mark.slow
def test_a_worker_counts_only_while_it_runs_and_its_model_is_the_one_vigil_run_was_given(
    tmp_path: Path, tiny_llava: Path
) -> None:
    """`vigil run --model TINY` with a configured model that cannot be had (a hub id, offline): health checks
    TINY, the model the running worker loads; once `vigil run` stops, `workers` fails. A worker SIGKILLed
    (its announcement left behind) does not count either."""
    db_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    stack = Stack(
        tmp_path,
        db_url=db_url,
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
        watch_inbox=False,
        extra_env={"VIGIL_METRICS__ENABLED": "false", "VIGIL_WEB__ENABLED": "false", "HF_HUB_OFFLINE": "1"},
    )
    stack.env["VIGIL_MODEL__ID"] = "nobody/not-a-cached-model"
    host = os.uname().nodename
    try:
        run = stack.spawn(
            "run",
            "-m",
            "vigil",
            "run",
            "--model",
            str(tiny_llava),
            "--watch",
            str(stack.inbox),
            "--no-cpu-worker",
        )
        log = tmp_path / "run.log"
        wait_for(
            lambda: "ready." in log.read_text(errors="replace"), what="the gpu worker ready", timeout=180
        )
        healthy = stack.vigil("health", "--component", "worker")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        lines = healthy.stdout.splitlines()
        assert [line.split()[:2] for line in lines] == [
            ["ok", "database"],
            ["ok", "broker"],
            ["ok", "workers"],
            ["ok", "model"],
        ], healthy.stdout
        assert f"gpu@{host} running" in lines[2]
        assert f"{tiny_llava}: configuration readable" in lines[3] and f"used by gpu@{host}" in lines[3]
        listed = stack.vigil("workers")
        assert listed.stdout.split() == [f"gpu@{host}", "queue", "gpu", "model", str(tiny_llava)], listed
        # The configured model alone would not do: that is what health used to check.
        configured = stack.vigil("health", "--component", "worker", "--model", "nobody/not-a-cached-model")
        assert configured.returncode == 1 and "FAIL model" in configured.stdout, configured.stdout

        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        stopped = stack.vigil("health", "--component", "worker")
        assert stopped.returncode == 1
        assert "FAIL workers  no analysis (gpu) worker is running" in stopped.stdout, stopped.stdout

        killed = stack.spawn("cpu", "-m", "workers", "--queue", "cpu", "--name", "cpu1@%h")
        wait_for(lambda: "ready." in (tmp_path / "cpu.log").read_text(errors="replace"), what="cpu worker")
        named = stack.vigil("health", "--component", "worker", "--name", "cpu1@%h")
        assert f"ok   workers  cpu1@{host} running, queue cpu" in named.stdout, named.stdout
        killed.kill()
        killed.wait(timeout=10)
        assert list((tmp_path / "broker.db.workers").glob("cpu1@*.json"))  # left behind by SIGKILL
        gone = stack.vigil("health", "--component", "worker", "--name", "cpu1@%h")
        assert gone.returncode == 1 and f"FAIL workers  cpu1@{host} is not running" in gone.stdout, (
            gone.stdout
        )
    finally:
        stack.stop_all()

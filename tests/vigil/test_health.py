"""`vigil health`: each check against the real thing (SQLite, PostgreSQL, Redis, a saved tiny model), and
the command's exit status as a container health check reads it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import BertConfig

from vigil.cli.health import CHECKS, check_model
from vigil.health import check_broker, check_database, run_checks
from vigil.settings import Settings

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def settings_for(db_url: str, broker_url: str, model: str = "unused") -> Settings:
    return Settings(database={"url": db_url}, broker={"url": broker_url}, model={"id": model})


def test_a_migrated_sqlite_database_and_the_embedded_broker_pass(sqlite_url: str, tmp_path: Path) -> None:
    checks = run_checks(settings_for(sqlite_url, f"sqla+sqlite:///{tmp_path / 'b.db'}"), CHECKS["watcher"])
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
    sqlite_url: str, tmp_path: Path, tiny_llava: Path
) -> None:
    env = {
        "VIGIL_DATABASE__URL": sqlite_url,
        "VIGIL_BROKER__URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "VIGIL_MODEL__ID": str(tiny_llava),
    }
    healthy = vigil_health(tmp_path, env, "--component", "worker")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert [line.split()[:2] for line in healthy.stdout.splitlines()] == [
        ["ok", "database"],
        ["ok", "broker"],
        ["ok", "model"],
    ]
    sick = vigil_health(tmp_path, env | {"VIGIL_BROKER__URL": UNREACHABLE_REDIS}, "--component", "watcher")
    assert sick.returncode == 1
    lines = sick.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("FAIL broker"), sick.stdout


@pytest.mark.parametrize("component", ["watcher", "worker", "all"])
def test_components_choose_their_checks(component: str, sqlite_url: str) -> None:
    names = [c.name for c in run_checks(settings_for(sqlite_url, "memory://", "/nowhere"), CHECKS[component])]
    assert names == (["database", "broker"] if component == "watcher" else ["database", "broker", "model"])

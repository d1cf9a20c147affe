"""docker-compose.yml validates with docker-compose and holds the properties the scale-out guide relies on."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
FLOWER_LOGIN = "admin:s3cret"  # the variable the file requires (an operator sets it in .env)


def compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "VIGIL_METRICS"))}
    return env | {"FLOWER_BASIC_AUTH": FLOWER_LOGIN} | extra


def compose_binary() -> str:
    """docker-compose, else skip (fail with VIGIL_REQUIRE_SERVICES=1, as the README's test command sets)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        reason = "docker-compose is not installed (apt-get install docker-compose)"
        if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required service unavailable: {reason}", pytrace=False)
        pytest.skip(reason)
    return str(binary)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The file as docker-compose resolves it (anchors merged, variables substituted)."""
    result = subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), "config"],
        cwd=ROOT,
        env=compose_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_the_file_validates() -> None:
    result = subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env=compose_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_redis_keeps_messages(config: dict[str, Any]) -> None:
    command = " ".join(config["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert config["services"]["redis"]["volumes"]


def test_every_vigil_service_points_at_postgresql_and_redis(config: dict[str, Any]) -> None:
    for name in ("migrate", "watcher", "worker", "worker-cpu"):
        env = config["services"][name]["environment"]
        assert env["VIGIL_DATABASE__URL"].startswith("postgresql+psycopg://"), name
        assert env["VIGIL_BROKER__URL"] == "redis://redis:6379/0", name
        assert env["HF_HOME"] == "/models", name
        assert env["VIGIL_MODEL__ID"] == "llava-hf/LLaVA-NeXT-Video-7B-hf", name


def test_services_start_after_the_migration(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["migrate"]["command"] == ["vigil", "db", "upgrade"]
    for name in ("watcher", "worker", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]


def test_the_gpu_worker_reserves_a_gpu_and_can_scale(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert worker["command"][:4] == ["vigil", "worker", "--queue", "gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # --scale worker=N needs no fixed name and no published port.
    assert "container_name" not in worker and "ports" not in worker
    assert config["services"]["worker-cpu"]["command"][:4] == ["vigil", "worker", "--queue", "cpu"]


def test_models_are_cached_in_a_named_volume(config: dict[str, Any]) -> None:
    assert "hf-models" in config["volumes"]
    mounts = config["services"]["worker"]["volumes"]
    assert any(str(m).startswith("hf-models:/models") or _target(m) == "/models" for m in mounts)


def test_flower_watches_the_same_redis(config: dict[str, Any]) -> None:
    flower = config["services"]["flower"]
    assert flower["image"].startswith("mher/flower")
    assert flower["environment"]["CELERY_BROKER_URL"] == "redis://redis:6379/0"


def test_flower_needs_a_login_and_listens_on_loopback_only(config: dict[str, Any]) -> None:
    flower = config["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == FLOWER_LOGIN
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    assert flower["ports"] and all(_host_ip(p) == "127.0.0.1" for p in flower["ports"])
    unset = subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env={k: v for k, v in compose_env().items() if k != "FLOWER_BASIC_AUTH"},
        capture_output=True,
        text=True,
    )
    assert unset.returncode != 0 and "FLOWER_BASIC_AUTH" in unset.stderr


def test_only_flower_is_published_and_metrics_stay_on_loopback(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        assert name == "flower" or "ports" not in service, name
    for name in ("watcher", "worker", "worker-cpu"):
        env = config["services"][name]["environment"]
        assert env["VIGIL_METRICS__HOST"] == "127.0.0.1" and not env["VIGIL_METRICS__PASSWORD"], name


def _target(mount: object) -> str | None:
    return mount.get("target") if isinstance(mount, dict) else None


def _host_ip(port: object) -> str | None:
    """The host address of a published port, in the long or the short syntax (HOST:PUBLISHED:TARGET)."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else None

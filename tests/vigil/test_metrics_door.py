"""The Prometheus endpoints are a door like the review page: they bind `metrics.host` (127.0.0.1 unless
set), refuse an address off loopback without `metrics.password`, and then ask every scrape for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from tests.support.services import free_port
from vigil.config.settings import MetricsSettings

ROOT = Path(__file__).resolve().parents[2]

WATCHER_ENDPOINT = textwrap.dedent(
    """
    import sys, time
    from vigil.config.settings import load_settings
    from vigil.ops.metrics_server import serve_watcher_metrics
    from vigil.store.db import make_engine, session_factory
    settings = load_settings()
    assert serve_watcher_metrics(settings, session_factory(make_engine(settings.database)))
    print("serving", flush=True)
    time.sleep(60)
    """
)


def outward_address() -> str | None:
    """An address of this machine that is not loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_off_loopback_needs_a_password() -> None:
    assert MetricsSettings().host == "127.0.0.1"
    for password in (None, ""):
        with pytest.raises(
            ValidationError, match="host 0.0.0.0 is not a loopback address: set metrics.password"
        ):
            MetricsSettings(host="0.0.0.0", password=password)
    assert MetricsSettings(host="0.0.0.0", password="s3cret").host == "0.0.0.0"


def test_config_check_refuses_open_metrics(sqlite_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_DATABASE__URL": sqlite_url,
        "VIGIL_METRICS__HOST": "0.0.0.0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "vigil", "config", "check"], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "set metrics.password" in result.stdout + result.stderr


def _start_watcher_endpoint(sqlite_url: str, tmp_path: Path, **settings: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_DATABASE__URL": sqlite_url,
        "VIGIL_STORAGE__DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }
    env |= {f"VIGIL_METRICS__{k.upper()}": v for k, v in settings.items()}
    process = subprocess.Popen(
        [sys.executable, "-c", WATCHER_ENDPOINT], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "serving"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_the_watcher_endpoint_binds_loopback_by_default(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    process = _start_watcher_endpoint(sqlite_url, tmp_path, watcher_port=str(port))
    try:
        assert "vigil_queue_depth" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        outward = outward_address()
        if outward is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{outward}:{port}/metrics", timeout=5)
    finally:
        _stop(process)


def test_a_password_guards_every_scrape(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    host = outward_address() or "127.0.0.1"
    process = _start_watcher_endpoint(
        sqlite_url, tmp_path, watcher_port=str(port), host=host, password="s3cret"
    )
    try:
        url = f"http://{host}:{port}/metrics"
        deadline = time.monotonic() + 10
        while True:
            try:
                bare = httpx.get(url, timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Basic")
        assert "vigil_" not in bare.text
        assert httpx.get(url, auth=("prometheus", "wrong"), timeout=5).status_code == 401
        scraped = httpx.get(url, auth=("prometheus", "s3cret"), timeout=5)
        assert scraped.status_code == 200 and "vigil_queue_depth" in scraped.text
    finally:
        _stop(process)

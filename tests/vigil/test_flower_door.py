"""Flower as docker-compose.yml runs it: with `FLOWER_BASIC_AUTH` its pages and its API ask for that login;
without any login its API answers 401 naming `FLOWER_UNAUTHENTICATED_API` (docs/scale-out.md). The real
Flower (the version in the dev extras) against a real Redis of the test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.services import RedisServer, free_port


@contextmanager
def flower(redis_url: str, tmp_path: Path, **env: str) -> Iterator[str]:
    celery = shutil.which("celery", path=str(Path(sys.executable).parent))
    assert celery is not None
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")} | env
    with (tmp_path / f"flower-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [celery, "--broker", redis_url, "flower", f"--port={port}", "--address=127.0.0.1"],
            env=child_env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / f"flower-{port}.log").read_text()
            try:
                httpx.get(base + "/healthcheck", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "flower did not answer in 30 s"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_flower_basic_auth_guards_pages_and_api(redis_server: RedisServer, tmp_path: Path) -> None:
    with flower(redis_server.url, tmp_path, FLOWER_BASIC_AUTH="admin:s3cret") as base:
        for path in ["/", "/api/workers", "/api/tasks"]:
            assert httpx.get(base + path).status_code == 401, path
            assert httpx.get(base + path, auth=("admin", "wrong")).status_code == 401, path
            assert httpx.get(base + path, auth=("admin", "s3cret")).status_code == 200, path


def test_flower_without_a_login_keeps_its_api_shut(redis_server: RedisServer, tmp_path: Path) -> None:
    with flower(redis_server.url, tmp_path) as base:
        api = httpx.get(base + "/api/workers")
        assert api.status_code == 401 and "FLOWER_UNAUTHENTICATED_API" in api.text

"""Services for tests: free ports, what a missing service means, PostgreSQL databases, a Redis of our own.

With VIGIL_REQUIRE_SERVICES=1 (as the README's test command and CI set) a missing service fails the run
instead of skipping the tests that need it.

PostgreSQL: a test's database is a copy (`CREATE DATABASE ... TEMPLATE`) of one migrated once per session,
so a test does not pay for running the migrations.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from vigil.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("VIGIL_REQUIRE_SERVICES") == "1"


def missing_service(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


# Ports for the servers tests start are drawn below the kernel's ephemeral range: a port the kernel hands out
# (bind to port 0) can be handed again, to any outgoing connection, before the test's server binds it (CI
# once saw aiosmtpd fail with EADDRINUSE that way). Below the range only an explicit bind takes a port.
PORT_FLOOR = 20000
_given: set[int] = set()


def ephemeral_floor() -> int:
    """The first port of the kernel's ephemeral range (Linux's ``ip_local_port_range``; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free on 127.0.0.1 now, that no outgoing connection will be given, and not given before."""
    ceiling = ephemeral_floor()
    candidates = [p for p in range(PORT_FLOOR, ceiling) if p not in _given]
    random.shuffle(candidates)
    for port in candidates[:500]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # a server of this machine's, or of another test run
        _given.add(port)
        return port
    with socket.socket() as sock:  # no range below the ephemeral one (or all of it taken): the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A port free on 127.0.0.1 whose next port is free too (the metrics of the gpu and cpu workers)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        if port + 1 not in _given:
            _given.add(port + 1)
            return port
    raise RuntimeError("no two consecutive free ports found")


def _admin(admin_url: str) -> Engine:
    return create_engine(admin_url, isolation_level="AUTOCOMMIT")


def database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def pg_database(admin_url: str, *, template: str | None = None, prefix: str = "vigil_test") -> Iterator[str]:
    """A new database (empty, or a copy of `template`), dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin(admin_url)
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        yield database_url(admin_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def pg_template(admin_url: str) -> Iterator[str]:
    """A database migrated to head, to be copied; yields its name. Nothing may stay connected to it."""
    with pg_database(admin_url, prefix="vigil_template") as url:
        upgrade(url)
        name = url.rsplit("/", 1)[1]
        admin = _admin(admin_url)
        try:
            with admin.connect() as conn:  # a copy needs the template without sessions
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": name},
                )
        finally:
            admin.dispose()
        yield name


class RedisServer:
    """A redis-server of our own on a free port, which tests may kill, flush and restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_service("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

"""The servers of the network-fault suite, each on its own test host (tests/support/netns.py): a
PostgreSQL cluster made with initdb, a redis-server and a Mosquitto broker. Each listens on its host's
bridge address only, and each is stopped (and its files removed) by `close()`.
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.netns import RANGE, Host

PG_PORT, REDIS_PORT, MQTT_PORT = 5432, 6379, 1883


def wait_port(address: str, port: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {address}:{port} after {timeout:.0f} s") from None
            time.sleep(0.1)


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


class Server:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"vigil-{type(self).__name__.lower()}-"))
        self.dir.chmod(0o755)

    def _spawn(self, argv: list[str]) -> None:
        with (self.dir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(self.host.argv(*argv), stdout=log, stderr=subprocess.STDOUT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres(Server):
    """A cluster of our own, trusting the test subnet; `url(db)` for a database in it."""

    def start(self) -> Postgres:
        data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*run_as, pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {RANGE} trust\n")
        self._spawn(
            [
                *run_as,
                pg_bin("postgres"),
                "-D",
                str(data),
                "-h",
                self.host.address,
                "-p",
                str(PG_PORT),
                "-k",
                str(self.dir),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
        )
        wait_port(self.host.address, PG_PORT)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host.address}:{PG_PORT}/{database}"


class Redis(Server):
    def start(self) -> Redis:
        self._spawn(
            [
                "redis-server",
                "--bind",
                self.host.address,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                str(self.dir),
            ]
        )
        wait_port(self.host.address, REDIS_PORT)
        return self

    @property
    def url(self) -> str:
        return f"redis://{self.host.address}:{REDIS_PORT}/0"


class Mosquitto(Server):
    def start(self) -> Mosquitto:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {MQTT_PORT} {self.host.address}\nallow_anonymous true\npersistence false\n"
        )
        self._spawn(["mosquitto", "-c", str(conf)])
        wait_port(self.host.address, MQTT_PORT)
        return self

"""Vigil across test hosts (tests/support/netns.py): a `NetDeployment` places each process on its own
host, and `Bench` runs one network scenario and checks the invariants every scenario must keep.

Placement: the watcher on `watch`, gpu workers `gpu1` on `w1` and `gpu2` on `w2`, the cpu worker on `cpu`;
PostgreSQL on `db`, Redis on `redis`, Mosquitto on `mqtt`; the webhook receiver in the test process, on
the root namespace's bridge address. The media folder is the same path on every host (one filesystem), as
docs/scale-out.md asks of a shared mount.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.alerting import Receiver
from tests.support.faults import Deployment, wait_for
from tests.support.netns import HostNet
from tests.support.netservers import Mosquitto, Postgres, Redis
from workers.testing.clips import write_clip_mp4v

HOSTS = ("db", "redis", "mqtt", "watch", "w1", "w2", "cpu")
PLACEMENT = {"watcher": "watch", "gpu1": "w1", "gpu2": "w2", "cpu": "cpu"}
RELAY = Path(__file__).with_name("latency_relay.py")


@dataclass
class Lab:
    """The hosts and servers of one test module, shared by its scenarios."""

    net: HostNet
    pg: Postgres
    redis: Redis
    mqtt: Mosquitto

    def fresh_database(self) -> str:
        name = f"vigil_net_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.pg.url(name)

    def flush_redis(self) -> None:
        subprocess.run(
            ["redis-cli", "-h", self.redis.host.address, "FLUSHALL"], check=True, capture_output=True
        )


class NetDeployment(Deployment):
    """A `Deployment` whose processes run on their hosts; `wrap` may put a command around one of them
    (a mount namespace, say), `env_for` gives one process its own variables (a relay's address)."""

    def __init__(self, lab: Lab, root: Path, **kwargs: Any) -> None:
        self.lab = lab
        self.wrap: dict[str, list[str]] = {}
        self.env_for: dict[str, dict[str, str]] = {}
        super().__init__(root, db_url=lab.fresh_database(), broker_url=lab.redis.url, **kwargs)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        if name == "watcher":
            argv = ["-m", "watcher"]
        else:
            queue = "cpu" if name == "cpu" else "gpu"
            argv = ["-m", "workers", "--queue", queue, "--name", f"{name}@%h"]
        host = self.lab.net[PLACEMENT[name]]
        log = self.root / f"{name}.log"
        self.logs.append(log)
        command = host.argv(*self.wrap.get(name, []), sys.executable, *argv)
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env | self.env_for.get(name, {}),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        for name in ("gpu1", "gpu2", *(["cpu"] if self.receiver is not None else []), "watcher"):
            self.start(name)

    mqtt_alert_ids: Callable[[], list[int]] | None = (
        None  # what an MQTT subscriber received, when alerts go there
    )

    def _check_alerts(self) -> list[str]:
        """The webhook check of `Deployment`, or for MQTT: every delivery delivered, and the subscriber saw
        every alert (returns the ids it saw more than once)."""
        if self.mqtt_alert_ids is None:
            return super()._check_alerts()
        alerts = {int(a) for (a,) in self.rows("SELECT id FROM alerts")}
        assert alerts, "no alert fired"
        wait_for(
            lambda: all(s == "delivered" for (s,) in self.rows("SELECT status FROM deliveries")),
            timeout=90,
            what="every delivery delivered",
        )
        wait_for(lambda: alerts <= set(self.mqtt_alert_ids()), timeout=30, what="every alert on the bus")  # type: ignore[misc]
        seen = self.mqtt_alert_ids()
        return sorted({str(a) for a in seen if seen.count(a) > 1})

    def analysed_by(self) -> dict[str, str]:
        return {
            str(p): str(w)
            for p, w in self.rows(
                "SELECT m.rel_path, a.worker FROM media m JOIN analyses a ON a.media_id = m.id"
            )
        }


def clip(seconds: float, salt: str) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        write_clip_mp4v(path, seconds=seconds, fps=5, size=(48, 36))
        with path.open("ab") as out:
            out.write(f"vigil-salt-{salt}".encode())
        return path

    return make


def drop_many(d: Deployment, prefix: str, count: int, seconds: float = 1) -> set[str]:
    names = set()
    for i in range(count):
        name = f"{prefix}{i}.mp4"
        d.drop(name, clip(seconds, f"{name}-{uuid.uuid4().hex}"))
        names.add(name)
    return names


@dataclass
class Outcome:
    scenario: str
    files: int
    lost: int
    duplicated: int
    alerts_doubled: int
    recovered_s: float
    notes: list[str] = field(default_factory=list)


def start_relay(
    lab: Lab, host: str, target: tuple[str, int], delay_ms: int, jitter_ms: int
) -> tuple[subprocess.Popen[bytes], int]:
    """A latency relay on ``host``'s loopback to ``target``; returns it and its port."""
    port = 20000 + os.getpid() % 20000 + target[1] % 100
    relay = subprocess.Popen(
        lab.net[host].argv(
            sys.executable, str(RELAY), str(port), target[0], str(target[1]), str(delay_ms), str(jitter_ms)
        ),
        stdout=subprocess.PIPE,
    )
    assert relay.stdout is not None and relay.stdout.readline().strip() == b"listening"
    return relay, port


def prove_recovered(d: NetDeployment, faulted: str, *, timeout: float = 120) -> float:
    """After heal: stop the other gpu worker, drop files, and time until the faulted one analysed them.
    Proves it reconnected to the broker and the database by itself (no restart)."""
    healed = time.monotonic()
    other = "gpu2" if faulted == "gpu1" else "gpu1"
    if faulted.startswith("gpu"):
        d.kill(other, sig=__import__("signal").SIGTERM)
    names = drop_many(d, "after", 2)
    d.wait_settled(names, timeout=timeout)
    by = d.analysed_by()
    if faulted.startswith("gpu"):
        assert all(by[n].startswith(faulted) for n in names), by
    if faulted == "cpu":  # the alert path: every delivery of the new files' alerts delivered
        wait_for(
            lambda: all(s == "delivered" for (s,) in d.rows("SELECT status FROM deliveries")),
            timeout=timeout,
            what="the new alerts delivered",
        )
    return time.monotonic() - healed


def receiver_for(lab: Lab) -> Receiver:
    return Receiver(host=lab.net.root_address).start()


def mqtt_only(lab: Lab, topic: str) -> dict[str, str]:
    """Alerts to an MQTT channel on the `mqtt` host instead of the webhook."""
    channel = {"name": "bus", "kind": "mqtt", "mqtt_host": lab.mqtt.host.address, "mqtt_topic": topic}
    rule = {"name": "seen", "targets": ["person"], "cooldown_s": 0, "channels": ["bus"]}
    return {
        "VIGIL_ALERTS__CHANNELS": json.dumps([channel]),
        "VIGIL_ALERTS__RULES": json.dumps([rule]),
        "VIGIL_ALERTS__RETRY_BASE_S": "1",
        "VIGIL_ALERTS__RETRY_MAX_S": "2",
    }

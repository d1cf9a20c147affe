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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.alerting import Receiver
from tests.support.faults import Deployment, drop_many, wait_for
from tests.support.netns import HostNet
from tests.support.netservers import Mosquitto, Postgres, Redis

HOSTS = ("db", "redis", "mqtt", "watch", "w1", "w2", "cpu")
PLACEMENT = {"watcher": "watch", "gpu1": "w1", "gpu2": "w2", "cpu": "cpu", "homeassistant": "cpu"}
HA_PREFIX, HA_OFF_AFTER_S = "vigilnet", 4.0
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
        elif name == "homeassistant":
            argv = ["-m", "vigil", "homeassistant"]
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


def home_assistant_env() -> dict[str, str]:
    """The Home Assistant bridge on the `bus` channel (see `mqtt_only`), turning sensors off quickly."""
    return {
        "VIGIL_HOMEASSISTANT__ENABLED": "true",
        "VIGIL_HOMEASSISTANT__CHANNEL": "bus",
        "VIGIL_HOMEASSISTANT__TOPIC_PREFIX": HA_PREFIX,
        "VIGIL_HOMEASSISTANT__DISCOVERY_PREFIX": f"{HA_PREFIX}-discovery",
        "VIGIL_HOMEASSISTANT__OFF_AFTER_S": str(HA_OFF_AFTER_S),
        "VIGIL_HOMEASSISTANT__POLL_INTERVAL_S": "0.5",
    }


def retained(lab: Lab, pattern: str, *, listen_s: float = 2.0) -> dict[str, bytes]:
    """The retained messages under ``pattern`` as a client connecting now reads them (Home Assistant)."""
    import paho.mqtt.client as mqtt

    got: dict[str, bytes] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: (
        got.__setitem__(msg.topic, bytes(msg.payload)) if msg.retain else None
    )
    client.connect(lab.mqtt.host.address, 1883)
    client.subscribe(pattern, qos=1)
    client.loop_start()
    time.sleep(listen_s)
    client.loop_stop()
    client.disconnect()
    return got


def home_assistant_agrees(d: Deployment, lab: Lab, *, timeout: float = 60) -> float:
    """Wait until every sensor's retained state and score are what the rows imply: the score of the newest
    detection of each source x target, and OFF once the last match is older than off_after_s. Returns how
    long that took."""
    began = time.monotonic()
    time.sleep(HA_OFF_AFTER_S)
    newest = d.rows(
        "SELECT s.name, t.name, d.p_yes FROM detections d JOIN analyses a ON a.id = d.analysis_id "
        "JOIN media m ON m.id = a.media_id JOIN sources s ON s.id = m.source_id "
        "JOIN targets t ON t.id = d.target_id "
        "WHERE d.id IN (SELECT MAX(d2.id) FROM detections d2 JOIN analyses a2 ON a2.id = d2.analysis_id "
        "JOIN media m2 ON m2.id = a2.media_id GROUP BY m2.source_id, d2.target_id)"
    )
    expected = {f"{HA_PREFIX}/{s}/{t}/score": f"{p:.4f}".encode() for s, t, p in newest}
    expected |= {f"{HA_PREFIX}/{s}/{t}/state": b"OFF" for s, t, _ in newest}
    assert expected, "no detections to check the sensors against"

    def agrees() -> bool:
        seen = retained(lab, f"{HA_PREFIX}/#")
        return all(seen.get(topic) == payload for topic, payload in expected.items())

    wait_for(agrees, timeout=timeout, what=f"Home Assistant's retained topics to match the rows {expected}")
    return time.monotonic() - began


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

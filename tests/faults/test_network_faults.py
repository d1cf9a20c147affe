"""At scale across real networks: Vigil's processes on hosts apart (network namespaces joined by a bridge,
tests/support/netns.py), PostgreSQL, Redis and Mosquitto on hosts of their own, and the links between
them partitioned, lossy, slow or flapping while files are analysed.

After every scenario: every file `done` exactly once (one row, one analysis), every alert delivered once
per channel (webhook ids unique), every process still running, and the faulted process back at work by
itself: the other gpu worker is stopped and the faulted one must analyse new files (the recovery time
after heal is measured from there). The table is printed at the end of the run (docs/scale-out.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.support.faults import FaultResult, Report, drop_many, wait_for
from tests.support.netfaults import (
    HOSTS,
    Lab,
    NetDeployment,
    home_assistant_agrees,
    home_assistant_env,
    mqtt_only,
    prove_recovered,
    receiver_for,
    start_relay,
)
from tests.support.netns import available, host_net
from tests.support.netservers import MQTT_PORT, PG_PORT, REDIS_PORT, Mosquitto, Postgres, Redis

pytestmark = pytest.mark.slow

OUTAGE_S = 25.0
LONG_CLIP_S = 30
LEASE_S = 10.0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    why = available()
    if why is not None:
        pytest.skip(f"network scenarios need namespaces and nftables: {why}")
    with host_net(HOSTS) as net:
        servers = [Postgres(net["db"]), Redis(net["redis"]), Mosquitto(net["mqtt"])]
        try:
            pg, redis, mq = (s.start() for s in servers)  # type: ignore[attr-defined]
            yield Lab(net, pg, redis, mq)
        finally:
            for server in servers:
                server.close()


@pytest.fixture
def deploy(lab: Lab, tmp_path: Path, tiny_llava: Path) -> Iterator[Callable[..., NetDeployment]]:
    made: list[NetDeployment] = []

    def make(**kwargs: Any) -> NetDeployment:
        lab.flush_redis()
        env = {"VIGIL_WORK__LEASE_S": str(LEASE_S), "VIGIL_WORK__REQUEUE_AFTER_S": "20"} | kwargs.pop(
            "env", {}
        )
        d = NetDeployment(lab, tmp_path, model_dir=tiny_llava, env=env, **kwargs)
        made.append(d)
        return d

    yield make
    lab.net.heal()
    for d in made:
        d.stop_all()
        if d.receiver is not None:
            d.receiver.stop()


def run(
    d: NetDeployment,
    report: Report,
    name: str,
    fault: Callable[[], None],
    heal: Callable[[], None],
    *,
    hold_s: float = OUTAGE_S,
    faulted: str = "gpu1",
) -> None:
    """gpu1 alone warms up and takes a long clip; the fault lands while it works on it; gpu2 starts and
    takes what gpu1 cannot; the fault holds, heals; then the invariants and the recovery."""
    for process in ("gpu1", *(["cpu"] if d.receiver is not None else []), "watcher"):
        d.start(process)
    names = drop_many(d, "warm", 2)
    d.wait_settled(names, timeout=180)
    names |= drop_many(d, "long", 2, seconds=LONG_CLIP_S)
    wait_for(lambda: "running" in d.statuses().values(), what="a long clip running", step=0.05)
    fault()
    names |= drop_many(d, "during", 4)
    d.start("gpu2")
    time.sleep(hold_s)
    heal()
    healed = time.monotonic()
    d.wait_settled(names, timeout=240)
    settled_s = time.monotonic() - healed
    lost, dup = d.verdict(names)
    stuck = [n for n in d.processes if not d.alive(n)]
    assert not stuck, f"processes ended: {stuck}\n{d.log_tail()}"
    unexpected = [log.name for log in d.logs if "raised unexpected" in log.read_text(errors="replace")]
    assert not unexpected, f"a task ended in a traceback: {unexpected}\n{d.log_tail()}"
    recovered = prove_recovered(d, faulted)
    report.add(
        FaultResult(
            name, len(names) + 2, lost, dup, recovered, f"backlog settled {settled_s:.1f} s after heal"
        )
    )


def test_gpu_worker_partitioned_from_postgresql(deploy: Any, lab: Lab, fault_report: Report) -> None:
    d = deploy(receiver=receiver_for(lab))
    run(
        d,
        fault_report,
        "gpu1 | PostgreSQL 90 s",
        lambda: lab.net.partition("w1", "db"),
        lab.net.heal,
        hold_s=90,
    )


def test_gpu_worker_partitioned_from_redis(deploy: Any, lab: Lab, fault_report: Report) -> None:
    d = deploy()
    run(d, fault_report, "gpu1 | Redis 25 s", lambda: lab.net.partition("w1", "redis"), lab.net.heal)


def test_gpu_worker_partitioned_from_both(deploy: Any, lab: Lab, fault_report: Report) -> None:
    d = deploy()
    run(
        d,
        fault_report,
        "gpu1 | PostgreSQL + Redis 25 s",
        lambda: lab.net.partition("w1", "db", "redis"),
        lab.net.heal,
    )


@pytest.mark.parametrize("offset_s", [-1.5, 1.5], ids=["heals-before-lease", "heals-after-lease"])
def test_partition_heals_around_the_lease(
    deploy: Any, lab: Lab, fault_report: Report, offset_s: float
) -> None:
    """The worker's lease (work.lease_s) runs out just after or just before the link comes back: either it
    keeps its claim, or another worker takes the file over and the first one's results are discarded."""
    d = deploy()
    run(
        d,
        fault_report,
        f"gpu1 | PostgreSQL for lease_s {offset_s:+.1f} s",
        lambda: lab.net.partition("w1", "db"),
        lab.net.heal,
        hold_s=LEASE_S + offset_s,
    )


def test_lossy_worker_link(deploy: Any, lab: Lab, fault_report: Report) -> None:
    d = deploy(receiver=receiver_for(lab))
    run(d, fault_report, "gpu1 link drops 10 % both ways", lambda: lab.net.loss("w1", 10), lab.net.heal)


def test_asymmetric_loss_at_redis(deploy: Any, lab: Lab, fault_report: Report) -> None:
    d = deploy()
    run(
        d,
        fault_report,
        "Redis drops 30 % of what it sends",
        lambda: lab.net.loss("redis", 30, directions="out"),
        lab.net.heal,
    )


def test_flapping_worker_link(deploy: Any, lab: Lab, fault_report: Report) -> None:
    d = deploy()
    flapper: list[threading.Thread] = []

    def fault() -> None:
        flapper.append(
            threading.Thread(target=lab.net.flap, args=("w1",), kwargs={"period_s": 3, "for_s": OUTAGE_S})
        )
        flapper[0].start()

    run(d, fault_report, "gpu1 link flaps (1.5 s down/up) 25 s", fault, lambda: flapper[0].join(), hold_s=0)


def test_watcher_on_a_slow_far_link(deploy: Any, lab: Lab, fault_report: Report) -> None:
    """The watcher reaches PostgreSQL and Redis through 300 ms ± 50 ms each way (a relay; no netem here)."""
    d = deploy()
    pg_relay, pg_port = start_relay(lab, "watch", (lab.pg.host.address, PG_PORT), 300, 50)
    redis_relay, redis_port = start_relay(lab, "watch", (lab.redis.host.address, REDIS_PORT), 300, 50)
    db_url = d.db_url.replace(f"{lab.pg.host.address}:{PG_PORT}", f"127.0.0.1:{pg_port}")
    d.env_for["watcher"] = {
        "VIGIL_DATABASE__URL": db_url,
        "VIGIL_BROKER__URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    try:
        run(
            d,
            fault_report,
            "watcher 300 ms +-50 ms from db and broker",
            lambda: None,
            lambda: None,
            hold_s=5,
            faulted="watcher",
        )
    finally:
        for relay in (pg_relay, redis_relay):
            relay.terminate()
            relay.wait()
            if relay.stdout is not None:
                relay.stdout.close()


def test_webhook_receiver_partitioned_from_the_cpu_worker(
    deploy: Any, lab: Lab, fault_report: Report
) -> None:
    d = deploy(receiver=receiver_for(lab))
    run(
        d,
        fault_report,
        "webhook receiver | cpu worker 25 s",
        lambda: lab.net.partition("cpu", "root"),
        lab.net.heal,
        faulted="cpu",
    )


def test_mqtt_broker_partitioned_from_the_cpu_worker(deploy: Any, lab: Lab, fault_report: Report) -> None:
    """Alerts to MQTT while the broker is unreachable from the cpu worker and the Home Assistant bridge
    beside it: each alert arrives once it heals, and the bridge's retained topics end as the rows say
    (it publishes what it missed from its durable position; OFF derives from the last match's time)."""
    received: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, msg: received.append(msg.payload)
    sub.connect(lab.mqtt.host.address, MQTT_PORT)
    sub.subscribe("vigil-net/#", qos=1)
    sub.loop_start()
    d = deploy(env=mqtt_only(lab, "vigil-net/{source}/{target}") | home_assistant_env())
    d.mqtt_alert_ids = lambda: [json.loads(p)["alert"]["id"] for p in list(received)]
    d.start("cpu")
    d.start("homeassistant")  # on the cpu worker's host: cut from the broker with it
    try:
        cut = lambda: lab.net.partition("cpu", "mqtt")  # noqa: E731
        run(d, fault_report, "MQTT broker | cpu worker + HA bridge 25 s", cut, lab.net.heal, faulted="cpu")
        agreed_s = home_assistant_agrees(d, lab)
        fault_report.rows[-1].notes += f"; HA topics matched the rows {agreed_s:.1f} s later"
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_worker_whose_mount_of_the_media_share_is_missing(
    deploy: Any, lab: Lab, fault_report: Report
) -> None:
    """gpu1 sees an empty folder where the share should be (an unmounted or stale NFS mount: here an empty
    tmpfs over the inbox in its own mount namespace), gpu2 sees the files. A file gpu1 claims is given back
    with the reason and retried, by gpu2 when its turn comes; one whose every attempt fell to gpu1 ends
    `failed` with that reason. None fails as unreadable, none is analysed from gpu1's empty view."""
    d = deploy()
    hide = f'mount -t tmpfs stale "{d.inbox}" && exec "$0" "$@"'
    d.wrap["gpu1"] = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide]
    for process in ("gpu1", "gpu2", "watcher"):
        d.start(process)
    began = time.monotonic()
    names = drop_many(d, "share", 6)
    d.wait_settled(names, timeout=240)
    statuses, by = d.statuses(), d.analysed_by()
    errors = dict(d.rows("SELECT rel_path, error FROM media"))
    attempts = dict(d.rows("SELECT rel_path, attempts FROM media"))
    missing_here = "is not on this worker (gpu1@"
    assert not [n for n in names if by.get(n, "gpu2").startswith("gpu1")], by  # nothing analysed by gpu1
    for name in names:
        if statuses[name] == "failed":
            assert missing_here in (errors[name] or ""), (name, errors[name])
        else:
            assert statuses[name] == "done" and by[name].startswith("gpu2"), (name, statuses[name], by)
    retried_elsewhere = sum(1 for n in names if statuses[n] == "done" and attempts[n] > 1)
    failed = sum(1 for n in names if statuses[n] == "failed")
    assert retried_elsewhere + failed > 0, (attempts, errors)  # gpu1 did claim files: the fault was real
    assert all(d.alive(p) for p in d.processes)
    fault_report.add(
        FaultResult(
            "gpu1's mount of the media share missing",
            len(names),
            0,
            0,
            None,
            f"{retried_elsewhere} retried on gpu2, {failed} failed with the reason "
            f"(all {len(names)} terminal in {time.monotonic() - began:.0f} s)",
        )
    )


def test_a_query_over_a_partitioned_link_fails_within_the_network_bound(lab: Lab) -> None:
    """The bound itself: a pooled connection whose server stops answering fails its next query after about
    `database.network_timeout_s` (TCP user timeout), and a new connection after `connect_timeout_s`, where
    libpq's defaults waited for TCP's retransmissions (a 90 s partition held a worker 107 s)."""
    from sqlalchemy import text as sql

    from vigil.config.settings import DatabaseSettings
    from vigil.store.db import make_engine

    url = lab.fresh_database()
    engine = make_engine(DatabaseSettings(url=url, network_timeout_s=3, connect_timeout_s=2))
    try:
        with engine.connect() as conn:
            assert conn.execute(sql("SELECT 1")).scalar() == 1
            lab.net.partition("db", "root")
            began = time.monotonic()
            with pytest.raises(Exception, match="(?i)timeout|timed out|closed|terminat|connection"):
                conn.execute(sql("SELECT 2"))
            failed_after = time.monotonic() - began
        began = time.monotonic()
        with pytest.raises(Exception, match="(?i)timeout|timed out"), engine.connect():
            pass
        connect_failed_after = time.monotonic() - began
    finally:
        lab.net.heal()
        engine.dispose()
    assert failed_after < 10, failed_after
    assert connect_failed_after < 10, connect_failed_after

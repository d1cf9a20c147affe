"""Workers that never lose work, proved with real processes: `python -m workers --queue gpu` children, a
reconciler (`python -m watcher` with no sources: its reconcile loop only), a migrated database, the tiny
LLaVA-NeXT-Video, and a redis-server of our own that the tests flush, kill and restart.

The database is the source of truth: a worker killed mid-analysis leaves its row `running` under a lease
that nobody renews; once it expires the reconciler puts the row back to `queued` and sends it again. That
path must be enough on its own: a prefork worker SIGKILLed with Redis leaves its message unacknowledged
until the visibility timeout (4 h by default), and the embedded SQLAlchemy transport may never redeliver.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.processes import Stack, child_pids, wait_for
from vigil.config.settings import Settings, TargetSettings
from vigil.formats.probe import probe
from vigil.media.registry import ensure_source, register_file, sync_targets
from vigil.ops.celery_app import make_celery
from vigil.ops.contracts import ANALYZE, GPU_QUEUE, AnalyzePayload
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Analysis, Detection, Media
from workers.testing.clips import write_clip_mp4v, write_corrupt

pytestmark = pytest.mark.slow

DEADLINE_S = 90.0  # generous: ~25 s each on an idle 2-core machine
LEASE_S = 3.0
REQUEUE_AFTER_S = 1.0
# Thresholds of 1: no window matches, so no evidence is generated. Random weights generate text with NUL
# bytes, which PostgreSQL refuses (reported; evidence text must be cleaned where it is generated).
TARGETS = [
    TargetSettings(name="person", description="a person walking", threshold=1.0),
    TargetSettings(name="van", description="a white delivery van", threshold=1.0),
]


@dataclass(frozen=True)
class MediaState:
    status: str
    attempts: int
    sends: int
    error: str | None
    analyses: int
    detections: int
    distinct_detections: int


class Rig:
    """One installation: the test registers and sends like the watcher; workers and the reconciler are
    real processes started from `stack`."""

    def __init__(self, stack: Stack, settings: Settings) -> None:
        self.stack, self.settings = stack, settings
        self.engine = make_engine(settings.database)
        self.factory = session_factory(self.engine)
        self.app = make_celery(settings)
        self.enqueuer = Enqueuer(self.app, self.factory)
        self.drop = stack.root / "drop"
        self.drop.mkdir()
        self.clips = 0
        with write_session(self.factory) as session:
            sync_targets(session, TARGETS, references_dir=stack.root / "references")
            self.source_id = ensure_source(session, "drop", self.drop).id

    def clip(self, name: str, *, seconds: float) -> Path:
        """A clip whose content differs from every other (identical files would be skipped as copies)."""
        self.clips += 1
        return write_clip_mp4v(self.drop / name, seconds=seconds, fps=10, size=(88 + 8 * self.clips, 72))

    def register(self, path: Path) -> int:
        info = probe(path)
        return register_file(
            self.factory, source_id=self.source_id, root=self.drop, path=path, info=info
        ).media_id

    def send_by_name(self, media_id: int) -> None:
        """A raw duplicate message, as a broker redelivery or a second producer would make."""
        payload = AnalyzePayload(media_id=media_id).model_dump(mode="json")
        self.app.send_task(ANALYZE, kwargs={"payload": payload}, queue=GPU_QUEUE)

    def worker(self, name: str, *, concurrency: int = 1) -> object:
        process = self.stack.spawn(
            name, "-m", "workers", "--queue", "gpu", "--concurrency", str(concurrency), new_session=True
        )
        log = self.stack.root / f"{name}.log"
        wait_for(
            lambda: "ready." in log.read_text(errors="replace"), timeout=DEADLINE_S, what=f"{name} ready"
        )
        return process

    def reconciler(self) -> None:
        self.stack.spawn("reconciler", "-m", "watcher")

    def state(self, media_id: int) -> MediaState:
        with self.factory() as session:
            media = session.get_one(Media, media_id)
            analyses = session.scalar(select(func.count()).where(Analysis.media_id == media_id))
            pairs = session.execute(
                select(Detection.target_id, Detection.window_index).where(Detection.media_id == media_id)
            ).all()
            return MediaState(
                str(media.status),
                media.attempts,
                media.sends,
                media.error,
                int(analyses or 0),
                len(pairs),
                len(set(pairs)),
            )

    def wait_terminal(self, ids: list[int], *, timeout: float = DEADLINE_S) -> dict[int, MediaState]:
        try:
            wait_for(
                lambda: all(self.state(i).status in ("done", "failed", "superseded") for i in ids),
                timeout=timeout,
                what=f"media {ids} terminal",
            )
        except AssertionError:
            pytest.fail(f"{ {i: self.state(i) for i in ids} }\n{self.stack.dump_logs()}")
        return {i: self.state(i) for i in ids}

    def close(self) -> None:
        self.stack.stop_all()
        self.app.close()
        self.engine.dispose()


def assert_once(state: MediaState, *, windows: int) -> None:
    """Done, one analysis, one detection per target and window, none twice."""
    assert state.status == "done", state
    assert state.analyses == 1, state
    assert state.detections == state.distinct_detections == windows * len(TARGETS), state


@pytest.fixture(params=["embedded", "redis+postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path: Path, tiny_llava: Path) -> Iterator[Rig]:
    if request.param == "embedded":
        db_url, broker_url = _embedded(tmp_path)
    else:
        db_url, broker_url = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_server").url
    yield from _rig(tmp_path, tiny_llava, db_url=db_url, broker_url=broker_url)


def _embedded(tmp_path: Path) -> tuple[str, str]:
    """A migrated SQLite database and the embedded broker, in `tmp_path`: (database URL, broker URL)."""
    from vigil.store.migrate import upgrade

    db_url = f"sqlite:///{tmp_path / 'vigil.db'}"
    upgrade(db_url)
    return db_url, f"sqla+sqlite:///{tmp_path / 'broker.db'}"


def _rig(
    tmp_path: Path,
    model: Path,
    *,
    db_url: str,
    broker_url: str,
    requeue_after_s: float = 900,
    env: dict[str, str] | None = None,
) -> Iterator[Rig]:
    env = {
        "VIGIL_MODEL__WINDOW_S": "0.5",
        "VIGIL_WORK__LEASE_S": str(LEASE_S),
        "VIGIL_WORK__RECONCILE_INTERVAL_S": "1",
        "VIGIL_WORK__REQUEUE_AFTER_S": str(requeue_after_s),
        "VIGIL_WORK__MAX_ATTEMPTS": "3",
    } | (env or {})
    stack = Stack(
        tmp_path, db_url=db_url, broker_url=broker_url, model_dir=model, watch_inbox=False, extra_env=env
    )
    settings = Settings(
        database={"url": db_url},
        broker={"url": broker_url},
        work={"requeue_after_s": requeue_after_s},
    )
    rig = Rig(stack, settings)
    try:
        yield rig
    finally:
        rig.close()


# -- 1. a worker SIGKILLed mid-analysis -------------------------------------------------------------


@pytest.mark.parametrize("victim", ["process-group", "pool-child"])
def test_a_worker_killed_mid_analysis_ends_done_exactly_once(rig: Rig, victim: str) -> None:
    """SIGKILL the whole worker (then start another) or only its prefork child (the parent lives on and
    Celery redelivers, but that delivery finds the row still leased and does nothing): either way the lease
    expires, the reconciler sends the row again, and it ends done with one analysis."""
    long_clip = rig.clip("long.mp4", seconds=40)  # 80 windows of 0.5 s: a few seconds of analysis
    short_clip = rig.clip("short.mp4", seconds=1)
    worker = rig.worker("worker-1")
    long_id, short_id = rig.register(long_clip), rig.register(short_clip)
    assert rig.enqueuer.analyze(long_id) and rig.enqueuer.analyze(short_id)
    rig.reconciler()  # after the sends: else it may find a row registered but not yet sent, and send it
    wait_for(lambda: rig.state(long_id).status == "running", timeout=DEADLINE_S, what="analysis started")
    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 1.0, timeout=5, what="the model loaded and at work")
    assert rig.state(long_id).status == "running", "analysis too quick to be killed mid-way"

    if victim == "process-group":
        os.killpg(worker.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        worker.wait(timeout=10)  # type: ignore[attr-defined]
        assert rig.state(long_id).status == "running"  # nobody left to finish or release it
        rig.worker("worker-2")
    else:
        (child,) = child_pids(worker.pid)  # type: ignore[attr-defined]
        os.kill(child, signal.SIGKILL)

    states = rig.wait_terminal([long_id, short_id])
    assert_once(states[long_id], windows=80)
    assert_once(states[short_id], windows=2)
    assert states[long_id].attempts == 2  # the killed attempt, then the one that finished
    assert states[long_id].sends == 2  # the second came from the reconciler, after the lease ran out
    log = (rig.stack.root / "reconciler.log").read_text()
    assert "1 leases expired" in log, log


# -- 2. the broker loses everything ------------------------------------------------------------------


@pytest.fixture
def redis_rig(tmp_path: Path, tiny_llava: Path, pg_url: str, redis_server: object) -> Iterator[Rig]:
    # requeue_after_s small: a flushed broker is noticed only by the age of a row's last send.
    yield from _rig(
        tmp_path,
        tiny_llava,
        db_url=pg_url,
        broker_url=redis_server.url,
        requeue_after_s=REQUEUE_AFTER_S,  # type: ignore[attr-defined]
    )


def redis_client(url: str) -> object:
    import redis

    return redis.Redis.from_url(url)


def test_queued_work_survives_a_flushed_redis(redis_rig: Rig, redis_server: object) -> None:
    """Messages lost with FLUSHALL are sent again once they are older than `requeue_after_s`; while the
    broker then holds one message per queued row, the reconciler sends nothing more (no flood)."""
    rig = redis_rig
    ids = [rig.register(rig.clip(f"c{i}.mp4", seconds=1)) for i in range(3)]
    assert all(rig.enqueuer.analyze(i) for i in ids)
    client = redis_client(redis_server.url)  # type: ignore[attr-defined]
    assert client.llen(GPU_QUEUE) == 3  # type: ignore[attr-defined]
    client.flushall()  # type: ignore[attr-defined]
    assert client.llen(GPU_QUEUE) == 0  # type: ignore[attr-defined]
    rig.reconciler()
    wait_for(lambda: all(rig.state(i).sends == 2 for i in ids), timeout=30, what="sent again")
    quiet_until = time.monotonic() + 3 * REQUEUE_AFTER_S  # rows stale again, the broker holds them all
    wait_for(lambda: time.monotonic() > quiet_until, timeout=10, what="reconcile passes")
    assert [rig.state(i).sends for i in ids] == [2, 2, 2]
    assert client.llen(GPU_QUEUE) == 3  # type: ignore[attr-defined]
    rig.worker("worker")
    states = rig.wait_terminal(ids)
    for state in states.values():
        assert_once(state, windows=2)
        assert state.attempts == 1


def test_work_sent_while_redis_is_down_is_done_after_it_restarts_empty(
    redis_rig: Rig, redis_server: object
) -> None:
    """Redis killed under a connected worker; the sends fail (logged, the rows stay queued with no send
    time); Redis comes back empty on the same port; the worker reconnects and the reconciler sends."""
    rig = redis_rig
    rig.reconciler()
    rig.worker("worker")
    redis_server.stop(kill=True)  # type: ignore[attr-defined]
    ids = [rig.register(rig.clip(f"c{i}.mp4", seconds=1)) for i in range(3)]
    assert not any(rig.enqueuer.analyze(i) for i in ids)
    assert all(rig.state(i).sends == 0 for i in ids)
    redis_server.start()  # type: ignore[attr-defined]
    states = rig.wait_terminal(ids)
    for state in states.values():
        assert_once(state, windows=2)
        assert state.sends >= 1


# -- 3. the same task delivered twice ---------------------------------------------------------------


def test_the_same_task_delivered_twice_analyses_once(rig: Rig) -> None:
    """Two messages per media, consumed by two pool processes at once: one claim wins, the other skips
    and counts no attempt. (The pool children once shared the connection their parent opened to apply the
    settings: garbled replies left a claimed row running, claimed again after its lease: attempts 2.)"""
    ids = [rig.register(rig.clip(f"c{i}.mp4", seconds=1.5)) for i in range(3)]
    for media_id in ids:
        rig.send_by_name(media_id)
        rig.send_by_name(media_id)
    rig.worker("worker", concurrency=2)
    states = rig.wait_terminal(ids)
    for state in states.values():
        assert_once(state, windows=3)
        assert state.attempts == 1
    # the rows end with the winning messages; the losing copies may still be on their way to a child
    log = rig.stack.root / "worker.log"

    def skipped() -> int:
        return log.read_text().count("nothing to do")

    wait_for(lambda: skipped() >= len(ids), timeout=60, what="every second copy skipped")
    time.sleep(1.0)  # then no more: one more skip would mean a message was handed out twice
    assert skipped() == len(ids), log.read_text()


# -- 4. a corrupt file ------------------------------------------------------------------------------


def test_a_file_damaged_after_registration_is_superseded_and_the_worker_goes_on(rig: Rig) -> None:
    """A file registered healthy and overwritten with junk before analysis: the worker sees that it is not the
    version it claimed, ends the row `superseded` on its first attempt without analysing it (the new content
    is the watcher's to register), and the clip queued after it is analysed by the same worker."""
    broken = rig.clip("broken.mp4", seconds=1)
    broken_id = rig.register(broken)
    write_corrupt(broken, "text")
    good_id = rig.register(rig.clip("good.mp4", seconds=1))
    assert rig.enqueuer.analyze(broken_id) and rig.enqueuer.analyze(good_id)
    rig.reconciler()
    worker = rig.worker("worker")
    states = rig.wait_terminal([broken_id, good_id])
    damaged = states[broken_id]
    assert damaged.status == "superseded" and damaged.attempts == 1 and damaged.analyses == 0, damaged
    assert damaged.error and "changed since registration" in damaged.error, damaged
    assert_once(states[good_id], windows=2)
    assert worker.poll() is None  # type: ignore[attr-defined]


# -- 5. an analysis that never ends -----------------------------------------------------------------

TIME_LIMIT_S = 8  # Celery's soft limit, 6 s, stops the attempt; the hard one would kill its process


@pytest.fixture
def slow_rig(tmp_path: Path, tiny_llava: Path) -> Iterator[Rig]:
    db_url, broker_url = _embedded(tmp_path)
    env = {"VIGIL_BROKER__TASK_TIME_LIMIT_S": str(TIME_LIMIT_S), "VIGIL_MODEL__MAX_WINDOWS": "5000"}
    yield from _rig(tmp_path, tiny_llava, db_url=db_url, broker_url=broker_url, env=env)


def test_an_analysis_over_the_time_limit_is_retried_then_failed_and_the_worker_goes_on(slow_rig: Rig) -> None:
    """A file whose analysis outlasts `broker.task_time_limit_s` (here 1,200 windows, as a hung decode
    would): each attempt is stopped at the soft limit and gives its row back with the reason, the row ends
    `failed` after `max_attempts`, and the worker, never killed, analyses the next file."""
    rig = slow_rig
    short_id = rig.register(rig.clip("short.mp4", seconds=1))
    assert rig.enqueuer.analyze(short_id)
    rig.reconciler()
    worker = rig.worker("worker")
    assert_once(rig.wait_terminal([short_id])[short_id], windows=2)  # the model is loaded: attempts are timed
    long_id = rig.register(rig.clip("long.mp4", seconds=600))
    after_id = rig.register(rig.clip("after.mp4", seconds=1))
    assert rig.enqueuer.analyze(long_id) and rig.enqueuer.analyze(after_id)
    states = rig.wait_terminal([long_id, after_id], timeout=4 * DEADLINE_S)
    stopped = states[long_id]
    # Three timed attempts; the fourth claim finds them used up and ends the row with the last reason.
    assert stopped.status == "failed" and stopped.attempts == 4 and stopped.analyses == 0, stopped
    reason = f"took longer than broker.task_time_limit_s ({TIME_LIMIT_S} s)"
    assert stopped.error == f"gave up after 3 attempts: {reason}", stopped
    assert_once(states[after_id], windows=2)
    assert worker.poll() is None  # type: ignore[attr-defined]
    log = (rig.stack.root / "worker.log").read_text()
    assert log.count("stopped at its time limit") == 3, log
    assert "WorkerLostError" not in log and "Hard time limit" not in log, log  # never killed

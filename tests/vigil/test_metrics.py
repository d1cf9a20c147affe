"""Metrics: recorded by the real intake and outcome paths, queue depth read from rows, prefork children
summed through the multiprocess folder, and a dashboard and a doc that name only metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import Stack, wait_for
from tests.support.services import free_port
from vigil.config.settings import DatabaseSettings, Settings, SourceSettings, WorkSettings
from vigil.errors import UnreadableMedia
from vigil.formats.probe import probe
from vigil.media.reconciler import reconcile_media
from vigil.media.registry import sync_sources
from vigil.ops import metrics, metrics_server
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Media, MediaStatus, utcnow
from watcher.intake import Admission, WatchedSource, admit
from watcher.paths import SourceRules
from workers.testing.clips import write_clip_mp4v

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "vigil-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def source(tmp_path: Path, factory: sessionmaker[Session]) -> WatchedSource:
    name = f"cam-{tmp_path.name[-8:]}".replace("_", "-")  # counters are per process: a name of our own
    conf = SourceSettings(name=name, path=tmp_path / "inbox")
    conf.path.mkdir()
    with write_session(factory) as session:
        rows = sync_sources(session, [conf])
    return WatchedSource(rows[name].id, SourceRules.of(conf))


@pytest.fixture
def enqueuer(tmp_path: Path, factory: sessionmaker[Session]) -> Iterator[Enqueuer]:
    settings = Settings(broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"})
    app = make_celery(settings)
    yield Enqueuer(app, factory)
    app.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_intake_counts_registrations_by_source_and_the_queue_depth_is_read_from_rows(
    factory: sessionmaker[Session], source: WatchedSource, enqueuer: Enqueuer
) -> None:
    name = source.rules.name
    for i, expected in [(1, Admission.QUEUED), (2, Admission.QUEUED), (1, Admission.SKIPPED)]:  # same content
        clip = source.rules.root / f"c{i}-{expected}.mp4"
        write_clip_mp4v(clip, seconds=i, fps=5, size=(32, 24))
        outcome, _ = admit(factory, enqueuer, source, clip, info=probe(clip))
        assert outcome == expected
    bad = source.rules.root / "bad.mp4"
    bad.write_text("not a video")
    outcome, _ = admit(factory, enqueuer, source, bad, info=None, problem=UnreadableMedia(bad, "no video"))
    assert outcome == Admission.FAILED
    again, _ = admit(factory, enqueuer, source, bad, info=None, problem=UnreadableMedia(bad, "no video"))
    assert again == Admission.KNOWN  # a file seen before is not counted twice

    assert sample("vigil_media_registered_total", source=name, status="queued") == 2
    assert sample("vigil_media_registered_total", source=name, status="failed") == 1
    assert sample("vigil_media_registered_total", source=name, status="skipped") == 1
    assert sample("vigil_media_failed_total", source=name, stage="registration") == 1  # a terminal failure
    registry = CollectorRegistry()
    registry.register(metrics.QueueCollector(factory))
    assert registry.get_sample_value("vigil_queue_depth", {"status": "queued"}) == 2
    assert registry.get_sample_value("vigil_queue_depth", {"status": "running"}) == 0
    assert registry.get_sample_value("vigil_deliveries_pending") == 0
    assert registry.get_sample_value("vigil_media_failed_rows", {"source": name}) == 1
    age = registry.get_sample_value("vigil_queue_oldest_seconds")
    assert age is not None and 0 <= age < 60


def test_queue_collector_reports_nothing_rather_than_failing_when_the_database_is_gone(
    tmp_path: Path,
) -> None:
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'never-migrated.db'}"))
    registry = CollectorRegistry()
    registry.register(metrics.QueueCollector(session_factory(engine)))
    assert registry.get_sample_value("vigil_queue_depth", {"status": "queued"}) is None
    engine.dispose()


def test_outcomes_are_counted_with_the_media_source(
    factory: sessionmaker[Session], source: WatchedSource, enqueuer: Enqueuer
) -> None:
    clip = write_clip_mp4v(source.rules.root / "c.mp4", seconds=1, fps=5, size=(32, 24))
    _, registration = admit(factory, enqueuer, source, clip, info=probe(clip))
    before = sample("vigil_analysis_outcomes_total", outcome="done")
    metrics.record_outcome(factory, registration.media_id, "done")
    metrics.record_outcome(factory, registration.media_id, "failed")
    metrics.record_outcome(factory, registration.media_id, "retry")
    assert sample("vigil_media_analysed_total", source=source.rules.name) == 1
    assert sample("vigil_media_failed_total", source=source.rules.name, stage="analysis") == 1
    assert sample("vigil_analysis_outcomes_total", outcome="done") == before + 1


def test_a_worker_lost_every_time_is_a_failure_counted_by_the_reconciler(
    factory: sessionmaker[Session], source: WatchedSource, enqueuer: Enqueuer
) -> None:
    clip = write_clip_mp4v(source.rules.root / "c.mp4", seconds=1, fps=5, size=(32, 24))
    _, registration = admit(factory, enqueuer, source, clip, info=probe(clip))
    with write_session(factory) as session:  # as a worker killed during its last allowed attempt leaves it
        session.execute(
            update(Media)
            .where(Media.id == registration.media_id)
            .values(status=MediaStatus.RUNNING, attempts=2, lease_until=utcnow() - timedelta(seconds=1))
        )
    report = reconcile_media(factory, enqueuer, WorkSettings(max_attempts=2))
    assert report.dead == 1
    with factory() as session:
        assert session.get_one(Media, registration.media_id).status == MediaStatus.FAILED
    assert sample("vigil_media_failed_total", source=source.rules.name, stage="reconciler") == 1


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys, urllib.request
    from pathlib import Path
    from vigil.ops.metrics_env import use_multiprocess_dir
    folder = use_multiprocess_dir(Path(sys.argv[1]), queue="gpu")
    from vigil.ops import metrics, metrics_server
    def child(n):
        metrics.analysis_metrics().frames.inc(n)
        metrics.ANALYSIS_OUTCOMES.labels(outcome="done").inc()

    ctx = multiprocessing.get_context("fork")
    for n in (3, 4, 5):
        p = ctx.Process(target=child, args=(n,))
        p.start(); p.join()
    assert metrics_server.start_metrics_server(int(sys.argv[2]), addr="127.0.0.1")
    body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/metrics", timeout=5).read().decode()
    print(folder)
    print(body)
    """
)


def test_prefork_children_are_summed_by_the_parent_through_the_multiprocess_folder(tmp_path: Path) -> None:
    stale = tmp_path / "gpu-999999999"  # left by a worker that is gone: removed at start
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"x")
    result = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(tmp_path), str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "vigil_frames_decoded_total 12.0" in result.stdout
    assert 'vigil_analysis_outcomes_total{outcome="done"} 3.0' in result.stdout
    assert not stale.exists()
    folder = Path(result.stdout.splitlines()[0])
    assert folder.parent == tmp_path and folder.name.startswith("gpu-")
    assert not folder.exists()  # removed when the process exited; the children's exits did not touch it


def test_a_worker_that_fails_at_start_leaves_no_metrics_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_MODEL__ID": str(tmp_path / "no-model"),
        "VIGIL_DATABASE__URL": f"sqlite:///{tmp_path / 'v.db'}",
        "VIGIL_BROKER__URL": f"sqla+sqlite:///{tmp_path / 'b.db'}",
        "VIGIL_STORAGE__DATA_DIR": str(data),
        "HF_HUB_OFFLINE": "1",
    }
    argv = [sys.executable, "-m", "workers", "--queue", "gpu"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0
    assert not data.exists(), list(data.rglob("*"))


def test_a_worker_that_imported_prometheus_too_early_runs_without_metrics(tmp_path: Path) -> None:
    script = (
        "import prometheus_client\n"
        "from vigil.ops.metrics_env import prepare_worker_metrics\n"
        "from vigil.config.settings import Settings\n"
        f"s = Settings(storage={{'data_dir': {str(tmp_path)!r}}})\n"
        "print(prepare_worker_metrics(s, queue='gpu'))\n"
        "from vigil.ops.metrics_server import serve_worker_metrics\n"
        "print(serve_worker_metrics(s, 'gpu'))\n"
    )
    argv = [sys.executable, "-c", script]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "False"]
    assert not (tmp_path / "metrics").exists()


def test_the_metrics_server_never_stops_a_process() -> None:
    assert metrics_server.start_metrics_server(0) is False
    port = free_port()
    assert metrics_server.start_metrics_server(port, addr="127.0.0.1") is True
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "vigil_media_registered_total" in body or "vigil_frames_decoded_total" in body
    assert metrics_server.start_metrics_server(port, addr="127.0.0.1") is False  # taken: warned, no crash


def test_a_busy_metrics_port_is_reported_and_served_once_it_is_free(caplog: pytest.LogCaptureFixture) -> None:
    """Another program held the port at start: the endpoint used to stay off for the process's life."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        served = metrics_server.start_metrics_server(port, addr="127.0.0.1", setting="metrics.watcher_port")
        assert served is False
    assert f"metrics not served on 127.0.0.1:{port}: Address already in use (set metrics.watcher_port" in (
        caplog.text
    )

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    wait_for(answers, timeout=15, what="the endpoint once the port was free")


def test_worker_ports_differ_by_queue() -> None:
    settings = Settings()
    assert metrics.worker_port(settings, "gpu") == 9465
    assert metrics.worker_port(settings, "cpu") == 9466
    settings.metrics.worker_port = 0
    assert metrics.worker_port(settings, "cpu") == 0


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_the_dashboard_uses_only_metrics_that_vigil_defines() -> None:
    defined = metrics.metric_names()
    exprs = _dashboard_exprs()
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\bvigil_[a-z_]+\b", expr))
        assert names, f"no vigil metric in {expr!r}"
        assert names <= defined, f"{expr!r} uses undefined {sorted(names - defined)}"
        used |= names
    bases = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in used}
    # Every metric family appears on the dashboard somewhere.
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in defined}
    assert families <= bases, sorted(families - bases)


def test_every_metric_is_documented_in_operations_md() -> None:
    text = OPERATIONS.read_text()
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in metrics.metric_names()}
    missing = sorted(f for f in families if f not in text)
    assert not missing, missing


# -- each process, for real: what it exports, checked by promtool ----------------------------------------

GPU_ONLY = {"vigil_analysis_seconds", "vigil_model_seconds", "vigil_decode_seconds", "vigil_frames_decoded"}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]  # sample name -> sorted labels -> value


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus' promtool (Debian's `prometheus`; `make tools` installs it), else skip (fail with
    VIGIL_REQUIRE_SERVICES=1, as the README's test command sets)."""
    binary = shutil.which("promtool")
    if binary is None:
        reason = "promtool is not installed (make tools installs Debian's prometheus package)"
        if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def scrape(port: int, promtool: str) -> tuple[set[str], Samples]:
    """GET /metrics, checked by `promtool check metrics`: the metric families it exports, and its samples."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    families, samples = set(), {}
    for family in text_string_to_metric_families(body):
        families.add(family.name)
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return families, samples


def port_pair() -> int:
    """A free port whose next one is free too (a gpu worker serves `worker_port`, the cpu worker the next)."""
    while True:
        base = free_port()
        with socket.socket() as probe_:
            try:
                probe_.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base


def failed_total(samples: Samples, source: str) -> float:
    return sum(v for k, v in samples.get("vigil_media_failed_total", {}).items() if ("source", source) in k)


@pytest.mark.slow
def test_watcher_failures_are_counted_and_each_process_exports_what_it_measures(
    tmp_path: Path, tiny_llava: Path, promtool: str
) -> None:
    watcher_port, worker_port = free_port(), port_pair()
    stack = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
        extra_env={
            "VIGIL_METRICS__WATCHER_PORT": str(watcher_port),
            "VIGIL_METRICS__WORKER_PORT": str(worker_port),
        },
    )
    from vigil.store.migrate import upgrade

    upgrade(stack.db_url)
    try:
        stack.spawn("watcher", "-m", "watcher", new_session=True)
        stack.spawn("gpu", "-m", "workers", "--queue", "gpu", new_session=True)
        stack.spawn("cpu", "-m", "workers", "--queue", "cpu", new_session=True)
        (stack.inbox / "notes.mp4").write_text("this is not a video")  # not a media container
        (stack.inbox / "empty.mp4").write_bytes(b"")

        def failed_rows() -> int:
            return int(stack.rows("SELECT COUNT(*) FROM media WHERE status = 'failed'")[0][0])  # type: ignore[call-overload]

        wait_for(lambda: failed_rows() == 2, timeout=120, what="two failed rows")
        exported, watcher = scrape(watcher_port, promtool)
        assert failed_total(watcher, "inbox") == failed_rows() == 2, watcher.get("vigil_media_failed_total")
        stage = (("source", "inbox"), ("stage", "registration"))
        assert watcher["vigil_media_failed_total"][stage] == 2
        assert watcher["vigil_media_failed_rows"] == {(("source", "inbox"),): 2.0}
        assert not GPU_ONLY & exported, sorted(GPU_ONLY & exported)

        for name, port in (("gpu", worker_port), ("cpu", worker_port + 1)):
            wait_for(lambda p=port: _serving(p), timeout=120, what=f"the {name} worker's /metrics")
        (gpu, gpu_samples), (cpu, _) = scrape(worker_port, promtool), scrape(worker_port + 1, promtool)
        assert gpu >= GPU_ONLY, sorted(GPU_ONLY - gpu)
        assert gpu_samples["vigil_analysis_seconds_count"] == {(): 0.0}  # its own, at zero until it analyses
        assert not GPU_ONLY & cpu, sorted(GPU_ONLY & cpu)

        watcher_process = stack.processes[0]
        watcher_process.terminate()
        watcher_process.wait(timeout=60)
        stack.spawn("watcher-again", "-m", "watcher", new_session=True)
        wait_for(lambda: _serving(watcher_port), timeout=120, what="the restarted watcher's /metrics")
        _, again = scrape(watcher_port, promtool)
        assert failed_total(again, "inbox") == 0  # a counter starts again at 0 in a new process ...
        assert again["vigil_media_failed_rows"] == {(("source", "inbox"),): 2.0}  # ... the rows do not
    finally:
        stack.stop_all()


def _serving(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return False
    return True

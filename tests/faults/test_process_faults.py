"""Processes die: a worker SIGKILLed mid-analysis, the watcher SIGKILLed during a burst. Each run ends with
every file analysed exactly once and the watcher running."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import Deployment, FaultResult, Report, wait_for
from workers.testing.clips import write_clip_mp4v

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(tmp_path: Path, tiny_llava: Path) -> Iterator[Deployment]:
    deployment = Deployment(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
    )
    yield deployment
    deployment.stop_all()


def clip(seconds: float, salt: int = 0) -> Callable[[Path], Path]:
    """A small mp4v clip with unique content (bytes after the container), so none is a duplicate."""

    def make(path: Path) -> Path:
        write_clip_mp4v(path, seconds=seconds, fps=5, size=(48, 36))
        with path.open("ab") as out:
            out.write(f"vigil-salt-{salt}-{seconds}".encode())
        return path

    return make


def test_worker_sigkilled_mid_analysis(embedded: Deployment, fault_report: Report) -> None:
    """The whole worker (main process and pool child) is killed while a long clip is `running`: the lease
    stops being renewed, the reconciler puts the row back and resends it, a new worker analyses it once."""
    d = embedded
    d.start_all()
    d.drop("long.mp4", clip(24))
    names = {"long.mp4"}
    for i in range(3):
        name = f"short{i}.mp4"
        d.drop(name, clip(2, i))
        names.add(name)
    wait_for(lambda: d.statuses().get("long.mp4") == "running", what="long.mp4 running", step=0.05)
    d.kill("gpu")
    killed_at = time.monotonic()
    assert d.statuses()["long.mp4"] == "running"
    d.start("gpu")
    d.wait_settled(names)
    recovered = time.monotonic() - killed_at
    lost, dup = d.verdict(names)
    (attempts,) = d.rows("SELECT attempts FROM media WHERE rel_path = 'long.mp4'")[0]
    assert attempts == 2  # the killed attempt counted, the second one finished
    assert d.alive("watcher")
    fault_report.add(FaultResult("worker SIGKILL mid-analysis", len(names), lost, dup, recovered))


def test_watcher_sigkilled_during_a_burst(embedded: Deployment, fault_report: Report) -> None:
    """The watcher is killed while files arrive (some settling, some registered but maybe not sent), and
    files keep arriving while it is down; after a restart its startup scan and reconciler find them all,
    and none is registered or analysed twice."""
    d = embedded
    d.start_all()
    names = set()
    for i in range(12):
        name = f"burst/{i:02d}.mp4"
        d.drop(name, clip(1, i))
        names.add(name)
        if i == 5:
            d.kill("watcher")
            killed_at = time.monotonic()
    d.start("watcher")
    d.wait_settled(names)
    recovered = time.monotonic() - killed_at
    lost, dup = d.verdict(names)
    assert d.alive("watcher")
    d.kill("watcher", signal.SIGTERM)
    fault_report.add(FaultResult("watcher SIGKILL during a burst", len(names), lost, dup, recovered))

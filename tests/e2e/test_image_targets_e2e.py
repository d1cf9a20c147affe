"""A target given by example, with real processes: `targets add --image`, a watcher and a Celery worker
(tiny LLaVA-NeXT-Video), a clip dropped in the folder, detections, evidence and the rule's alert."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Stack, wait_for
from workers.testing.clips import write_clip_mp4v, write_image

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
    )
    yield stack
    stack.stop_all()


def test_a_dropped_clip_matches_an_image_target_and_fires_its_rule(stack: Stack) -> None:
    # The rule comes from ./vigil.toml (both processes run in stack.root); the target from the CLI.
    (stack.root / "vigil.toml").write_text(
        '[[alerts.rules]]\nname = "car-home"\ntargets = ["mycar"]\ncooldown_s = 0\n'
    )
    assert stack.vigil("db", "upgrade").returncode == 0
    photo = write_image(stack.root / "front.jpg", size=(120, 90))
    added = stack.vigil("targets", "add", "mycar", "my car", "--image", str(photo), "--threshold", "0")
    assert added.returncode == 0, added.stderr
    photo.unlink()  # the copy in the data directory is what counts
    stack.spawn("worker", "-m", "workers", "--queue", "gpu")
    stack.spawn("watcher", "-m", "watcher")
    staging = stack.root / "staging"
    staging.mkdir()
    made = write_clip_mp4v(staging / "clip.mp4", seconds=2, fps=10, size=(96, 72))
    shutil.move(made, stack.inbox / "clip.mp4")
    try:
        wait_for(lambda: stack.statuses() == {"clip.mp4": "done"}, what="the clip analysed")
        wait_for(lambda: bool(stack.rows("SELECT id FROM alerts")), what="the rule's alert")
    except AssertionError as exc:
        pytest.fail(f"{exc}: statuses {stack.statuses()}\n{stack.dump_logs()}")
    rows = stack.rows(
        "SELECT d.window_index, d.p_yes, d.matched, d.evidence FROM detections d "
        "JOIN targets t ON t.id = d.target_id WHERE t.name = 'mycar' ORDER BY d.window_index"
    )
    assert [r[0] for r in rows] == [0, 1]
    assert all(0 < float(r[1]) < 1 and r[2] for r in rows)  # type: ignore[arg-type]
    best = max(rows, key=lambda r: float(r[1]))  # type: ignore[arg-type]  # one run: evidence on its best
    assert [bool(r[3]) for r in rows] == [r is best for r in rows]
    alerts = stack.rows("SELECT t.name FROM alerts a JOIN targets t ON t.id = a.target_id")
    assert alerts == [("mycar",)]  # two matching windows in a row are one alert
    worker_log = (stack.root / "worker.log").read_text()
    assert "built a suffix with 1 reference image(s)" in worker_log

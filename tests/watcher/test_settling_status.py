"""A truncated upload as an operator meets it (issue 22, item 6), with a real watcher process and the real
`vigil status`: the settling file is named with what it waits for, and once its writer closed it with its
structure incomplete it fails after `watch.incomplete_after_close_s` with the structural reason, not after
`watch.ready_deadline_s` (ten minutes) with no name."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Stack, wait_for
from vigil.media.settling import SettlingFile, SettlingReport, read_report, settling_lines, write_report
from workers.testing.clips import write_clip_mp4v

pytestmark = pytest.mark.slow

CLOSED_BOUND_S = 6.0


@pytest.fixture
def stack(tmp_path: Path, tiny_llava: Path) -> Iterator[Stack]:
    made = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
        extra_env={
            "VIGIL_WATCH__READY_DEADLINE_S": "600",
            "VIGIL_WATCH__INCOMPLETE_AFTER_CLOSE_S": str(CLOSED_BOUND_S),
            "VIGIL_METRICS__ENABLED": "false",
        },
    )
    assert made.vigil("db", "upgrade").returncode == 0
    yield made
    made.stop_all()


def status(stack: Stack) -> str:
    result = stack.vigil("status", "--no-broker")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_truncated_mp4_is_named_in_status_and_fails_soon_after_its_writer_closed_it(stack: Stack) -> None:
    whole = write_clip_mp4v(stack.root / "whole.mp4", seconds=2, fps=10, size=(64, 48)).read_bytes()
    cut = stack.inbox / "cut.mp4"
    stack.spawn("watcher", "-m", "watcher")
    wait_for(
        lambda: "watcher started" in (stack.root / "watcher.log").read_text(), timeout=60, what="watcher"
    )
    with cut.open("wb") as upload:
        upload.write(whole[: len(whole) // 2])
        upload.flush()
        held = f"  {cut}: open for writing by pid {os.getpid()} (seen "
        wait_for(lambda: held in status(stack), timeout=60, what="the writer named in `vigil status`")
    closed_at = time.monotonic()

    shown = ""

    def names_the_reason() -> bool:
        nonlocal shown
        shown = status(stack)
        return f"  {cut}: incomplete mp4: " in shown

    wait_for(names_the_reason, timeout=CLOSED_BOUND_S, what="the structural reason in `vigil status`")
    (line,) = [x for x in shown.splitlines() if str(cut) in x]
    assert re.fullmatch(
        rf"  {re.escape(str(cut))}: incomplete mp4: box 'mdat' at \d+ needs \d+ bytes, file has \d+; its "
        r"writer closed it \(seen \d+ s ago; fails in \d+ s unless it changes\)",
        line,
    ), line
    assert "settling: 1 file(s), oldest " in shown

    wait_for(lambda: stack.statuses().get("cut.mp4") == "failed", timeout=60, what="the row failed")
    failed_after = time.monotonic() - closed_at
    ((error,),) = stack.rows("SELECT error FROM media WHERE rel_path = 'cut.mp4'")
    assert str(error).startswith("incomplete mp4: box 'mdat' at "), error
    print(
        f"failed {failed_after:.1f} s after the writer closed it (bound {CLOSED_BOUND_S} s, deadline 600 s)"
    )
    assert CLOSED_BOUND_S - 1 <= failed_after <= CLOSED_BOUND_S + 10
    wait_for(lambda: "settling: none" in status(stack), timeout=10, what="nothing settling")


def test_the_settling_report_names_at_most_a_few_files_and_counts_the_rest(tmp_path: Path) -> None:
    now = time.time()
    files = tuple(SettlingFile(f"/in/{n}.mp4", "settle time (unchanged for 2 s)", 3.0 + n) for n in range(5))
    write_report(tmp_path, SettlingReport(7, 7.0, 0, now, files))
    lines = list(settling_lines(read_report(tmp_path), now=now))
    assert lines[0] == "settling: 7 file(s), oldest 7 s"
    assert lines[1] == "  /in/0.mp4: settle time (unchanged for 2 s) (seen 3 s ago)"
    assert lines[-1] == "  ... and 2 more" and len(lines) == 7
    assert list(settling_lines(read_report(tmp_path), now=now + 60))[1:] == []  # stale: no names

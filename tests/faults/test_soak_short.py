"""The soak benchmark, short: half a minute of steady arrivals with real processes; nothing is lost or
analysed twice, the metrics endpoints agree with the rows, and no process grows by more than a bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.faults import ROOT, FaultResult, Report

pytestmark = pytest.mark.slow

GROWTH_BOUND_MB = 64.0  # after warm-up; 30 s of 2 s clips grows nothing real, so this catches only a leak


def test_short_soak(tmp_path: Path, tiny_llava: Path, fault_report: Report) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--minutes",
            "0.5",
            "--rate",
            "20",
            "--sample-s",
            "2",
            "--drain-s",
            "60",
            "--model",
            str(tiny_llava),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["files"] >= 9
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert figures["metrics_analysed"] == figures["done"], figures  # the prefork sum matches the rows
    assert figures["samples"] >= 10 and figures["queued_max"] is not None
    for name in ("worker", "watcher"):
        assert figures[f"{name}_rss_growth_mb"] < GROWTH_BOUND_MB, figures
    fault_report.add(
        FaultResult(
            "soak 0.5 min at 20 files/min",
            figures["files"],
            figures["lost"],
            figures["duplicated"],
            figures["drain_s"],
            f"RSS growth: worker {figures['worker_rss_growth_mb']} MB, "
            f"watcher {figures['watcher_rss_growth_mb']} MB",
        )
    )

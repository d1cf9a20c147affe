"""`python -m watcher` as a real process: refuses an unmigrated database, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.watching import media_rows, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, db_url: str, broker_url: str, drop: Path) -> Path:
    config = tmp_path / "vigil.toml"
    config.write_text(
        f"""
[database]
url = "{db_url}"
[broker]
url = "{broker_url}"
[log]
format = "text"
[watch]
settle_s = 0.2
rescan_interval_s = 60
[[watch.sources]]
name = "drop"
path = "{drop}"
"""
    )
    return config


def run_watcher(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", "--config", str(config)],
        env=env,
        cwd=config.parent,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_refuses_an_unmigrated_database(tmp_path: Path, broker_url: str, drop: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}", broker_url, drop)
    proc = run_watcher(config)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "never migrated" in err and "vigil db upgrade" in err


def test_sigterm_stops_cleanly(
    tmp_path: Path, db_url: str, broker_url: str, drop: Path, factory, make_clip: Callable[..., Path]
) -> None:
    make_clip(drop / "early.mp4")  # found by the startup scan
    proc = run_watcher(write_config(tmp_path, db_url, broker_url, drop))
    try:
        wait_for(lambda: media_rows(factory), timeout=30)
        make_clip(drop / "cam" / "2026" / "late.mp4")  # found by an event
        wait_for(lambda: len(media_rows(factory)) == 2, timeout=10)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "watcher stopped" in err
    assert {m.status for m in media_rows(factory)} == {"queued"}

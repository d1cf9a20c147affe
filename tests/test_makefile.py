"""`make run` installs what running needs, with pip's progress shown (issue 22, item 8): it used to install
the dev extras too (Playwright, Flower, linters), all with `--quiet`. Read from `make -n` (what make would
run), on a virtual environment that does not exist, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def planned(target: str, tmp_path: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Run from `make test`, the inherited MAKEFLAGS/MAKELEVEL would make the inner make print its
    # "Entering directory" lines (and pass on the outer one's flags): plan as a user's own `make -n` would.
    env = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    }
    result = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            target,
            f"VENV={tmp_path / 'venv'}",
            f"PYTHON={sys.executable}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_make_run_installs_the_runtime_without_dev_extras_and_shows_progress(tmp_path: Path) -> None:
    lines = planned("run", tmp_path)
    installs = [line.strip() for line in lines if "pip install" in line]
    assert any(line.endswith("pip install -e .") for line in installs), installs
    assert not any("[dev]" in line for line in installs), installs
    assert not any("--quiet" in line or " -q " in line for line in installs), installs
    # Without an NVIDIA GPU, torch's CPU build is tried first, with the versions pyproject.toml requires.
    cpu = [line for line in installs if "--index-url https://download.pytorch.org/whl/cpu" in line]
    assert len(cpu) == 1 and "'torch>=2.14.1' 'torchvision>=0.29.1'" in cpu[0], installs
    assert lines[-1].strip().endswith("vigil run --watch inbox")


def test_make_test_adds_the_dev_extras(tmp_path: Path) -> None:
    installs = [line.strip() for line in planned("pytest", tmp_path) if "pip install" in line]
    assert installs[-1].endswith('pip install -e ".[dev]"'), installs

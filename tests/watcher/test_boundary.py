"""The watcher process never imports torch, transformers or the workers (STYLE.md §2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_watcher_entry_point_imports_no_torch_side() -> None:
    code = (
        "import watcher.__main__, sys; "
        "bad = [m for m in ('torch', 'transformers', 'workers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

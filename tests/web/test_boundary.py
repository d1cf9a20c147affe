"""The review page never imports torch, transformers or the workers (STYLE.md §2), and building its
application touches none of them either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_web_process_imports_no_torch_side(sqlite_url: str) -> None:
    code = (
        "import sys, vigil.web.__main__\n"
        "from vigil.store.db import make_engine, session_factory\n"
        "from vigil.config.settings import load_settings\n"
        "from vigil.web.app import create_app\n"
        "s = load_settings()\n"
        "create_app(s, session_factory(make_engine(s.database)))\n"
        "bad = [m for m in ('torch', 'transformers', 'workers', 'cv2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_DATABASE__URL": sqlite_url}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

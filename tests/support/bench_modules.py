"""A bench/ script's module, imported in a test: bench/ is not a package (its scripts import each other by
plain name, as ``python bench/x.py`` runs them), so its folder is on ``sys.path`` while the import runs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` as a module (its sibling imports resolved while it loads)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))

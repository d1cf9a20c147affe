"""The layers, proven: `cli → {watcher, workers} → vigil` (STYLE.md §2, §18), and modules of one size.

The core (`vigil/` except `vigil/cli/`, the composition root) imports neither `watcher` nor `workers`, not
even lazily inside a function; the watcher and the workers do not import each other. Read from the source
(every `import` statement anywhere in a module, and `importlib.import_module` / `__import__` with a literal
name), and checked again by importing every core module in a fresh interpreter.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def modules(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def core_modules() -> list[Path]:
    cli = ROOT / "vigil" / "cli"
    return [p for p in modules("vigil") if cli not in p.parents]


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path in paths
        for name in sorted(imported_names(path))
        if name.split(".")[0] in forbidden
    ]


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from workers.models import x\n"
        "def g():\n    import importlib\n    importlib.import_module('watcher.scan')\n"
    )
    assert imported_names(sample) >= {"workers.models", "watcher.scan"}
    assert violations([sample], ("watcher", "workers")) != []


def test_the_core_imports_neither_watcher_nor_workers() -> None:
    paths = core_modules()
    assert len(paths) > 30, paths  # the walk found the core
    assert violations(paths, ("watcher", "workers")) == []


def test_watcher_and_workers_do_not_import_each_other() -> None:
    assert violations(list(modules("watcher")), ("workers",)) == []
    assert violations(list(modules("workers")), ("watcher",)) == []


def test_importing_every_core_module_loads_no_watcher_workers_or_torch() -> None:
    dotted = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in core_modules()]
    names = [n.removesuffix(".__init__") for n in dotted if not n.endswith("__main__")]  # __main__ runs
    banned = ("watcher", "workers", "torch", "transformers")
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {banned!r})\n"
        "assert not bad, bad\n"
        f"print(len({names!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == len(names)


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for package in ("vigil", "watcher", "workers")
        for p in modules(package)
    }
    assert len(sizes) > 100, sizes  # the walk found the three packages
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert over == {}, over  # no exceptions: split the module along its responsibilities


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_mypy_checks_every_torch_free_module_of_the_workers() -> None:
    """A workers module that imports neither torch nor transformers at its top, directly or through another
    workers module, is in `[tool.mypy] modules` (the test helpers under workers/testing aside)."""
    import tomllib

    paths = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in modules("workers")
        if "testing" not in p.relative_to(ROOT).parts
    }
    imports = {name: _top_level_imports(path) for name, path in paths.items()}
    heavy = {"torch", "transformers"}
    torch_side = {n for n, names in imports.items() if {i.split(".")[0] for i in names} & heavy}
    while True:
        more = {n for n, names in imports.items() if n not in torch_side and names & torch_side}
        if not more:
            break
        torch_side |= more
    checked = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["modules"])
    assert set(paths) - torch_side == checked

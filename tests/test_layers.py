"""The layers, proven: every package's `__init__` says what it may import (`May import:`), every module keeps
to its package's line, the packages form no circle, and no two modules import each other in a circle.

The `May import:` lines are the one home of the layering (STYLE.md §2, §16, §18): `vigil/__init__.py` draws
the core's floors; the CLI is the only package allowed to wire the core, the watcher and the workers. Read
from the source (every `import` anywhere in a module, inside functions and `TYPE_CHECKING` blocks too, and
`importlib.import_module` / `__import__` with a literal name), and checked again by importing every core
module in a fresh interpreter.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
TOP = ("vigil", "watcher", "workers")
# Root modules of the core that every layer may use: stdlib-only leaves.
CORE_LEAVES = ("vigil.errors", "vigil.terminal", "vigil.__main__")


def modules(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


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
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
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


def packages() -> dict[str, Path]:
    """Every package of the three trees, by dotted name."""
    return {dotted(p): p for top in TOP for p in modules(top) if p.name == "__init__.py"}


def may_import(init: Path) -> list[str]:
    """The names after `May import:` in a package's docstring (up to the docstring's next blank line)."""
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    found = re.search(r"^May import:(.*?)(?:\n\s*\n|\Z)", doc, re.S | re.M)
    assert found, f"{init.relative_to(ROOT)}: its docstring has no 'May import:' line"
    text = found.group(1)
    return [] if "nothing" in text else [n for n in re.split(r"[\s,]+", text) if n]


def owner(module: str, known: dict[str, Path]) -> str:
    """The innermost package that holds ``module`` (a core leaf counts as its own package)."""
    if module in CORE_LEAVES:
        return module
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known and (n < len(parts) or (known[module].name == "__init__.py")):
            return ".".join(parts[:n])
    raise AssertionError(module)


def project_modules() -> dict[str, Path]:
    return {dotted(p): p for top in TOP for p in modules(top)}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module ``name`` is, or is inside (``from a.b import c`` names a.b.c or a.b's member c)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def within(target: str, allowed: list[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def test_every_package_says_what_it_may_import() -> None:
    found = packages()
    assert {"vigil.config", "vigil.store", "workers.decode", "watcher"} <= set(found), sorted(found)
    for init in found.values():
        may_import(init)  # asserts the line is there


def allowed_for(home: str, pkgs: dict[str, Path]) -> list[str]:
    """What a module of package ``home`` may import: its own package, the core's leaves and its `May import:`
    line, where `vigil` stands for the whole core but the CLI (the composition root sits above all)."""
    if home in CORE_LEAVES:
        return [home, "vigil.cli"] if home == "vigil.__main__" else [home]
    allowed = [home, *CORE_LEAVES]
    for name in may_import(pkgs[home]):
        allowed += (
            [p for p in pkgs if p.startswith("vigil.") and p != "vigil.cli"] if name == "vigil" else [name]
        )
    return allowed


def test_every_module_imports_only_what_its_package_may() -> None:
    known = project_modules()
    pkgs = packages()
    bad = []
    for name, path in known.items():
        home = owner(name, pkgs | {leaf: known[leaf] for leaf in CORE_LEAVES})
        allowed = allowed_for(home, pkgs)
        for imported in sorted(imported_names(path)):
            target = resolve(imported, known)
            if target is None or target in TOP or target == name:
                continue  # a third-party name, a bare top package's empty namespace, or itself
            if not within(target, allowed):
                bad.append(f"{path.relative_to(ROOT)} ({home}) imports {target}")
    assert bad == [], "\n".join(bad)


def test_the_packages_form_no_circle() -> None:
    pkgs = packages()
    graph = {
        name: {a for a in may_import(init) if a in pkgs and a != name and not name.startswith(a + ".")}
        for name, init in pkgs.items()
    }
    core = {n for n in pkgs if n.startswith("vigil.") and n != "vigil.cli"}
    for name, deps in graph.items():
        if "vigil" in may_import(pkgs[name]):
            deps |= core - {name}
    assert _cycle(graph) is None, _cycle(graph)


def test_no_two_modules_import_each_other_in_a_circle() -> None:
    known = project_modules()
    graph = {
        name: {t for i in imported_names(path) if (t := resolve(i, known)) and t != name and t not in TOP}
        for name, path in known.items()
    }
    assert _cycle(graph) is None, _cycle(graph)


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from workers.model.loading import x\n"
        "def g():\n    import importlib\n    importlib.import_module('watcher.scan')\n"
    )
    assert imported_names(sample) >= {"workers.model.loading", "watcher.scan"}
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

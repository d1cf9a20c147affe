"""The benchmarks keep running: every runnable `bench/*.py` has a `--quick` smoke mode, and `make bench-smoke`
(part of `make test`) runs each one with it. A smoke run measures nothing; it proves the script still starts,
runs its whole path on tiny inputs, and keeps the contract of ending with one JSON line. (`bench/pipeline.py`
once failed at start after a signature change and nothing noticed.)

A script is runnable when it has an `if __name__ == "__main__":` block; modules beside them without one
(`sampling_corpus.py`) are helpers. A new runnable script without `--quick` fails
`test_every_runnable_bench_script_has_a_quick_mode` here, in the ordinary test run, before any smoke runs.
"""

from __future__ import annotations

import ast
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
QUICK = "--quick"
# Each smoke run takes seconds of CPU (printed with its wall time); the limit is for a hung script, with room
# for a 2-core machine shared by a whole team (at a load of 15, four minutes were seen).
SMOKE_TIMEOUT_S = 600


def _is_main_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` (either way round)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    values = {s.value for s in sides if isinstance(s, ast.Constant)}
    return names == {"__name__"} and values == {"__main__"}


def runnable_scripts(folder: Path = BENCH) -> list[Path]:
    """The scripts in `folder` that run as programs (a module-level `__main__` block)."""
    return sorted(
        path
        for path in folder.glob("*.py")
        if any(_is_main_guard(node) for node in ast.parse(path.read_text()).body)
    )


def declares_quick(path: Path) -> bool:
    """Whether the script's source names the `--quick` option (as argparse's add_argument spells it)."""
    return any(
        isinstance(node, ast.Constant) and node.value == QUICK
        for node in ast.walk(ast.parse(path.read_text()))
    )


def last_json_line(stdout: str) -> object:
    """The last line of `stdout` parsed as JSON; ValueError (with the line) when it is not JSON."""
    lines = stdout.strip().splitlines()
    if not lines:
        raise ValueError("printed nothing on stdout")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"last line is not JSON ({exc}): {lines[-1][:200]!r}") from exc


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (and theirs): steadier than wall time when shared."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_the_helpers_tell_runnable_scripts_and_quick_modes_apart(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text('"""Imported by the others."""\nSIZE = 3\n')
    (tmp_path / "slow.py").write_text(
        'import argparse\nif __name__ == "__main__":\n    argparse.ArgumentParser()\n'
    )
    (tmp_path / "fast.py").write_text(
        "import argparse\n\n\ndef main():\n    p = argparse.ArgumentParser()\n"
        '    p.add_argument("--quick")\n\n\nif "__main__" == __name__:\n    main()\n'
    )
    found = runnable_scripts(tmp_path)
    assert [p.name for p in found] == ["fast.py", "slow.py"]
    assert [declares_quick(p) for p in found] == [True, False]
    assert last_json_line('table\n{"ratio": 2.0}\n') == {"ratio": 2.0}
    with pytest.raises(ValueError, match="not JSON"):
        last_json_line('{"ratio": 2.0}\ndone in 3 s\n')


def test_every_runnable_bench_script_has_a_quick_mode() -> None:
    scripts = runnable_scripts()
    assert len(scripts) >= 14, [p.name for p in scripts]  # the folder was found and parsed
    missing = [p.name for p in scripts if not declares_quick(p)]
    assert not missing, f"bench scripts without a {QUICK} smoke mode (make bench-smoke runs each): {missing}"


@pytest.mark.bench
@pytest.mark.parametrize("script", runnable_scripts(), ids=lambda p: p.name)
def test_quick_run_ends_with_one_json_line(script: Path) -> None:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
    }
    began, cpu_before = time.monotonic(), _children_cpu_s()
    done = subprocess.run(
        [sys.executable, str(script), QUICK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    took, cpu = time.monotonic() - began, _children_cpu_s() - cpu_before
    where = f"bench/{script.name} {QUICK} (exit {done.returncode}, {took:.0f} s, CPU {cpu:.0f} s)"
    assert done.returncode == 0, f"{where}:\n{done.stderr[-3000:]}"
    try:
        figures = last_json_line(done.stdout)
    except ValueError as exc:
        pytest.fail(f"{where}: {exc}")
    assert isinstance(figures, dict) and figures, f"{where}: the JSON line is not an object: {figures!r}"
    print(f"{where}: {len(figures)} keys")

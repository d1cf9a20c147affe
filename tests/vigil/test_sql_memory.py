"""`vigil sql` stays under 300 MB for any query with the default caps, measured on the real process.

Each memory bomb runs as `python -m vigil sql` in a child process; ``os.wait4`` gives that child's own
peak resident set size.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sql import reader, seed

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MB = 300

ROWS_CAP = "vigil sql: truncated at 1000 rows"
BYTES_CAP = "vigil sql: truncated at"
TOO_BIG = "error: refused: a value passes the byte cap"
# (query, how its stderr starts)
SQLITE_BOMBS = [
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5000000) SELECT n FROM r",
        ROWS_CAP,
    ),
    ("SELECT zeroblob(1000000000)", TOO_BIG),
    ("SELECT printf('%.*c', 100000000, 'x')", ""),  # SQLite returns NULL at its length limit
    (
        "WITH RECURSIVE r(s, n) AS (SELECT 'x', 1 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 40) "
        "SELECT s FROM r",
        TOO_BIG,
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000) "
        "SELECT randomblob(900000), randomblob(900000) FROM r",
        BYTES_CAP,
    ),
]
PG_BOMBS = [
    ("SELECT generate_series(1, 5000000)", ROWS_CAP),
    ("SELECT repeat('x', 300000000)", BYTES_CAP),
    (
        "WITH RECURSIVE r(s, n) AS (SELECT 'x'::text, 1 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 29) "
        "SELECT s FROM r",
        BYTES_CAP,
    ),
    ("SELECT repeat('x', 100000) FROM generate_series(1, 100000)", BYTES_CAP),
    ("SELECT repeat('x', 900000) AS a, repeat('y', 900000) AS b FROM generate_series(1, 1000)", BYTES_CAP),
]


# The child's own peak, read from /proc/self/status at exit. Not ``wait4``'s ru_maxrss: Linux carries the
# forking parent's high-water mark into the child across exec, so inside a large pytest process every child
# would report the parent's RSS (1.7 GB in a full run).
_PEAK_AT_EXIT = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "def report():\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "    open(out, 'w').write(hwm.split()[1])\n"
    "atexit.register(report)\n"
    "sys.argv[0] = 'vigil'\n"
    "runpy.run_module('vigil', run_name='__main__', alter_sys=True)\n"
)


def peak_rss_mb(env: dict[str, str], query: str, cwd: Path) -> tuple[int, float, str]:
    """Exit status, peak RSS in MB and stderr of `vigil sql QUERY` in a child process."""
    err, peak = cwd / "stderr.txt", cwd / "peak_kb.txt"
    with open(os.devnull, "wb") as out, open(err, "wb") as errors:
        child = subprocess.run(
            [sys.executable, "-c", _PEAK_AT_EXIT, str(peak),
             "sql", "--timeout", "60", "--format", "csv", query],
            cwd=cwd, env=env, stdout=out, stderr=errors, check=False,
        )  # fmt: skip
    return child.returncode, int(peak.read_text()) / 1024, err.read_text()


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def pg_reader_env(pg_url: str) -> Iterator[dict[str, str]]:
    seed(pg_url)
    with reader(pg_url) as readonly_url:
        yield child_env(VIGIL_DATABASE__URL=pg_url, VIGIL_DATABASE__READONLY_URL=readonly_url)


def check(kind: str, env: dict[str, str], query: str, starts: str, cwd: Path) -> None:
    code, mb, stderr = peak_rss_mb(env, query, cwd)
    print(f"{kind} peak RSS {mb:.0f} MB, exit {code}: {query[:60]}: {stderr.strip()[:100]}")
    assert stderr.startswith(starts) and stderr.count("\n") <= 1, stderr
    assert code == (2 if starts.startswith("error:") else 0)
    assert mb < LIMIT_MB


@pytest.mark.slow
@pytest.mark.parametrize(("query", "starts"), SQLITE_BOMBS)
def test_sqlite_memory_bombs_stay_bounded(sqlite_url: str, tmp_path: Path, query: str, starts: str) -> None:
    seed(sqlite_url)
    check("sqlite", child_env(VIGIL_DATABASE__URL=sqlite_url), query, starts, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("query", "starts"), PG_BOMBS)
def test_postgresql_memory_bombs_stay_bounded(
    pg_reader_env: dict[str, str], tmp_path: Path, query: str, starts: str
) -> None:
    check("postgresql", pg_reader_env, query, starts, tmp_path)

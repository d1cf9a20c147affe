"""`vigil sql` is read-only for real on SQLite and PostgreSQL, stops at its time limit, and formats output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from tests.support.sql import reader, seed, snapshot
from vigil.cli import cli
from vigil.config.settings import DatabaseSettings
from vigil.errors import QueryRefused
from vigil.sql import QueryResult, render, run_query
from vigil.store.db import is_sqlite, make_engine, session_factory, write_session
from vigil.store.schema import Target

ROOT = Path(__file__).resolve().parents[2]

WRITES = [
    "DELETE FROM media",
    "UPDATE media SET status = 'done'",
    "INSERT INTO sources (name, path, created_at, updated_at) VALUES ('x', '/x', '2026-01-01', '2026-01-01')",
    "DROP TABLE media",
    "CREATE TABLE evil (x INTEGER)",
    "ALTER TABLE media ADD COLUMN evil INTEGER",
    "SELECT 1; DROP TABLE media",
    "SELECT 1; DELETE FROM media",
    "WITH x AS (SELECT 1) DELETE FROM media",
    "WITH x AS (DELETE FROM media RETURNING *) SELECT * FROM x",
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA writable_schema = 1",
    "PRAGMA user_version = 7",
    "PRAGMA journal_mode = DELETE",
    "VACUUM",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/vigil-pwned'",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT nextval('media_id_seq')",
    "SET default_transaction_read_only = off",
    "COMMIT",
    "BEGIN",
    "/* comment */ DELETE FROM media",
    "REINDEX",
]
FOREVER = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"


@pytest.fixture
def seeded_url(db_url: str) -> str:
    seed(db_url)
    return db_url


@pytest.fixture
def reading(seeded_url: str) -> Iterator[DatabaseSettings]:
    """What `vigil sql` reads with: the SQLite file, or PostgreSQL as the role `vigil db reader` makes."""
    if is_sqlite(seeded_url):
        yield DatabaseSettings(url=seeded_url)
        return
    with reader(seeded_url) as readonly_url:
        yield DatabaseSettings(url=seeded_url, readonly_url=readonly_url)


@pytest.mark.parametrize("statement", WRITES)
def test_every_write_path_is_refused_and_changes_nothing(
    seeded_url: str, reading: DatabaseSettings, statement: str
) -> None:
    before = snapshot(seeded_url)
    with pytest.raises(QueryRefused) as caught:
        run_query(reading, statement, timeout_s=5)
    message = str(caught.value)
    # A statement of the other dialect (PRAGMA on PostgreSQL) is a syntax error there.
    assert "\n" not in message and message.split(":")[0] in {"refused", "query failed", "syntax error"}
    assert snapshot(seeded_url) == before
    assert not Path("/tmp/vigil-pwned").exists()


def test_writes_are_refused_by_the_database_itself_not_only_by_the_first_word(
    seeded_url: str, reading: DatabaseSettings
) -> None:
    # Starts like a read; only the database's own read-only enforcement can stop it.
    statement = (
        "WITH x AS (SELECT 1) DELETE FROM media"
        if is_sqlite(seeded_url)
        else "WITH x AS (DELETE FROM media RETURNING *) SELECT * FROM x"
    )
    with pytest.raises(QueryRefused, match="^refused: only reads are allowed"):
        run_query(reading, statement)


def test_a_second_statement_is_refused_with_a_clear_message(
    seeded_url: str, reading: DatabaseSettings
) -> None:
    with pytest.raises(QueryRefused, match="^refused: only one statement may run at a time$"):
        run_query(reading, "SELECT 1; DROP TABLE media")
    # a trailing semicolon or comment is not a second statement
    assert run_query(reading, "SELECT 1 AS one; -- done").rows == [(1,)]


def test_a_query_that_runs_forever_stops_at_the_limit(seeded_url: str, reading: DatabaseSettings) -> None:
    settings = reading.model_copy(update={"query_timeout_s": 0.5})
    started = datetime.now(UTC)
    with pytest.raises(QueryRefused, match=r"^query stopped at the time limit of 0.5 s"):
        run_query(settings, FOREVER)
    assert (datetime.now(UTC) - started).total_seconds() < 5


def test_reads_views_and_params_work(seeded_url: str, reading: DatabaseSettings) -> None:
    result = run_query(
        reading,
        "SELECT path, status FROM media_v WHERE status = :status AND path LIKE :pattern ORDER BY path",
        params={"status": "failed", "pattern": "%c1%"},
    )
    assert result.columns == ["path", "status"] and result.rows == [("/cams/1/c1.mp4", "failed")]
    with pytest.raises(QueryRefused, match="parameter"):
        run_query(reading, "SELECT * FROM media WHERE status = :missing")


def test_sqlite_allows_harmless_pragmas(sqlite_url: str) -> None:
    settings = DatabaseSettings(url=sqlite_url)
    assert ("status",) in {(r[1],) for r in run_query(settings, "PRAGMA table_info(media)").rows}
    assert run_query(settings, "PRAGMA user_version").rows == [(0,)]


# --- output formats -------------------------------------------------------------------------------------

FIXTURE = QueryResult(
    ["id", "name", "score", "note"], [(1, "van", 0.5, None), (12, "a|b", 0.25, "two\nlines")], 0.0
)


def test_table_format() -> None:
    assert list(render(FIXTURE, "table")) == [
        "id  name  score  note",
        "--  ----  -----  ----------",
        " 1  van     0.5",
        "12  a|b    0.25  two\\nlines",
        "(2 rows)",
    ]


def test_table_aligns_wide_characters_by_their_display_width() -> None:
    """Issue 22 (8): a CJK name takes two columns a character; padding by len() pushed its row's next
    column two columns right per character. Measured with wcwidth, the reference for terminals."""
    from wcwidth import wcswidth

    result = QueryResult(["name", "n"], [("駐車場カメラ", 1), ("cafe\u0301", 22), ("van", 333)], 0.0)
    lines = list(render(result, "table"))
    assert lines[:5] == [
        "name            n",
        "------------  ---",
        "駐車場カメラ    1",
        "cafe\u0301           22",
        "van           333",
    ]
    assert {wcswidth(line) for line in lines[:5]} == {17}


def test_csv_format() -> None:
    assert "\n".join(render(FIXTURE, "csv")) == 'id,name,score,note\n1,van,0.5,\n12,a|b,0.25,"two\nlines"'


def test_jsonl_format() -> None:
    assert list(render(FIXTURE, "jsonl")) == [
        '{"id": 1, "name": "van", "score": 0.5, "note": null}',
        '{"id": 12, "name": "a|b", "score": 0.25, "note": "two\\nlines"}',
    ]


def test_markdown_format() -> None:
    assert list(render(FIXTURE, "markdown")) == [
        "| id | name | score | note |",
        "| ---: | --- | ---: | --- |",
        "| 1 | van | 0.5 |  |",
        "| 12 | a\\|b | 0.25 | two<br>lines |",
    ]


def test_values_read_as_people_expect() -> None:
    when = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    result = QueryResult(["t", "ok", "ids"], [(when, True, [1, 2])], 0.0)
    assert list(render(result, "csv"))[1] == '2026-11-24 08:30:00+00:00,true,"[1, 2]"'
    assert list(render(result, "jsonl")) == ['{"t": "2026-11-24 08:30:00+00:00", "ok": true, "ids": [1, 2]}']


# --- the command ----------------------------------------------------------------------------------------


def invoke(settings: DatabaseSettings, *args: str, **env: str) -> Any:
    env = {
        "VIGIL_DATABASE__URL": settings.url,
        "VIGIL_DATABASE__READONLY_URL": settings.readonly_url or "",
        **env,
    }
    return CliRunner().invoke(cli, ["sql", *args], env={k: v for k, v in env.items() if v})


def test_cli_prints_csv_when_piped_and_binds_params(seeded_url: str, reading: DatabaseSettings) -> None:
    result = invoke(reading, "SELECT rel_path, size_bytes FROM media WHERE status = :s", "--param", "s=done")
    assert result.exit_code == 0, result.output
    assert result.stdout == "rel_path,size_bytes\nc0.mp4,100\n"


def test_cli_reads_a_query_file_and_formats(
    seeded_url: str, reading: DatabaseSettings, tmp_path: Path
) -> None:
    query = tmp_path / "q.sql"
    query.write_text("SELECT rel_path, status FROM media ORDER BY id LIMIT 2\n")
    result = invoke(reading, "-f", str(query), "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "| rel_path | status |",
        "| --- | --- |",
        "| c0.mp4 | done |",
        "| c1.mp4 | failed |",
    ]


def test_cli_refusal_is_one_line_and_exit_2(seeded_url: str, reading: DatabaseSettings) -> None:
    before = snapshot(seeded_url)
    result = invoke(reading, "DROP TABLE media")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: refused: DROP is not a read") and result.stderr.count("\n") == 1
    assert snapshot(seeded_url) == before


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELEC 1", "error: syntax error: SELEC does not begin an SQL statement (did you mean SELECT?)"),
        (
            "  /* c */ selct * from media",
            "error: syntax error: SELCT does not begin an SQL statement (did you",
        ),
        ("SELECT * FRM media", "error: syntax error: "),
        ("SELECT 1 FROM", "error: syntax error: "),
    ],
)
def test_a_typo_is_a_syntax_error_not_a_refusal(
    seeded_url: str, reading: DatabaseSettings, statement: str, expected: str
) -> None:
    """Issue 22 (8): `SELEC 1` read "refused: SELEC is not a read", as if it were a permission refusal."""
    result = invoke(reading, statement)
    assert result.exit_code == 2
    assert result.stderr.startswith(expected), result.stderr
    assert "refused" not in result.stderr and result.stderr.count("\n") == 1


def test_cli_timeout_option(seeded_url: str, reading: DatabaseSettings) -> None:
    result = invoke(reading, FOREVER, "--timeout", "0.5")
    assert result.exit_code == 2 and "time limit of 0.5 s" in result.stderr


def test_cli_rejects_a_malformed_param(seeded_url: str, reading: DatabaseSettings) -> None:
    result = invoke(reading, "SELECT 1", "--param", "novalue")
    assert result.exit_code == 2 and "expected NAME=VALUE" in result.stderr


def test_real_subprocess_run(sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_DATABASE__URL": sqlite_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil",
            "sql",
            "--format",
            "jsonl",
            "SELECT status, COUNT(*) AS n FROM media_v GROUP BY status ORDER BY status",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        '{"status": "done", "n": 1}',
        '{"status": "failed", "n": 1}',
        '{"status": "queued", "n": 1}',
    ]
    refused = subprocess.run(
        [sys.executable, "-m", "vigil", "sql", "DELETE FROM media"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: refused:")


@pytest.mark.parametrize("limit", ["nan", "inf", "-inf", "0", "-1"])
def test_cli_refuses_a_time_limit_that_is_not_finite_and_positive(sqlite_url: str, limit: str) -> None:
    env = {"VIGIL_DATABASE__URL": sqlite_url}
    result = CliRunner().invoke(cli, ["sql", "SELECT 1", "--timeout", limit], env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: refused: the time limit must be a finite number of seconds")


def test_cli_caps_rows_and_says_so(sqlite_url: str) -> None:
    query = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
    env = {"VIGIL_DATABASE__URL": sqlite_url}
    piped = CliRunner().invoke(cli, ["sql", query, "--max-rows", "3"], env=env)
    assert piped.exit_code == 0 and piped.stdout.split() == ["n", "1", "2", "3"]
    assert piped.stderr == "vigil sql: truncated at 3 rows (raise it with --max-rows)\n"
    table = CliRunner().invoke(cli, ["sql", query, "--max-rows", "2", "--format", "table"], env=env)
    assert table.stdout.splitlines()[-1] == "(2 rows; truncated at 2 rows (raise it with --max-rows))"


def test_booleans_print_true_false_on_both_databases(seeded_url: str, reading: DatabaseSettings) -> None:
    """SQLite stores 0/1; the docs say true/false, and PostgreSQL already printed that."""
    engine = make_engine(DatabaseSettings(url=seeded_url))
    with write_session(session_factory(engine)) as session:
        session.add_all([Target(name="van", description="a van"), Target(name="cat", description="a cat")])
        session.flush()
        session.execute(update(Target).where(Target.name == "cat").values(enabled=False))
    engine.dispose()
    result = invoke(reading, "SELECT name, enabled FROM targets ORDER BY name")
    assert result.exit_code == 0, result.output
    assert result.stdout == "name,enabled\ncat,false\nvan,true\n"

"""Names with ESC, OSC, CSI and \\r reach people escaped: `vigil sql` tables and Markdown, `vigil status`,
`targets list`, `alerts list/show` and the text log; CSV and JSON lines keep them exact."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.alerting import add_analysis, add_media, factory_for, make_settings
from tests.support.sql import reader
from vigil.cli import cli
from vigil.config.settings import LogSettings
from vigil.ops.logs import configure_logging
from vigil.sql import QueryResult, render
from vigil.store.db import write_session

HOSTILE = "x\x1b]0;owned\x07\x1b[2J\rfake\x9b1m"
SHOWN = "x\\x1b]0;owned\\x07\\x1b[2J\\rfake\\x9b1m"


def assert_escaped(output: str) -> None:
    assert SHOWN in output
    assert not any(c in output for c in "\x1b\x07\r\x9b"), repr(output)


def test_sql_table_and_markdown_escape_csv_and_json_stay_exact() -> None:
    result = QueryResult([f"col{HOSTILE}"], [(HOSTILE,), (HOSTILE.encode(),)], 0.0)
    for fmt in ("table", "markdown"):
        assert_escaped("\n".join(render(result, fmt)))  # type: ignore[arg-type]
    assert HOSTILE in "\n".join(render(result, "csv"))
    first = json.loads(next(iter(render(result, "jsonl"))))
    assert first == {f"col{HOSTILE}": HOSTILE}


def test_sql_command_table_output(sqlite_url: str) -> None:
    got = CliRunner().invoke(
        cli, ["sql", "--format", "table", "SELECT :v AS v", "-p", f"v={HOSTILE}"],
        env={"VIGIL_DATABASE__URL": sqlite_url},
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    assert_escaped(got.stdout)


def test_status_targets_and_alerts_escape_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    config = tmp_path / "vigil.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[broker]\nurl = "sqla+sqlite:///{tmp_path / "broker.db"}"\n'
        f'[watch]\nsources = [{{ name = "cam1", path = "{tmp_path}" }}]\n'
        '[[targets]]\nname = "person"\ndescription = "a person"\n'
        '[[alerts.rules]]\nname = "any"\ntargets = ["person"]\nchannels = ["log"]\n'
    )
    run = CliRunner()
    assert run.invoke(cli, ["--config", str(config), "targets", "list"]).exit_code == 0  # creates, syncs
    settings = make_settings(url, rules=[{"name": "any", "targets": ["person"], "channels": ["log"]}],
                             targets=(("person", 0.5),))  # fmt: skip
    factory = factory_for(url)
    from vigil.alerts.evaluation import evaluate_analysis

    with write_session(factory) as session:
        media = add_media(session, name=f"{HOSTILE}.mp4", mtime=datetime(2026, 6, 1, 12, tzinfo=UTC))
        evaluate_analysis(session, add_analysis(session, media, {"person": [0.9]}), settings=settings)
        failed = add_media(session, name=f"{HOSTILE}-2.mp4")
        failed.status, failed.error, failed.finished_at = "failed", f"bad {HOSTILE}", datetime.now(UTC)
    for args in (["status", "--no-broker"], ["alerts", "list"], ["alerts", "show", "1"]):
        got = run.invoke(cli, ["--config", str(config), *args])
        assert got.exit_code == 0, got.output
        assert_escaped(got.stdout)


def test_targets_list_escapes_descriptions(sqlite_url: str, tmp_path: Path) -> None:
    env = {"VIGIL_DATABASE__URL": sqlite_url}
    run = CliRunner()
    added = run.invoke(cli, ["targets", "add", "evil", f"a {HOSTILE}"], env=env)
    assert added.exit_code == 0, added.output
    assert_escaped(added.stdout)
    listed = run.invoke(cli, ["targets", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert_escaped(listed.stdout)


def test_text_log_escapes_the_message_json_keeps_it(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(LogSettings(format="text"))
        logging.getLogger("vigil.test").warning("queued %s", HOSTILE)
        assert_escaped(capsys.readouterr().err)
        configure_logging(LogSettings(format="json"))
        logging.getLogger("vigil.test").warning("queued %s", HOSTILE)
        assert "\\u001b]0;owned" in capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_an_error_line_escapes_the_name_it_quotes(sqlite_url: str, tmp_path: Path) -> None:
    """`error: ...` quotes file names and values (here a reference image that does not exist)."""
    missing = tmp_path / f"{HOSTILE}.jpg"
    got = CliRunner().invoke(
        cli,
        ["targets", "add", "evil", "a thing", "--image", str(missing)],
        env={"VIGIL_DATABASE__URL": sqlite_url},
    )
    assert got.exit_code == 2, got.output
    assert got.stderr.startswith("error: ") and "no such file" in got.stderr
    assert_escaped(got.stderr)


def test_a_postgresql_error_quoting_a_value_is_escaped(pg_url: str) -> None:
    """The server's message quotes the value it could not read: a file name reaches stderr escaped."""
    with reader(pg_url) as readonly_url:
        got = CliRunner().invoke(
            cli, ["sql", "SELECT CAST(:v AS integer)", "-p", f"v={HOSTILE}"],
            env={"VIGIL_DATABASE__URL": pg_url, "VIGIL_DATABASE__READONLY_URL": readonly_url},
        )  # fmt: skip
    assert got.exit_code == 2, got.output
    assert got.stderr.startswith("error: query failed: invalid input syntax for type integer")
    assert_escaped(got.stderr)


def test_text_log_escapes_a_traceback_line_by_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(LogSettings(format="text"))
        try:
            raise FileNotFoundError(f"no such file: {HOSTILE}")
        except FileNotFoundError:
            logging.getLogger("vigil.test").exception("probe failed")
        err = capsys.readouterr().err
        assert_escaped(err)
        assert "Traceback (most recent call last):\n" in err  # still one line per frame
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

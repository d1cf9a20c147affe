"""The command line as a new user meets it: help, config check, db upgrade, targets, and clean errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vigil.cli import cli


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def vigil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_commands(workdir: Path) -> None:
    result = vigil("--help", cwd=workdir)
    assert result.returncode == 0
    for command in ("run", "watcher", "worker", "targets", "config", "db", "selftest"):
        assert f"  {command}" in result.stdout


def test_db_upgrade_then_targets_add_and_list(workdir: Path, private_data_dir: Path) -> None:
    upgraded = vigil("db", "upgrade", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "at revision" in upgraded.stdout
    # The default database lives in the data dir, never in the current directory.
    assert (private_data_dir / "vigil.db").is_file()
    assert not (workdir / "vigil.db").exists()
    added = vigil("targets", "add", "van", "a white delivery van", "--threshold", "0.6", cwd=workdir)
    assert added.returncode == 0, added.stderr
    listed = vigil("targets", "list", cwd=workdir)
    assert "van" in listed.stdout and "a white delivery van" in listed.stdout and "0.60" in listed.stdout


def test_bad_config_is_one_line_per_problem_not_a_traceback(workdir: Path) -> None:
    (workdir / "vigil.toml").write_text("[model]\nframes_per_window = -1\n")
    result = vigil("config", "check", cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "model.frames_per_window" in result.stderr


def test_config_check_summarises_good_settings(workdir: Path) -> None:
    (workdir / "vigil.toml").write_text('[[targets]]\nname = "van"\ndescription = "a white van"\n')
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "1 target(s)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["targets", "add", "van", "x"], "description"),
        (["targets", "add", "bad name", "a white van"], "name"),
        (["targets", "add", "van", "a white van", "--threshold", "1.5"], "threshold"),
        (["targets", "disable", "nothing"], "no target named 'nothing'"),
        (["run", "--watch", "/does/not/exist"], "not a directory"),
        (["--config", "missing.toml", "config", "check"], "config file not found"),
    ],
)
def test_bad_input_gets_a_clear_error(workdir: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_database_at_an_old_revision_is_refused(workdir: Path) -> None:
    from vigil.migrate import upgrade

    db = workdir / "old.db"
    upgrade(f"sqlite:///{db}")
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ancient'")
    result = CliRunner().invoke(cli, ["targets", "list"], env={"VIGIL_DATABASE__URL": f"sqlite:///{db}"})
    assert result.exit_code == 2
    assert "vigil db upgrade" in result.output


def test_cli_stays_light(workdir: Path) -> None:
    code = (
        "import vigil.cli, sys; "
        "print(sorted(m for m in ('torch', 'transformers', 'workers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""The command line as a new user meets it: help, config check, db upgrade, targets, and clean errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
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
        (["targets", "add", "van", "x"], "error: DESCRIPTION: String should have at least 3 characters\n"),
        # Worded as the arguments, not as settings with a regular expression (issue 11).
        (
            ["targets", "add", "bad name", "a white van"],
            "error: NAME: 'bad name' is not a name: 1 to 64 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit\n",
        ),
        (
            ["targets", "add", "van", "a white van", "--threshold", "1.5"],
            "error: --threshold: Input should be less than or equal to 1\n",
        ),
        (
            ["rules", "add", "r", "--cooldown", "-1"],
            "error: --cooldown: Input should be greater than or equal to 0\n",
        ),
        (["rules", "add", "r", "--hours", "25-99"], "error: --hours: '25-99'"),
        (["scan"], "error: nothing to scan: give a folder, or --source NAME of a configured source"),
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


def test_help_summaries_are_not_cut_at_an_example(workdir: Path) -> None:
    """Click ended a summary at "e.g." before a quote: `ask  Answer a free QUESTION about MEDIA, e.g.`."""
    top = vigil("--help", cwd=workdir).stdout
    assert "  ask            Answer a free QUESTION about MEDIA.\n" in top
    assert "  sql            Run one read-only SQL query.\n" in top
    for group in ([], ["targets"], ["rules"]):
        listing = vigil(*group, "--help", cwd=workdir).stdout
        assert not [line for line in listing.splitlines() if line.rstrip().endswith(("e.g.", "i.e."))], (
            listing
        )


def test_the_settings_file_may_follow_the_command(workdir: Path) -> None:
    """`-c` worked only before the sub-command; now it follows it too, `rules add` included."""
    conf = workdir / "elsewhere.toml"
    conf.write_text('[[targets]]\nname = "van"\ndescription = "a white van"\n')
    checked = vigil("config", "check", "-c", str(conf), cwd=workdir)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok: {conf}: 0 source(s), 1 target(s)")
    env = {"VIGIL_DATABASE__URL": f"sqlite:///{workdir / 'v.db'}"}
    added = CliRunner().invoke(
        cli, ["rules", "add", "r", "-t", "van", "-c", str(conf), "--channel", "log"], env=env
    )
    assert added.exit_code == 0, added.output
    listed = CliRunner().invoke(cli, ["rules", "list", "--config", str(conf)], env=env)
    assert "targets=van" in listed.output and "-> log" in listed.output, listed.output
    missing = CliRunner().invoke(cli, ["targets", "list", "--config", "nowhere.toml"], env=env)
    assert missing.exit_code == 2 and "config file not found: nowhere.toml" in missing.output


def test_dash_c_is_the_settings_file_on_every_command(workdir: Path) -> None:
    """Issue 22 (8): `-c` was --config everywhere but --channel on `rules add`. Every command's `-c` is
    --config now; the old habit (`rules add r -c log`) gets one line saying so."""

    def commands(
        group: click.Group, path: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    found = list(commands(cli))
    assert len(found) > 20
    for path, command in found:
        owners = [p for p in command.params if "-c" in getattr(p, "opts", ())]
        assert [p.opts for p in owners] == [["--config", "-c"]], (path, [p.opts for p in owners])
    habit = CliRunner().invoke(cli, ["rules", "add", "r", "-c", "log"])
    assert habit.exit_code == 2
    assert "no settings file 'log': -c is --config on every command; name a channel with --channel log" in (
        habit.output
    )


def test_a_database_at_an_old_revision_is_refused(workdir: Path) -> None:
    from vigil.store.migrate import upgrade

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

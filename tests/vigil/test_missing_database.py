"""Commands agree about a database that does not exist: those that only read say the same line and create
nothing (no empty 4 KB file); those that write create it in the data dir and say so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from vigil.cli import cli


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_data_dir: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return private_data_dir / "vigil.db"


@pytest.mark.parametrize(
    "args",
    [["status"], ["sql", "SELECT 1"], ["alerts", "list"], ["health", "--component", "watcher"]],
)
def test_reading_commands_say_the_same_and_create_nothing(empty: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    line = f"no database at {empty} yet: `vigil run` or `vigil db upgrade` creates it"
    assert line in result.output, result.output
    assert not empty.exists()
    assert not Path("vigil.db").exists()


def test_writing_commands_create_it_in_the_data_dir(empty: Path) -> None:
    result = CliRunner().invoke(cli, ["targets", "add", "van", "a white van"])
    assert result.exit_code == 0, result.output
    assert f"initialised database sqlite:///{empty}" in result.output
    assert empty.is_file() and not Path("vigil.db").exists()
    assert "van" in CliRunner().invoke(cli, ["targets", "list"]).output

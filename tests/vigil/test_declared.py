"""The declared configuration: what vigil.toml declares is owned by it, applied the same way by every
process; what the CLI makes is owned by the database. Each test reproduces a report from a user."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from tests.support.alerting import add_analysis, add_media, dispose_engines, factory_for
from tests.support.processes import wait_for
from vigil.alerts.evaluation import evaluate_analysis
from vigil.cli import cli
from vigil.config.settings import load_settings
from vigil.declared.apply import apply_settings
from vigil.store.db import write_session
from vigil.store.schema import Alert, AlertRule, Delivery, Source, Target

TARGETS = """
[[targets]]
name = "van"
description = "a white delivery van"
threshold = 0.3
"""
RULE = """
[[alerts.channels]]
name = "ops"
kind = "log"
[[alerts.rules]]
name = "r"
targets = ["van"]
channels = ["ops"]
cooldown_s = 0
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIGIL_DATABASE__URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    yield tmp_path
    dispose_engines()


def write(home: Path, text: str, name: str = "vigil.toml") -> Path:
    path = home / name
    path.write_text(f'[[watch.sources]]\nname = "cam1"\npath = "{home}"\n' + text)
    return path


def vigil(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def fire(home: Path) -> list[Alert]:
    """A new media file whose one window scores 0.9 for van, evaluated as the worker does."""
    settings = load_settings(home / "vigil.toml")
    factory = factory_for(settings.database.url)
    with write_session(factory) as session:
        analysis = add_analysis(session, add_media(session), {"van": [0.9]})
        evaluate_analysis(session, analysis, settings=settings)
        return list(session.scalars(select(Alert).where(Alert.media_id == analysis.media_id)))


def test_a_rule_removed_from_the_file_stops_firing(home: Path) -> None:
    write(home, TARGETS + RULE)
    assert vigil("rules", "list").exit_code == 0
    assert len(fire(home)) == 1
    write(home, TARGETS)  # rule r and channel ops removed
    listed = vigil("rules", "list")
    assert listed.exit_code == 0, listed.output
    assert "r  off" in listed.output
    assert fire(home) == []
    factory = factory_for(f"sqlite:///{home / 'vigil.db'}")
    with factory() as session:
        failed = session.scalars(select(Delivery).where(Delivery.status == "failed")).all()
        rule = session.scalar(select(AlertRule).where(AlertRule.name == "r"))
    assert failed == []  # nothing tried to reach the channel that went away
    assert rule is not None and rule.declared_in is None  # handed to the database, disabled


def test_a_rule_added_back_to_the_file_fires_again(home: Path) -> None:
    write(home, TARGETS + RULE)
    vigil("rules", "list")
    write(home, TARGETS)
    vigil("rules", "list")
    write(home, TARGETS + RULE)
    assert "r  on" in vigil("rules", "list").output
    assert len(fire(home)) == 1


def test_cli_edits_of_file_targets_are_refused_naming_the_file(home: Path) -> None:
    config = write(home, TARGETS)
    for args in (
        ["targets", "disable", "van"],
        ["targets", "enable", "van"],
        ["targets", "add", "van", "a red van"],
        ["targets", "remove", "van"],
    ):
        result = vigil(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().splitlines()[-1] == (
            f"error: target van is declared in {config.resolve()}: change it there, not with the CLI"
        )
    listed = vigil("targets", "list")
    assert "van  on   threshold 0.30  a white delivery van" in listed.output


def test_cli_edits_of_file_rules_are_refused(home: Path) -> None:
    config = write(home, TARGETS + RULE)
    for args in (["rules", "add", "r", "-t", "van"], ["rules", "remove", "r", "--yes"]):
        result = vigil(*args)
        assert result.exit_code == 2, result.output
        assert f"rule r is declared in {config.resolve()}" in result.output


def test_cli_targets_survive_a_reapply_and_keep_their_threshold(home: Path) -> None:
    write(home, TARGETS)
    assert vigil("targets", "add", "cat", "a cat", "--threshold", "0.8").exit_code == 0
    assert vigil("targets", "disable", "cat").exit_code == 0
    assert vigil("targets", "list").exit_code == 0  # applies the file again
    listed = vigil("targets", "list").output
    assert "cat  off  threshold 0.80  a cat\n" in listed  # `targets disable` is not undone
    changed = vigil("targets", "add", "cat", "a black cat")
    assert changed.exit_code == 0, changed.output
    assert "cat  off  threshold 0.80  a black cat\n" in vigil("targets", "list").output


def test_a_target_removed_from_the_file_is_disabled_not_deleted(home: Path) -> None:
    write(home, TARGETS)
    vigil("targets", "list")
    write(home, "")
    listed = vigil("targets", "list").output
    assert "van  off  threshold 0.30  a white delivery van\n" in listed
    assert vigil("targets", "enable", "van").exit_code == 0  # now owned by the database


def test_targets_remove_of_an_unknown_target_says_so_before_asking(home: Path) -> None:
    vigil("db", "upgrade")
    result = CliRunner().invoke(cli, ["targets", "remove", "nope"], input="")
    assert result.exit_code == 2
    assert result.output.strip() == "error: no target named 'nope'"


def test_another_file_neither_retires_these_rows_nor_stays_silent(home: Path) -> None:
    main = write(home, TARGETS + RULE)
    vigil("db", "upgrade")
    apply_settings(factory_for(f"sqlite:///{home / 'vigil.db'}"), load_settings(main))
    other = home / "so.toml"
    other.write_text(
        '[[alerts.channels]]\nname = "hook"\nkind = "webhook"\nurl = "http://127.0.0.1:9/h"\n'
        '[[alerts.rules]]\nname = "so"\nchannels = ["hook"]\n'
    )
    applied = apply_settings(factory_for(f"sqlite:///{home / 'vigil.db'}"), load_settings(other))
    line = applied.disagreement_line()
    assert line == (
        f"settings differ from the database: rule r is declared in {main.resolve()}, not here; "
        "rule r sends to ops, a channel these settings do not configure"
    )
    factory = factory_for(f"sqlite:///{home / 'vigil.db'}")
    with factory() as session:
        rules = {r.name: (r.enabled, r.declared_in) for r in session.scalars(select(AlertRule))}
        sources = {s.name: s.declared_in for s in session.scalars(select(Source))}
        van = session.scalar(select(Target).where(Target.name == "van"))
    assert rules == {"r": (True, str(main.resolve())), "so": (True, str(other.resolve()))}
    assert sources == {"cam1": str(main.resolve())}
    assert van is not None and van.enabled


def test_applying_twice_changes_nothing(home: Path) -> None:
    config = write(home, TARGETS + RULE)
    factory = factory_for(f"sqlite:///{home / 'vigil.db'}")
    vigil("db", "upgrade")
    apply_settings(factory, load_settings(config))
    with factory() as session:
        before = [(r.name, r.updated_at) for r in session.scalars(select(AlertRule))]
    applied = apply_settings(factory, load_settings(config))
    with factory() as session:
        after = [(r.name, r.updated_at) for r in session.scalars(select(AlertRule))]
    assert before == after and applied.retired == [] and applied.disagreement_line() is None


@pytest.mark.slow
def test_a_worker_whose_settings_disagree_says_so_at_start_in_one_line(home: Path) -> None:
    """A real (delivery) worker started with another file than the one that declared rule r."""
    main = write(home, TARGETS + RULE)
    vigil("db", "upgrade")
    apply_settings(factory_for(f"sqlite:///{home / 'vigil.db'}"), load_settings(main))
    other = home / "other.toml"
    other.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_DATABASE__URL": f"sqlite:///{home / 'vigil.db'}",
        "VIGIL_BROKER__URL": f"sqla+sqlite:///{home / 'broker.db'}",
        "VIGIL_METRICS__ENABLED": "false",
        "VIGIL_LOG__FORMAT": "text",
    }
    log = home / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers", "--queue", "cpu", "--config", str(other)],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), what="worker ready", timeout=120)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if "settings differ from the database" in line]
    assert len(lines) == 1, log.read_text()
    assert lines[0].endswith(
        f"settings differ from the database: rule r is declared in {main.resolve()}, not here; "
        "rule r sends to ops, a channel these settings do not configure"
    )

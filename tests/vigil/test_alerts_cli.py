"""`vigil rules add/list/remove/test` and `vigil alerts list/show/retry` on a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from tests.support.alerting import (
    Receiver,
    Reply,
    add_analysis,
    add_media,
    factory_for,
    make_settings,
)
from vigil.alerts.delivery import deliver
from vigil.alerts.evaluation import evaluate_analysis
from vigil.cli import cli
from vigil.store.db import write_session
from vigil.store.schema import Delivery


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> Path:
    path = tmp_path / "vigil.toml"
    path.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "vigil.db"}"
[broker]
url = "sqla+sqlite:///{tmp_path / "broker.db"}"
[watch]
sources = [{{ name = "cam1", path = "{tmp_path}" }}]
[[targets]]
name = "person"
description = "a person"
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{receiver.url}"
[[alerts.rules]]
name = "night"
targets = ["person"]
hours = "22-06"
timezone = "Europe/Paris"
channels = ["hook", "log"]
"""
    )
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


def vigil(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result


def test_rules_add_list_remove(config: Path) -> None:
    added = vigil(config, "rules", "add", "vans", "-t", "person", "--days", "sat,sun", "--min-score", "0.8")
    assert added.exit_code == 0, added.output
    listed = vigil(config, "rules", "list")
    assert (
        "night  on   targets=person sources=* min_score=threshold when=daily 22-06 Europe/Paris"
        in listed.output
    )
    assert "vans  on   targets=person sources=* min_score=0.80 when=sat,sun all day UTC" in listed.output
    bad = vigil(config, "rules", "add", "x", "-t", "ghost")
    assert bad.exit_code == 2 and "alerts.rules[x].targets: unknown target(s): ghost" in bad.output
    bad = vigil(config, "rules", "add", "x", "--message", "{target.__class__}")
    assert bad.exit_code == 2 and "template field {target.__class__} is not allowed" in bad.output
    assert vigil(config, "rules", "remove", "night", "--yes").exit_code == 2  # lives in the settings file
    assert vigil(config, "rules", "remove", "vans", "--yes").exit_code == 0
    assert "vans" not in vigil(config, "rules", "list").output


def test_rules_test_and_alerts_list_show_retry(config: Path, tmp_path: Path, receiver: Receiver) -> None:
    assert vigil(config, "rules", "list").exit_code == 0  # creates the database and syncs the rules
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    settings = make_settings(
        url,
        rules=[{"name": "night", "targets": ["person"], "hours": "22-06", "channels": ["hook", "log"]}],
        channels=[{"name": "hook", "kind": "webhook", "url": receiver.url}],
        targets=(("person", 0.5),),
    )
    factory = factory_for(url)
    with write_session(factory) as session:
        media = add_media(session, mtime=datetime(2026, 6, 1, 20, 0, 0, tzinfo=UTC))  # 22:00 in Paris
        analysis = add_analysis(session, media, {"person": [0.9, 0.2, 0.2]}, inherited={2})
        ids = evaluate_analysis(session, analysis, settings=settings)
    why = vigil(config, "rules", "test", "night", "--media", str(media.id))
    assert why.exit_code == 0, why.output
    first = "person window 0 (0.0–10.0 s): score 0.90 >= 0.50; Mon 2026-06-01 22:00:00 CEST in schedule"
    assert first in why.output
    assert "person window 1 (10.0–20.0 s): score 0.20 <  0.50" in why.output
    # the static-scene gate
    assert "person window 2 inherited (20.0–30.0 s): score 0.20 <  0.50" in why.output
    assert "=> person window 0: blocked: already fired as alert" in why.output
    receiver.reply = lambda _n, _r: Reply(400)
    for delivery_id in ids:
        deliver(factory, delivery_id, settings=settings)
    listed = vigil(config, "alerts", "list", "--status", "failed")
    assert "night  warning  0.90  person seen at cam1 (0.90)" in listed.output
    assert "[hook:failed log:delivered]" in listed.output
    shown = vigil(config, "alerts", "show", "1")
    assert "-> hook" in shown.output and "last error: HTTP 400: ok" in shown.output
    retried = vigil(config, "alerts", "retry", "1")
    assert retried.exit_code == 0 and "1 deliveries pending again, 1 sent to the queue" in retried.output
    with factory() as session:
        rows = {d.channel: d for d in session.scalars(select(Delivery))}
    assert rows["hook"].status == "pending" and rows["hook"].attempts == 0
    receiver.reply = lambda _n, _r: Reply(200)
    assert deliver(factory, rows["hook"].id, settings=settings).status == "delivered"
    assert len(set(receiver.ids())) == 1 and len(receiver.requests) == 2  # same idempotency key both times

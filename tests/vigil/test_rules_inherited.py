"""Rules and the static-scene gate (docs/alerts.md, *Inherited windows*): an inherited window counts exactly
as the scored window it copies. A match counts and extends a run; a miss breaks one; the alert's best
window is the scored one. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.support.alerting import (
    T0,
    add_analysis,
    add_media,
    factory_for,
    make_settings,
    sync_all,
)
from vigil.alerts.evaluation import evaluate_analysis, explain_rule
from vigil.store.db import write_session
from vigil.store.schema import Alert, Detection


def setup(url: str, **rule: Any):  # type: ignore[no-untyped-def]
    rules = [{"name": "r1", "targets": ["person"], "cooldown_s": 0, **rule}]
    settings = make_settings(url, rules=rules)
    factory = factory_for(url)
    sync_all(factory, settings, ("cam1",))
    return settings, factory


def run(factory, settings, scores: list[float], inherited: set[int]) -> tuple[int, list[Alert]]:  # type: ignore[no-untyped-def]
    """Store one analysis of a new file (person scores in window order, `inherited` windows marked) and
    evaluate it; its media id and the alerts it fired."""
    with write_session(factory) as session:
        media = add_media(session)
        analysis = add_analysis(session, media, {"person": scores}, inherited=inherited)
        evaluate_analysis(session, analysis, settings=settings, now=T0)
        media_id = media.id
    with factory() as session:
        fired = list(session.scalars(select(Alert).where(Alert.media_id == media_id).order_by(Alert.id)))
        return media_id, fired


def test_inherited_matches_count_and_extend_a_run_to_min_consecutive(db_url: str) -> None:
    """A person standing still: window 0 scored, 1 and 2 inherit it. Three windows in a row: it fires, as
    three scored windows of the same picture fire (the gate changes the cost, not the alert)."""
    settings, factory = setup(db_url, min_consecutive=3)
    _, gated = run(factory, settings, [0.9, 0.9, 0.9], inherited={1, 2})
    _, scored = run(factory, settings, [0.9, 0.9, 0.9], inherited=set())
    assert [(a.start_s, a.end_s, a.score) for a in gated] == [(0.0, 30.0, 0.9)]
    assert [(a.start_s, a.end_s, a.score) for a in scored] == [(0.0, 30.0, 0.9)]
    with factory() as session:  # the alert's best window is the scored one: the model's own evidence
        best = session.get_one(Detection, gated[0].detection_id)
        assert (best.window_index, best.inherited) == (0, False)
    # without the inherited windows the run would be one window long: they are what made it fire
    _, alone = run(factory, settings, [0.9, 0.2, 0.2], inherited={2})
    assert alone == []


def test_inherited_misses_break_a_run_and_never_fire(db_url: str) -> None:
    """Scored 0.9, scored 0.2, 0.2 inherited, scored 0.9, 0.9 inherited: the inherited miss is a miss, so no
    run reaches three windows; the inherited match after it extends its own run to two."""
    settings, factory = setup(db_url, min_consecutive=3)
    media_id, fired = run(factory, settings, [0.9, 0.2, 0.2, 0.9, 0.9], inherited={2, 4})
    assert fired == []
    with factory() as session:
        why = explain_rule(session, "r1", media_id, now=T0)
    got = [(c.window_index, c.inherited, c.score_ok, c.run) for c in why.checks]
    assert got == [
        (0, False, True, 1),
        (1, False, False, 0),
        (2, True, False, 0),
        (3, False, True, 2),
        (4, True, True, 2),
    ]

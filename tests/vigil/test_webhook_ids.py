"""Webhook ids across installations (issue 22, item 8): two sites that alert on the same file content sent
the same `webhook-id`, so a receiver de-duplicating by it (as docs/alerts.md suggests) dropped the second
site's alert. Two real migrated databases, one real HTTP receiver, the real delivery path."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from tests.support.alerting import (
    Reply,
    add_analysis,
    add_media,
    factory_for,
    make_settings,
    receiving,
    sync_all,
)
from vigil.alerts.delivery import deliver
from vigil.alerts.evaluation import evaluate_analysis
from vigil.config.settings import Settings
from vigil.store.db import installation_uid, write_session
from vigil.store.migrate import upgrade
from vigil.store.schema import Alert, Delivery, Installation, utcnow

SAME_CONTENT = "ab" * 32  # both sites analysed a file with this sha256


def site(root: Path, url: str) -> tuple[Settings, sessionmaker[Session]]:
    db = f"sqlite:///{root / 'vigil.db'}"
    root.mkdir()
    upgrade(db)
    settings = make_settings(
        db,
        rules=[{"name": "r", "targets": ["person"], "cooldown_s": 0, "channels": ["hook"]}],
        channels=[{"name": "hook", "kind": "webhook", "url": url, "timeout_s": 2.0}],
    )
    factory = factory_for(db)
    sync_all(factory, settings)
    return settings, factory


def fire(settings: Settings, factory: sessionmaker[Session]) -> int:
    with write_session(factory) as session:
        analysis = add_analysis(session, add_media(session, sha256=SAME_CONTENT), {"person": [0.9]})
        (delivery_id,) = evaluate_analysis(session, analysis, settings=settings)
    return delivery_id


def test_two_installations_alerting_on_the_same_file_send_different_webhook_ids_stable_per_delivery(
    tmp_path: Path,
) -> None:
    with receiving(lambda n, _req: Reply(503 if n == 1 else 200)) as receiver:  # the first answer: 503
        sites = [site(tmp_path / "site-a", receiver.url), site(tmp_path / "site-b", receiver.url)]
        dedup = []
        for settings, factory in sites:
            delivery_id = fire(settings, factory)
            with factory() as session:
                dedup.append(session.scalars(select(Alert.dedup_key)).one())
            if deliver(factory, delivery_id, settings=settings).status != "delivered":
                with write_session(factory) as session:  # time passes: the retry is due
                    session.get_one(Delivery, delivery_id).next_attempt_at = utcnow()
                assert deliver(factory, delivery_id, settings=settings).status == "delivered"
        received = receiver.ids()
    assert dedup[0] == dedup[1]  # the same rule, source, target and content on both sites
    site_a, retry_a, site_b = received
    assert retry_a == site_a  # the retry of one delivery keeps its id
    assert site_b != site_a, "two sites sent the same webhook-id for the same file content"


def test_the_installation_uid_is_made_by_the_migration_and_made_again_if_lost(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'vigil.db'}"
    upgrade(db)
    factory = factory_for(db)
    with factory() as session:
        made = session.scalars(select(Installation.uid)).one()
        assert installation_uid(session) == made and len(made) == 32
    with write_session(factory) as session:
        session.execute(delete(Installation))
    with write_session(factory) as session:
        again = installation_uid(session)
    with factory() as session:
        assert session.scalars(select(Installation.uid)).one() == again != made

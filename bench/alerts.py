"""Alert evaluation throughput: 100 rules over 10,000 detections (200 analyses x 10 targets x 5 windows).

Baseline: a naive evaluator that compiles every rule for every analysis and asks the database, for every
(detection, rule) pair that passes its score, whether the rule is cooling down, then checks dedup and fires
per run. Ours: `vigil.alerts.evaluation.evaluate_analysis` (rules compiled once, one dedup and one cooldown
query per analysis). Both run on identical fresh SQLite databases, one write transaction per analysis as in
the worker, and must fire the same number of alerts. Prints a table, then one JSON line.

    PYTHONPATH=. python bench/alerts.py [--analyses 200] [--rules 100] [--quick]

``--quick`` is a smoke run (10 analyses, 10 rules): it proves the script runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vigil.alerts.compiled import compile_rule
from vigil.alerts.evaluation import evaluate_analysis
from vigil.alerts.matching import Context, FiringRun, _runs, check_windows, dedup_key, load_context
from vigil.alerts.outbox import ChannelState, add_deliveries, new_alert
from vigil.config.settings import DatabaseSettings, RuleSettings, Settings, TargetSettings
from vigil.declared.apply import apply_settings
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.migrate import upgrade
from vigil.store.schema import Alert, AlertRule, Analysis, Detection, Media, Source, Target

TARGETS = [f"t{i}" for i in range(10)]
SOURCES = ["cam1", "cam2", "cam3", "door-front", "door-back"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]


def make_rules(n: int, rng: random.Random) -> list[RuleSettings]:
    rules = []
    for i in range(n):
        rules.append(
            RuleSettings(
                name=f"rule{i}",
                targets=rng.sample(TARGETS, rng.randint(1, 3)),
                sources=[rng.choice(["cam*", "cam1", "door-*", "*"])],
                min_score=rng.choice([None, 0.6, 0.75, 0.9]),
                hours=rng.choice([None, None, "22-06", "08-18"]),
                timezone=rng.choice(ZONES),
                min_consecutive=rng.choice([1, 1, 2, 3]),
                cooldown_s=rng.choice([0.0, 60.0, 3600.0]),
                channels=["log"],
            )
        )
    return rules


def build(url: str, settings: Settings, analyses: int, seed: int) -> tuple[sessionmaker[Session], list[int]]:
    upgrade(url)
    factory = session_factory(make_engine(DatabaseSettings(url=url)))
    rng = random.Random(seed)
    with write_session(factory) as session:
        for t in settings.targets:
            session.add(Target(name=t.name, description=t.description, threshold=t.threshold))
        for s in SOURCES:
            session.add(Source(name=s, path=f"/srv/{s}"))
    apply_settings(factory, settings)
    ids = []
    t0 = datetime(2026, 3, 7, 18, 0, tzinfo=UTC)
    with write_session(factory) as session:
        targets = list(session.scalars(select(Target).order_by(Target.id)))
        sources = list(session.scalars(select(Source).order_by(Source.id)))
        for i in range(analyses):
            media = Media(
                source_id=sources[i % len(sources)].id,
                rel_path=f"{i}.mp4",
                path=f"/srv/{i}.mp4",
                kind="video",
                size_bytes=1,
                mtime=t0 + timedelta(minutes=7 * i),
                sha256=f"{i:064x}",
                status="done",
            )
            session.add(media)
            session.flush()
            analysis = Analysis(media_id=media.id, model_id="m", template_version=1)
            session.add(analysis)
            session.flush()
            for target in targets:
                for w in range(5):
                    p = rng.betavariate(2, 3)
                    session.add(
                        Detection(
                            analysis_id=analysis.id,
                            media_id=media.id,
                            target_id=target.id,
                            window_index=w,
                            start_s=w * 10.0,
                            end_s=w * 10.0 + 10,
                            p_yes=p,
                            matched=p >= target.threshold,
                        )
                    )
            ids.append(analysis.id)
    return factory, ids


def naive_evaluate(session: Session, analysis: Analysis, *, settings: Settings, now: datetime) -> int:
    """Per detection and rule: compile, check, query cooldown for each passing pair; then fire per run."""
    ctx = load_context(session, analysis.media_id, analysis_id=analysis.id)
    fired = 0
    for row in session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)):
        rule = compile_rule(row)
        if not rule.matches_source(ctx.source.name):
            continue
        ctx = Context(ctx.media, ctx.source, ctx.detections)  # no cache shared across rules
        for target_id, pairs in check_windows(rule, ctx, every_window=True).items():
            for _det, check in pairs:
                if check.passes:  # the naive per-pair question: is this rule cooling down for this source?
                    session.scalar(
                        select(func.max(Alert.fired_at)).where(
                            Alert.rule_id == rule.id, Alert.source_id == ctx.source.id
                        )
                    )
            target = next(t for _d, t in ctx.detections if t.id == target_id)
            for run in _runs(pairs):
                if len(run) < rule.min_consecutive:
                    continue
                cand = FiringRun(rule, target, run)
                cand.dedup_key = dedup_key(cand, ctx)
                if session.scalar(select(Alert.id).where(Alert.dedup_key == cand.dedup_key)):
                    continue
                last = session.scalar(
                    select(func.max(Alert.fired_at)).where(
                        Alert.rule_id == rule.id, Alert.source_id == ctx.source.id
                    )
                )
                if last is not None and rule.cooldown_s > 0:
                    last = last if isinstance(last, datetime) else datetime.fromisoformat(last)
                    last = last if last.tzinfo else last.replace(tzinfo=UTC)
                    if (now - last).total_seconds() < rule.cooldown_s:
                        continue
                alert = new_alert(cand, ctx, now=now)
                session.add(alert)
                session.flush()
                add_deliveries(session, [(cand, alert)], ChannelState.load(session, settings), now=now)
                fired += 1
    return fired


def run(
    factory: sessionmaker[Session], ids: list[int], settings: Settings, *, naive: bool
) -> tuple[float, int]:
    now = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    began = time.perf_counter()
    for i, analysis_id in enumerate(ids):
        with write_session(factory) as session:
            analysis = session.get_one(Analysis, analysis_id)
            at = now + timedelta(seconds=20 * i)
            if naive:
                naive_evaluate(session, analysis, settings=settings, now=at)
            else:
                evaluate_analysis(session, analysis, settings=settings, now=at)
    seconds = time.perf_counter() - began
    with factory() as session:
        return seconds, int(session.scalar(select(func.count()).select_from(Alert)) or 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--analyses", type=int, default=200)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 analyses, 10 rules (no figures)")
    args = parser.parse_args()
    if args.quick:
        args.analyses, args.rules = 10, 10
    rng = random.Random(args.seed)
    settings = Settings(
        targets=[TargetSettings(name=t, description=f"a {t}", threshold=0.6) for t in TARGETS],
    )
    settings.alerts.rules = make_rules(args.rules, rng)
    detections = args.analyses * len(TARGETS) * 5
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, naive in (("baseline", True), ("ours", False)):
            factory, ids = build(f"sqlite:///{Path(tmp) / label}.db", settings, args.analyses, args.seed)
            results[label] = run(factory, ids, settings, naive=naive)
            factory.kw["bind"].dispose()
    (base_s, base_alerts), (ours_s, ours_alerts) = results["baseline"], results["ours"]
    if base_alerts != ours_alerts:
        sys.exit(f"results differ: baseline fired {base_alerts} alerts, ours {ours_alerts}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.rules} rules x {detections} detections ({args.analyses} analyses), {ours_alerts} alerts fired"
    )
    print(f"  baseline (per pair queries): {base_s:8.3f} s  {detections / base_s:10.0f} detections/s")
    print(f"  ours (batched):              {ours_s:8.3f} s  {detections / ours_s:10.0f} detections/s")
    print(f"  speed-up: {base_s / ours_s:.1f}x")
    print(
        json.dumps(
            {
                "bench": "alerts",
                "quick": args.quick,
                "rules": args.rules,
                "detections": detections,
                "alerts": ours_alerts,
                "baseline_s": round(base_s, 4),
                "ours_s": round(ours_s, 4),
                "ratio": round(base_s / ours_s, 2),
                "detections_per_s": round(detections / ours_s),
                "peak_rss_mb": round(rss_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Which detections of one clip satisfy a rule: per-window checks, runs of consecutive windows, candidates
with their dedup keys."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.alerts.compiled import CompiledRule
from vigil.store.latest import newest_per_target
from vigil.store.schema import (
    Detection,
    Media,
    Source,
    Target,
)

log = logging.getLogger(__name__)


@dataclass
class WindowCheck:
    """Why one detection does or does not count for a rule (shown by `vigil rules test`)."""

    detection_id: int
    target_id: int
    target: str
    window_index: int
    start_s: float
    end_s: float
    score: float
    min_score: float
    local_time: datetime
    score_ok: bool
    schedule_ok: bool
    run: int = 0  # length of the run of passing windows this one belongs to (0 when it does not pass)
    inherited: bool = False  # scores copied from the last scored window (the static-scene gate)
    analysis_id: int = 0  # the analysis this window's score came from

    @property
    def passes(self) -> bool:
        return self.score_ok and self.schedule_ok


@dataclass
class FiringRun:
    """A run of passing windows long enough to fire a rule."""

    rule: CompiledRule
    target: Target
    windows: list[tuple[Detection, WindowCheck]]
    dedup_key: str = ""

    @property
    def best(self) -> tuple[Detection, WindowCheck]:
        return max(self.windows, key=lambda pair: pair[1].score)


@dataclass
class Context:
    media: Media
    source: Source
    detections: Sequence[tuple[Detection, Target]]
    local_cache: dict[tuple[str, float], datetime] = field(default_factory=dict)

    def local_time(self, zone: ZoneInfo, start_s: float) -> datetime:
        key = (zone.key, start_s)
        local = self.local_cache.get(key)
        if local is None:
            local = (self.media.mtime + timedelta(seconds=start_s)).astimezone(zone)
            self.local_cache[key] = local
        return local


def check_windows(
    rule: CompiledRule, ctx: Context, *, every_window: bool = False
) -> dict[int, list[tuple[Detection, WindowCheck]]]:
    """Per target (matching the rule): its detections in window order with their checks and run lengths.

    Windows below the minimum score are left out unless `every_window` (they can never be in a run). An
    inherited window (the static-scene gate) counts exactly as the scored window it copies (docs/alerts.md).
    """
    by_target: dict[int, list[tuple[Detection, WindowCheck]]] = defaultdict(list)
    for det, target in ctx.detections:
        if not rule.matches_target(target.name):
            continue
        minimum = rule.threshold(target.threshold)
        if det.p_yes < minimum and not every_window:
            continue
        local = ctx.local_time(rule.zone, det.start_s)
        check = WindowCheck(
            det.id,
            target.id,
            target.name,
            det.window_index,
            det.start_s,
            det.end_s,
            det.p_yes,
            minimum,
            local,
            score_ok=det.p_yes >= minimum,
            schedule_ok=rule.in_schedule(local),
            inherited=det.inherited,
            analysis_id=det.analysis_id,
        )
        by_target[target.id].append((det, check))
    for pairs in by_target.values():
        pairs.sort(key=lambda pair: pair[1].window_index)
        for run in _runs(pairs):
            for _det, check in run:
                check.run = len(run)
    return by_target


def _runs(pairs: list[tuple[Detection, WindowCheck]]) -> list[list[tuple[Detection, WindowCheck]]]:
    """Maximal runs of passing windows with consecutive indexes (pairs sorted by window index)."""
    runs: list[list[tuple[Detection, WindowCheck]]] = []
    for pair in pairs:
        if not pair[1].passes:
            continue
        if runs and pair[1].window_index == runs[-1][-1][1].window_index + 1:
            runs[-1].append(pair)
        else:
            runs.append([pair])
    return runs


def find_candidates(rule: CompiledRule, ctx: Context) -> list[FiringRun]:
    """Each run of passing windows at least `min_consecutive` long, in clip order."""
    targets = {target.id: target for _det, target in ctx.detections}
    found = [
        FiringRun(rule, targets[target_id], run)
        for target_id, pairs in check_windows(rule, ctx).items()
        for run in _runs(pairs)
        if len(run) >= rule.min_consecutive
    ]
    for candidate in found:
        candidate.dedup_key = dedup_key(candidate, ctx)
    found.sort(key=lambda c: (c.windows[0][1].start_s, c.target.id))
    return found


def dedup_key(candidate: FiringRun, ctx: Context) -> str:
    content = f"sha256:{ctx.media.sha256}" if ctx.media.sha256 else f"media:{ctx.media.id}"
    first = candidate.windows[0][1].window_index
    rule, source, target = candidate.rule.id, ctx.source.id, candidate.target.id
    return f"rule:{rule}/source:{source}/{content}/target:{target}/window:{first}"


def load_context(session: Session, media_id: int, *, analysis_id: int | None = None) -> Context:
    """The media, its source and the detections of one analysis; by default the newest answer per target
    (a re-analysis of one target leaves the others' newest answers in their own analyses)."""
    media = session.get_one(Media, media_id)
    source = session.get_one(Source, media.source_id)
    which = (
        (Detection.media_id == media_id) & newest_per_target()
        if analysis_id is None
        else Detection.analysis_id == analysis_id
    )
    rows = session.execute(
        select(Detection, Target)
        .join(Target, Target.id == Detection.target_id)
        .where(which)
        .order_by(Detection.target_id, Detection.window_index)
    ).all()
    return Context(media, source, [(det, target) for det, target in rows])

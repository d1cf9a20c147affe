"""What the pages read. Plain SELECTs through the database's own session, the same on SQLite and
PostgreSQL; the timeline pages by keyset on the detection id (indexed), never by OFFSET."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Select, cast, exists, func, select
from sqlalchemy.orm import Session, aliased

from vigil.store.latest import newest_per_target
from vigil.store.schema import (
    Alert,
    AlertRule,
    Analysis,
    Delivery,
    Detection,
    Feedback,
    Media,
    Source,
    StreamOutage,
    Target,
)

PAGE_SIZE = 50
FEEDBACK_STATES = ("", "none", "right", "wrong")


@dataclass(frozen=True)
class TimelineFilter:
    target: str = ""
    source: str = ""
    since: datetime | None = None  # on the file's time (media.mtime, UTC)
    until: datetime | None = None
    min_score: float | None = None
    feedback: str = ""  # "", none, right, wrong
    alerts_only: bool = False
    before: int | None = None  # keyset: detections with a smaller id
    limit: int = PAGE_SIZE


@dataclass
class AlertView:
    id: int
    rule: str
    severity: str
    fired_at: datetime
    deliveries: list[tuple[str, str, int, str | None]] = field(default_factory=list)  # channel, status, …


@dataclass
class TimelineRow:
    detection_id: int
    media_id: int
    target: str
    source: str
    rel_path: str
    seen_at: datetime  # file mtime - duration + window start: a camera closes a clip when it ends
    score: float
    matched: bool
    start_s: float
    end_s: float
    evidence: str | None
    has_thumbnail: bool
    verdict: str | None
    note: str | None
    inherited: bool  # the static-scene gate copied this window's scores from the last scored one
    kind: str  # of the media: an image's window is shown as the image (formats.types.window_span)
    analysis_id: int
    current: bool  # from the newest analysis that asked this target (else shown for the alert it fired)
    alerts: list[AlertView] = field(default_factory=list)


def timeline_query(
    f: TimelineFilter, *, rows: str, target_id: int | None, source_id: int | None
) -> Select[Any]:
    """`rows`: "matched" (the newest answers per target that matched: walks the (matched, id) or
    (target_id, matched, id) index backwards, no sort), "alerted" (detections an alert fired on) or
    "alerted_other" (alerted ones the first part leaves out: below the threshold but let through by a
    rule's min_score, or answered again since by a newer analysis; an alert always shows the window that
    fired it). An OR of the parts would make the planner collect and sort every match."""
    d = Detection
    newest = newest_per_target()
    query = (
        select(
            d.id, d.media_id, Target.name, Source.name, Media.rel_path, Media.mtime, Media.duration_s,
            d.p_yes, d.matched, d.start_s, d.end_s, d.evidence, d.thumbnail_path, Feedback.verdict,
            Feedback.note, d.inherited, Media.kind, d.analysis_id, newest.label("current"),
        )
        .join(Media, Media.id == d.media_id)
        .join(Source, Source.id == Media.source_id)
        .join(Target, Target.id == d.target_id)
        .outerjoin(Feedback, Feedback.detection_id == d.id)
    )  # fmt: skip
    alerted = d.id.in_(select(Alert.detection_id).where(Alert.detection_id.is_not(None)))
    if rows == "matched":
        query = query.where(d.matched.is_(True), newest)
    elif rows == "alerted":
        query = query.where(alerted)
    else:
        query = query.where(alerted, ~(d.matched.is_(True) & newest))
    if target_id is not None:
        query = query.where(d.target_id == target_id)
    if source_id is not None:
        query = query.where(Media.source_id == source_id)
    if f.since is not None:
        query = query.where(Media.mtime >= f.since)
    if f.until is not None:
        query = query.where(Media.mtime < f.until)
    if f.min_score is not None:
        query = query.where(d.p_yes >= f.min_score)
    if f.feedback == "none":
        # An anti-join, which PostgreSQL estimates well (a LEFT JOIN … IS NULL made it sort every match).
        judged = aliased(Feedback)
        query = query.where(~exists().where(judged.detection_id == d.id))
    elif f.feedback in ("right", "wrong"):
        query = query.where(Feedback.verdict == f.feedback)
    if f.before is not None:
        query = query.where(d.id < f.before)
    return query.order_by(d.id.desc()).limit(f.limit + 1)  # type: ignore[return-value]


def timeline(session: Session, f: TimelineFilter) -> tuple[list[TimelineRow], int | None]:
    """One page of rows, newest first, and the keyset of the next page (None on the last)."""
    target_id = source_id = None
    if f.target:
        target_id = session.scalar(select(Target.id).where(Target.name == f.target))
        if target_id is None:
            return [], None
    if f.source:
        source_id = session.scalar(select(Source.id).where(Source.name == f.source))
        if source_id is None:
            return [], None
    parts = ["alerted"] if f.alerts_only else ["matched", "alerted_other"]
    raw: list[Any] = []
    for part in parts:
        raw += session.execute(timeline_query(f, rows=part, target_id=target_id, source_id=source_id)).all()
    raw.sort(key=lambda r: r[0], reverse=True)
    more = len(raw) > f.limit
    rows = [_row(r) for r in raw[: f.limit]]
    by_detection = {row.detection_id: row for row in rows}
    for detection_id, alert in alerts_of(session, list(by_detection)):
        by_detection[detection_id].alerts.append(alert)
    return rows, (rows[-1].detection_id if more and rows else None)


def _row(r: Any) -> TimelineRow:
    (detection_id, media_id, target, source, rel_path, mtime, duration, score, matched, start, end,
     evidence, thumbnail, verdict, note, inherited, kind, analysis_id, current) = r  # fmt: skip
    seen_at = mtime + timedelta(seconds=start - (duration or 0.0))
    return TimelineRow(
        detection_id, media_id, target, source, rel_path, seen_at, score, matched, start, end, evidence,
        thumbnail is not None, verdict, note, inherited, kind, analysis_id, bool(current),
    )  # fmt: skip


def alerts_of(session: Session, detection_ids: list[int]) -> list[tuple[int, AlertView]]:
    """The alerts fired on these detections, each with its deliveries."""
    if not detection_ids:
        return []
    alerts = session.execute(
        select(Alert.detection_id, Alert.id, AlertRule.name, Alert.severity, Alert.fired_at)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .where(Alert.detection_id.in_(detection_ids))
        .order_by(Alert.id)
    ).all()
    views = {alert_id: AlertView(alert_id, rule, sev, fired) for _, alert_id, rule, sev, fired in alerts}
    if views:
        deliveries = session.execute(
            select(
                Delivery.alert_id, Delivery.channel, Delivery.status, Delivery.attempts, Delivery.last_error
            )
            .where(Delivery.alert_id.in_(list(views)))
            .order_by(Delivery.channel)
        )
        for alert_id, channel, status, attempts, error in deliveries:
            views[alert_id].deliveries.append((channel, status, attempts, error))
    return [(detection_id or 0, views[alert_id]) for detection_id, alert_id, *_ in alerts]


@dataclass
class EventAlertRow:
    """An alert fired on an event of Vigil's own (camera offline, disk pressure): no detection, no verdict."""

    alert: Alert
    rule: str
    about: str  # the stream source, or host:volume
    outage: StreamOutage | None
    deliveries: list[Delivery]


def event_alerts(session: Session, *, before: int | None = None) -> tuple[list[EventAlertRow], int | None]:
    """One page of event alerts, newest first (keyset on the alert id), and the next page's keyset."""
    query = (
        select(Alert, AlertRule.name, Source.name, StreamOutage)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .outerjoin(Source, Source.id == Alert.source_id)
        .outerjoin(StreamOutage, StreamOutage.id == Alert.outage_id)
        .where(Alert.event != "detection")
    )
    if before is not None:
        query = query.where(Alert.id < before)
    found = session.execute(query.order_by(Alert.id.desc()).limit(PAGE_SIZE + 1)).all()
    rows = [
        EventAlertRow(alert, rule, source or f"{alert.host}:{alert.volume}", outage, [])
        for alert, rule, source, outage in found[:PAGE_SIZE]
    ]
    by_id = {row.alert.id: row for row in rows}
    for delivery in session.scalars(
        select(Delivery).where(Delivery.alert_id.in_(list(by_id))).order_by(Delivery.channel)
    ):
        by_id[delivery.alert_id].deliveries.append(delivery)
    return rows, (rows[-1].alert.id if len(found) > PAGE_SIZE else None)


def filter_choices(session: Session) -> tuple[list[str], list[str]]:
    targets = list(session.scalars(select(Target.name).order_by(Target.name)))
    sources = list(session.scalars(select(Source.name).order_by(Source.name)))
    return targets, sources


Window = tuple[int, float, float]  # index, start, end


@dataclass
class AlertRow:
    alert: Alert
    rule: str
    target: str
    deliveries: list[Delivery]
    detection: Detection | None  # the window that fired it, whichever analysis it is in


@dataclass
class MediaPage:
    media: Media
    source: str
    versions: list[Media]  # every version of this file, oldest first
    analyses: list[Analysis]
    analysis: Analysis | None  # the one asked for (?analysis=ID); None: the newest answer per target
    shown: dict[int, Analysis]  # target id -> the analysis its column comes from
    targets: list[Target]
    windows: list[Window]
    inherited: set[Window]  # windows whose scores the static-scene gate copied from the last scored window
    cells: dict[tuple[Window, int], Detection]  # (window, target id) -> detection
    verdicts: dict[int, Feedback]
    alerts: list[AlertRow]

    @property
    def current(self) -> Media:
        """The newest version of this file (this one when it is)."""
        return self.versions[-1]


def media_page(session: Session, media_id: int, analysis_id: int | None = None) -> MediaPage | None:
    """A file's page: by default the newest answer for every target, each from the analysis that gave it
    (a re-analysis of one target leaves the others' answers in force); `analysis_id` shows one analysis."""
    media = session.get(Media, media_id)
    if media is None:
        return None
    analyses = list(
        session.scalars(select(Analysis).where(Analysis.media_id == media_id).order_by(Analysis.id.desc()))
    )
    chosen = next((a for a in analyses if a.id == analysis_id), None) if analysis_id is not None else None
    which = (
        Detection.analysis_id == chosen.id
        if chosen
        else (Detection.media_id == media_id) & newest_per_target()
    )
    detections = list(session.scalars(select(Detection).where(which))) if analyses else []
    by_id = {a.id: a for a in analyses}
    shown = {d.target_id: by_id[d.analysis_id] for d in detections}
    targets = list(session.scalars(select(Target).where(Target.id.in_(list(shown))).order_by(Target.name)))
    windows = sorted({(d.window_index, d.start_s, d.end_s) for d in detections})
    alerts = media_alerts(session, media_id)
    judged = [d.id for d in detections] + [a.detection.id for a in alerts if a.detection is not None]
    verdicts = {
        fb.detection_id: fb
        for fb in session.scalars(select(Feedback).where(Feedback.detection_id.in_(judged)))
    }
    versions = list(
        session.scalars(
            select(Media)
            .where(Media.source_id == media.source_id, Media.rel_path == media.rel_path)
            .order_by(Media.version)
        )
    )
    return MediaPage(
        media=media,
        source=session.get_one(Source, media.source_id).name,
        versions=versions,
        analyses=analyses,
        analysis=chosen,
        shown=shown,
        targets=targets,
        windows=windows,
        inherited={(d.window_index, d.start_s, d.end_s) for d in detections if d.inherited},
        cells={((d.window_index, d.start_s, d.end_s), d.target_id): d for d in detections},
        verdicts=verdicts,
        alerts=alerts,
    )


def media_alerts(session: Session, media_id: int) -> list[AlertRow]:
    """The alerts fired on a file, each with its deliveries and the detection that fired it."""
    rows = []
    for alert, rule, target in session.execute(
        select(Alert, AlertRule.name, Target.name)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .join(Target, Target.id == Alert.target_id)
        .where(Alert.media_id == media_id)
        .order_by(Alert.id)
    ).all():
        deliveries = list(
            session.scalars(select(Delivery).where(Delivery.alert_id == alert.id).order_by(Delivery.channel))
        )
        detection = session.get(Detection, alert.detection_id) if alert.detection_id else None
        rows.append(AlertRow(alert, rule, target, deliveries, detection))
    return rows


@dataclass
class TargetScores:
    target: Target
    # Per score bin (20 over [0, 1]): windows judged right-present, judged absent, unlabelled.
    present: list[int]
    absent: list[int]
    unlabelled: list[int]


BINS = 20


def target_histograms(session: Session) -> list[TargetScores]:
    """Score histograms per target over the newest answer per target (a window asked again counts once):
    every window counted once (one scan), the judged ones split by what their verdicts say (a join over
    the few feedback rows); unlabelled is the difference."""
    dialect = session.get_bind().dialect.name

    def bucket(score: Any) -> Any:
        # PostgreSQL's CAST rounds, SQLite's truncates (and may lack floor()).
        return func.floor(score * BINS) if dialect == "postgresql" else cast(score * BINS, Integer)

    counts: dict[int, dict[str, list[int]]] = defaultdict(
        lambda: {"present": [0] * BINS, "absent": [0] * BINS, "unlabelled": [0] * BINS}
    )
    every = (
        select(Detection.target_id, bucket(Detection.p_yes).label("b"), func.count())
        .where(newest_per_target())
        .group_by(Detection.target_id, "b")
    )
    for target_id, b, n in session.execute(every):
        counts[target_id]["unlabelled"][min(BINS - 1, max(0, int(b)))] += n
    judged = (
        select(Detection.target_id, Detection.p_yes, Detection.matched, Feedback.verdict)
        .join(Feedback, Feedback.detection_id == Detection.id)
        .where(newest_per_target())
    )
    for target_id, score, matched, verdict in session.execute(judged):
        slot = min(BINS - 1, max(0, int(score * BINS)))
        counts[target_id]["present" if matched == (verdict == "right") else "absent"][slot] += 1
        counts[target_id]["unlabelled"][slot] -= 1
    targets = session.scalars(select(Target).order_by(Target.name))
    return [TargetScores(t, **counts[t.id]) for t in targets]

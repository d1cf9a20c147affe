"""Verdicts on detections, and the thresholds fitted from them: the only writes the review door makes.

A verdict judges the detection's `matched` decision; `present` (the target was really there) follows from
it. A target declared in the settings file is owned by that file (the settings sync would undo a threshold
set here), so applying a threshold to it names the line to change instead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.errors import ConfigError
from vigil.feedback.calibration import Labelled
from vigil.store.schema import Alert, Analysis, Detection, Feedback, Target, Verdict

NOTE_MAX = 500


def record_verdict(
    session: Session,
    *,
    detection_id: int,
    verdict: str,
    note: str | None = None,
    alert_id: int | None = None,
    origin: str = "web",
) -> Feedback:
    """Store (or replace) the verdict on one detection; a verdict on an alert is one on its detection."""
    if verdict not in set(Verdict):
        raise ConfigError(f"verdict must be right or wrong, not {verdict!r}")
    note = (note or "").strip()[:NOTE_MAX] or None
    alert = session.get(Alert, alert_id) if alert_id is not None else None
    if alert is not None and alert.event != "detection":
        raise ConfigError(f"alert {alert_id} is a {alert.event} alert: no detection to judge, no verdict")
    if session.get(Detection, detection_id) is None:
        raise ConfigError(f"no detection {detection_id}")
    if alert_id is not None and (alert is None or alert.detection_id != detection_id):
        raise ConfigError(f"alert {alert_id} is not about detection {detection_id}")
    row = session.scalar(select(Feedback).where(Feedback.detection_id == detection_id))
    if row is None:
        row = Feedback(detection_id=detection_id)
        session.add(row)
    row.verdict, row.note, row.origin = verdict, note, origin
    if alert_id is not None:
        row.alert_id = alert_id
    session.flush()
    return row


def detection_to_judge(session: Session, *, media_id: int, target_name: str) -> Detection:
    """The window a verdict on "this media, this target" is about: the best one of the newest analysis."""
    target = target_by_name(session, target_name)
    newest = session.scalar(
        select(Analysis.id)
        .join(Detection, Detection.analysis_id == Analysis.id)
        .where(Analysis.media_id == media_id, Detection.target_id == target.id)
        .order_by(Analysis.id.desc())
        .limit(1)
    )
    if newest is None:
        raise ConfigError(f"media {media_id} has no detections of target {target_name!r}")
    best = session.scalar(
        select(Detection)
        .where(Detection.analysis_id == newest, Detection.target_id == target.id)
        .order_by(Detection.p_yes.desc(), Detection.window_index)
        .limit(1)
    )
    assert best is not None  # the analysis was found through one of its detections
    return best


def target_by_name(session: Session, name: str) -> Target:
    target = session.scalar(select(Target).where(Target.name == name))
    if target is None:
        raise ConfigError(f"no target named {name!r}")
    return target


def labels_from_feedback(session: Session, target_id: int) -> list[Labelled]:
    """Every judged window of the target as (score, present)."""
    rows = session.execute(
        select(Detection.p_yes, Detection.matched, Feedback.verdict)
        .join(Feedback, Feedback.detection_id == Detection.id)
        .where(Detection.target_id == target_id)
    )
    return [Labelled(score, matched == (verdict == Verdict.RIGHT)) for score, matched, verdict in rows]


def settings_line(target_name: str, threshold: float) -> str:
    """What to write in the settings file for a file-owned target."""
    return f'[[targets]] name = "{target_name}" … threshold = {threshold:.3f}'


def apply_threshold(session: Session, *, target_name: str, threshold: float, file_owned: set[str]) -> Target:
    """Set a target's threshold; refuses (naming the line to change) for a target the settings file owns."""
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be between 0 and 1, not {threshold}")
    if target_name in file_owned:
        raise ConfigError(
            f"target {target_name!r} is set in the settings file: change it there: "
            f"{settings_line(target_name, threshold)}"
        )
    target = target_by_name(session, target_name)
    target.threshold = round(threshold, 4)
    session.flush()
    return target

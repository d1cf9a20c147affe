"""views for people: media_v, analyses_v, detections_v, latest_detections_v, alerts_v

Human units (seconds, not milliseconds; names, not ids) and the joins people would otherwise write.
The only dialect-specific parts are date arithmetic, written once per dialect below. Views are invisible
to Alembic's autogenerate (it compares tables), so they cause no drift.

``detected_at`` estimates the wall-clock time of a window's start: cameras write a clip and close it, so a
file's mtime is the end of its recording and the clip began ``duration_s`` earlier. For images (duration 0)
it is the file's mtime.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ["media_v", "analyses_v", "detections_v", "latest_detections_v", "alerts_v"]


def _seconds_between(start: str, end: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"((julianday({end}) - julianday({start})) * 86400.0)"
    return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"


def _plus_seconds(timestamp: str, seconds: str, dialect: str) -> str:
    if dialect == "sqlite":
        # Same text layout as stored timestamps (UTC, 'YYYY-MM-DD HH:MM:SS.SSS'), so comparisons sort right.
        return f"strftime('%Y-%m-%d %H:%M:%f', {timestamp}, printf('%+.3f seconds', {seconds}))"
    return f"({timestamp} + ({seconds}) * INTERVAL '1 second')"


def _views(dialect: str) -> dict[str, str]:
    detected_at = _plus_seconds("m.mtime", "d.start_s - COALESCE(m.duration_s, 0)", dialect)
    alert_at = _plus_seconds("m.mtime", "a.start_s - COALESCE(m.duration_s, 0)", dialect)
    return {
        "media_v": f"""
SELECT m.id AS media_id, s.name AS source, m.path, m.rel_path, m.version, m.kind, m.status,
       m.size_bytes, m.duration_s, m.fps, m.width, m.height, m.frame_count, m.mtime AS file_mtime,
       m.attempts, m.error, m.caption, m.duplicate_of_id, m.created_at AS registered_at,
       m.enqueued_at, m.started_at, m.finished_at,
       {_seconds_between("m.enqueued_at", "m.started_at", dialect)} AS wait_s,
       {_seconds_between("m.started_at", "m.finished_at", dialect)} AS processing_s
FROM media m JOIN sources s ON s.id = m.source_id""",
        "analyses_v": """
SELECT an.id AS analysis_id, an.media_id, s.name AS source, m.path, an.model_id AS model,
       an.prompt_version, m.duration_s, an.windows, an.frames_decoded,
       an.decode_ms / 1000.0 AS decode_s, an.model_ms / 1000.0 AS model_s, an.total_ms / 1000.0 AS total_s,
       an.worker, an.created_at AS analysed_at,
       (SELECT COUNT(*) FROM detections d WHERE d.analysis_id = an.id AND d.matched) AS matched_windows
FROM analyses an JOIN media m ON m.id = an.media_id JOIN sources s ON s.id = m.source_id""",
        "detections_v": f"""
SELECT d.id AS detection_id, {detected_at} AS detected_at, s.name AS source, m.path, t.name AS target,
       d.p_yes AS score, d.matched, d.start_s, d.end_s, d.window_index, d.evidence,
       d.thumbnail_path AS thumbnail, an.model_id AS model, m.mtime AS file_mtime, d.media_id,
       d.analysis_id, d.target_id, d.created_at AS analysed_at
FROM detections d
JOIN media m ON m.id = d.media_id
JOIN sources s ON s.id = m.source_id
JOIN targets t ON t.id = d.target_id
JOIN analyses an ON an.id = d.analysis_id""",
        # Re-analysis adds analyses; people usually want only the newest answer per media and target.
        "latest_detections_v": """
SELECT v.* FROM detections_v v
WHERE v.analysis_id = (SELECT MAX(d2.analysis_id) FROM detections d2
                       WHERE d2.media_id = v.media_id AND d2.target_id = v.target_id)""",
        "alerts_v": f"""
SELECT a.id AS alert_id, a.fired_at, r.name AS rule, a.severity, s.name AS source, t.name AS target,
       m.path, a.score, a.start_s, a.end_s, {alert_at} AS detected_at, a.message,
       (SELECT COUNT(*) FROM deliveries dl WHERE dl.alert_id = a.id AND dl.status = 'pending')
           AS deliveries_pending,
       (SELECT COUNT(*) FROM deliveries dl WHERE dl.alert_id = a.id AND dl.status = 'delivered')
           AS deliveries_delivered,
       (SELECT COUNT(*) FROM deliveries dl WHERE dl.alert_id = a.id AND dl.status = 'failed')
           AS deliveries_failed,
       a.media_id, a.detection_id, a.rule_id, a.target_id, a.source_id
FROM alerts a
JOIN alert_rules r ON r.id = a.rule_id
JOIN sources s ON s.id = a.source_id
JOIN targets t ON t.id = a.target_id
JOIN media m ON m.id = a.media_id""",
    }


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for name, body in _views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS{body}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")

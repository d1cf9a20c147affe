"""Generates docs/schema.md from the models, the migrated views and the example queries.

    python -m vigil.store.schema_doc > docs/schema.md

A test fails when docs/schema.md differs from this output, and every example here is run by the tests on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Table, inspect
from sqlalchemy.dialects import postgresql, sqlite

from vigil.config.settings import DatabaseSettings
from vigil.store.db import make_engine
from vigil.store.schema import Base

COLUMN_NOTES: dict[str, str] = {
    "media.status": "queued, running, done, failed, skipped (a duplicate of another file's content) or "
    "superseded (the file changed after registration: never analysed; the next version is)",
    "media.version": "a file rewritten in place with new content is a new row with the next version",
    "media.mtime": "the file's modification time (UTC); cameras close a clip when it ends",
    "media.sends": "how many task messages were sent for this row (the reconciler resends lost ones)",
    "media.lease_until": "a running row whose lease ran out was lost with its worker and is queued again",
    "media.pruned_at": "when retention deleted the file (the row, detections and thumbnails outlive it); "
    "NULL while the file is kept",
    "media.prune_reason": "why retention deleted the file: age (keep_days, keep_alerted_days) or disk "
    "pressure",
    "stream_outages.started_at": "when the recorder stopped getting the stream (the last packet, or the "
    "first failed connection)",
    "stream_outages.ended_at": "when a segment began again; NULL while the outage lasts",
    "stream_outages.reason": "the first error, in one line (never the URL's credentials)",
    "media.pending_target_ids": "re-analysis asks only these target ids; NULL asks every target that applies",
    "sources.target_names": "target names asked about here; NULL means every enabled target",
    "sources.static_gate": "the static-scene gate's threshold for this source (0: off; see README)",
    "sources.declared_in": "the settings file that declares this source; NULL: made by a command",
    "targets.declared_in": "the settings file that owns this target (edit it there); NULL: made with the CLI",
    "alert_rules.declared_in": "the settings file that owns this rule; NULL: made with `vigil rules add`",
    "targets.threshold": "P(yes) at or above which a window matches",
    "targets.prompt_version": "the version of this target's own prompt: increases when the description or "
    "the reference images change (the question templates are versioned apart: analyses.template_version)",
    "targets.images": "reference images (sha256, stored file under data_dir/references, original name, size)",
    "analyses.template_version": "the version of the recogniser's question templates (TEMPLATE_VERSION in "
    "workers/model/prompts.py) used by this run; each target's own prompt is versioned as "
    "targets.prompt_version",
    "analyses.target_ids": "the targets this run asked about",
    "analyses.size_bytes": "size of the file this analysis read (always the media row's version)",
    "analyses.file_mtime": "modification time of the file this analysis read",
    "analyses.decode_ms": "milliseconds the model waited for decoded frames (opening the file included); "
    "the decoder's own busy time, overlapped with the model, is params.decode_busy_ms",
    "analyses.total_ms": "wall time of the analysis in milliseconds (decode_ms + model_ms + overhead)",
    "detections.p_yes": "the model's probability of 'yes' for the target in this window (0..1)",
    "detections.matched": "p_yes >= the target's threshold at the time of the analysis",
    "detections.inherited": "true: the window's scene had not changed since the last scored window of the "
    "analysis, whose scores (and evidence) it copies without a model run (the static-scene gate)",
    "detections.start_s": "window start, seconds from the beginning of the file",
    "alerts.dedup_key": "unique: re-analysing the same media never fires the same alert twice, nor does a "
    "recorder restarted mid-outage (the key names the outage)",
    "alerts.event": "what fired it: detection (media, target, detection, score and window set), "
    "camera_offline (source and outage set) or disk_pressure (volume set); an event alert takes no verdict",
    "alerts.host": "the machine that saw the event (the recorder's or watcher's host); NULL on detections",
    "alerts.volume": "disk_pressure: the volume retention left below min_free",
    "alert_rules.event": "what fires the rule: detection, camera_offline or disk_pressure (settings: `on`)",
    "alert_rules.after_s": "camera_offline: how long an outage lasts before the rule fires",
    "deliveries.status": "pending, delivered or failed (given up after the retry horizon)",
    "installation.uid": "this installation's random id (one row, made by the migration): webhook ids include "
    "it, so two sites alerting on the same file never send the same `webhook-id`",
    "feedback.verdict": "right or wrong: a person's verdict on the detection's matched decision",
    "feedback.detection_id": "unique: one verdict per detection, the latest wins",
    "feedback.alert_id": "the alert the verdict was given on, when it was given on one",
    "feedback.origin": "web (the review page) or cli (`vigil feedback`)",
    "feed_positions.consumer": "who follows the detections: `homeassistant:{topic_prefix}` for the Home "
    "Assistant bridge",
    "feed_positions.last_id": "every detection up to this id was published (and acknowledged by the MQTT "
    "broker), except the ids in gaps",
    "feed_positions.gaps": "ids below last_id not seen yet (transactions still open when a higher id was "
    "read); looked up again after a restart",
}

VIEW_DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "media_v": (
        "One row per media file, with its source's name and timings in seconds.",
        {
            "wait_s": "seconds from being sent to a worker starting it",
            "processing_s": "seconds from a worker starting it to its end (done or failed)",
            "file_mtime": "the file's modification time (UTC)",
            "registered_at": "when the watcher or a scan registered it",
        },
    ),
    "analyses_v": (
        "One row per model run over a file, timings in seconds.",
        {
            "decode_s": "seconds spent decoding frames",
            "model_s": "seconds spent in the model",
            "total_s": "seconds for the whole analysis",
            "matched_windows": "windows above threshold, any target",
        },
    ),
    "detections_v": (
        "One row per target per time window of every analysis, names and wall-clock time.",
        {
            "detected_at": "estimated wall-clock time of the window's start: file mtime - duration "
            "+ start_s (a camera clip's mtime is its end); on SQLite text "
            "'YYYY-MM-DD HH:MM:SS.SSS' in UTC",
            "score": "P(yes) for the target in this window (0..1)",
            "matched": "score at or above the target's threshold",
            "inherited": "true when the score was copied from the last scored window (unchanged scene)",
            "start_s": "window start, seconds into the file",
            "end_s": "window end, seconds into the file",
            "thumbnail": "absolute path of a JPEG of the window's best frame at source resolution "
            "(at most 1280 px on the long side), for matched windows",
            "analysed_at": "when the detection was stored",
        },
    ),
    "latest_detections_v": (
        "detections_v restricted to the newest analysis per media and target: what to "
        "query after re-analysis.",
        {},
    ),
    "alerts_v": (
        "One row per fired alert with its rule, target, source and delivery counts; an event alert "
        "(camera_offline, disk_pressure) has no target, path, score or window, and shows its outage or "
        "volume.",
        {
            "event": "detection, camera_offline or disk_pressure",
            "outage_started_at": "camera_offline: when the outage began (outage_ended_at: NULL while it "
            "lasts)",
            "deliveries_pending": "deliveries still being retried",
            "detected_at": "estimated wall-clock time of the alert's window start (as in detections_v)",
        },
    ),
    "feedback_v": (
        "One row per verdict (right/wrong) a person gave on a detection, with what was judged.",
        {
            "target_present": "1 when the target was there (a right match or a wrong non-match), else 0",
            "score": "the detection's P(yes)",
            "matched": "the decision that was judged",
            "judged_at": "when the verdict was last given",
        },
    ),
}


@dataclass(frozen=True)
class Example:
    title: str
    sqlite: str
    postgresql: str

    def for_dialect(self, dialect: str) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgresql


EXAMPLES = [
    Example(
        "Every van seen at cam2 last night (20:00 to 06:00 UTC)",
        """SELECT detected_at, path, score, evidence
FROM latest_detections_v
WHERE target = 'van' AND source = 'cam2' AND matched
  AND detected_at >= datetime('now', 'start of day', '-4 hours')
  AND detected_at <  datetime('now', 'start of day', '+6 hours')
ORDER BY detected_at""",
        """SELECT detected_at, path, score, evidence
FROM latest_detections_v
WHERE target = 'van' AND source = 'cam2' AND matched
  AND detected_at >= date_trunc('day', now()) - interval '4 hours'
  AND detected_at <  date_trunc('day', now()) + interval '6 hours'
ORDER BY detected_at""",
    ),
    Example(
        "Targets per hour over the last 7 days (files with at least one matching window)",
        """SELECT strftime('%Y-%m-%d %H:00', detected_at) AS hour, target, COUNT(DISTINCT media_id) AS files
FROM latest_detections_v
WHERE matched AND detected_at >= datetime('now', '-7 days')
GROUP BY hour, target
ORDER BY hour, target""",
        """SELECT date_trunc('hour', detected_at) AS hour, target, COUNT(DISTINCT media_id) AS files
FROM latest_detections_v
WHERE matched AND detected_at >= now() - interval '7 days'
GROUP BY hour, target
ORDER BY hour, target""",
    ),
    Example(
        "Clips that failed and why",
        q := """SELECT source, path, attempts, error, finished_at
FROM media_v
WHERE status = 'failed'
ORDER BY finished_at DESC, media_id DESC
LIMIT 20""",
        q,
    ),
    Example(
        "Slowest analyses",
        q := """SELECT source, path, model, duration_s, total_s, decode_s, model_s, windows
FROM analyses_v
ORDER BY total_s DESC
LIMIT 10""",
        q,
    ),
    Example(
        "Cameras that went offline this week, and for how long the alert's outage lasted",
        """SELECT fired_at, source, outage_started_at, outage_ended_at, outage_reason
FROM alerts_v
WHERE event = 'camera_offline' AND fired_at >= datetime('now', '-7 days')
ORDER BY fired_at DESC""",
        """SELECT fired_at, source, outage_started_at, outage_ended_at, outage_reason
FROM alerts_v
WHERE event = 'camera_offline' AND fired_at >= now() - interval '7 days'
ORDER BY fired_at DESC""",
    ),
]


def _type(column: Column[object], dialect: object) -> str:
    return str(column.type.compile(dialect=dialect)).upper()  # type: ignore[arg-type]


def _column_row(table: Table, column: Column[object]) -> str:
    key = f"{table.name}.{column.name}"
    notes = []
    if column.primary_key:
        notes.append("primary key")
    notes += [f"→ {fk.target_fullname}" for fk in column.foreign_keys]
    if column.unique:
        notes.append("unique")
    if column.comment or key in COLUMN_NOTES:
        notes.append(column.comment or COLUMN_NOTES[key])
    null = "yes" if column.nullable else "no"
    pg, lite = _type(column, postgresql.dialect()), _type(column, sqlite.dialect())
    return f"| `{column.name}` | {pg} | {lite} | {null} | {'; '.join(notes)} |"


def _tables() -> Iterator[str]:
    yield "## Tables\n"
    for table in Base.metadata.sorted_tables:
        mapper = next((m for m in Base.registry.mappers if m.local_table is table), None)
        docstring = mapper.class_.__doc__ if mapper is not None else None
        doc = docstring.strip().splitlines()[0] if docstring else ""
        yield f"### `{table.name}`\n"
        if table.comment or doc:
            yield f"{table.comment or doc}\n"
        yield "| column | PostgreSQL | SQLite | null | notes |"
        yield "|---|---|---|---|---|"
        for column in table.columns:
            yield _column_row(table, column)
        yield ""


def view_columns() -> dict[str, list[str]]:
    """The columns of every view, read from a SQLite database migrated to head."""
    from vigil.store.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'schema.db'}"
        upgrade(url)
        engine = make_engine(DatabaseSettings(url=url))
        try:
            inspector = inspect(engine)
            return {name: [c["name"] for c in inspector.get_columns(name)] for name in VIEW_DOCS}
        finally:
            engine.dispose()


def _views() -> Iterator[str]:
    yield "## Views\n"
    yield "Query these first: names instead of ids, seconds instead of milliseconds, the joins done.\n"
    for name, columns in view_columns().items():
        doc, notes = VIEW_DOCS[name]
        yield f"### `{name}`\n\n{doc}\n"
        for column in columns:
            yield f"- `{column}`" + (f": {notes[column]}" if column in notes else "")
        yield ""


def _examples() -> Iterator[str]:
    yield "## Example queries\n"
    yield 'Run with `vigil sql "..."` (or `-f query.sql`); each is tested on both databases.\n'
    for example in EXAMPLES:
        yield f"### {example.title}\n"
        if example.sqlite == example.postgresql:
            yield f"```sql\n{example.sqlite};\n```\n"
        else:
            yield f"SQLite:\n\n```sql\n{example.sqlite};\n```\n"
            yield f"PostgreSQL:\n\n```sql\n{example.postgresql};\n```\n"


def generate() -> str:
    head = [
        "# Vigil's database schema",
        "",
        "<!-- Generated by `python -m vigil.store.schema_doc > docs/schema.md`; do not edit by hand. -->",
        "",
        "Times are stored in UTC. On PostgreSQL they are `timestamptz`; on SQLite they are text",
        "`YYYY-MM-DD HH:MM:SS.ffffff` (UTC), which sorts and compares correctly as text. How to open the",
        "database in other tools: [querying.md](querying.md).",
        "",
    ]
    return "\n".join([*head, *_views(), *_examples(), *_tables()]).rstrip() + "\n"


if __name__ == "__main__":
    print(generate(), end="")

"""Files the watcher has seen but not registered yet, reported across processes for `vigil status`.

The watcher's settle tracker holds them in memory (they have no row until they are complete), so the
watcher writes a small JSON report to `<storage.data_dir>/watcher-settling.json` every `REPORT_EVERY_S`;
`vigil status` reads it and says "settling: 3 files, oldest 42 s", then names the `REPORT_FILES` oldest
with what each waits for (a writer that holds it open, its structure, settle time) and, once it is only
waiting to be whole, in how long it fails. A report older than `STALE_AFTER_S` means no watcher is running
(or it is stuck) and is shown as such, never as current.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_NAME = "watcher-settling.json"
REPORT_EVERY_S = 1.0
STALE_AFTER_S = 10.0
REPORT_FILES = 5  # the oldest files named in the report


@dataclass(frozen=True)
class SettlingFile:
    path: str
    waiting: str  # what it waits for, in words
    age_s: float  # since it was first seen
    fails_in_s: float | None = None  # when it is registered `failed` unless it changes; None: not counting


@dataclass(frozen=True)
class SettlingReport:
    count: int
    oldest_s: float
    writing: int  # of which held open by a writer
    written_at: float  # wall clock
    files: tuple[SettlingFile, ...] = field(default_factory=tuple)  # the oldest, oldest first


def report_path(data_dir: Path) -> Path:
    return data_dir / REPORT_NAME


def write_report(data_dir: Path, report: SettlingReport) -> None:
    """Atomically (temp file + rename), so a reader never sees half a report."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".settling-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(report), handle)
    os.replace(tmp, report_path(data_dir))


def remove_report(data_dir: Path) -> None:
    report_path(data_dir).unlink(missing_ok=True)


def read_report(data_dir: Path) -> SettlingReport | None:
    try:
        raw = json.loads(report_path(data_dir).read_text())
        files = tuple(
            SettlingFile(
                str(f["path"]),
                str(f["waiting"]),
                float(f["age_s"]),
                None if f.get("fails_in_s") is None else float(f["fails_in_s"]),
            )
            for f in raw.get("files", [])
        )
        return SettlingReport(
            int(raw["count"]), float(raw["oldest_s"]), int(raw["writing"]), float(raw["written_at"]), files
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def settling_line(report: SettlingReport | None, *, now: float | None = None) -> str | None:
    """The `vigil status` line, or None when no watcher ever reported here."""
    if report is None:
        return None
    age = (time.time() if now is None else now) - report.written_at
    if age > STALE_AFTER_S:
        return f"settling: unknown (the watcher's last report is {age:.0f} s old: is it running?)"
    if report.count == 0:
        return "settling: none"
    held = f", {report.writing} held open by a writer" if report.writing else ""
    return f"settling: {report.count} file(s), oldest {report.oldest_s:.0f} s{held}"


def settling_lines(report: SettlingReport | None, *, now: float | None = None) -> Iterator[str]:
    """`settling_line`, then one line per named file: its path, what it waits for, its age."""
    line = settling_line(report, now=now)
    if line is None or report is None:
        return
    yield line
    if line.startswith("settling: unknown"):
        return
    for f in report.files:
        fails = "" if f.fails_in_s is None else f"; fails in {f.fails_in_s:.0f} s unless it changes"
        yield f"  {f.path}: {f.waiting} (seen {f.age_s:.0f} s ago{fails})"
    if report.count > len(report.files):
        yield f"  ... and {report.count - len(report.files)} more"

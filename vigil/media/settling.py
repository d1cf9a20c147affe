"""Files the watcher has seen but not registered yet, reported across processes for `vigil status`.

The watcher's settle tracker holds them in memory (they have no row until they are complete), so the
watcher writes a small JSON report to `<storage.data_dir>/watcher-settling.json` every `REPORT_EVERY_S`;
`vigil status` reads it and says "settling: 3 files, oldest 42 s". A report older than `STALE_AFTER_S`
means no watcher is running (or it is stuck) and is shown as such, never as current.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPORT_NAME = "watcher-settling.json"
REPORT_EVERY_S = 1.0
STALE_AFTER_S = 10.0


@dataclass(frozen=True)
class SettlingReport:
    count: int
    oldest_s: float
    writing: int  # of which held open by a writer
    written_at: float  # wall clock


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
        return SettlingReport(
            int(raw["count"]), float(raw["oldest_s"]), int(raw["writing"]), float(raw["written_at"])
        )
    except (OSError, ValueError, KeyError, TypeError):
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

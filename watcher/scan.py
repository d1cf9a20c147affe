"""Walking a source with the watcher's rules, diffed against the database.

A scan finds what events cannot promise: files that arrived while Vigil was down, files created in a new
directory before its watch existed, events lost to an inotify queue overflow. It is cheap: one query loads
the (size, mtime) of every registered file of the source, and files that match are no-ops without I/O
beyond the `stat` the walk already did.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import SourceSettings, WatchSettings
from vigil.errors import MediaError
from vigil.media.registry import ensure_source, file_mtime, known_versions
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import write_session
from watcher.intake import Admission, WatchedSource, admit, check_ready
from watcher.paths import SourceRules

log = logging.getLogger(__name__)


@dataclass
class ScanReport:
    found: int = 0  # media files seen (special files and symlinks out of the root not counted)
    registered: int = 0  # rows created by this scan (any status)
    queued: int = 0  # of those, rows queued for analysis
    failed: int = 0  # of those, rows failed (unreadable)
    skipped: int = 0  # duplicates registered `skipped`, plus special files and escaping symlinks passed over
    known: int = 0  # already registered with the same size and mtime
    pending: int = 0  # still changing (settle=True): left for the watcher
    vanished: int = 0  # gone between the walk and the registration

    def count(self, outcome: Admission) -> None:
        if outcome == Admission.KNOWN:
            self.known += 1
            return
        self.registered += 1
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


@dataclass(frozen=True)
class FoundFile:
    path: Path
    stat: os.stat_result | None  # None: not a regular file inside the root (skipped, never opened)
    reason: str | None = None


def walk(rules: SourceRules, start: Path | None = None) -> Iterator[FoundFile]:
    """Every wanted file under the root (or under `start`, a directory below it), never following
    directory symlinks."""
    start = start or rules.root
    parts0 = rules.relative(start) or ()
    if start != rules.root and (not parts0 or not rules.dir_allowed(parts0)):
        return
    stack: list[tuple[Path, tuple[str, ...]]] = [(start, parts0)]
    while stack:
        directory, parts = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            log.warning("source %s: cannot list %s: %s", rules.name, directory, exc.strerror or exc)
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sub = (*parts, entry.name)
                if rules.dir_allowed(sub):
                    stack.append((Path(entry.path), sub))
            elif rules.name_wanted(entry.name):
                yield _candidate(rules, Path(entry.path))


def _candidate(rules: SourceRules, path: Path) -> FoundFile:
    try:
        if not rules.inside(path):
            return FoundFile(path, None, f"symlink out of the source root -> {os.path.realpath(path)}")
        st = os.stat(path)
    except OSError as exc:
        return FoundFile(path, None, f"cannot stat: {exc.strerror or exc}")
    if not stat_mod.S_ISREG(st.st_mode):
        return FoundFile(path, None, "not a regular file")
    return FoundFile(path, st)


Known = dict[str, tuple[int, datetime]]


def is_known(known: Known, rules: SourceRules, path: Path, st: os.stat_result) -> bool:
    rel = path.relative_to(rules.root).as_posix()
    return known.get(rel) == (st.st_size, file_mtime(st))


def changed_files(factory: sessionmaker[Session], source: WatchedSource) -> Iterator[FoundFile]:
    """Walk the source and yield files not registered with their current size and mtime."""
    known = known_versions(factory, source.id)
    for candidate in walk(source.rules):
        if candidate.stat is None or not is_known(known, source.rules, candidate.path, candidate.stat):
            yield candidate


def scan_source(
    factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    source: SourceSettings,
    *,
    settle: bool = False,
    watch: WatchSettings | None = None,
) -> ScanReport:
    """Scan one folder once with the watcher's rules: register what is new or rewritten, send it.

    With `settle`, a file modified in the last `watch.settle_s` is looked at again after that long and
    left alone (counted `pending`) when it changed; without, every file is probed now and an unreadable
    file is registered `failed` at once (no deadline: this is a one-shot scan).
    """
    watch = watch or WatchSettings()
    rules = SourceRules.of(source)
    with write_session(factory) as session:
        row = ensure_source(session, source.name, rules.root)
        watched = WatchedSource(row.id, rules)
    report = ScanReport()
    known = known_versions(factory, watched.id)
    todo: list[FoundFile] = []
    for candidate in walk(rules):
        if candidate.stat is None:
            report.skipped += 1
            log.info("source %s: skipped %s: %s", rules.name, candidate.path, candidate.reason)
            continue
        report.found += 1
        if is_known(known, rules, candidate.path, candidate.stat):
            report.known += 1
            continue
        todo.append(candidate)
    if settle:
        todo = _settled(todo, watch.settle_s, report)
    for candidate in todo:
        _register_now(factory, enqueuer, watched, candidate.path, report, watch.duplicate_content)
    log.info("scanned source %s: %s", source.name, report)
    return report


def _settled(todo: list[FoundFile], settle_s: float, report: ScanReport) -> list[FoundFile]:
    youngest = max((c.stat.st_mtime for c in todo if c.stat), default=0.0)
    wait = youngest + settle_s - time.time()
    if wait > 0:
        time.sleep(wait)
    ready: list[FoundFile] = []
    for c in todo:
        try:
            st = os.stat(c.path)
        except FileNotFoundError:
            report.vanished += 1
            continue
        assert c.stat is not None
        if (st.st_size, st.st_mtime_ns) != (c.stat.st_size, c.stat.st_mtime_ns):
            report.pending += 1
            continue
        ready.append(c)
    return ready


def _register_now(
    factory: sessionmaker[Session],
    enqueuer: Enqueuer,
    source: WatchedSource,
    path: Path,
    report: ScanReport,
    duplicate_content: str,
) -> None:
    info, problem = None, None
    try:
        info = check_ready(path)
    except FileNotFoundError:
        report.vanished += 1
        return
    except MediaError as exc:
        problem = exc
    try:
        outcome, _ = admit(
            factory, enqueuer, source, path, info=info, problem=problem, duplicate_content=duplicate_content
        )
    except FileNotFoundError:
        report.vanished += 1
        return
    report.count(outcome)

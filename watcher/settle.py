"""The completeness check. Events (close-after-write, moved-in, created, modified) and scans only *nominate*
a path; one thread owns every decision, so a file is registered by one code path, once. A file is complete
when all of these hold, checked in this order:

1. no writer holds it open: no process has it open for writing in /proc (`watcher.writers`), and on an
   inotify source no modify event came after the last close-after-write. Where that cannot be known
   (polling observers, writers /proc cannot show) settle time stands in;
2. its container is structurally whole (`watcher.containers`), then it opens (`check_ready`);
3. its size and mtime stayed unchanged for `settle_s` (the last guard).

- held open by a writer: looked at again every `WRITER_POLL_S`, however long the upload stalls;
- still changing: looked at again when it may have settled;
- vanished: forgotten quietly;
- can never be media (empty, not a container, image bytes under a video name): `failed` as soon as its
  writer closed it (or it settled, when writers cannot be known);
- not whole or not readable yet (an upload cut short, a file the watcher may not read): tried again with
  back-off until `ready_deadline_s` after it last changed, then registered `failed` with the reason; a file
  whose writer is known to have closed it and whose structure stays incomplete fails sooner, after
  `incomplete_after_close_s` (nothing is writing it any more: a truncated upload, not a slow one);
- a special file or a symlink out of the root: dropped with a log line, never opened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vigil.errors import MediaError, TransientError, UnreadableMedia, UnsupportedMedia
from vigil.formats.probe import MediaInfo
from vigil.media.settling import REPORT_FILES, SettlingFile
from watcher.containers import State, check_file
from watcher.intake import WatchedSource, check_ready
from watcher.paths import NotMedia, regular_file_stat
from watcher.writers import OpenWriters

log = logging.getLogger(__name__)

MIN_TICK_S = 0.05
MAX_RETRY_S = 10.0
DB_RETRY_S = 1.0
WRITER_POLL_S = 0.5

EventKind = Literal["modified", "closed"]


@dataclass
class Pending:
    source: WatchedSource
    path: Path
    first_seen: float  # monotonic
    next_check: float  # monotonic
    size: int | None = None
    mtime_ns: int | None = None
    stable_since: float = 0.0  # wall clock, comparable to st_mtime
    changed_at: float = 0.0  # monotonic: last change of size/mtime, or last time a writer held it
    tries: int = 0
    nominated_at: float = 0.0  # monotonic: the latest event or scan that named it
    deciding_since: float = 0.0  # monotonic: when the decision in progress started
    modified_at: float = float("-inf")  # monotonic: last modify event (inotify sources only)
    closed_at: float = float("-inf")  # monotonic: last close-after-write event
    waiting: str = "new"  # why it is not registered yet, for logs and `vigil status`
    fails_at: float | None = None  # monotonic: registered `failed` then unless it changes


@dataclass(frozen=True)
class SettlingSummary:
    count: int
    oldest_s: float
    writing: int  # of which held open by a writer
    files: tuple[SettlingFile, ...] = ()  # the oldest `REPORT_FILES`, oldest first


ReadyCallback = Callable[[Pending, MediaInfo | None, MediaError | None], None]


class SettleTracker:
    """Nominated paths waiting to be complete; `run` decides them on the calling thread."""

    def __init__(
        self,
        *,
        settle_s: float,
        deadline_s: float,
        on_ready: ReadyCallback,
        writers: OpenWriters | None = None,
        closed_deadline_s: float | None = None,
    ) -> None:
        self.settle_s = settle_s
        self.deadline_s = deadline_s
        # For a file its writer closed whose structure is incomplete: never later than `deadline_s`.
        self.closed_deadline_s = min(deadline_s, closed_deadline_s or deadline_s)
        self.on_ready = on_ready
        self.writers = writers or OpenWriters()
        self._pending: dict[Path, Pending] = {}
        self._cond = threading.Condition()
        self._busy = False

    def nominate(self, source: WatchedSource, path: Path, *, event: EventKind | None = None) -> None:
        """Look at `path` soon. Idempotent: a path already waiting keeps its history."""
        now = time.monotonic()
        with self._cond:
            entry = self._pending.get(path)
            if entry is None:
                entry = self._pending[path] = Pending(
                    source, path, first_seen=now, next_check=now, changed_at=now
                )
                self._cond.notify()
            entry.nominated_at = now
            if event == "modified":
                entry.modified_at = now
            elif event == "closed":
                entry.closed_at = now
                entry.next_check = min(entry.next_check, now)  # the writer is done: decide soon
                self._cond.notify()

    def forget(self, path: Path) -> None:
        with self._cond:
            self._pending.pop(path, None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def summary(self) -> SettlingSummary:
        now = time.monotonic()
        with self._cond:
            entries = list(self._pending.values())
        oldest = max((now - e.first_seen for e in entries), default=0.0)
        named = tuple(
            SettlingFile(
                str(e.path),
                e.waiting,
                now - e.first_seen,
                None if e.fails_at is None else max(0.0, e.fails_at - now),
            )
            for e in sorted(entries, key=lambda e: e.first_seen)[:REPORT_FILES]
        )
        writing = sum(e.waiting.startswith("open") for e in entries)
        return SettlingSummary(len(entries), oldest, writing, named)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def run(self, stop: threading.Event) -> None:
        """Decide due paths until `stop` is set; the decision in progress always completes."""
        while not stop.is_set():
            due = self._wait_for_due(stop)
            for entry in due:
                if stop.is_set():
                    break
                self._decide(entry)
            with self._cond:
                self._busy = False

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_for_due(self, stop: threading.Event) -> list[Pending]:
        with self._cond:
            while not stop.is_set():
                now = time.monotonic()
                due = [e for e in self._pending.values() if e.next_check <= now]
                if due:
                    self._busy = True
                    return sorted(due, key=lambda e: e.next_check)
                soonest = min((e.next_check for e in self._pending.values()), default=now + 1.0)
                self._cond.wait(timeout=max(MIN_TICK_S, soonest - now))
        return []

    def _decide(self, entry: Pending) -> None:
        entry.deciding_since = time.monotonic()
        try:
            st = regular_file_stat(entry.source.rules, entry.path)
        except FileNotFoundError:
            log.debug("gone before it was ready: %s", entry.path)
            return self.forget(entry.path)
        except NotMedia as exc:
            log.info("source %s: skipped %s", entry.source.rules.name, exc)
            return self.forget(entry.path)
        except OSError as exc:
            log.warning("source %s: cannot stat %s: %s", entry.source.rules.name, entry.path, exc)
            return self.forget(entry.path)
        wall, now = time.time(), time.monotonic()
        if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            # First look: unchanged since its mtime. Later: it just changed.
            entry.stable_since = min(wall, st.st_mtime) if entry.size is None else wall
            entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
            entry.changed_at = now
        pids = self.writers.writers(st, fresh_after=entry.nominated_at)
        closed = self._writer_closed(entry, pids, now)
        if closed is None or closed:
            return self._check_structure(entry, now, closed=closed, quiet_for=wall - entry.stable_since)
        return None

    def _writer_closed(self, entry: Pending, pids: list[int] | None, now: float) -> bool | None:
        """True: no writer holds it; False: one does (looked at again soon); None: cannot be known."""
        if pids:
            entry.waiting = f"open for writing by pid {', '.join(map(str, pids))}"
        elif entry.modified_at > entry.closed_at and now - entry.modified_at < self.deadline_s:
            entry.waiting = "open for writing (modified, not closed yet)"
        elif pids is None and entry.closed_at == float("-inf"):
            return None
        else:
            return True
        if entry.tries == 0:
            log.debug("%s: %s", entry.path, entry.waiting)
        entry.fails_at = None
        entry.changed_at = now  # a held file is alive: its deadline counts from its last writer
        entry.next_check = now + WRITER_POLL_S
        return False

    def _check_structure(self, entry: Pending, now: float, *, closed: bool | None, quiet_for: float) -> None:
        try:
            verdict = check_file(entry.path)
        except FileNotFoundError:
            return self.forget(entry.path)
        except OSError as exc:  # e.g. permission denied: the probe below reports it with its reason
            verdict = None
            log.debug("cannot read %s for the structure check: %s", entry.path, exc)
        if verdict is not None and verdict.state is State.INVALID and (closed or quiet_for >= self.settle_s):
            return self._report(entry, None, UnsupportedMedia(entry.path, verdict.reason))
        if quiet_for < self.settle_s:
            entry.waiting = f"settle time (unchanged for {self.settle_s:g} s)"
            entry.fails_at = None
            entry.next_check = now + max(MIN_TICK_S, self.settle_s - quiet_for)
            return None
        if verdict is not None and verdict.state is not State.WHOLE:
            problem = UnreadableMedia(entry.path, verdict.reason)
            if closed:  # nothing writes it any more: the structure will not complete by itself
                return self._retry_or_fail(
                    entry, now, problem, self.closed_deadline_s, "; its writer closed it"
                )
            return self._retry_or_fail(entry, now, problem, self.deadline_s)
        return self._probe_and_report(entry, now)

    def _probe_and_report(self, entry: Pending, now: float) -> None:
        try:
            info = check_ready(entry.path)
        except FileNotFoundError:
            return self.forget(entry.path)
        except UnsupportedMedia as exc:
            return self._report(entry, None, exc)  # will never change: report it now
        except MediaError as exc:
            return self._retry_or_fail(entry, now, exc, self.deadline_s)
        return self._report(entry, info, None)

    def _retry_or_fail(
        self, entry: Pending, now: float, problem: MediaError, deadline_s: float, why: str = ""
    ) -> None:
        """Not complete yet: again with back-off, or `failed` once it stayed so for `deadline_s`."""
        entry.fails_at = entry.changed_at + deadline_s
        left = entry.fails_at - now
        if left <= 0:
            return self._report(entry, None, problem)
        entry.tries += 1
        entry.waiting = problem.reason + why
        retry = min(MAX_RETRY_S, max(self.settle_s, 0.2) * 2 ** min(entry.tries, 6))
        entry.next_check = now + min(retry, max(MIN_TICK_S, left))
        log.debug("not complete yet (%s), again in %.1fs: %s", problem.reason, retry, entry.path)
        return None

    def _report(self, entry: Pending, info: MediaInfo | None, problem: MediaError | None) -> None:
        try:
            self.on_ready(entry, info, problem)
        except FileNotFoundError:
            log.debug("gone while registering: %s", entry.path)
        except TransientError as exc:
            log.warning("will retry %s: %s", entry.path, exc)
            entry.next_check = time.monotonic() + DB_RETRY_S
            return
        except Exception:
            log.exception("could not register %s (the next rescan tries again)", entry.path)
        self._done(entry)

    def _done(self, entry: Pending) -> None:
        """Forget a decided path, unless it was named again while we decided (it may have new content)."""
        with self._cond:
            if entry.nominated_at > entry.deciding_since:
                now = time.monotonic()
                entry.size = entry.mtime_ns = None
                entry.first_seen = entry.next_check = now
                entry.tries, entry.fails_at = 0, None
            else:
                self._pending.pop(entry.path, None)

"""The completeness check: a file is ready when its size and mtime stayed unchanged for `settle_s` and its
container opens. Events (close-after-write, moved-in, created, modified) and scans only *nominate* a path;
one thread owns every decision, so a file is registered by one code path, once.

- still changing: looked at again when it may have settled;
- vanished: forgotten quietly;
- stable but not readable (an upload cut short, a file the watcher may not read): tried again with
  back-off until `ready_deadline_s` after it was first seen, then registered `failed` with the reason;
- a special file or a symlink out of the root: dropped with a log line, never opened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import MediaError, TransientError, UnsupportedMedia
from vigil.media import MediaInfo
from watcher.intake import WatchedSource, check_ready
from watcher.rules import NotMedia, regular_file_stat

log = logging.getLogger(__name__)

MIN_TICK_S = 0.05
MAX_RETRY_S = 10.0
DB_RETRY_S = 1.0


@dataclass
class Pending:
    source: WatchedSource
    path: Path
    first_seen: float  # monotonic
    next_check: float  # monotonic
    size: int | None = None
    mtime_ns: int | None = None
    stable_since: float = 0.0  # wall clock, comparable to st_mtime
    tries: int = 0
    nominated_at: float = 0.0  # monotonic: the latest event or scan that named it
    deciding_since: float = 0.0  # monotonic: when the decision in progress started


ReadyCallback = Callable[[Pending, MediaInfo | None, MediaError | None], None]


class SettleTracker:
    """Nominated paths waiting to be complete; `run` decides them on the calling thread."""

    def __init__(self, *, settle_s: float, deadline_s: float, on_ready: ReadyCallback) -> None:
        self.settle_s = settle_s
        self.deadline_s = deadline_s
        self.on_ready = on_ready
        self._pending: dict[Path, Pending] = {}
        self._cond = threading.Condition()
        self._busy = False

    def nominate(self, source: WatchedSource, path: Path) -> None:
        """Look at `path` soon. Idempotent: a path already waiting keeps its history."""
        now = time.monotonic()
        with self._cond:
            entry = self._pending.get(path)
            if entry is None:
                entry = self._pending[path] = Pending(source, path, first_seen=now, next_check=now)
                self._cond.notify()
            entry.nominated_at = now

    def forget(self, path: Path) -> None:
        with self._cond:
            self._pending.pop(path, None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

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
        quiet_for = wall - entry.stable_since
        if quiet_for < self.settle_s:
            entry.next_check = now + max(MIN_TICK_S, self.settle_s - quiet_for)
            return None
        return self._probe_and_report(entry, now)

    def _probe_and_report(self, entry: Pending, now: float) -> None:
        info: MediaInfo | None = None
        problem: MediaError | None = None
        try:
            info = check_ready(entry.path)
        except FileNotFoundError:
            return self.forget(entry.path)
        except UnsupportedMedia as exc:
            problem = exc  # will never change: report it now
        except MediaError as exc:
            if now - entry.first_seen < self.deadline_s:
                entry.tries += 1
                retry = min(MAX_RETRY_S, max(self.settle_s, 0.2) * 2 ** min(entry.tries, 6))
                entry.next_check = now + min(retry, max(MIN_TICK_S, entry.first_seen + self.deadline_s - now))
                log.debug("not readable yet (%s), again in %.1fs: %s", exc.reason, retry, entry.path)
                return None
            problem = exc
        self._report(entry, info, problem)

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
                entry.tries = 0
            else:
                self._pending.pop(entry.path, None)

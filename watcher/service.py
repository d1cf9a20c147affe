"""The watcher: observers nominate, the settle tracker decides, registration commits then sends; a
rescanner diffs the folders against the database and a reconciler resends what the broker lost.

Threads (all daemon, all stopped by `stop()`):
- one observer per source (inotify, or polling for network shares and when inotify runs out of watches);
- `settle`: the only thread that registers files (one transaction each), so nothing is registered twice;
- `rescan`: the startup scan, then one every `watch.rescan_interval_s`;
- `reconcile`: `reconcile_media` and `reconcile_deliveries` every `work.reconcile_interval_s`;
- `report`: the files still settling, written every second for `vigil status` (`vigil.media.settling`);
- `retention`: when a retention policy is set, `vigil.media.retention.prune` at start and every
  `retention.interval_s`; a volume left below min_free fires the disk_pressure rules (`vigil.alerts.events`,
  once per episode: from the first pass that leaves it short to the first that does not).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from vigil.alerts.delivery import reconcile_deliveries
from vigil.alerts.events import disk_pressure
from vigil.config.settings import Settings, SourceSettings
from vigil.declared.apply import apply_settings
from vigil.errors import MediaError, VigilError
from vigil.formats.probe import MediaInfo
from vigil.media.dropfolder import finalize_file
from vigil.media.reconciler import reconcile_media
from vigil.media.retention import PruneReport, policy_enabled, prune
from vigil.media.settling import REPORT_EVERY_S, SettlingReport, remove_report, write_report
from vigil.ops import metrics_server
from vigil.ops.enqueue import Enqueuer
from vigil.store.schema import utcnow
from watcher.events import SourceEventHandler
from watcher.intake import Admission, WatchedSource, admit
from watcher.paths import SourceRules
from watcher.scan import changed_files
from watcher.settle import Pending, SettleTracker

log = logging.getLogger(__name__)

ObserverFactory = Callable[[SourceSettings], BaseObserver]
WATCH_LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


def default_observer(source: SourceSettings) -> BaseObserver:
    if source.observer == "polling":
        return PollingObserver(timeout=source.poll_interval_s)
    return Observer()


class WatcherService:
    def __init__(
        self,
        settings: Settings,
        *,
        factory: sessionmaker[Session],
        enqueuer: Enqueuer,
        observer_factory: ObserverFactory = default_observer,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.enqueuer = enqueuer
        self.observer_factory = observer_factory
        self.sources: list[tuple[WatchedSource, SourceSettings]] = []
        self.observers: dict[str, BaseObserver] = {}
        self.tracker = SettleTracker(
            settle_s=settings.watch.settle_s,
            deadline_s=settings.watch.ready_deadline_s,
            closed_deadline_s=settings.watch.incomplete_after_close_s,
            on_ready=self._register,
        )
        self._stop = threading.Event()
        self._scan_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._pressed: dict[str, datetime] = {}  # volumes left below min_free: since when (the episode)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Sync sources and targets, start observers, then the startup scan, settling and reconciling."""
        if self._started:
            raise RuntimeError("WatcherService already started")
        self._started = True
        self._sync()
        self._spawn("settle", lambda: self.tracker.run(self._stop))
        for watched, conf in self.sources:
            self._start_observer(watched, conf)
        # Observers first, then the scan: a file arriving in between is seen by one or the other.
        self._spawn("rescan", self._rescan_loop)
        self._spawn("reconcile", self._reconcile_loop)
        self._spawn("report", self._report_loop)
        if policy_enabled(self.settings):
            self._spawn("retention", self._retention_loop)
        log.info("watcher started: %d source(s)", len(self.sources))

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop observers, let the registration in progress commit, join every thread."""
        self._stop.set()
        for name, observer in self.observers.items():
            observer.stop()
            observer.join(timeout)
            log.debug("observer of source %s stopped", name)
        self.observers.clear()
        self.tracker.wake()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("thread %s did not stop within %.0fs", thread.name, timeout)
        self._threads.clear()
        with contextlib.suppress(OSError):
            remove_report(self.settings.storage.data_dir)
        log.info("watcher stopped (%d file(s) were still settling)", len(self.tracker))

    def run_forever(self) -> None:
        """Start, wait for SIGTERM/SIGINT (or `stop()` from another thread), stop cleanly."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self.start()
        metrics_server.serve_watcher_metrics(self.settings, self.factory, settling=self._settling_numbers)
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        self._stop.set()
        self.tracker.wake()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.request_stop()

    # -- scanning ---------------------------------------------------------------------------------

    def scan_now(self) -> int:
        """Diff every source against the database now; nominate what is new or changed. Returns how many."""
        nominated = 0
        with self._scan_lock:
            for watched, _conf in self.sources:
                if self._stop.is_set():
                    break
                for candidate in changed_files(self.factory, watched):
                    if candidate.stat is None:  # special file or symlink out of the root: never opened
                        log.debug(
                            "source %s: passed over %s: %s",
                            watched.rules.name,
                            candidate.path,
                            candidate.reason,
                        )
                        continue
                    self.tracker.nominate(watched, candidate.path)
                    nominated += 1
        if nominated:
            log.info("scan found %d new or changed file(s)", nominated)
        return nominated

    def wait_idle(self, timeout: float) -> bool:
        """For tests and benchmarks: True once nothing is settling (within `timeout` seconds)."""
        return _poll(lambda: self.tracker.idle() and not self._scan_lock.locked(), timeout)

    # -- internals --------------------------------------------------------------------------------

    def _sync(self) -> None:
        confs = self.settings.watch.sources
        ids = apply_settings(self.factory, self.settings).sources
        self.sources = [
            (WatchedSource(ids[c.name], SourceRules.of(c), _targets(c), recorded=c.url is not None), c)
            for c in confs
        ]

    def _register(self, entry: Pending, info: MediaInfo | None, problem: MediaError | None) -> None:
        outcome, registration = admit(
            self.factory,
            self.enqueuer,
            entry.source,
            entry.path,
            info=info,
            problem=problem,
            duplicate_content=self.settings.watch.duplicate_content,
        )
        if outcome in (Admission.FAILED, Admission.SKIPPED):
            # Ended without analysis: the drop-folder step (failed/ or done/, sidecar) runs here.
            try:
                finalize_file(self.factory, self.settings, registration.media_id)
            except OSError as exc:
                log.error("media %d: drop-folder step failed: %s", registration.media_id, exc)

    def _start_observer(self, watched: WatchedSource, conf: SourceSettings) -> None:
        root = watched.rules.root
        if conf.url is not None and not root.exists():
            try:  # a stream's folder: the recorder will write there, whichever process starts first
                root.mkdir(parents=True)
            except OSError as exc:
                log.error("source %s: cannot create %s for its recorder: %s", conf.name, root, exc)
        if not root.is_dir():
            log.error("source %s: %s is not a directory; not watched (rescans will retry)", conf.name, root)
            return
        handler = SourceEventHandler(watched, self.tracker)
        try:
            observer = self.observer_factory(conf)
            handler.closes_reported = isinstance(observer, InotifyObserver)
            observer = self._observe(observer, handler, root, conf.recursive)
        except OSError as exc:
            if conf.observer != "native" or exc.errno not in WATCH_LIMIT_ERRNOS:
                raise
            log.error(
                "source %s: inotify limit reached (%s); falling back to polling every %.1fs. Raise the limit "
                "with `sysctl fs.inotify.max_user_watches=524288` (and fs.inotify.max_user_instances), "
                "persisted in /etc/sysctl.d/",
                conf.name,
                exc.strerror or exc,
                conf.poll_interval_s,
            )
            polling = PollingObserver(timeout=conf.poll_interval_s)
            handler.closes_reported = False
            observer = self._observe(polling, handler, root, conf.recursive)
        self.observers[conf.name] = observer
        log.info("source %s: watching %s (%s)", conf.name, root, type(observer).__name__)

    @staticmethod
    def _observe(
        observer: BaseObserver, handler: SourceEventHandler, root: Path, recursive: bool
    ) -> BaseObserver:
        observer.daemon = True
        try:
            observer.schedule(handler, str(root), recursive=recursive)
            observer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                observer.unschedule_all()
            raise
        return observer

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"watcher-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _rescan_loop(self) -> None:
        interval = self.settings.watch.rescan_interval_s
        while not self._stop.is_set():
            try:
                self.scan_now()
            except Exception:
                log.exception("rescan failed (next one in %.0fs)", interval)
            if self._stop.wait(interval):
                return

    def _settling_numbers(self) -> tuple[int, int, float]:
        summary = self.tracker.summary()
        return summary.count, summary.writing, summary.oldest_s

    def _report_loop(self) -> None:
        """Files still settling, for `vigil status` (they have no row yet)."""
        data_dir, warned = self.settings.storage.data_dir, False
        while True:
            summary = self.tracker.summary()
            report = SettlingReport(
                summary.count, summary.oldest_s, summary.writing, time.time(), summary.files
            )
            try:
                write_report(data_dir, report)
            except OSError as exc:
                if not warned:
                    log.warning("cannot write the settling report in %s: %s", data_dir, exc)
                warned = True
            if self._stop.wait(REPORT_EVERY_S):
                return

    def _reconcile_loop(self) -> None:
        interval = self.settings.work.reconcile_interval_s
        while not self._stop.wait(interval):
            try:
                reconcile_media(self.factory, self.enqueuer, self.settings.work)
                reconcile_deliveries(self.factory, self.enqueuer)
            except Exception:
                log.exception("reconcile failed (next one in %.0fs)", interval)

    def prune_now(self) -> PruneReport:
        """One retention pass; a volume it left below min_free fires the disk_pressure rules. Asked on every
        pass of the episode: each rule fires once (its dedup key), when its schedule allows."""
        report = prune(self.factory, self.settings)
        now = utcnow()
        pressed = {p.volume: (p, self._pressed.get(p.volume, now)) for p in report.pressure}
        for volume in self._pressed.keys() - pressed.keys():
            log.info("disk pressure relieved on %s", volume)
        self._pressed = {volume: since for volume, (_p, since) in pressed.items()}
        for pressure, since in pressed.values():
            try:
                disk_pressure(
                    self.factory,
                    pressure,
                    since=since,
                    settings=self.settings,
                    enqueuer=self.enqueuer,
                    now=now,
                )
            except VigilError as exc:  # the database is busy or away: the next pass asks again
                log.error("disk pressure on %s: rules not checked: %s", pressure.volume, exc)
        return report

    def _retention_loop(self) -> None:
        interval = self.settings.retention.interval_s
        while not self._stop.is_set():
            try:
                self.prune_now()
            except Exception:
                log.exception("retention pass failed (next one in %.0fs)", interval)
            if self._stop.wait(interval):
                return


def _targets(conf: SourceSettings) -> tuple[str, ...] | None:
    return tuple(conf.targets) if conf.targets else None


def _poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()

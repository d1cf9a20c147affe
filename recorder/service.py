"""The recorder process: one thread per stream source (`StreamRecorder`), started and stopped together.

An outage left open by an earlier recorder is taken over by the new one; while one lasts, its recorder fires
the camera_offline rules (`vigil.alerts.events`) and hands their deliveries to `enqueuer`'s queue (without
one, the watcher's reconciler sends them within `work.reconcile_interval_s` + a minute)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from recorder.stream import Opener, StreamRecorder
from vigil.alerts.events import camera_offline
from vigil.config.settings import Settings
from vigil.declared.apply import apply_settings
from vigil.media.outages import left_open
from vigil.ops.enqueue import Enqueuer
from vigil.ops.metrics_server import start_metrics_server

log = logging.getLogger(__name__)


class RecorderService:
    def __init__(
        self,
        settings: Settings,
        *,
        factory: sessionmaker[Session],
        opener: Opener | None = None,
        enqueuer: Enqueuer | None = None,
    ):
        self.settings, self.factory = settings, factory
        self.opener, self.enqueuer = opener, enqueuer
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.recorders: list[StreamRecorder] = []

    def start(self) -> None:
        streams = [s for s in self.settings.watch.sources if s.url is not None]
        ids = apply_settings(self.factory, self.settings).sources
        taken_over = left_open(self.factory, [ids[s.name] for s in streams])
        for conf in streams:
            extra = {"opener": self.opener} if self.opener is not None else {}
            recorder = StreamRecorder(
                conf,
                source_id=ids[conf.name],
                min_free=self.settings.retention_of(conf)[2],
                factory=self.factory,
                stop=self._stop,
                offline=self._offline,
                taken_over=taken_over.get(ids[conf.name]),
                **extra,
            )
            thread = threading.Thread(target=recorder.run, name=f"recorder-{conf.name}", daemon=True)
            thread.start()
            self.recorders.append(recorder)
            self._threads.append(thread)
        log.info("recorder started: %d stream(s)", len(streams))

    def _offline(self, outage_id: int) -> float | None:
        return camera_offline(
            self.factory, outage_id, settings=self.settings, enqueuer=self.enqueuer
        ).next_in_s

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop every stream: each finishes (and renames) the segment it was writing."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("thread %s did not stop within %.0fs", thread.name, timeout)
        self._threads.clear()

    def run_forever(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self.start()
        if self.settings.metrics.enabled:
            start_metrics_server(self.settings.metrics.recorder_port, setting="metrics.recorder_port")
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self._stop.set()

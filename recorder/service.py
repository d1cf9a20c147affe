"""The recorder process: one thread per stream source (`StreamRecorder`), started and stopped together."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from recorder.stream import Notify, Opener, StreamRecorder
from vigil.alerts.notices import send_notice, stream_offline_notice
from vigil.config.settings import Settings, SourceSettings
from vigil.declared.apply import apply_settings
from vigil.media.outages import close_left_open
from vigil.ops.metrics_server import start_metrics_server

log = logging.getLogger(__name__)


class RecorderService:
    def __init__(self, settings: Settings, *, factory: sessionmaker[Session], opener: Opener | None = None):
        self.settings, self.factory = settings, factory
        self.opener = opener
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.recorders: list[StreamRecorder] = []

    def start(self) -> None:
        streams = [s for s in self.settings.watch.sources if s.url is not None]
        ids = apply_settings(self.factory, self.settings).sources
        close_left_open(self.factory, [ids[s.name] for s in streams])
        for conf in streams:
            extra = {"opener": self.opener} if self.opener is not None else {}
            recorder = StreamRecorder(
                conf,
                source_id=ids[conf.name],
                min_free=self.settings.retention_of(conf)[2],
                factory=self.factory,
                stop=self._stop,
                notify=self._notifier(conf),
                **extra,
            )
            thread = threading.Thread(target=recorder.run, name=f"recorder-{conf.name}", daemon=True)
            thread.start()
            self.recorders.append(recorder)
            self._threads.append(thread)
        log.info("recorder started: %d stream(s)", len(streams))

    def _notifier(self, conf: SourceSettings) -> Notify | None:
        if not conf.offline_channels:
            return None

        def notify(began: datetime, reason: str) -> None:
            note = stream_offline_notice(conf.name, started_at=began, reason=reason)
            send_notice(self.settings, note, conf.offline_channels)

        return notify

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

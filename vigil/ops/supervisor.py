"""Runs Vigil's processes as children on one machine: starts them, restarts a crashed one with back-off,
forwards SIGTERM/SIGINT, and stops them all cleanly. Used by `vigil run`.

The analysis (watcher, workers) is essential: one that crash-loops stops everything, since that is a
configuration problem to show, not to hide. An optional child (the review page, the Home Assistant
bridge) that keeps failing is reported and tried again with back-off, up to `OPTIONAL_BACKOFF_MAX_S`
apart, for as long as the analysis runs: a busy port never takes the daemon down."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from vigil.ops.logs import original_stdio

log = logging.getLogger(__name__)


@dataclass
class ChildSpec:
    name: str
    argv: Sequence[str]
    optional: bool = False


OPTIONAL_BACKOFF_MAX_S = 300.0


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    next_start: float = 0.0


class Supervisor:
    """Keeps every child running until stopped; gives up on an essential child that crashes `max_restarts`
    times within `window_s`. `pass_fds` stay open in every child (the data directory's lock)."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        env: dict[str, str] | None = None,
        max_restarts: int = 5,
        window_s: float = 300.0,
        backoff_max_s: float = 30.0,
        stop_timeout_s: float = 30.0,
        optional_backoff_max_s: float = OPTIONAL_BACKOFF_MAX_S,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.env = {**os.environ, **(env or {})}
        self.max_restarts, self.window_s = max_restarts, window_s
        self.backoff_max_s, self.stop_timeout_s = backoff_max_s, stop_timeout_s
        self.optional_backoff_max_s, self.pass_fds = optional_backoff_max_s, tuple(pass_fds)
        self.stopping = threading.Event()
        self.failure: str | None = None

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())

    def run(self, *, poll_s: float = 0.5) -> int:
        """Start everything and supervise until stopped. Exit code: 0 clean stop, 1 a child gave up."""
        try:
            while not self.stopping.is_set():
                for child in self.children:
                    self._tend(child)
                if self.failure:
                    break
                self.stopping.wait(poll_s)
        finally:
            self.stop()
        return 1 if self.failure else 0

    def _tend(self, child: _Child) -> None:
        now = time.monotonic()
        if child.process is not None:
            code = child.process.poll()
            if code is None:
                return
            log.warning("%s exited with code %s", child.spec.name, code)
            child.process = None
            child.restarts = [t for t in child.restarts if now - t < self.window_s] + [now]
            looping = len(child.restarts) > self.max_restarts
            if looping and not child.spec.optional:
                self.failure = (
                    f"{child.spec.name} crashed {len(child.restarts)} times in {self.window_s:.0f} s"
                )
                log.error("giving up: %s", self.failure)
                return
            cap = self.optional_backoff_max_s if looping else self.backoff_max_s
            delay = min(cap, 2.0 ** (len(child.restarts) - 1))
            child.next_start = now + delay
            if looping:
                log.error(
                    "%s keeps failing (%d times in %.0f s); the analysis goes on, next try in %.0f s",
                    child.spec.name, len(child.restarts), self.window_s, delay,
                )  # fmt: skip
            else:
                log.info("restarting %s in %.0f s", child.spec.name, delay)
        if now >= child.next_start:
            # The real stdout and stderr (not this process's relay to its JSON log): a child logs for itself.
            out, err = original_stdio()
            child.process = subprocess.Popen(
                list(child.spec.argv), env=self.env, pass_fds=self.pass_fds, stdout=out, stderr=err
            )
            log.info("started %s (pid %d)", child.spec.name, child.process.pid)

    def stop(self) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop in %.0f s, killing it", process.pid, self.stop_timeout_s)
                process.kill()
                process.wait()
        for child in self.children:
            child.process = None

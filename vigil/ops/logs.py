"""Logging setup, called once by each process entry point and nowhere else."""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from vigil.config.settings import LogSettings
from vigil.terminal import safe, safe_lines

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """One line per event for a terminal: control characters in the message (file names) shown escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = safe(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def formatException(self, ei: Any) -> str:
        # A traceback quotes exception messages, which may hold file names: escaped line by line.
        return safe_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return safe_lines(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: LogSettings, *, process_name: str | None = None) -> None:
    if process_name:
        import multiprocessing

        multiprocessing.current_process().name = process_name
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    use_json = use_json and settings.format != "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("watchdog", "kombu", "amqp", "urllib3", "httpx", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # The hub client logs every retry of an unreachable host through its own handler; the final error
    # reaches the user anyway. It reads this when first imported, which is after this point.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    dump_stacks_on_signal()


# `kill -USR2 PID` prints every thread's stack of a daemon to its stderr: how a hung analysis or a stuck
# watcher is diagnosed in place. Celery's pool children inherit it (fork keeps the handler); Celery itself
# takes SIGUSR1, so this one is free.
STACK_DUMP_SIGNAL = signal.SIGUSR2


def dump_stacks_on_signal() -> None:
    out = sys.stderr
    try:
        out.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by one without a file (a test's capture)
        out = sys.__stderr__
    if out is not None:
        faulthandler.register(STACK_DUMP_SIGNAL, file=out, all_threads=True, chain=False)

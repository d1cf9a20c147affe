"""Logging setup, called once by each process entry point and nowhere else.

With JSON logs, every line a process writes is one JSON object: Python warnings (Celery's root-user
warning) become log records, and what libraries print themselves (Celery's banner and "Warm shutdown"
lines, progress bars, a stack dump, a crash's traceback) reaches the log through a pipe on the process's
stdout and stderr, relayed line by line as records of the `stdout` and `stderr` loggers. Lines that are
JSON objects already (a child's own log) pass through unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import fcntl
import json
import logging
import os
import re
import signal
import sys
import threading
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


def configure_logging(settings: LogSettings, *, process_name: str | None = None) -> bool:
    """Set up this process's log; True when it is JSON."""
    if process_name:
        import multiprocessing

        multiprocessing.current_process().name = process_name
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    use_json = use_json and settings.format != "text"
    stream: Any = sys.stderr
    if use_json:
        logging.captureWarnings(True)  # one record each, not the warning's lines
        if sys.stderr is sys.__stderr__:  # this process's own stderr (not a test's capture)
            stream = _relay_stdio()
    handler = logging.StreamHandler(stream)
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
    return use_json


PIPE_SIZE = 1 << 20  # room for a stack dump written from a signal handler while the relay waits
_relayed: dict[int, int] = {}  # fd -> a copy of what it was before the relay (the real stdout, stderr)


def original_stdio() -> tuple[int | None, int | None]:
    """The process's stdout and stderr before the relay (for children that log for themselves)."""
    return _relayed.get(1), _relayed.get(2)


def _relay_stdio() -> Any:
    """Put pipes on fds 1 and 2, relayed as log records; return the stream the log itself goes to."""
    if not _relayed:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        reads = {}
        for fd in (1, 2):
            _relayed[fd] = os.dup(fd)
            read, write = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            os.dup2(write, fd)
            os.close(write)
            reads[fd] = read
        threads = []
        for fd, name, level in ((1, "stdout", logging.INFO), (2, "stderr", logging.WARNING)):
            thread = threading.Thread(
                target=_relay,
                args=(reads[fd], logging.getLogger(name), level),
                name=f"relay-{name}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        atexit.register(_drain, threads)
    return os.fdopen(os.dup(_relayed[2]), "w", buffering=1, encoding="utf-8", errors="backslashreplace")


def _relay(fd: int, logger: logging.Logger, level: int) -> None:
    out = _relayed[2]
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            *lines, pending = re.split(rb"[\r\n]", pending + chunk)
            for line in lines:
                _relay_line(line, logger, level, out)
        _relay_line(pending, logger, level, out)


def _relay_line(raw: bytes, logger: logging.Logger, level: int, out: int) -> None:
    text = raw.decode("utf-8", errors="replace").rstrip()
    if not text.strip():
        return
    if text.startswith("{") and text.endswith("}"):
        with contextlib.suppress(ValueError):
            if isinstance(json.loads(text), dict):  # already a log record (a child's): as it is
                os.write(out, raw.rstrip() + b"\n")
                return
    logger.log(level, "%s", text)


def _drain(threads: list[threading.Thread]) -> None:
    """At exit: what is still in the pipes (a crash's traceback) reaches the log before the process ends."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    for fd, original in _relayed.items():
        os.dup2(original, fd)  # closes this process's write end: the relay reads to the end
    for thread in threads:
        thread.join(timeout=1.0)


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

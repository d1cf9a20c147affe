"""Logging: one JSON object per line when configured (or when stderr is not a terminal), text otherwise."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from vigil.config.settings import LogSettings
from vigil.ops.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(capsys: pytest.CaptureFixture[str], settings: LogSettings) -> str:
    configure_logging(settings, process_name="test-proc")
    log = logging.getLogger("vigil.test")
    log.info("media %d: analysing %s", 7, "/in/a b.mp4")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("media %d: unexpected error", 7)
    return capsys.readouterr().err


def test_json_format_writes_one_object_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    lines = emit(capsys, LogSettings(format="json")).splitlines()
    assert len(lines) == 2  # the traceback stays inside its event's line
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "media 7: analysing /in/a b.mp4"
    assert (first["level"], first["logger"], first["process"]) == ("INFO", "vigil.test", "test-proc")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_text_format_is_plain(capsys: pytest.CaptureFixture[str]) -> None:
    out = emit(capsys, LogSettings(format="text"))
    assert "INFO    test-proc vigil.test: media 7: analysing /in/a b.mp4" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_auto_is_json_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    line = emit(capsys, LogSettings(format="auto")).splitlines()[0]
    assert json.loads(line)["message"].startswith("media 7")


def test_the_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    lines = emit(capsys, LogSettings(format="json", level="ERROR")).splitlines()
    assert [json.loads(line)["level"] for line in lines] == ["ERROR"]


STACK_DUMPER = """
import os, sys, time
from vigil.ops.logs import configure_logging
from vigil.config.settings import LogSettings

def waiting_in_a_named_function():
    time.sleep(30)

configure_logging(LogSettings(format="text"))
if os.fork() == 0:  # as Celery's prefork pool makes its children
    sys.stderr.write("child ready\\n")
    waiting_in_a_named_function()
    os._exit(0)
sys.stderr.write("parent ready\\n")
os.wait()
"""


def test_sigusr2_prints_every_threads_stack_in_a_daemon_and_its_forked_children() -> None:
    from tests.support.processes import child_pids
    from vigil.ops.logs import STACK_DUMP_SIGNAL

    process = subprocess.Popen([sys.executable, "-c", STACK_DUMPER], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        ready = {process.stderr.readline().strip(), process.stderr.readline().strip()}
        assert ready == {"child ready", "parent ready"}
        [child] = child_pids(process.pid)
        time.sleep(0.5)  # both past their "ready" line, into their waits
        os.kill(child, STACK_DUMP_SIGNAL)
        time.sleep(0.5)  # one after the other: both write to the same stderr
        os.kill(process.pid, STACK_DUMP_SIGNAL)
        time.sleep(0.5)
        assert process.poll() is None  # a stack dump, not the signal's default (the end of the process)
        os.kill(child, signal.SIGKILL)
        process.wait(timeout=10)
        dumped = process.stderr.read()
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stderr.close()  # type: ignore[union-attr]
    assert dumped.count("(most recent call first)") == 2, dumped
    assert "in waiting_in_a_named_function" in dumped, dumped

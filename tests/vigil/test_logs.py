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
from pathlib import Path

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


def json_records(text: str) -> list[dict[str, object]]:
    """Every non-empty line as a JSON object; a plain-text line fails the test with its text."""
    records = []
    for line in text.splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"a plain-text line in a JSON log: {line!r}")
            assert isinstance(record, dict), line
            records.append(record)
    return records


PRINTER = """
import sys, warnings
from vigil.ops.logs import configure_logging
from vigil.config.settings import LogSettings

configure_logging(LogSettings(format="json"), process_name="printer")
print("a library printing to stdout")
sys.stderr.write("a progress bar\\r50%\\r100%\\n")
warnings.warn("a warning\\nof two lines", UserWarning)
raise RuntimeError("boom at exit")
"""


def test_a_json_log_holds_only_json_even_what_libraries_print_and_a_crash() -> None:
    result = subprocess.run([sys.executable, "-c", PRINTER], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    records = json_records(result.stderr)
    messages = [str(r["message"]) for r in records]
    assert {"a library printing to stdout", "a progress bar", "50%", "100%"} <= set(messages), messages
    (warning,) = [r for r in records if r["logger"] == "py.warnings"]
    assert "UserWarning: a warning\nof two lines" in str(warning["message"])
    assert "RuntimeError: boom at exit" in messages  # the traceback, drained at exit
    assert all(r["process"] == "printer" for r in records)


@pytest.mark.slow
def test_vigil_run_writes_a_json_log_with_no_plain_line_from_celery(tmp_path: Path, tiny_llava: Path) -> None:
    """Celery's banner, its root-user warning (when run as root) and its "Warm shutdown" line used to break
    the JSON log into plain-text lines."""
    from tests.support.processes import Stack, wait_for

    stack = Stack(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vigil.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        model_dir=tiny_llava,
        extra_env={"VIGIL_LOG__FORMAT": "json"},
    )
    log = tmp_path / "run.log"
    run = stack.spawn("run", "-m", "vigil", "run", "--watch", str(stack.inbox))
    try:
        wait_for(lambda: log.read_text().count(" ready.") >= 2, timeout=180, what="both workers ready")
    finally:
        stack.stop_all()
    assert run.returncode == 0, stack.dump_logs()
    records = json_records(log.read_text())
    messages = [str(r["message"]) for r in records]
    assert any(m.startswith("celery worker gpu@") and "queue gpu, prefork pool of 1" in m for m in messages)
    assert sum("Warm shutdown" in m for m in messages) == 2, messages  # Celery's own print, relayed
    if os.geteuid() == 0:
        assert sum("superuser privileges" in m for m in messages) == 2
    assert {r["process"] for r in records} >= {"vigil-run", "watcher", "worker-gpu", "worker-cpu", "web"}

"""Logging: one JSON object per line when configured (or when stderr is not a terminal), text otherwise."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from vigil.logs import configure_logging
from vigil.settings import LogSettings


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

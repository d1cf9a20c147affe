"""The fault suite's summary table, printed after the run (fault, files, lost, duplicated, recovered in s)."""

from __future__ import annotations

import pytest

from tests.support.faults import REPORT, Report


@pytest.fixture(scope="session")
def fault_report() -> Report:
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT.rows:
        terminalreporter.section("Vigil fault suite")
        terminalreporter.write_line(REPORT.table())

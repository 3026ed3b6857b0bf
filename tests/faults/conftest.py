"""The fault drills' report: one line per fault, printed after the run
(`./dev faults`), whatever pytest's output options."""

from __future__ import annotations

from typing import Any

from tests.faults.ledger import REPORT, Outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.section("fault drills")
    for line in Outcome.table(REPORT):
        terminalreporter.write_line(line)

"""Time as an input. Services ask a clock, never the system directly, for
deadlines and timers, so tests (and disaster drills) can move time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from eventsourcing.domain import CanCreateTimestamp


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetFileClock:
    """System time plus the number of seconds written in a file (0 when the
    file is missing). For tests: they move a running service's time forward."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> float:
        try:
            return float(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset())


def clock_from_setting(offset_file: str) -> Clock:
    return OffsetFileClock(Path(offset_file)) if offset_file else SystemClock()


def service_clock(offset_file: str) -> Clock:
    """The clock of an event-sourced service, which also stamps its events:
    deadlines, SLA clocks and the times on the events all read one time."""
    clock = clock_from_setting(offset_file)
    setattr(CanCreateTimestamp, "create_timestamp", staticmethod(clock.now))  # noqa: B010
    return clock


def add_months(moment: datetime, months: int) -> datetime:
    """The same time `months` later; a day the month lacks moves to the next
    month's first day (31 Aug + 6 months = 1 Mar), so the period is never short."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    try:
        return moment.replace(year=year, month=month)
    except ValueError:
        first_next = moment.replace(year=year + (month == 12), month=month % 12 + 1, day=1)
        return first_next

"""Service levels as data (sla.json): business hours, skill queues, targets
per case type, category and priority, warnings and escalation.

A clock counts only while the case is with the agents: it stands still while
the case waits on the requester or a third party. Business-hour targets count
only the calendar's working hours."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Calendar:
    zone: ZoneInfo
    weekdays: frozenset[int]
    start: time
    end: time

    def _windows(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The working periods from `since` on (the first possibly cut short)."""
        day = since.astimezone(self.zone).date()
        while True:
            if day.weekday() in self.weekdays:
                opens = datetime.combine(day, self.start, self.zone)
                closes = datetime.combine(day, self.end, self.zone)
                if closes > since:
                    yield max(opens, since), closes
            day += timedelta(days=1)

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of working time after `start`."""
        left = seconds
        for opens, closes in self._windows(start):
            span = (closes - opens).total_seconds()
            if left <= span:
                return opens + timedelta(seconds=max(left, 0.0))
            left -= span
        raise AssertionError("unreachable: the calendar has working days")

    def between(self, start: datetime, end: datetime) -> float:
        """Seconds of working time from `start` to `end`."""
        total = 0.0
        for opens, closes in self._windows(start):
            if opens >= end:
                break
            total += (min(closes, end) - opens).total_seconds()
        return total


@dataclass(frozen=True)
class Target:
    seconds: float
    business: bool

    def spent(self, calendar: Calendar, start: datetime, end: datetime) -> float:
        if end <= start:
            return 0.0
        if self.business:
            return calendar.between(start, end)
        return (end - start).total_seconds()

    def at(self, calendar: Calendar, start: datetime, seconds: float) -> datetime:
        """When `seconds` more of this clock's time have run from `start`."""
        if self.business:
            return calendar.add(start, seconds)
        return start + timedelta(seconds=max(seconds, 0.0))


@dataclass(frozen=True)
class Policy:
    name: str
    first_response: Target
    resolution: Target
    escalate_to: str


@dataclass(frozen=True)
class Rule:
    type: str
    category: str
    min_priority: int
    value: Any

    def matches(self, kind: str, category: str, priority: int) -> bool:
        return (
            self.type == kind
            and category.startswith(self.category)
            and priority >= self.min_priority
        )


# The queue of a case no skill queue's rule matches.
GENERAL = "general"


@dataclass(frozen=True)
class ServiceLevels:
    calendar: Calendar
    warn_before: float
    queues: tuple[Rule, ...]
    policies: tuple[Rule, ...]
    report_priority: tuple[tuple[float, int], ...]
    appeal_priority: int

    def queue(self, kind: str, category: str) -> str:
        return next((r.value for r in self.queues if r.matches(kind, category, 0)), GENERAL)

    @property
    def queue_names(self) -> frozenset[str]:
        """Every queue a case can be in: a skill queue, the one for the rest,
        or one cases are escalated to."""
        return frozenset(
            {GENERAL}
            | {r.value for r in self.queues}
            | {r.value.escalate_to for r in self.policies if r.value.escalate_to}
        )

    def policy(self, kind: str, category: str, priority: int) -> Policy:
        for rule in self.policies:
            if rule.matches(kind, category, priority):
                return rule.value  # type: ignore[no-any-return]
        raise LookupError(f"no service level for {kind} {category} priority {priority}")

    def priority_of_report(self, lane: str, points: float) -> int:
        if lane == "CHILD_SAFETY":
            return 4
        return next(p for floor, p in self.report_priority if points >= floor)


def _target(raw: dict[str, Any]) -> Target:
    return Target(seconds=float(raw["hours"]) * 3600, business=bool(raw.get("business")))


def load(path: str = "") -> ServiceLevels:
    raw: dict[str, Any] = json.loads(
        Path(path).read_text()
        if path
        else resources.files("casemesh_casequeue").joinpath("sla.json").read_text()
    )
    cal = raw["calendar"]
    calendar = Calendar(
        zone=ZoneInfo(cal["zone"]),
        weekdays=frozenset(cal["weekdays"]),
        start=time.fromisoformat(cal["start"]),
        end=time.fromisoformat(cal["end"]),
    )
    if not calendar.weekdays or not calendar.weekdays <= set(range(7)):
        raise ValueError("sla: calendar.weekdays must name days 0 (Monday) to 6")
    if calendar.start >= calendar.end:
        raise ValueError("sla: the calendar must open before it closes")
    if not 0 < float(raw["warn_before"]) < 1:
        raise ValueError("sla: warn_before is a fraction of the target, between 0 and 1")
    if not any(float(floor) <= 0 for floor, _ in raw["report_priority"]):
        raise ValueError("sla: report_priority needs a floor of 0")
    policies = tuple(
        Rule(
            p["type"],
            p.get("category", ""),
            int(p.get("min_priority", 0)),
            Policy(
                name=f"{p['type']}:{p.get('category', '*')}:{p.get('min_priority', 0)}",
                first_response=_target(p["first_response"]),
                resolution=_target(p["resolution"]),
                escalate_to=p.get("escalate_to", ""),
            ),
        )
        for p in raw["policies"]
    )
    for kind in ("ticket", "appeal", "report"):
        if not any(r.matches(kind, "", 0) for r in policies):
            raise ValueError(f"sla: no catch-all policy for {kind}")
    return ServiceLevels(
        calendar=calendar,
        warn_before=float(raw["warn_before"]),
        queues=tuple(Rule(q["type"], q.get("category", ""), 0, q["queue"]) for q in raw["queues"]),
        policies=policies,
        # Highest floor first, however the file lists them: the first a
        # case's points reach gives its priority.
        report_priority=tuple(
            sorted(((float(f), int(p)) for f, p in raw["report_priority"]), reverse=True)
        ),
        appeal_priority=int(raw["appeal_priority"]),
    )

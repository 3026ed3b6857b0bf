"""How every benchmark measures and prints a goal: the measured figure and
its reference taken in the same run, alternately (A-B-A-B), so that a busy
machine slows both alike, then one row of measured / reference / ratio /
goal."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """A goal on measured / reference: a rate (unit "/s") must reach
    `ratio` times its reference; a latency (unit "ms") must stay within
    `ratio` times its reference and, where `limit` is set, within `limit` ms
    too."""

    name: str
    unit: str
    ratio: float | None  # None: no bound on the ratio
    limit: float | None = None  # for a latency: the most it may be, in ms

    @property
    def is_rate(self) -> bool:
        return self.unit == "/s"

    @property
    def is_goal(self) -> bool:
        return self.ratio is not None or self.limit is not None

    def met(self, measured: float, reference: float) -> bool:
        if self.is_rate:
            return self.ratio is None or measured / reference >= self.ratio
        within_ratio = self.ratio is None or measured / reference <= self.ratio
        return within_ratio and (self.limit is None or measured <= self.limit)

    def wanted(self) -> str:
        if not self.is_goal:
            return "—"
        if self.is_rate:
            return f"≥ {self.ratio:g}×"
        bounds = [f"≤ {self.ratio:g}×"] if self.ratio is not None else []
        bounds += [f"≤ {self.limit:g} ms"] if self.limit is not None else []
        return ", ".join(bounds)


def interleaved(
    measure: Callable[[], float], reference: Callable[[], float], rounds: int = 2
) -> tuple[float, float]:
    """The median of `rounds` runs of each, alternating A-B-A-B."""
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(measure())
        theirs.append(reference())
    return statistics.median(ours), statistics.median(theirs)


def row(goal: Goal, measured: float, reference: float, reference_name: str) -> str:
    """One printed line: the goal, measured, reference (named), ratio, what
    the goal asks, met or not."""
    return (
        f"  {goal.name:<40} {measured:9.1f} {goal.unit:<2} │ {reference:9.1f} {goal.unit:<2}"
        f" {reference_name:<34} │ {measured / reference:6.2f}× │ goal {goal.wanted():<16}"
        f" {verdict(goal, measured, reference)}"
    )


def verdict(goal: Goal, measured: float, reference: float) -> str:
    if not goal.is_goal:
        return "(information)"
    return "met" if goal.met(measured, reference) else "NOT MET"

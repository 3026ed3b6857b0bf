"""Figures over a period: the SQL condition for "this column's time falls in
[start, end)", either end open."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def within(column: str, start: datetime | None, end: datetime | None) -> tuple[str, list[Any]]:
    """(condition, parameters) for rows whose `column` (a name from code, not
    from a caller) is set and falls in [start, end)."""
    clauses = [f"{column} IS NOT NULL"]
    params: list[Any] = []
    if start is not None:
        clauses.append(f"{column} >= %s")
        params.append(start)
    if end is not None:
        clauses.append(f"{column} < %s")
        params.append(end)
    return " AND ".join(clauses), params


def falls_within(moment: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    """`within` for a time in memory: it is set and falls in [start, end)."""
    return (
        moment is not None and (start is None or moment >= start) and (end is None or moment < end)
    )

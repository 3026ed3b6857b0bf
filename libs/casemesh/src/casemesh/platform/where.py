"""The WHERE clause of a list query, built from the filters a call was
given: each condition with its own parameters, in order."""

from __future__ import annotations

from typing import Any


class Where:
    """Conditions joined by AND, and the parameters they take in turn."""

    def __init__(self, condition: str = "TRUE", *params: Any) -> None:
        self.conditions = [condition]
        self.params = list(params)

    def add(self, condition: str, *params: Any) -> Where:
        self.conditions.append(condition)
        self.params.extend(params)
        return self

    def given(self, value: Any, condition: str) -> Where:
        """`condition` on `value`, its one parameter, unless the filter was
        left out (None, or an empty string, list or tuple; a 0 or False is a
        value)."""
        if value is None or (isinstance(value, str | list | tuple) and not value):
            return self
        return self.add(condition, value)

    def __str__(self) -> str:
        return " AND ".join(self.conditions)

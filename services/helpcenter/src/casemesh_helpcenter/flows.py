"""Guided troubleshooting flows, as content (flows.json)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def flows() -> dict[str, dict[str, Any]]:
    raw: dict[str, Any] = json.loads(
        resources.files("casemesh_helpcenter").joinpath("flows.json").read_text()
    )
    found: dict[str, dict[str, Any]] = raw["flows"]
    return found


def text(value: dict[str, str], locale: str) -> str:
    return value.get(locale) or value["en"]

"""Retention periods, per case type (and for files never attached): data, in
retention.toml."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from functools import cache
from importlib import resources


@cache
def _days() -> dict[str, float]:
    text = resources.files("casemesh.rules").joinpath("retention.toml").read_text()
    return {k: float(v) for k, v in tomllib.loads(text).items()}


def period(case_type: str) -> timedelta:
    """How long a case of `case_type` ("tickets") keeps its personal data
    after it ended; for "unattached_files", how long an upload no case took
    up is kept."""
    return timedelta(days=_days()[case_type])

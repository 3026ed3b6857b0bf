"""The triage weights of a reason taxonomy an operator hands the reports
service (CASEMESH_REPORTS_TAXONOMY_FILE): one the queue cannot rank by is
refused as it is loaded, naming the weight, before the service starts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from casemesh_reports.policy import load_taxonomy


def taxonomy_file(tmp_path: Path, **triage: Any) -> str:
    """The built-in taxonomy with these triage weights, as a file."""
    raw = json.loads(resources.files("casemesh_reports").joinpath("taxonomy.json").read_text())
    raw["triage"] = {**raw.get("triage", {}), **triage}
    path = tmp_path / "taxonomy.json"
    path.write_text(json.dumps(raw))
    return str(path)


@pytest.mark.parametrize(
    ("weights", "named"),
    [
        ({"points_per_hour_waiting": 0}, "triage.points_per_hour_waiting must be more than 0"),
        ({"trusted_flagger_points": -40}, "triage.trusted_flagger_points must be a number"),
        ({"max_reporter_points": "50"}, "triage.max_reporter_points must be a number"),
        ({"points_per_extra_reporter": None}, "triage.points_per_extra_reporter must be a number"),
        ({"points_per_hour": 2}, "triage.points_per_hour is not a triage weight"),
    ],
    ids=["no-growth-with-age", "negative", "text", "null", "misspelt"],
)
def test_triage_weights_the_queue_cannot_rank_by_are_refused_naming_the_weight(
    tmp_path: Path, weights: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        load_taxonomy(taxonomy_file(tmp_path, **weights))


def test_weights_the_queue_can_rank_by_are_taken(tmp_path: Path) -> None:
    """Slower growth with age, and no points for a trusted flagger."""
    path = taxonomy_file(tmp_path, points_per_hour_waiting=0.5, trusted_flagger_points=0)
    triage = load_taxonomy(path).triage
    assert (triage.points_per_hour_waiting, triage.trusted_flagger_points) == (0.5, 0)
    since = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert triage.rank_time(since, triage.base(50, 1, True)) == since - timedelta(hours=100)

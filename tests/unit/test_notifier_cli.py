"""The notifier's command line as an operator meets it: usage without any
settings, and `replay` given a job the way the docs and a provider name it."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from casemesh_notifier.__main__ import job_ids


def notifier(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m casemesh_notifier ARGS` with no settings in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "casemesh_notifier", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def test_help_shows_the_usage_without_any_settings() -> None:
    done = notifier("--help")
    assert (done.returncode, done.stderr.strip()) == (
        0,
        "usage: python -m casemesh_notifier [run | replay [JOB_ID ...]]",
    )


def test_a_job_is_named_by_its_id_or_by_the_key_its_provider_saw() -> None:
    job = uuid.uuid4()
    assert job_ids([str(job), f"{job}.2", str(job).upper()]) == [str(job)] * 3


@pytest.mark.parametrize("given", ["42", "not-a-job", f"{uuid.uuid4()}.x"])
def test_replay_of_something_not_a_job_stops_naming_it_and_queues_nothing(given: str) -> None:
    done = notifier("replay", str(uuid.uuid4()), given)
    assert done.returncode == 2
    assert f"not a job id: {given!r}" in done.stderr
    assert "Traceback" not in done.stderr

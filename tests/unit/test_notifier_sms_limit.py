"""A number's hourly SMS limit: its case updates wait for it, and so do
codes beyond it, but a requested code never waits behind case updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from casemesh_notifier.delivery import hourly_limit_ends
from casemesh_notifier.policy import CODE_TEMPLATE

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
LIMIT = 3


def minutes_ago(*minutes: int, template: str = "ticket.agent_reply") -> list[tuple[str, datetime]]:
    return [(template, NOW - timedelta(minutes=m)) for m in minutes]


def test_a_number_at_its_limit_from_case_updates_still_gets_its_code_now() -> None:
    updates = minutes_ago(50, 30, 10)
    assert hourly_limit_ends(CODE_TEMPLATE, updates, LIMIT) is None
    # The next case update waits until the oldest of the hour is an hour old.
    assert hourly_limit_ends("ticket.solved", updates, LIMIT) == NOW + timedelta(
        minutes=10, seconds=1
    )


def test_codes_beyond_the_limit_wait_and_count_against_case_updates() -> None:
    codes = minutes_ago(40, 20, 5, template=CODE_TEMPLATE)
    assert hourly_limit_ends(CODE_TEMPLATE, codes, LIMIT) == NOW + timedelta(minutes=20, seconds=1)
    assert hourly_limit_ends("ticket.solved", codes[:2] + minutes_ago(1), LIMIT) is not None
    assert hourly_limit_ends(CODE_TEMPLATE, codes[:2] + minutes_ago(58, 1), LIMIT) is None


def test_a_number_over_its_limit_waits_until_enough_of_the_hour_has_passed() -> None:
    """Codes went beyond what case updates may have: an update waits until
    all but LIMIT - 1 of the hour's SMS are over an hour old."""
    sent = minutes_ago(55, 45) + minutes_ago(35, 25, 15, template=CODE_TEMPLATE)
    assert hourly_limit_ends("ticket.solved", sent, LIMIT) == NOW + timedelta(minutes=25, seconds=1)

"""Months as the EU's law counts them (Regulation 1182/71 Art. 3): to 24:00
of the matching day, on the EU clock where that comes last."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from casemesh.rules.deadlines import months_end


def test_six_months_from_noon_end_at_midnight_in_martinique() -> None:
    decided = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    assert months_end(decided, 6) == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)


def test_a_start_already_the_next_day_in_reunion_ends_a_day_later_there() -> None:
    """At 20:30 UTC on 5 March it is 6 March in Réunion (UTC+4) alone: the
    months run to 24:00 on 6 September there, after Martinique's 5 September."""
    decided = datetime(2026, 3, 5, 20, 30, tzinfo=UTC)
    assert months_end(decided, 6) == datetime(2026, 9, 6, 20, 0, tzinfo=UTC)


def test_the_end_is_given_on_the_starts_clock() -> None:
    brussels = ZoneInfo("Europe/Brussels")
    decided = datetime(2026, 3, 5, 13, 0, tzinfo=brussels)
    end = months_end(decided, 6)
    assert end.tzinfo is brussels
    assert end == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)


def test_a_day_the_last_month_lacks_never_shortens_the_period() -> None:
    """31 August plus six months is no day of February: the period runs on
    through 1 March (as `add_months` counts), never ending in February."""
    decided = datetime(2026, 8, 31, 12, 0, tzinfo=UTC)
    assert months_end(decided, 6) == datetime(2027, 3, 2, 4, 0, tzinfo=UTC)


def test_only_the_zones_named_count() -> None:
    decided = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    assert months_end(decided, 6, ("Asia/Shanghai",)) == datetime(2026, 9, 5, 16, 0, tzinfo=UTC)


def test_a_last_day_on_a_weekend_gives_way_to_the_monday_after_when_asked() -> None:
    """Regulation 1182/71 Art. 3(4): 5 September 2026 is a Saturday, so the
    months run to 24:00 on Monday the 7th in Martinique; a last day in the
    week stays where it is."""
    decided = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    assert months_end(decided, 6, ends_on_working_day=True) == datetime(
        2026, 9, 8, 4, 0, tzinfo=UTC
    )
    wednesday = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert months_end(wednesday, 6, ends_on_working_day=True) == months_end(wednesday, 6)

"""When a period the law counts in calendar months ends.

Regulation 1182/71 Art. 3 counts months as the EU's law means them (the DSA's
"at least six months" to appeal, Art. 20): from the day after the event, to
the end (24:00) of the matching day, so six months from a decision at noon
on 5 March end at 24:00 on 5 September. That day ends at a different moment
on each clock, and the platform does not know whose clock its reader keeps:
the period ends when it has ended on every one of them.

A period whose last day is a Saturday, a Sunday or a public holiday ends with
the next working day (Art. 3(4)). Public holidays are each member state's, not
known here: `ends_on_working_day` moves a last day on a weekend alone, and a
caller that knows the holidays moves it further.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from casemesh.platform.clock import add_months
from casemesh.rules.territories import EU_ZONES


def rest_day(
    day: date, holidays: Collection[date] = frozenset(), workdays: Collection[date] = frozenset()
) -> bool:
    """Whether `day` is not worked: one of `holidays`, or a Saturday or
    Sunday that is not one of `workdays` (China's make-up working days)."""
    return day in holidays or (day.weekday() >= 5 and day not in workdays)


def months_end(
    start: datetime,
    months: int,
    zones: Iterable[str] = EU_ZONES,
    *,
    ends_on_working_day: bool = False,
) -> datetime:
    """When `months` calendar months from `start` have run out on each clock
    of `zones`: 24:00 of the matching local day, the latest of them (from
    noon UTC on 5 March 2026, six months run to 24:00 on 5 September in
    Martinique, 04:00 UTC on 6 September). `ends_on_working_day`: of the
    Monday after, where that day is a Saturday or Sunday (the 5th is a
    Saturday: 04:00 UTC on 8 September). Given in `start`'s time zone."""
    return max(_months_end_in(start, months, ZoneInfo(zone), ends_on_working_day) for zone in zones)


def _months_end_in(
    start: datetime, months: int, zone: ZoneInfo, ends_on_working_day: bool
) -> datetime:
    # Months are added to the local day: added to another zone's, a start
    # just after local midnight would end a day early.
    last = add_months(start.astimezone(zone), months).date()
    while ends_on_working_day and rest_day(last):
        last += timedelta(days=1)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)
    return end.astimezone(start.tzinfo)

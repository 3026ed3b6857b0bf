"""When a job may go out: SMS quiet hours and the per-recipient SMS rate
limit (retries wait `casemesh.platform.backoff`). Pure functions of the clock (time is an input)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

# A one-time code's template.
CODE_TEMPLATE = "verification.code"
# Messages the recipient is waiting for at that moment: quiet hours do not hold them.
URGENT_TEMPLATES = frozenset({CODE_TEMPLATE})
# Messages carrying a secret: their text is erased once delivered.
SECRET_TEMPLATES = frozenset({CODE_TEMPLATE})
# Messages a newer one to the same party replaces: one still waiting when
# the next is planned is cancelled, its text erased (a code sent again
# makes the earlier one invalid, and it would hold the new one back: a
# party's messages go in order).
SUPERSEDED_TEMPLATES = frozenset({"verification.code"})
# Messages asking the party to act on their case (send what is missing by a
# date): one still waiting when the case ends (cancelled, withdrawn, …) is
# cancelled, its text erased (`store.cancel_requests`): the case takes no
# answer any more.
REQUEST_TEMPLATES = frozenset(
    {"ticket.info_requested", "appeal.info_requested", "report_appeal.info_requested"}
)


def quiet_until(now: datetime, quiet_hours: str, zone: str | tzinfo) -> datetime | None:
    """The end of the quiet period `now` falls in (in `zone`, the
    recipient's), or None when SMS may go now."""
    if not quiet_hours:
        return None
    start_s, end_s = quiet_hours.split("-")
    start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
    local = now.astimezone(ZoneInfo(zone) if isinstance(zone, str) else zone)
    t = local.timetz().replace(tzinfo=None)
    # A period like 22:00-08:00 spans midnight.
    inside = start <= t < end if start <= end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=local.tzinfo).astimezone(now.tzinfo)


def quiet_until_everywhere(
    now: datetime, quiet_hours: str, zones: Sequence[tzinfo]
) -> datetime | None:
    """The end of the quiet period `now` falls in for a recipient who may be
    in any of `zones` (a number whose country spans several: +7, +61): the
    first moment from `now` at which it is quiet in none of them, or None
    when SMS may go now. Zones so far apart that it is always night in one
    of them have no such moment: then the first at which it is night in the
    fewest."""
    if not quiet_hours or not zones:
        return None
    # The number of zones quiet at a moment falls only where a quiet period
    # ends: the first moment it is lowest is now or one of those ends. Each
    # zone's next end is today's or tomorrow's there; the day repeats.
    end = time.fromisoformat(quiet_hours.split("-")[1])
    ends = {
        datetime.combine(day, end, tzinfo=zone).astimezone(now.tzinfo)
        for zone in zones
        for today in [now.astimezone(zone).date()]
        for day in (today, today + timedelta(days=1))
    }
    candidates = [now, *sorted(moment for moment in ends if moment > now)]

    def quiet_in(moment: datetime) -> int:
        return sum(quiet_until(moment, quiet_hours, zone) is not None for zone in zones)

    best = min(candidates, key=quiet_in)  # the earliest of the quietest
    return None if best == now else best

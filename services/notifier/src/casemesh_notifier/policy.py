"""When a job may go out: retry backoff with jitter, SMS quiet hours, and the
per-recipient SMS rate limit. Pure functions of the clock (time is an input)."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1 = first retry): full jitter."""
    # (The exponent stops growing long before a float would overflow.)
    ceiling = min(cap, base * (2 ** min(attempt - 1, 40)))
    return (rng or random).uniform(ceiling / 2, ceiling)


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

"""Time limits per jurisdiction, as data (overridable by a JSON file).

- cn: Regulations on the Right of Communication through Information Networks
  Art. 14–17, Civil Code Art. 1195–1196; the E-Commerce Law Art. 43 gives the
  claimant 15 days after the counter-notice is forwarded; counted as Civil
  Code Art. 203 counts them, days whose last is a statutory rest day end
  with the next working day.
- us: DMCA §512(g): restore no sooner than 10 and no later than 14 business
  days after the counter-notice, unless the claimant reports court action.
- eu: DSA Art. 16–17, 20: the complaint (appeal) stays open at least six
  months after the decision is notified, counted as Regulation 1182/71 Art. 3
  counts months: from the day after, to the end (24:00) of the matching day,
  or of the next working day when that one is a Saturday, a Sunday or a
  public holiday; restoring after a counter-notice is platform policy.

Rest days are Saturdays and Sundays, and the dates a policy lists as
`holidays`; a Saturday or Sunday it lists as `workdays` is worked (China's
make-up working days, 调休). The built-in policies list the US federal
holidays alone: China's holidays and make-up days are announced by the State
Council each year, and the EU's public holidays are each member state's, so
an operator lists them in the policy file (`load`).

After a counter-notice the claimant is told to report court action by a
deadline (`restore_after`); the content comes back a little later
(`court_notice_grace`), so that a court action reported just before the
deadline is recorded before anything is restored, still within the law's
time (us: 10 + 2 business days, within the 14).

A takedown has no territorial scope: whatever law a case is decided under,
the content comes down in the EU too, and whoever would appeal may be there.
So no jurisdiction's decision may be appealed for less than the EU's six
months (`JurisdictionPolicy.appeal_deadline`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from casemesh.platform.clock import add_months
from casemesh.rules.deadlines import months_end, rest_day
from casemesh.rules.territories import EU_ZONES

UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Period:
    days: int = 0
    business_days: bool = False
    # Calendar months (the DSA's "six months"), added before any days.
    months: int = 0
    # Calendar days (and months) counted as Chinese law counts them (Civil
    # Code Art. 201, 203) and the EU's (Regulation 1182/71 Art. 3): from the
    # day after the start, the last ending at 24:00 local.
    whole_days: bool = False
    # Whole days whose last day, if a rest day, gives way to the next working
    # day (Civil Code Art. 203; Regulation 1182/71 Art. 3(4)): where the law
    # gives a party until then. A platform's own grace does not move.
    ends_on_working_day: bool = False

    def after(
        self,
        start: datetime,
        holidays: frozenset[date] = frozenset(),
        zone: ZoneInfo = UTC,
        workdays: frozenset[date] = frozenset(),
    ) -> datetime:
        """When the period that starts at `start` ends.

        Calendar days and months are exact durations, unless `whole_days`:
        then whole months and days in the jurisdiction's time zone from the
        day after `start`, ending when the last of them ends (local
        midnight): six months from 5 March end at 24:00 on 5 September
        (`ends_on_working_day`: on Monday the 7th, when the 5th is a
        Saturday). Business days are whole days that are not rest days
        (`rest_day`), counted from the day after `start`; the period ends
        when the last of them ends (local midnight), never earlier."""
        if self.whole_days and not self.business_days:
            # Months are added to the local day: added to another zone's,
            # a start just after local midnight could end a day early.
            local = add_months(start.astimezone(zone), self.months)
            last = local.date() + timedelta(days=self.days)
            while self.ends_on_working_day and rest_day(last, holidays, workdays):
                last += timedelta(days=1)
            end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)
            return end.astimezone(start.tzinfo)
        if self.months:
            start = add_months(start, self.months)
        if not self.business_days:
            return start + timedelta(days=self.days)
        day, left = start.astimezone(zone).date(), self.days
        while left:
            day += timedelta(days=1)
            if not rest_day(day, holidays, workdays):
                left -= 1
        end_of_day = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        return end_of_day.astimezone(start.tzinfo)


@dataclass(frozen=True)
class JurisdictionPolicy:
    code: str
    # The platform's target for deciding a filed case.
    review: Period
    # How long the filer has to answer a request for information.
    info_response: Period
    # After a counter-notice is forwarded: the claimant's deadline to report
    # court action, as both parties are told.
    restore_after: Period
    # After that deadline: the time in which an agent may still record a
    # court action the claimant reported by it (their ticket is answered in
    # hours, not at once), before the content comes back
    # (`court_action_until`).
    court_notice_grace: Period
    # How long a decision may be appealed; never less than the DSA's six
    # months (`appeal_deadline`).
    appeal_window: Period
    # Where to seek redress beyond the platform (shown in statements of reasons).
    redress: dict[str, str] = field(default_factory=dict)
    # The same once an appeal is decided: that decision is final on the
    # platform, so it names only the ways beyond it.
    final_redress: dict[str, str] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    # Saturdays and Sundays worked in exchange for a holiday (China's 调休):
    # business days, and not rest days.
    workdays: frozenset[date] = frozenset()
    # Business days and whole days are counted in this zone.
    time_zone: str = "UTC"
    # Where else the people the law covers live: a period of whole days
    # ends when it has ended in each of these zones too (the latest of all),
    # so that nobody is cut short by someone else's calendar day.
    day_zones: tuple[str, ...] = ()

    def due(self, period: Period, start: datetime) -> datetime:
        zones = (self.time_zone, *self.day_zones) if period.whole_days else (self.time_zone,)
        return max(
            period.after(start, self.holidays, ZoneInfo(zone), self.workdays) for zone in zones
        )

    def court_action_until(self, deadline: datetime) -> datetime:
        """When the content of a case whose claimant had until `deadline` to
        report court action comes back, and until when an agent may record
        the action they reported: `court_notice_grace` after the deadline.
        A grace of whole or business days counts from the day after the one
        the deadline ends: a deadline at local midnight ends the day before
        it, and is not counted from the day that begins then (10 business
        days and 2 more are 12, not 13). A deadline moved past rest days
        moves the grace with it."""
        grace = self.court_notice_grace
        if not (grace.days or grace.months):
            return deadline
        counted = grace.business_days or grace.whole_days
        return self.due(grace, deadline - timedelta(microseconds=1) if counted else deadline)

    def appeal_deadline(self, decided: datetime) -> datetime:
        """Until when a decision made at `decided` may be appealed: the
        window's end, but never before six months have run out on every EU
        clock (DSA Art. 20(1), counted as `months_end` counts them, to a
        working day: Regulation 1182/71 Art. 3(4)). A removal applies in the
        EU whatever law it was decided under, and its appellant may live
        there."""
        six_months = months_end(decided, 6, ends_on_working_day=True)
        return max(self.due(self.appeal_window, decided), six_months)


def _nth(year: int, month: int, weekday: int, n: int) -> date:
    """The `n`th `weekday` (Monday 0) of the month; the last for n = -1."""
    if n < 0:
        last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        return last - timedelta(days=(last.weekday() - weekday) % 7)
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _observed(day: date) -> date:
    """A fixed-date holiday falling on a Saturday is kept the Friday before,
    on a Sunday the Monday after (Executive Order 11582)."""
    return day + timedelta(days={5: -1, 6: 1}.get(day.weekday(), 0))


def us_federal_holidays(first_year: int, last_year: int) -> frozenset[date]:
    """The US federal holidays as observed (5 U.S.C. 6103) in the years given,
    by the statute's rules, so the list never runs out: New Year's Day of the
    year after is included (on a Saturday it is observed on 31 December)."""
    days: set[date] = set()
    for year in range(first_year, last_year + 2):
        days.update(
            _observed(date(year, month, day))
            for month, day in ((1, 1), (6, 19), (7, 4), (11, 11), (12, 25))
            if (month, day) != (6, 19) or year >= 2021  # Juneteenth, from 2021
        )
        days.update(
            (
                _nth(year, 1, 0, 3),  # Birthday of Martin Luther King, Jr.
                _nth(year, 2, 0, 3),  # Washington's Birthday
                _nth(year, 5, 0, -1),  # Memorial Day
                _nth(year, 9, 0, 1),  # Labor Day
                _nth(year, 10, 0, 2),  # Columbus Day
                _nth(year, 11, 3, 4),  # Thanksgiving Day
            )
        )
    return frozenset(d for d in days if first_year <= d.year <= last_year)


# Business days are counted over these; CASEMESH_APPEALS_POLICY_FILE may
# replace them with a list of its own.
US_FEDERAL_HOLIDAYS = us_federal_holidays(2000, 2199)

POLICIES: dict[str, JurisdictionPolicy] = {
    "cn": JurisdictionPolicy(
        code="cn",
        time_zone="Asia/Shanghai",
        review=Period(7),
        info_response=Period(15),
        # E-Commerce Law Art. 43's 15 days, counted as the Civil Code counts:
        # forwarded on 2 March, the claimant has until 24:00 on 17 March;
        # forwarded on Friday 6 March 2026, until 24:00 on Monday the 23rd,
        # the 21st being a Saturday (Art. 203).
        restore_after=Period(15, whole_days=True, ends_on_working_day=True),
        # The claimant's notice must have come within the 15 days; the day
        # after is for recording it, and without one the measures end then:
        # promptly, as Art. 43 asks, not days later: the day is the
        # platform's, not the claimant's, and is not moved past a rest day.
        court_notice_grace=Period(1, whole_days=True),
        # Six months, as for the EU (`appeal_deadline`): a removal applies there too.
        appeal_window=Period(months=6, whole_days=True),
        redress={
            "zh-CN": "如不服本决定，可在申诉期限内提出申诉，或依法向人民法院起诉。",
            "en": "You may appeal within the appeal period, or bring the matter before a "
            "People's Court.",
        },
        final_redress={
            "zh-CN": "本决定是对申诉的决定，在平台内为最终决定；如不服，可依法向人民法院起诉。",
            "en": "This decision on an appeal is final on the platform; you may bring the "
            "matter before a People's Court.",
        },
    ),
    "us": JurisdictionPolicy(
        code="us",
        time_zone="America/New_York",
        holidays=US_FEDERAL_HOLIDAYS,
        review=Period(5, business_days=True),
        info_response=Period(10, business_days=True),
        restore_after=Period(10, business_days=True),
        # Restored after 12 business days: within 512(g)'s 10 to 14 (`check`).
        court_notice_grace=Period(2, business_days=True),
        # Six months, as for the EU (`appeal_deadline`): a removal applies there too.
        appeal_window=Period(months=6, whole_days=True),
        redress={
            "zh-CN": "如不服本决定，可在申诉期限内提出申诉，或提交反通知（17 U.S.C. §512(g)）。",
            "en": "You may appeal within the appeal period, or send a counter-notice under "
            "17 U.S.C. §512(g).",
        },
        final_redress={
            "zh-CN": "本决定是对申诉的决定，在平台内为最终决定；如不服，可向法院起诉。"
            "内容被删除的上传者仍可在期限内提交反通知（17 U.S.C. §512(g)）。",
            "en": "This decision on an appeal is final on the platform; you may bring the "
            "matter before a court. An uploader whose content was removed may still send a "
            "counter-notice under 17 U.S.C. §512(g) while its window is open.",
        },
    ),
    "eu": JurisdictionPolicy(
        code="eu",
        time_zone="Europe/Brussels",
        day_zones=EU_ZONES,
        review=Period(7),
        info_response=Period(14),
        restore_after=Period(14),
        court_notice_grace=Period(1),
        # Decided at noon on 5 March, a decision may be appealed until 24:00
        # on 5 September where that comes last (Martinique's), or on the
        # working day after it (Regulation 1182/71 Art. 3(4)).
        appeal_window=Period(months=6, whole_days=True, ends_on_working_day=True),
        redress={
            "zh-CN": "您可在至少六个月内通过平台内部申诉机制申诉（DSA 第 20 条），"
            "或提交经认证的庭外争议解决机构（第 21 条），或向法院起诉。",
            "en": "You may use the internal complaint system for at least six months (DSA "
            "Art. 20), a certified out-of-court dispute settlement body (Art. 21), or a court.",
        },
        final_redress={
            "zh-CN": "本决定是对申诉（DSA 第 20 条）的决定，在平台内为最终决定；"
            "您可提交经认证的庭外争议解决机构（第 21 条），或向法院起诉。",
            "en": "This decision on a complaint (DSA Art. 20) is final on the platform; you "
            "may turn to a certified out-of-court dispute settlement body (Art. 21) or a court.",
        },
    ),
}


class PolicyError(ValueError):
    pass


def check(policy: JurisdictionPolicy) -> JurisdictionPolicy:
    """Refuses a policy that breaks the law it stands for."""
    if policy.code == "cn":
        p = policy.restore_after
        # E-Commerce Law Art. 43: the claimant has 15 days from the forwarded
        # statement to complain or sue; without either, the measures end
        # promptly then. Days as the Civil Code counts them (Art. 201, 203):
        # a file that names 15 days means them.
        if p.business_days or p.months or p.days != 15:
            raise PolicyError(
                "cn: restore 15 calendar days after a counter-notice (E-Commerce Law Art. 43)"
            )
        policy = replace(
            policy, restore_after=replace(p, whole_days=True, ends_on_working_day=True)
        )
        # The grace only records a notice that came within the 15 days, and
        # the measures end promptly after it (Art. 43): whole days too, as
        # the Civil Code counts them.
        g = policy.court_notice_grace
        if not (g.business_days or g.whole_days):
            policy = replace(policy, court_notice_grace=replace(g, whole_days=True))
    if policy.code == "us":
        p, g = policy.restore_after, policy.court_notice_grace
        if not (p.business_days and 10 <= p.days <= 14):
            raise PolicyError("us: restore must be 10 to 14 business days after a counter-notice")
        # The content comes back when the grace ends: still within the 14.
        if ((g.days or g.months) and not g.business_days) or p.days + g.days > 14:
            raise PolicyError(
                "us: restore_after and court_notice_grace together must be at most 14 business"
                " days after a counter-notice"
            )
    if policy.code == "eu":
        w = policy.appeal_window
        if w.business_days:
            raise PolicyError("eu: the appeal window must be at least six months (DSA Art. 20)")
        # Months and days as Regulation 1182/71 counts them: a file that
        # names six months means them.
        policy = replace(
            policy, appeal_window=replace(w, whole_days=True, ends_on_working_day=True)
        )
        zones = (policy.time_zone, *policy.day_zones)
        if _short_in_the_eu(policy.appeal_window, zones):
            raise PolicyError("eu: the appeal window must be at least six months (DSA Art. 20)")
    return policy


# Two years' start days (a leap year's among them), since months differ in
# length, at two times of day, since the day a start falls on differs by zone.
_STARTS = tuple(
    datetime(2027, 1, 1, hour, tzinfo=UTC) + timedelta(days=n)
    for n in range(731)
    for hour in (0, 12)
)


@cache
def _short_in_the_eu(window: Period, zones: tuple[str, ...]) -> bool:
    """Whether `window`, of whole days in `zones` (it ends when it has ended
    in all), ends before six months have run out for someone in the EU (DSA
    Art. 20(1); Regulation 1182/71 Art. 3: at 24:00 of the matching day
    where they are) from one of `_STARTS`. Remembered: every policy file
    read asks it again."""
    months = Period(months=6, whole_days=True)
    for start in _STARTS:
        ends = max(window.after(start, zone=ZoneInfo(zone)) for zone in zones)
        if any(ends < months.after(start, zone=ZoneInfo(zone)) for zone in EU_ZONES):
            return True
    return False


def _period(name: str, value: Any, *, may_be_none: bool = False) -> Period:
    """A period as an override file gives it: whole days and months, not
    negative, business days or calendar ones (months are calendar's); of no
    time only where `may_be_none`."""
    if not isinstance(value, dict) or set(value) - {"days", "months", "business_days"}:
        raise PolicyError(f"{name}: a period is {{days, months, business_days}}, not {value!r}")
    days, months = value.get("days", 0), value.get("months", 0)
    business = value.get("business_days", False)
    if any(type(n) is not int or not 0 <= n <= most for n, most in ((days, 3660), (months, 120))):
        raise PolicyError(
            f"{name}: days and months are whole numbers, 0 to 3660 days and 120 months"
        )
    if type(business) is not bool:
        raise PolicyError(f"{name}: business_days is true or false")
    if business and months:
        raise PolicyError(f"{name}: business days are counted without months")
    if not days and not months and not may_be_none:
        raise PolicyError(f"{name}: a period of no time")
    return Period(days=days, business_days=business, months=months)


def _dates(name: str, value: Any) -> frozenset[date]:
    """A list of dates as an override file gives it (["2026-10-01", …])."""
    if not isinstance(value, list):
        raise PolicyError(f'{name}: a list of dates such as ["2026-10-01"], not {value!r}')
    days: set[date] = set()
    for day in value:
        try:
            days.add(date.fromisoformat(day))
        except (TypeError, ValueError):
            raise PolicyError(f'{name}: {day!r} is not a date such as "2026-10-01"') from None
    return frozenset(days)


def _workdays(name: str, value: Any) -> frozenset[date]:
    """Make-up working days: a weekday is worked anyway, so one listed here
    is a mistake in the list (a wrong year, say), not a choice."""
    days = _dates(name, value)
    for day in sorted(days):
        if day.weekday() < 5:
            raise PolicyError(f"{name}: {day} is not a Saturday or Sunday")
    return days


def _texts(name: str, value: Any) -> dict[str, str]:
    """Texts by locale, as an override file gives them ({"zh-CN": "…"})."""
    if not isinstance(value, dict) or not all(isinstance(t, str) for t in value.values()):
        raise PolicyError(f'{name}: texts by locale such as {{"zh-CN": "…"}}, not {value!r}')
    return dict(value)


def _time_zone(name: str, value: Any) -> str:
    try:
        ZoneInfo(value)
    except (TypeError, ValueError, OSError, ZoneInfoNotFoundError):
        raise PolicyError(f'{name}: a time zone such as "Asia/Shanghai", not {value!r}') from None
    return str(value)


def _overridden(base: JurisdictionPolicy, values: Any) -> JurisdictionPolicy:
    """`base` with the fields an override file replaces, each checked and
    named as `<code>.<field>` when it is wrong: read at every filing, a bad
    one would fail each, so the service does not start with it."""
    code = base.code
    if not isinstance(values, dict):
        raise PolicyError(f'{code}: policy fields by name, such as {{"holidays": […]}}')
    changes: dict[str, Any] = {}
    for name, value in values.items():
        field_name = f"{code}.{name}"
        if name in ("review", "info_response", "restore_after", "appeal_window"):
            changes[name] = _period(field_name, value)
        elif name == "court_notice_grace":
            changes[name] = _period(field_name, value, may_be_none=True)
        elif name == "holidays":
            changes[name] = _dates(field_name, value)
        elif name == "workdays":
            changes[name] = _workdays(field_name, value)
        elif name in ("redress", "final_redress"):
            changes[name] = _texts(field_name, value)
        elif name == "time_zone":
            changes[name] = _time_zone(field_name, value)
        else:
            raise PolicyError(f"{code}: unknown policy field {name!r}")
    policy = JurisdictionPolicy(**{**vars(base), **changes})
    if both := policy.holidays & policy.workdays:
        raise PolicyError(f"{code}.workdays: {min(both)} is listed as a holiday too")
    return policy


def load(path: str = "") -> dict[str, JurisdictionPolicy]:
    """The built-in policies, with overrides from a JSON file such as
    {"us": {"restore_after": {"days": 12, "business_days": true}}}. A
    `court_notice_grace` of no time ({"days": 0}) restores at the claimant's
    deadline itself.

    `holidays` replaces a jurisdiction's list of public holidays (dates such
    as "2026-10-01"; us: the federal holidays by default), and `workdays`
    lists the Saturdays and Sundays worked instead (China's make-up working
    days, 调休). Business days skip holidays and the weekends not worked.
    China's 15 days after a counter-notice and the EU's six months to
    appeal end with the next working day when their last day is not one
    (Civil Code Art. 203; Regulation 1182/71 Art. 3(4)). Without a list only
    weekends move them: give cn the holidays and make-up days the State
    Council announces each year, and eu the public holidays to honour, for
    the years ahead."""
    policies = dict(POLICIES)
    if path:
        overrides = json.loads(Path(path).read_text())
        if not isinstance(overrides, dict):
            raise PolicyError(f'{path}: policies by jurisdiction, such as {{"cn": {{…}}}}')
        for code, values in overrides.items():
            base = policies.get(code)
            if base is None:
                raise PolicyError(f"unknown jurisdiction {code!r}")
            policies[code] = _overridden(base, values)
    return {code: check(p) for code, p in policies.items()}

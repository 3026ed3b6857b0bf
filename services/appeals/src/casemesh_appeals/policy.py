"""Time limits per jurisdiction, as data (overridable by a JSON file).

- cn: Regulations on the Right of Communication through Information Networks
  Art. 14–17, Civil Code Art. 1195–1196; the E-Commerce Law Art. 43 gives the
  claimant 15 days after the counter-notice is forwarded.
- us: DMCA §512(g): restore no sooner than 10 and no later than 14 business
  days after the counter-notice, unless the claimant reports court action.
- eu: DSA Art. 16–17, 20: the complaint (appeal) stays open at least six
  months after the decision is notified; restoring after a counter-notice is
  platform policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from casemesh.platform.clock import add_months

UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Period:
    days: int = 0
    business_days: bool = False
    # Calendar months (the DSA's "six months"), added before any days.
    months: int = 0

    def after(
        self,
        start: datetime,
        holidays: frozenset[date] = frozenset(),
        zone: ZoneInfo = UTC,
    ) -> datetime:
        """When the period that starts at `start` ends.

        Calendar days and months are exact durations. Business days are whole
        days in the jurisdiction's time zone that are neither weekends nor
        holidays, counted from the day after `start`; the period ends when the
        last of them ends (local midnight), never earlier."""
        if self.months:
            start = add_months(start, self.months)
        if not self.business_days:
            return start + timedelta(days=self.days)
        day, left = start.astimezone(zone).date(), self.days
        while left:
            day += timedelta(days=1)
            if day.weekday() < 5 and day not in holidays:
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
    # After a counter-notice is forwarded: restore unless court action by then.
    restore_after: Period
    # How long a decision may be appealed.
    appeal_window: Period
    # Where to seek redress beyond the platform (shown in statements of reasons).
    redress: dict[str, str] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    # Business days are counted in this zone.
    time_zone: str = "UTC"

    def due(self, period: Period, start: datetime) -> datetime:
        return period.after(start, self.holidays, ZoneInfo(self.time_zone))


# US federal holidays as observed (5 U.S.C. 6103), kept as data: extend each year,
# or override with CASEMESH_APPEALS_POLICY_FILE.
US_FEDERAL_HOLIDAYS = frozenset(
    date.fromisoformat(d)
    for d in (
        "2026-01-01",
        "2026-01-19",
        "2026-02-16",
        "2026-05-25",
        "2026-06-19",
        "2026-07-03",
        "2026-09-07",
        "2026-10-12",
        "2026-11-11",
        "2026-11-26",
        "2026-12-25",
        "2027-01-01",
        "2027-01-18",
        "2027-02-15",
        "2027-05-31",
        "2027-06-18",
        "2027-07-05",
        "2027-09-06",
        "2027-10-11",
        "2027-11-11",
        "2027-11-25",
        "2027-12-24",
    )
)

POLICIES: dict[str, JurisdictionPolicy] = {
    "cn": JurisdictionPolicy(
        code="cn",
        time_zone="Asia/Shanghai",
        review=Period(7),
        info_response=Period(15),
        restore_after=Period(15),
        appeal_window=Period(180),
        redress={
            "zh-CN": "如不服本决定，可在申诉期限内提出申诉，或依法向人民法院起诉。",
            "en": "You may appeal within the appeal period, or bring the matter before a "
            "People's Court.",
        },
    ),
    "us": JurisdictionPolicy(
        code="us",
        time_zone="America/New_York",
        holidays=US_FEDERAL_HOLIDAYS,
        review=Period(5, business_days=True),
        info_response=Period(10, business_days=True),
        restore_after=Period(10, business_days=True),
        appeal_window=Period(180),
        redress={
            "zh-CN": "如不服本决定，可在申诉期限内提出申诉，或提交反通知（17 U.S.C. §512(g)）。",
            "en": "You may appeal within the appeal period, or send a counter-notice under "
            "17 U.S.C. §512(g).",
        },
    ),
    "eu": JurisdictionPolicy(
        code="eu",
        time_zone="Europe/Brussels",
        review=Period(7),
        info_response=Period(14),
        restore_after=Period(14),
        appeal_window=Period(months=6),
        redress={
            "zh-CN": "您可在至少六个月内通过平台内部申诉机制申诉（DSA 第 20 条），"
            "或提交经认证的庭外争议解决机构（第 21 条），或向法院起诉。",
            "en": "You may use the internal complaint system for at least six months (DSA "
            "Art. 20), a certified out-of-court dispute settlement body (Art. 21), or a court.",
        },
    ),
}


class PolicyError(ValueError):
    pass


def check(policy: JurisdictionPolicy) -> JurisdictionPolicy:
    """Refuses a policy that breaks the law it stands for."""
    if policy.code == "us":
        p = policy.restore_after
        if not (p.business_days and 10 <= p.days <= 14):
            raise PolicyError("us: restore must be 10 to 14 business days after a counter-notice")
    if policy.code == "eu":
        w = policy.appeal_window
        if w.business_days or (w.months * 31 + w.days < 184 and w.months < 6):
            raise PolicyError("eu: the appeal window must be at least six months (DSA Art. 20)")
    return policy


def load(path: str = "") -> dict[str, JurisdictionPolicy]:
    """The built-in policies, with overrides from a JSON file such as
    {"us": {"restore_after": {"days": 14, "business_days": true}}}."""
    policies = dict(POLICIES)
    if path:
        overrides: dict[str, dict[str, Any]] = json.loads(Path(path).read_text())
        for code, values in overrides.items():
            base = policies.get(code)
            if base is None:
                raise PolicyError(f"unknown jurisdiction {code!r}")
            changes: dict[str, Any] = {}
            for name, value in values.items():
                if name in ("review", "info_response", "restore_after", "appeal_window"):
                    changes[name] = Period(**value)
                elif name == "holidays":
                    changes[name] = frozenset(date.fromisoformat(d) for d in value)
                elif name == "redress":
                    changes[name] = dict(value)
                elif name == "time_zone":
                    ZoneInfo(value)  # refuses an unknown zone
                    changes[name] = value
                else:
                    raise PolicyError(f"{code}: unknown policy field {name!r}")
            policies[code] = JurisdictionPolicy(**{**vars(base), **changes})
    return {code: check(p) for code, p in policies.items()}

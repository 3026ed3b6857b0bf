"""The reports policy, as data: the reason taxonomy (two levels, mapped to the
DSA statement categories and keywords), triage weights, the reporting-misuse
rule (DSA Art. 23) and the appeal window (DSA Art. 20: at least six months,
counted as Regulation 1182/71 Art. 3 counts months, `months_end`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from casemesh.rules.deadlines import months_end
from casemesh.rules.territories import jurisdiction


@dataclass(frozen=True)
class Reason:
    category: str
    code: str
    zh: str
    en: str
    dsa_category: str
    keyword: str


@dataclass(frozen=True)
class Category:
    code: str
    zh: str
    en: str
    severity: int
    child_safety: bool
    reasons: dict[str, Reason]


@dataclass(frozen=True)
class Triage:
    points_per_extra_reporter: float = 5
    max_reporter_points: float = 50
    trusted_flagger_points: float = 40
    points_per_hour_waiting: float = 1

    def __post_init__(self) -> None:
        """Refuses weights the queue cannot rank by, naming the first: each
        is a number of points, none negative, and a case's wait must add
        some (its rank time divides by it)."""
        for weight in fields(self):
            value = getattr(self, weight.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise ValueError(f"taxonomy: triage.{weight.name} must be a number, 0 or more")
        if self.points_per_hour_waiting == 0:
            raise ValueError(
                "taxonomy: triage.points_per_hour_waiting must be more than 0: the queue"
                " ranks each case by the hours of waiting its priority is worth"
            )

    def base(self, severity: int, reporters: int, trusted: bool) -> float:
        """Priority before age: severity, distinct reporters, a trusted flagger."""
        crowd = min(self.points_per_extra_reporter * (reporters - 1), self.max_reporter_points)
        return severity + crowd + (self.trusted_flagger_points if trusted else 0)

    def rank_time(self, since: datetime, base: float) -> datetime:
        """The moment a case of priority 0 would have had to arrive to rank
        level with this one, waiting `since` (its first report, or its
        reopening). Age adds the same points per hour to every case, so
        ordering by this (earliest first) is ordering by priority now, and it
        never changes while the case waits."""
        return since - timedelta(hours=base / self.points_per_hour_waiting)

    def waiting_since(self, rank_time: datetime, base: float) -> datetime:
        """When a case ranked at `rank_time` began waiting (`rank_time` undone)."""
        return rank_time + timedelta(hours=base / self.points_per_hour_waiting)

    def priority(self, since: datetime, base: float, now: datetime) -> float:
        """Priority `now` of a case waiting `since`."""
        hours = max((now - since).total_seconds() / 3600, 0.0)
        return round(base + hours * self.points_per_hour_waiting, 2)


TRIAGE_WEIGHTS = tuple(weight.name for weight in fields(Triage))


@dataclass(frozen=True)
class Misuse:
    """After `warn_after` manifestly unfounded reports within `window_days`, a
    warning; after `suspend_after` more following the warning, reporting is
    suspended for `suspension_days`; then counting starts again."""

    warn_after: int = 2
    suspend_after: int = 3
    window_days: int = 180
    suspension_days: int = 30


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, Category]
    elsewhere: dict[str, str]
    keywords: frozenset[str]
    triage: Triage

    def reason(self, category: str, code: str) -> Reason | None:
        c = self.categories.get(category)
        return c.reasons.get(code) if c else None


@dataclass(frozen=True)
class ReportsPolicy:
    taxonomy: Taxonomy
    misuse: Misuse = field(default_factory=Misuse)
    appeal_window_months: int = 6
    # Where to seek redress beyond the platform: by the jurisdiction of the
    # decision's territorial scope (`jurisdiction`), then the reader's language.
    redress: dict[str, dict[str, str]] = field(default_factory=lambda: dict(REDRESS))

    def redress_for(self, scope: Sequence[str], locale: str) -> str:
        """The redress a statement names for a decision applying in `scope`
        (country codes; none: everywhere), in `locale` (else English)."""
        texts = self.redress.get(jurisdiction(scope), {})
        return texts.get(locale) or texts.get("en", "")

    def appeal_deadline(self, decided: datetime) -> datetime:
        """Until when a decision made at `decided` may be appealed: 24:00 of
        the matching day the window's months on (of the Monday after, when
        that day is a Saturday or Sunday: Regulation 1182/71 Art. 3(4)), on
        the EU clock where that comes last. The same for a decision of any
        scope: an appellant may be in the EU whatever the scope, and the
        latest midnight is never earlier than the months themselves. The
        appeals service, where the appeal is lodged, counts the same floor
        (public holidays are moved past only where an operator lists them,
        in the appeals policy file: the floor here never falls later than
        what that service accepts)."""
        return months_end(decided, self.appeal_window_months, ends_on_working_day=True)


_APPEAL = {
    "zh-CN": "如对处理结果有异议，可在申诉期限内通过“我的申诉”提交申诉（由人工复核）；",
    "en": "You may appeal this decision within the appeal period from My appeals"
    " (a person reviews it); ",
}
REDRESS: dict[str, dict[str, str]] = {
    "eu": {
        "zh-CN": _APPEAL["zh-CN"]
        + "也可向经认证的庭外争议解决机构（《数字服务法》第21条）或法院寻求救济。",
        "en": _APPEAL["en"] + "you may also turn to a certified out-of-court dispute"
        " settlement body (DSA Art. 21) or a court.",
    },
    "cn": {
        "zh-CN": _APPEAL["zh-CN"] + "也可向依法设立的争议解决机构或人民法院寻求救济。",
        "en": _APPEAL["en"] + "you may also turn to a lawfully established dispute"
        " resolution body or a People's Court.",
    },
    "any": {
        "zh-CN": _APPEAL["zh-CN"] + "也可向您所在地依法设立的争议解决机构（在欧盟：经认证的庭外"
        "争议解决机构，《数字服务法》第21条）或法院寻求救济。",
        "en": _APPEAL["en"] + "you may also turn to a dispute resolution body where you live"
        " (in the EU, a certified out-of-court dispute settlement body, DSA Art. 21) or a court.",
    },
}


def load_taxonomy(path: str = "") -> Taxonomy:
    raw: dict[str, Any] = json.loads(
        Path(path).read_text()
        if path
        else resources.files("casemesh_reports").joinpath("taxonomy.json").read_text()
    )
    categories = {
        c["code"]: Category(
            code=c["code"],
            zh=c["zh"],
            en=c["en"],
            severity=int(c["severity"]),
            child_safety=bool(c.get("child_safety")),
            reasons={
                r["code"]: Reason(c["code"], r["code"], r["zh"], r["en"], r["dsa"], r["keyword"])
                for r in c["reasons"]
            },
        )
        for c in raw["categories"]
    }
    triage = raw.get("triage", {})
    for name in triage:
        if name not in TRIAGE_WEIGHTS:
            raise ValueError(
                f"taxonomy: triage.{name} is not a triage weight ({', '.join(TRIAGE_WEIGHTS)})"
            )
    keywords = frozenset(raw["keywords"])
    for c in categories.values():
        for r in c.reasons.values():
            if r.keyword not in keywords:
                raise ValueError(f"taxonomy: {c.code}.{r.code} maps to unknown {r.keyword}")
    return Taxonomy(
        categories=categories,
        elsewhere=dict(raw.get("elsewhere", {})),
        keywords=keywords,
        triage=Triage(**triage),
    )

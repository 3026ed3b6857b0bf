"""The statement of reasons a decision on a report case carries (DSA Art. 17,
in the names and values of the transparency database's schema).

A statement is built by `StatementOfReasons.check`, which names every field
that is wrong at once, so an agent's statement that the rules refuse never
exists. A decision that takes action needs the whole schema; a no-violation
decision only its facts, and imposes nothing. When the decision is recorded
the service completes it (`completed`: category, source, item id, redress,
appeal deadline) and the case's `Decided` event keeps it as a plain dict
(`to_dict`); `from_dict` reads that dict back.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any

from casemesh.platform.errors import Violations
from casemesh.rules import tickets as rules

GROUNDS = ("DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT")
# The ground's texts: (field, limit, ground that requires it).
GROUND_TEXTS = (
    ("illegal_content_legal_ground", 500, "DECISION_GROUND_ILLEGAL_CONTENT"),
    ("illegal_content_explanation", 2000, "DECISION_GROUND_ILLEGAL_CONTENT"),
    ("incompatible_content_ground", 500, "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    ("incompatible_content_explanation", 2000, "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
)
# The schema's four lists of restrictions.
RESTRICTION_FIELDS = ("visibility", "monetary", "provision", "account")
# Restrictions that are temporary by nature: they need an end time.
TEMPORARY = frozenset(
    {
        "DECISION_ACCOUNT_SUSPENDED",
        "DECISION_MONETARY_SUSPENSION",
        "DECISION_PROVISION_PARTIAL_SUSPENSION",
        "DECISION_PROVISION_TOTAL_SUSPENSION",
    }
)


@dataclass(frozen=True)
class Restriction:
    """One restriction a decision imposes: the list it belongs to (`field`,
    one of RESTRICTION_FIELDS), its value, the words of an `_OTHER` value,
    and when a temporary one ends."""

    field: str
    type: str
    other: str = ""
    end_time: datetime | None = None

    def to_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "type": self.type,
            "other": self.other,
            "end_time": self.end_time.isoformat() if self.end_time else "",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Restriction:
        end = d.get("end_time")
        return cls(
            field=d["field"],
            type=d["type"],
            other=d.get("other", ""),
            end_time=datetime.fromisoformat(end) if end else None,
        )


@dataclass(frozen=True)
class StatementOfReasons:
    decision_facts: str
    # False: a no-violation decision, whose statement is its facts alone.
    action_taken: bool = False
    decision_ground: str = ""
    illegal_content_legal_ground: str = ""
    illegal_content_explanation: str = ""
    incompatible_content_ground: str = ""
    incompatible_content_explanation: str = ""
    incompatible_content_illegal: bool = False
    category: str = ""
    category_specification: tuple[str, ...] = ()
    category_specification_other: str = ""
    content_type: tuple[str, ...] = ()
    content_type_other: str = ""
    content_date: date | None = None
    application_date: date | None = None
    automated_detection: bool = False
    automated_decision: str = ""
    restrictions: tuple[Restriction, ...] = ()
    territorial_scope: tuple[str, ...] = ()
    content_language: str = ""
    account_type: str = ""
    decision_ground_reference_url: str = ""
    # Filled in by the service when the decision is recorded (`completed`).
    source_type: str = ""
    source_identity: str = ""
    puid: str = ""
    redress: str = ""
    appeal_deadline: datetime | None = None

    @classmethod
    def check(
        cls,
        v: Violations,
        s: Mapping[str, Any],
        *,
        outcome: str,
        keywords: Collection[str],
        now: datetime,
    ) -> StatementOfReasons | None:
        """The statement an agent gave for a decision with this `outcome`
        (ACTION_TAKEN or another), or None when it breaks a rule: then each
        violation, named by its field, is added to `v`."""
        found = Violations()
        _check(found, s, outcome, keywords, now)
        if found:
            v.extend(found)
            return None
        if outcome != "ACTION_TAKEN":
            return cls(decision_facts=s.get("decision_facts", ""))
        return cls.from_dict(s, outcome=outcome)

    def to_dict(self) -> dict[str, Any]:
        """The dict a `Decided` event keeps: the schema's names, enum values by
        name, dates and times in ISO 8601."""
        d: dict[str, Any] = {"decision_facts": self.decision_facts}
        if self.action_taken:
            d = {
                "decision_ground": self.decision_ground,
                "illegal_content_legal_ground": self.illegal_content_legal_ground,
                "illegal_content_explanation": self.illegal_content_explanation,
                "incompatible_content_ground": self.incompatible_content_ground,
                "incompatible_content_explanation": self.incompatible_content_explanation,
                "incompatible_content_illegal": self.incompatible_content_illegal,
                "category": self.category,
                "category_specification": list(self.category_specification),
                "category_specification_other": self.category_specification_other,
                "content_type": list(self.content_type),
                "content_type_other": self.content_type_other,
                "content_date": _iso(self.content_date),
                "application_date": _iso(self.application_date),
                "decision_facts": self.decision_facts,
                "automated_detection": self.automated_detection,
                "automated_decision": self.automated_decision,
                "restrictions": [r.to_dict() for r in self.restrictions],
                "territorial_scope": list(self.territorial_scope),
                "content_language": self.content_language,
                "account_type": self.account_type,
                "decision_ground_reference_url": self.decision_ground_reference_url,
            }
        if self.appeal_deadline is not None:
            d["category"] = self.category
            d["source_type"] = self.source_type
            d["source_identity"] = self.source_identity
            d["puid"] = self.puid
            d["redress"] = self.redress
            d["appeal_deadline"] = self.appeal_deadline.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, outcome: str) -> StatementOfReasons:
        """A statement as `to_dict` wrote it (or as an agent gave it) for a
        decision with this `outcome`. A no-violation decision's statement is
        its facts: statements recorded before it kept only those carry the
        schema's other fields too, and they are passed over."""
        deadline = d.get("appeal_deadline")
        completion: dict[str, Any] = {
            "category": d.get("category", ""),
            "source_type": d.get("source_type", ""),
            "source_identity": d.get("source_identity", ""),
            "puid": d.get("puid", ""),
            "redress": d.get("redress", ""),
            "appeal_deadline": datetime.fromisoformat(deadline) if deadline else None,
        }
        if outcome != "ACTION_TAKEN":
            return cls(decision_facts=d.get("decision_facts", ""), **completion)
        return cls(
            decision_facts=d.get("decision_facts", ""),
            action_taken=True,
            decision_ground=d.get("decision_ground", ""),
            illegal_content_legal_ground=d.get("illegal_content_legal_ground", ""),
            illegal_content_explanation=d.get("illegal_content_explanation", ""),
            incompatible_content_ground=d.get("incompatible_content_ground", ""),
            incompatible_content_explanation=d.get("incompatible_content_explanation", ""),
            incompatible_content_illegal=bool(d.get("incompatible_content_illegal")),
            category_specification=tuple(d.get("category_specification", [])),
            category_specification_other=d.get("category_specification_other", ""),
            content_type=tuple(d.get("content_type", [])),
            content_type_other=d.get("content_type_other", ""),
            content_date=_day(d.get("content_date", "")),
            application_date=_day(d.get("application_date", "")),
            automated_detection=bool(d.get("automated_detection")),
            automated_decision=d.get("automated_decision", ""),
            restrictions=tuple(Restriction.from_dict(r) for r in d.get("restrictions", [])),
            territorial_scope=tuple(d.get("territorial_scope", [])),
            content_language=d.get("content_language", ""),
            account_type=d.get("account_type", ""),
            decision_ground_reference_url=d.get("decision_ground_reference_url", ""),
            **completion,
        )


def _iso(day: date | None) -> str:
    return day.isoformat() if day else ""


def _day(value: str) -> date | None:
    return date.fromisoformat(value) if value else None


def _check(
    v: Violations, s: Mapping[str, Any], outcome: str, keywords: Collection[str], now: datetime
) -> None:
    """The statement carries every field the DSA schema requires (each missing
    one named); a no-violation decision needs its facts and imposes nothing."""
    rules.text(v, "statement.decision_facts", s.get("decision_facts", ""), limit=5000)
    if outcome != "ACTION_TAKEN":
        if s.get("restrictions"):
            v.add("statement.restrictions", "a no-violation decision imposes no restriction")
        return
    ground = s.get("decision_ground", "")
    if ground not in GROUNDS:
        v.add("statement.decision_ground", "is required: ILLEGAL_CONTENT or INCOMPATIBLE_CONTENT")
    # A text of the other ground is refused rather than kept: the uploader
    # would read it, and the topic carry it, as part of the decision.
    for name, limit, needed_by in GROUND_TEXTS:
        if ground in GROUNDS and ground != needed_by and s.get(name, "").strip():
            v.add(f"statement.{name}", f"is only for decision_ground {needed_by}")
        else:
            rules.text(
                v, f"statement.{name}", s.get(name, ""), limit=limit, required=ground == needed_by
            )
    if ground == "DECISION_GROUND_ILLEGAL_CONTENT" and s.get("incompatible_content_illegal"):
        v.add(
            "statement.incompatible_content_illegal",
            "is only for decision_ground DECISION_GROUND_INCOMPATIBLE_CONTENT",
        )
    specified = s.get("category_specification", [])
    if len(set(specified)) != len(specified):
        v.add("statement.category_specification", "names a keyword more than once")
    for i, k in enumerate(specified):
        if k not in keywords:
            v.add(f"statement.category_specification[{i}]", f"{k[:60]!r} is not a DSA keyword")
    rules.text(
        v,
        "statement.category_specification_other",
        s.get("category_specification_other", ""),
        limit=500,
        required=False,
    )
    types = s.get("content_type", [])
    if not types:
        v.add("statement.content_type", "name at least one content type")
    if len(set(types)) != len(types):
        v.add("statement.content_type", "names a content type more than once")
    other_type = "CONTENT_TYPE_OTHER" in types
    if not other_type and s.get("content_type_other", "").strip():
        v.add("statement.content_type_other", "is only for content_type CONTENT_TYPE_OTHER")
    else:
        rules.text(
            v,
            "statement.content_type_other",
            s.get("content_type_other", ""),
            limit=500,
            required=other_type,
        )
    # Today as the agent says it, wherever they work: dates in the world run
    # from UTC-12 to UTC+14, and an agent in Beijing after midnight is a day
    # ahead of UTC.
    latest_today, earliest_today = (now + EAST).date(), (now - WEST).date()
    posted = _date(v, "statement.content_date", s.get("content_date", ""))
    if posted is not None and posted > latest_today:
        v.add("statement.content_date", "must not be after today (when was it posted?)")
    elif posted is not None and posted < EARLIEST_CONTENT:
        v.add("statement.content_date", f"must be {EARLIEST_CONTENT} or later")
    applies = _date(v, "statement.application_date", s.get("application_date", ""))
    if applies is not None and applies < earliest_today:
        v.add(
            "statement.application_date",
            "must not be before today: the uploader hears of a restriction no later "
            "than it applies",
        )
    elif applies is not None and applies > latest_today:
        # Nothing defers a restriction: it takes effect when the decision is
        # recorded, and the statement must not say it applies later.
        v.add(
            "statement.application_date",
            "must not be after today: the restrictions take effect when the decision is recorded",
        )
    elif applies is not None and applies >= LATEST_DATE:
        v.add("statement.application_date", f"must be before {LATEST_DATE}")
    if not s.get("automated_decision"):
        v.add("statement.automated_decision", "is required: FULLY, PARTIALLY or NOT_AUTOMATED")
    restrictions = s.get("restrictions", [])
    if not restrictions:
        v.add("statement.restrictions", "action taken imposes at least one restriction")
    kinds = [r["type"] for r in restrictions]
    if len(set(kinds)) != len(kinds):
        v.add("statement.restrictions.visibility", "names a restriction more than once")
    for r in restrictions:
        kind = r["field"]
        if r["type"].endswith("_OTHER"):
            rules.text(v, f"statement.restrictions.{kind}_other", r.get("other", ""), limit=500)
        end = r.get("end_time")
        if end and datetime.fromisoformat(end) <= now:
            v.add(f"statement.restrictions.{kind}_end_time", "must be in the future")
        elif end and applies is not None and datetime.fromisoformat(end).date() < applies:
            v.add(
                f"statement.restrictions.{kind}_end_time",
                "must not be before the statement's application_date",
            )
        elif end and datetime.fromisoformat(end).date() >= LATEST_DATE:
            v.add(f"statement.restrictions.{kind}_end_time", f"must be before {LATEST_DATE}")
        elif not end and r["type"] in TEMPORARY:
            v.add(
                f"statement.restrictions.{kind}_end_time",
                f"a {r['type'].rsplit('_', 1)[-1].lower()} is temporary: say when it ends",
            )
    scope = s.get("territorial_scope", [])
    if len(set(scope)) != len(scope):
        v.add("statement.territorial_scope", "names a country more than once")
    for i, code in enumerate(scope):
        if code not in COUNTRIES:
            v.add(
                f"statement.territorial_scope[{i}]",
                f"{code[:60]!r} is not an ISO 3166-1 alpha-2 country code",
            )
    lang = s.get("content_language", "")
    if lang and not re.fullmatch(r"[a-z]{2}", lang):
        v.add("statement.content_language", "must be an ISO 639-1 code, e.g. zh")
    url = s.get("decision_ground_reference_url", "")
    if url and not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]{1,490}", url):
        v.add("statement.decision_ground_reference_url", "must be an http(s) URL")


# The DSA transparency database takes a content date from 2000 on, and no
# date from 2038 on: a statement outside them would be refused there.
EARLIEST_CONTENT = date(2000, 1, 1)
LATEST_DATE = date(2038, 1, 1)
# The furthest any time zone is ahead of UTC, and behind it.
EAST, WEST = timedelta(hours=14), timedelta(hours=12)


def _countries() -> frozenset[str]:
    """The ISO 3166-1 alpha-2 country codes, as the IANA time zone data lists
    them (its `iso3166.tab`, in the tzdata package casemesh depends on, kept
    current with it): a code two capitals long may still name no country."""
    table = resources.files("tzdata").joinpath("zoneinfo", "iso3166.tab")
    lines = table.read_text(encoding="utf-8").splitlines()
    return frozenset(line.split("\t", 1)[0] for line in lines if line and line[0] != "#")


COUNTRIES = _countries()
# Its longest source identity.
SOURCE_IDENTITY_MAX = 500


def source_identity(names: list[str]) -> str:
    """The trusted flaggers a decision acted on, as the statement names them:
    as many as fit the transparency database's 500 characters, and how many
    more; "" when it acted on none (an ordinary notice, Art. 16)."""
    if not names:
        return ""
    for shown in range(len(names), 0, -1):
        more = f" and {len(names) - shown} more" if shown < len(names) else ""
        said = ", ".join(names[:shown]) + more
        if len(said) <= SOURCE_IDENTITY_MAX:
            return said
    return f"{len(names)} trusted flaggers"


def _date(v: Violations, field: str, value: str) -> date | None:
    if not value:
        v.add(field, "is required (YYYY-MM-DD)")
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    v.add(field, "must be a date YYYY-MM-DD")
    return None

"""The statement of reasons as a value: what an agent may give for each
outcome (every violation named at once, by field, in the words a client
reads), and the dict a decision keeps, read back unchanged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh_reports.policy import load_taxonomy
from casemesh_reports.statement import Restriction, StatementOfReasons, source_identity

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KEYWORDS = load_taxonomy().keywords
WEEK_ON = (NOW + timedelta(days=7)).isoformat()


def given(**changes: Any) -> dict[str, Any]:
    """A complete statement for removing a video and suspending its account,
    as the servicer hands it in (every field of the schema)."""
    statement: dict[str, Any] = {
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "illegal_content_legal_ground": "",
        "illegal_content_explanation": "",
        "incompatible_content_ground": "社区自律公约 第 3.2 条",
        "incompatible_content_explanation": "视频美化恐怖袭击。",
        "incompatible_content_illegal": True,
        "category": "",
        "category_specification": ["KEYWORD_TERRORIST_CONTENT"],
        "category_specification_other": "",
        "content_type": ["CONTENT_TYPE_VIDEO"],
        "content_type_other": "",
        "content_date": "2026-11-01",
        "application_date": "2026-11-23",
        "decision_facts": "人工审核确认视频第 12 秒起出现袭击画面。",
        "automated_detection": False,
        "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
        "restrictions": [
            {
                "field": "visibility",
                "type": "DECISION_VISIBILITY_CONTENT_REMOVED",
                "other": "",
                "end_time": "",
            },
            {
                "field": "account",
                "type": "DECISION_ACCOUNT_SUSPENDED",
                "other": "",
                "end_time": WEEK_ON,
            },
        ],
        "territorial_scope": ["CN"],
        "content_language": "zh",
        "account_type": "",
        "decision_ground_reference_url": "",
    }
    return {**statement, **changes}


def refused(
    statement: dict[str, Any], outcome: str = "ACTION_TAKEN", now: datetime = NOW
) -> list[tuple[str, str]]:
    v = Violations()
    built = StatementOfReasons.check(v, statement, outcome=outcome, keywords=KEYWORDS, now=now)
    assert built is None
    with pytest.raises(InvalidArgument) as raised:
        v.raise_if_any()
    return [(f.field, f.description) for f in raised.value.violations]


def accepted(
    statement: dict[str, Any], outcome: str = "ACTION_TAKEN", now: datetime = NOW
) -> StatementOfReasons:
    v = Violations()
    built = StatementOfReasons.check(v, statement, outcome=outcome, keywords=KEYWORDS, now=now)
    v.raise_if_any()
    assert built is not None
    return built


def test_a_complete_statement_is_read_into_typed_fields() -> None:
    s = accepted(given())
    assert s.action_taken and s.decision_ground == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert s.content_date == date(2026, 11, 1) and s.application_date == date(2026, 11, 23)
    assert s.content_type == ("CONTENT_TYPE_VIDEO",)
    assert s.restrictions == (
        Restriction("visibility", "DECISION_VISIBILITY_CONTENT_REMOVED"),
        Restriction("account", "DECISION_ACCOUNT_SUSPENDED", end_time=NOW + timedelta(days=7)),
    )


def test_a_statement_missing_everything_names_each_field_at_once() -> None:
    empty = {"decision_ground": "", "restrictions": []}
    assert refused(empty) == [
        ("statement.decision_facts", "must not be empty"),
        ("statement.decision_ground", "is required: ILLEGAL_CONTENT or INCOMPATIBLE_CONTENT"),
        ("statement.content_type", "name at least one content type"),
        ("statement.content_date", "is required (YYYY-MM-DD)"),
        ("statement.application_date", "is required (YYYY-MM-DD)"),
        ("statement.automated_decision", "is required: FULLY, PARTIALLY or NOT_AUTOMATED"),
        ("statement.restrictions", "action taken imposes at least one restriction"),
    ]


def test_each_ground_needs_its_own_texts() -> None:
    illegal = given(
        decision_ground="DECISION_GROUND_ILLEGAL_CONTENT",
        incompatible_content_ground="",
        incompatible_content_explanation="",
        incompatible_content_illegal=False,
    )
    assert refused(illegal) == [
        ("statement.illegal_content_legal_ground", "must not be empty"),
        ("statement.illegal_content_explanation", "must not be empty"),
    ]
    assert refused(given(incompatible_content_explanation="x" * 2001)) == [
        ("statement.incompatible_content_explanation", "must be at most 2000 characters"),
    ]


def test_words_for_a_ground_or_a_content_type_not_chosen_are_refused_not_kept() -> None:
    """The uploader reads every text a statement keeps, as part of the
    decision: one written for another ground, or for a content type the
    agent did not choose, is refused by name rather than sent to them."""
    incompatible = given(
        illegal_content_legal_ground="《网络安全法》第十二条",
        illegal_content_explanation="视频编造险情。",
        content_type_other="直播回放",
    )
    assert refused(incompatible) == [
        (
            "statement.illegal_content_legal_ground",
            "is only for decision_ground DECISION_GROUND_ILLEGAL_CONTENT",
        ),
        (
            "statement.illegal_content_explanation",
            "is only for decision_ground DECISION_GROUND_ILLEGAL_CONTENT",
        ),
        ("statement.content_type_other", "is only for content_type CONTENT_TYPE_OTHER"),
    ]
    illegal = given(
        decision_ground="DECISION_GROUND_ILLEGAL_CONTENT",
        illegal_content_legal_ground="《网络安全法》第十二条",
        illegal_content_explanation="视频编造险情。",
    )
    turned_from = "is only for decision_ground DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert refused(illegal) == [
        ("statement.incompatible_content_ground", turned_from),
        ("statement.incompatible_content_explanation", turned_from),
        ("statement.incompatible_content_illegal", turned_from),
    ]


def test_every_other_rule_names_its_field() -> None:
    bad = given(
        category_specification=["KEYWORD_TERRORIST_CONTENT", "KEYWORD_NOPE"],
        category_specification_other="x" * 501,
        content_type=["CONTENT_TYPE_OTHER", "CONTENT_TYPE_OTHER"],
        content_date="2999-01-01",
        application_date="2020-1-01",
        restrictions=[
            {"field": "visibility", "type": "DECISION_VISIBILITY_OTHER", "end_time": ""},
            {"field": "visibility", "type": "DECISION_VISIBILITY_OTHER", "end_time": ""},
            {"field": "monetary", "type": "DECISION_MONETARY_SUSPENSION", "end_time": ""},
            {
                "field": "account",
                "type": "DECISION_ACCOUNT_SUSPENDED",
                "end_time": NOW.isoformat(),
            },
        ],
        territorial_scope=["CN", "China"],
        content_language="ZH",
        decision_ground_reference_url="ftp://example.com/terms",
    )
    assert refused(bad) == [
        ("statement.category_specification[1]", "'KEYWORD_NOPE' is not a DSA keyword"),
        ("statement.category_specification_other", "must be at most 500 characters"),
        ("statement.content_type", "names a content type more than once"),
        ("statement.content_type_other", "must not be empty"),
        ("statement.content_date", "must not be after today (when was it posted?)"),
        ("statement.application_date", "must be a date YYYY-MM-DD"),
        ("statement.restrictions.visibility", "names a restriction more than once"),
        ("statement.restrictions.visibility_other", "must not be empty"),
        ("statement.restrictions.visibility_other", "must not be empty"),
        (
            "statement.restrictions.monetary_end_time",
            "a suspension is temporary: say when it ends",
        ),
        ("statement.restrictions.account_end_time", "must be in the future"),
        ("statement.territorial_scope[1]", "'China' is not an ISO 3166-1 alpha-2 country code"),
        ("statement.content_language", "must be an ISO 639-1 code, e.g. zh"),
        ("statement.decision_ground_reference_url", "must be an http(s) URL"),
    ]
    assert refused(given(application_date="2026-11-21")) == [
        (
            "statement.application_date",
            "must not be before today: the uploader hears of a restriction no later "
            "than it applies",
        )
    ]
    assert refused(given(content_date="2026-02-30")) == [
        ("statement.content_date", "must be a date YYYY-MM-DD")
    ]


def test_today_is_the_agents_today_wherever_they_work() -> None:
    """At 02:00 in Beijing it is still yesterday in UTC: the video posted
    today (Beijing) and a restriction applying today are each the agent's
    today. At 19:00 in San Francisco it is already tomorrow in UTC: today
    there is still today. A date after today everywhere stays refused."""
    beijing_2am = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    accepted(given(content_date="2026-11-24", application_date="2026-11-24"), now=beijing_2am)
    san_francisco_7pm = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    accepted(given(application_date="2026-11-23"), now=san_francisco_7pm)
    assert refused(given(content_date="2026-11-25")) == [
        ("statement.content_date", "must not be after today (when was it posted?)")
    ]


def test_a_keyword_or_a_country_named_twice_is_refused() -> None:
    """Each list holds each entry once: a decision repeating one a hundred
    thousand times would be stored, and published, a hundred thousand times."""
    repeated = given(
        category_specification=["KEYWORD_TERRORIST_CONTENT"] * 100_000,
        territorial_scope=["CN", "DE", "CN"],
    )
    assert refused(repeated) == [
        ("statement.category_specification", "names a keyword more than once"),
        ("statement.territorial_scope", "names a country more than once"),
    ]


def test_a_territorial_scope_names_countries_iso_3166_knows() -> None:
    """Two capitals are not yet a country: a made-up code would be stored
    and published to the transparency database as where the decision applies."""
    assert refused(given(territorial_scope=["DE", "ZZ", "FR", "UK"])) == [
        ("statement.territorial_scope[1]", "'ZZ' is not an ISO 3166-1 alpha-2 country code"),
        ("statement.territorial_scope[3]", "'UK' is not an ISO 3166-1 alpha-2 country code"),
    ]
    scope = ["CN", "DE", "FR", "GB", "HK", "IE"]
    assert accepted(given(territorial_scope=scope)).territorial_scope == tuple(scope)


def test_a_no_violation_statement_is_its_facts_and_imposes_nothing() -> None:
    assert refused(given(decision_facts=""), "NO_VIOLATION") == [
        ("statement.decision_facts", "must not be empty"),
        ("statement.restrictions", "a no-violation decision imposes no restriction"),
    ]
    # The schema's other fields, and a category the agent chose, are not kept.
    s = accepted(given(restrictions=[], category="STATEMENT_CATEGORY_VIOLENCE"), "NO_VIOLATION")
    assert s == StatementOfReasons(decision_facts=given()["decision_facts"])


def test_violations_found_elsewhere_in_the_request_come_first() -> None:
    v = Violations()
    v.add("outcome", "must be ACTION_TAKEN or NO_VIOLATION")
    built = StatementOfReasons.check(
        v, given(content_type=[]), outcome="ACTION_TAKEN", keywords=KEYWORDS, now=NOW
    )
    assert built is None
    with pytest.raises(InvalidArgument) as raised:
        v.raise_if_any()
    assert [f.field for f in raised.value.violations] == ["outcome", "statement.content_type"]


# What the service adds when it records a decision, as the event keeps it.
ADDED = {
    "category": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "source_type": "SOURCE_TRUSTED_FLAGGER",
    "source_identity": "Safe Web Foundation",
    "puid": "7731",
    "redress": "https://example.com/redress",
    "appeal_deadline": "2027-05-25T09:00:00+00:00",
}


def completed(s: StatementOfReasons) -> StatementOfReasons:
    return replace(
        s,
        category=s.category or ADDED["category"],
        source_type=ADDED["source_type"],
        source_identity=ADDED["source_identity"],
        puid=ADDED["puid"],
        redress=ADDED["redress"],
        appeal_deadline=NOW + timedelta(days=183),
    )


def test_the_decision_keeps_what_the_agent_gave_and_what_the_service_adds() -> None:
    raw = given()
    stored = completed(accepted(raw)).to_dict()
    assert stored == {**raw, **ADDED}
    # In the order the event has always kept: the agent's category in its place.
    assert list(stored) == [*raw, *(k for k in ADDED if k != "category")]
    assert StatementOfReasons.from_dict(stored, outcome="ACTION_TAKEN").to_dict() == stored


def test_a_no_violation_decision_keeps_the_facts_and_what_the_service_adds() -> None:
    stored = completed(accepted({"decision_facts": "普通的舞蹈视频。"}, "NO_VIOLATION")).to_dict()
    assert list(stored.items()) == [("decision_facts", "普通的舞蹈视频。"), *ADDED.items()]
    assert StatementOfReasons.from_dict(stored, outcome="NO_VIOLATION").to_dict() == stored


def test_an_early_no_violation_statement_with_every_field_loads_as_its_facts() -> None:
    # Before a no-violation decision kept only its facts, it kept the whole
    # schema, unchecked.
    early = {**given(content_date="x"), "appeal_deadline": NOW.isoformat()}
    s = StatementOfReasons.from_dict(early, outcome="NO_VIOLATION")
    assert (s.decision_facts, s.restrictions, s.appeal_deadline) == (
        early["decision_facts"],
        (),
        NOW,
    )


def test_dates_the_transparency_database_would_refuse_are_refused_here() -> None:
    far = [
        {
            "field": "account",
            "type": "DECISION_ACCOUNT_SUSPENDED",
            "end_time": "9999-01-01T00:00:00+00:00",
        }
    ]
    assert refused(given(content_date="1999-12-31", restrictions=far)) == [
        ("statement.content_date", "must be 2000-01-01 or later"),
        ("statement.restrictions.account_end_time", "must be before 2038-01-01"),
    ]
    # On the last day of 2037 it is already 2038 somewhere: today there still
    # cannot be the application date.
    last_day = datetime(2037, 12, 31, 12, 0, tzinfo=UTC)
    assert refused(given(application_date="2038-01-01", restrictions=[]), now=last_day) == [
        ("statement.application_date", "must be before 2038-01-01"),
        ("statement.restrictions", "action taken imposes at least one restriction"),
    ]


def test_a_restriction_applies_from_today_not_from_a_later_day() -> None:
    """Its restrictions take effect when the decision is recorded: a
    statement saying they apply from a later day would misstate it (the
    agent's today, wherever they work, is still today)."""
    later = (
        "statement.application_date",
        "must not be after today: the restrictions take effect when the decision is recorded",
    )
    removal = given()["restrictions"][:1]
    assert refused(given(application_date="2037-12-31", restrictions=removal)) == [later]
    assert refused(given(application_date="2026-11-24")) == [later]
    beijing_2am = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert refused(given(application_date="2026-11-25"), now=beijing_2am) == [later]
    accepted(given(application_date="2026-11-24"), now=beijing_2am)


def test_the_trusted_flaggers_named_fit_the_source_identitys_500_characters() -> None:
    names = [f"{i:03d}" + "可信举报机构" * 30 for i in range(5)]  # 183 characters each
    said = source_identity(names)
    assert len(said) <= 500 and said.endswith(" and 3 more")
    assert said.startswith(names[0] + ", " + names[1])
    assert source_identity(["网信办举报中心", "某版权协会"]) == "网信办举报中心, 某版权协会"
    assert source_identity([]) == ""  # an ordinary notice names no source

"""Abuse reports told through the aggregates and the policy alone: misuse
counting, triage order, reversal, and every stored event's public message."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from casemesh.platform.errors import FailedPrecondition
from casemesh_reports.domain import AbuseReport, CaseState, ReportCase, Reporter, TrustedFlagger
from casemesh_reports.events import (
    COLLECTIONS,
    PUBLIC_NAMES,
    Translator,
    public_message,
    public_name,
)
from casemesh_reports.policy import Misuse, Triage, load_taxonomy
from casemesh_reports.statement import StatementOfReasons
from casemesh_reports.views import decode_queue_token, encode_queue_token

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULE = Misuse(warn_after=2, suspend_after=3, window_days=180, suspension_days=30)
CONTACT = {"email": "r@example.com", "phone": "", "channels": ["EMAIL"], "locale": "en"}
VIDEO = {"type": "VIDEO", "id": "v123", "url": ""}


def test_taxonomy_maps_every_reason_to_a_dsa_category_and_keyword() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.categories["child_safety"].child_safety
    reason = taxonomy.reason("violence_terrorism", "terrorism")
    assert reason is not None
    assert reason.dsa_category == "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"
    assert reason.keyword == "KEYWORD_TERRORIST_CONTENT"
    assert "copyright" in taxonomy.elsewhere
    # Child safety and terrorism come first in severity.
    severities = sorted(taxonomy.categories.values(), key=lambda c: -c.severity)
    assert [c.code for c in severities[:2]] == ["child_safety", "violence_terrorism"]


def counted(reporter: Reporter | None, n: int, start: datetime) -> Reporter:
    for i in range(n):
        at = start + timedelta(hours=i)
        if reporter is None:
            reporter = Reporter(user_id="u1", report_id=f"r{i}", at=at)
            reporter.apply_rule(at=at, contact=CONTACT, rule=RULE)
        else:
            reporter.count_unfounded(
                report_id=f"r{start.isoformat()}{i}", at=at, contact=CONTACT, rule=RULE
            )
    assert reporter is not None
    return reporter


def test_a_warning_comes_first_then_three_more_suspend() -> None:
    r = counted(None, 2, NOW)
    assert r.warned_at is not None and r.suspended(NOW) is None
    r = counted(r, 2, NOW + timedelta(days=1))
    assert r.suspended(NOW + timedelta(days=1, hours=3)) is None
    r = counted(r, 1, NOW + timedelta(days=2))
    until = r.suspended(NOW + timedelta(days=2, hours=1))
    assert until == NOW + timedelta(days=32)
    assert r.suspended(until) is None  # the period over, reporting is open again


def test_unfounded_reports_outside_the_window_do_not_count() -> None:
    r = counted(None, 1, NOW)
    r = counted(r, 1, NOW + timedelta(days=181))
    assert r.warned_at is None


def test_the_same_report_counts_once() -> None:
    r = Reporter(user_id="u1", report_id="r1", at=NOW)
    r.count_unfounded(report_id="r1", at=NOW, contact=CONTACT, rule=RULE)
    assert len(r.unfounded) == 1


def test_rank_time_orders_cases_by_priority_now() -> None:
    triage = Triage()
    old = (NOW - timedelta(hours=10), triage.base(50, 1, False))
    trusted = (NOW, triage.base(50, 1, True))
    crowd = (NOW - timedelta(hours=1), triage.base(50, 3, False))
    cases = [old, trusted, crowd]
    by_rank = sorted(cases, key=lambda c: triage.rank_time(*c))
    for later in (NOW, NOW + timedelta(days=3)):
        by_priority = sorted(cases, key=lambda c: -triage.priority(c[0], c[1], later))
        assert by_rank == by_priority
    assert by_rank[0] is trusted


def case_with(report_ids: list[str]) -> ReportCase:
    first, *rest = report_ids
    case = ReportCase(
        target=VIDEO,
        category="violence_terrorism",
        round_no=1,
        lane="ORDINARY",
        severity=90,
        dsa_category="STATEMENT_CATEGORY_VIOLENCE",
        first_report={"id": first, "reporter": first, "at": NOW, "trusted": False},
        base_priority=90,
    )
    for i, rid in enumerate(rest):
        case.add_report(
            report={"id": rid, "reporter": rid, "at": NOW, "trusted": False},
            base_priority=90 + 5 * (i + 1),
        )
    return case


STATEMENT = {
    "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
    "decision_facts": "Shows an attack.",
    "restrictions": [
        {
            "field": "visibility",
            "type": "DECISION_VISIBILITY_CONTENT_REMOVED",
            "other": "",
            "end_time": "",
        }
    ],
    "appeal_deadline": (NOW + timedelta(days=183)).isoformat(),
}


UPLOADER = {"user_id": "up", "legal_name": "U", "locale": "en", "contact": CONTACT}


def decided(outcome: str, uploader: dict[str, Any] | None = None) -> ReportCase:
    case = case_with(["a", "b"])
    case.decide(
        actor="agent",
        outcome=outcome,
        statement=StatementOfReasons.from_dict(STATEMENT, outcome="ACTION_TAKEN")
        if outcome == "ACTION_TAKEN"
        else StatementOfReasons(decision_facts="Fine."),
        uploader=uploader,
        unfounded=[],
        at=NOW,
    )
    return case


def test_the_uploaders_upheld_appeal_lifts_the_restrictions_once() -> None:
    case = decided("ACTION_TAKEN", UPLOADER)
    with pytest.raises(FailedPrecondition):
        case.add_report(report={"id": "c", "reporter": "c", "at": NOW}, base_priority=1)
    assert case.lodge_appeal(appeal="appeals/1", appellant="up", at=NOW)
    assert not case.lodge_appeal(appeal="appeals/1", appellant="up", at=NOW)
    result = case.reverse(appeal="appeals/1", at=NOW, reported_since=False)
    assert result is not None
    lifted, reopened, overturned = result
    assert [r["type"] for r in lifted] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert overturned and not reopened
    assert case.state is CaseState.REVERSED and not case.in_effect
    assert case.reverse(appeal="appeals/1", at=NOW, reported_since=False) is None


def test_a_reporters_upheld_appeal_sends_the_case_back_to_review() -> None:
    for outcome in ("NO_VIOLATION", "ACTION_TAKEN"):
        case = decided(outcome, UPLOADER if outcome == "ACTION_TAKEN" else None)
        case.lodge_appeal(appeal="appeals/2", appellant="a", at=NOW)
        assert case.reverse(appeal="appeals/2", at=NOW, reported_since=False) == (
            [],  # nothing lifted
            True,
            True,
        )
        assert case.state is CaseState.OPEN
        case.add_report(report={"id": "c", "reporter": "c", "at": NOW}, base_priority=1)


def test_a_reporters_appeal_not_reviewed_anew_overturns_only_a_finding_of_no_violation() -> None:
    """The target was reported again since (a later round reviews it): a
    reporter's upheld appeal of a no-violation decision still overturns it;
    one of a decision that took action (they wanted more) changes nothing."""
    none_found = decided("NO_VIOLATION", None)
    none_found.lodge_appeal(appeal="appeals/6", appellant="a", at=NOW)
    assert none_found.reverse(appeal="appeals/6", at=NOW, reported_since=True) == ([], False, True)
    acted = decided("ACTION_TAKEN", UPLOADER)
    acted.lodge_appeal(appeal="appeals/7", appellant="a", at=NOW)
    assert acted.reverse(appeal="appeals/7", at=NOW, reported_since=True) == ([], False, False)
    assert acted.state is CaseState.ACTION_TAKEN and acted.in_effect


def test_a_round_whose_next_round_opened_is_not_reviewed_anew() -> None:
    """Only a closed case has a next round, recorded once; a reporter's
    upheld appeal then overturns its no-violation decision but leaves the
    review of the target to the next round, as the case itself says so
    (`reported_since` is for rounds that do not)."""
    case = case_with(["a"])
    with pytest.raises(FailedPrecondition) as still_open:
        case.record_next_round(next_case_id="c2")
    assert still_open.value.reason == "CASE_NOT_ENDED"
    case = decided("NO_VIOLATION", None)
    case.record_next_round(next_case_id="c2")
    with pytest.raises(FailedPrecondition) as twice:
        case.record_next_round(next_case_id="c3")
    assert (twice.value.reason, case.next_case_id) == ("NEXT_ROUND_OPENED", "c2")
    case.lodge_appeal(appeal="appeals/8", appellant="a", at=NOW)
    assert case.reverse(appeal="appeals/8", at=NOW, reported_since=False) == ([], False, True)
    assert case.state is CaseState.NO_VIOLATION


def test_a_new_decision_after_a_reopen_lifts_what_it_no_longer_imposes() -> None:
    case = decided("ACTION_TAKEN", UPLOADER)
    case.lodge_appeal(appeal="appeals/3", appellant="a", at=NOW)  # a reporter wants more
    case.reverse(appeal="appeals/3", at=NOW, reported_since=False)
    assert case.in_effect  # still in effect while the case is reviewed again
    case.decide(
        actor="agent",
        outcome="NO_VIOLATION",
        statement=StatementOfReasons(decision_facts="On review: news reporting."),
        uploader=None,
        unfounded=[],
        at=NOW,
    )
    decided_event = case.collect_events()[-1]
    assert [r["type"] for r in vars(decided_event)["lifted"]] == [
        "DECISION_VISIBILITY_CONTENT_REMOVED"
    ]
    assert case.uploader == UPLOADER and not case.in_effect  # still a party, nothing in effect


def test_the_uploaders_appeal_lifts_restrictions_even_on_a_reopened_case() -> None:
    case = decided("ACTION_TAKEN", UPLOADER)
    case.lodge_appeal(appeal="appeals/4", appellant="a", at=NOW)
    case.lodge_appeal(appeal="appeals/5", appellant="up", at=NOW)
    case.reverse(appeal="appeals/4", at=NOW, reported_since=False)
    result = case.reverse(appeal="appeals/5", at=NOW, reported_since=False)
    assert result is not None and result[0] and not result[1]
    assert case.state is CaseState.OPEN and not case.in_effect


def test_a_withdrawn_count_ends_the_suspension_it_led_to() -> None:
    r = counted(None, 5, NOW)
    assert r.suspended(NOW + timedelta(days=1))
    last = r.suspensions[-1]["reports"][-1]
    assert r.withdraw(report_id=last, now=NOW + timedelta(days=1))
    assert r.suspended(NOW + timedelta(days=1)) is None
    assert not r.withdraw(report_id=last, now=NOW + timedelta(days=1))  # once
    # Counted again later, it counts again once (not twice).
    r.count_unfounded(report_id=last, at=NOW + timedelta(days=2), contact=CONTACT, rule=RULE)
    r.count_unfounded(report_id=last, at=NOW + timedelta(days=2), contact=CONTACT, rule=RULE)
    assert r.counted.count(last) == 1


def test_a_suspension_lifted_leaves_an_earlier_one_that_still_stands() -> None:
    """Reports filed before a suspension, judged unfounded during it, suspend
    again; one of those reversed lifts that second suspension, not the first,
    whose reports still count."""
    r = counted(None, 5, NOW)  # a warning after 2, then suspended for 30 days
    first = r.suspensions[-1]["until"]
    later = NOW + timedelta(days=10)
    r = counted(r, 3, later)  # suspended again, to 40 days on
    second = r.suspensions[-1]
    assert r.suspended(later + timedelta(hours=3)) == second["until"] > first
    assert r.withdraw(report_id=second["reports"][-1], now=later + timedelta(days=1))
    assert r.suspended(later + timedelta(days=1)) == first
    assert r.suspended(first) is None


def test_a_suspension_one_of_whose_reports_was_reversed_does_not_come_back() -> None:
    """A report behind the first suspension is reversed while a later one
    holds; then one of the later one's: no suspension stands on reports that
    no longer count."""
    r = counted(None, 5, NOW)
    first = r.suspensions[-1]
    later = NOW + timedelta(days=10)
    r = counted(r, 3, later)
    second = r.suspensions[-1]
    assert r.withdraw(report_id=first["reports"][-1], now=later + timedelta(days=1))
    assert r.suspended(later + timedelta(days=1)) == second["until"]  # the later still holds
    assert r.withdraw(report_id=second["reports"][-1], now=later + timedelta(days=2))
    assert r.suspended(later + timedelta(days=2)) is None


def test_a_warning_all_of_whose_reports_were_reversed_no_longer_stands() -> None:
    r = counted(None, 2, NOW)  # warned after 2
    assert r.standing_at(NOW + timedelta(hours=1)) == "WARNED"
    for report_id in list(r.counted):
        r.withdraw(report_id=report_id, now=NOW + timedelta(days=1))
    assert r.standing_at(NOW + timedelta(days=1)) == "COUNTED"
    # The next unfounded reports warn again before anything suspends.
    r = counted(r, 2, NOW + timedelta(days=2))
    assert r.standing_at(NOW + timedelta(days=2, hours=1)) == "WARNED" and r.suspensions == []


def test_events_after_a_suspension_ran_out_publish_the_standing_as_warned() -> None:
    """The header's state is the standing's when the event was recorded (now,
    here): a suspension under way says SUSPENDED; a report counted after one
    ran out says WARNED."""
    now = datetime.now(UTC)
    running = counted(None, 5, now)  # warned after 2, suspended after 3 more
    suspension = [e for e in running.collect_events() if isinstance(e, Reporter.Suspended)]
    assert public_message(suspension[0], running).header.state == "SUSPENDED"  # type: ignore[attr-defined]

    ran_out = counted(None, 5, now - timedelta(days=40))  # suspended until 10 days ago
    assert ran_out.suspended(now) is None and ran_out.suspensions
    ran_out.collect_events()
    ran_out.count_unfounded(report_id="after", at=now, contact=CONTACT, rule=RULE)
    (count,) = ran_out.collect_events()
    assert public_message(count, ran_out).header.state == "WARNED"  # type: ignore[attr-defined]


def every_event() -> list[tuple[Any, Any]]:
    """(event, aggregate right after it) for one of every kind of event."""
    report = AbuseReport(
        reporter="a",
        request_id="r1",
        request_fingerprint="f",
        target=VIDEO,
        category="violence_terrorism",
        subcategory="terrorism",
        explanation="x",
        evidence=[{"name": "evidence/1", "sha256": "0" * 64}],
        contact=CONTACT,
        source="ARTICLE_16",
        case_id="c1",
    )
    report.resolve(
        actor="agent",
        outcome={
            "outcome": "ACTION_TAKEN",
            "restrictions": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
            "decision_facts": "f",
            "manifestly_unfounded": False,
            "redress": "r",
            "appeal_deadline": NOW.isoformat(),
            "case_id": "c1",
        },
        at=NOW,
    )
    report.reverse(actor="system", appeal="appeals/1", lifted=[], reopened=False)
    report.expire(actor="system")
    voided = AbuseReport(
        reporter="b",
        request_id="r2",
        request_fingerprint="f",
        target=VIDEO,
        category="violence_terrorism",
        subcategory="terrorism",
        explanation="x",
        evidence=[],
        contact=CONTACT,
        source="TRUSTED_FLAGGER",
        case_id="c1",
    )
    voided.void(actor="agent", reason="deleted")
    case = case_with(["a", "b"])
    case.assign(actor="agent", assignee="agent")
    case.decide(
        actor="agent",
        outcome="ACTION_TAKEN",
        statement=StatementOfReasons.from_dict(STATEMENT, outcome="ACTION_TAKEN"),
        uploader=UPLOADER,
        unfounded=[],
        at=NOW,
    )
    case.lodge_appeal(appeal="appeals/1", appellant="up", at=NOW)
    case.reverse(appeal="appeals/1", at=NOW, reported_since=False)
    case.record_next_round(next_case_id="c2")
    void_case = case_with(["z"])
    void_case.void(actor="agent", reason="deleted", at=NOW)
    void_case.expire(actor="system")
    reporter = counted(None, 5, NOW)
    reporter.withdraw(report_id=reporter.suspensions[-1]["reports"][-1], now=NOW)
    reporter.expire_record(NOW)
    flagger = TrustedFlagger(user_id="ngo", display_name="NGO", areas=["child_safety"], actor="a")
    flagger.change(display_name="NGO 2", areas=["harassment"], actor="a")
    flagger.remove(actor="a")
    out = []
    for aggregate in (report, voided, case, void_case, reporter, flagger):
        for e in aggregate.collect_events():
            out.append((e, aggregate))
    return out


def test_every_event_has_a_public_message_and_collection() -> None:
    seen, names = set(), set()
    every = every_event()
    after_of = {id(e): a for e, a in every}
    translate = Translator(after=lambda e: after_of[id(e)])
    for e, after in every:
        seen.add(type(e))
        name = public_name(e, after)
        names.add(name)
        message = public_message(e, after)
        assert type(message).__name__ == name
        cloud = translate(None, e)  # type: ignore[arg-type]
        assert cloud.type == f"casemesh.reports.{name}.v1"
        assert cloud.subject == f"{COLLECTIONS[type(after)]}/{after.id}"
    assert seen == set(PUBLIC_NAMES)
    assert {f"casemesh.reports.{n}.v1" for n in names} == set(translate.types)


def test_a_queue_page_token_names_where_the_next_page_starts() -> None:
    ident = "5c0e8f0a-7d7b-4d7e-9a3c-2b1f6a8e4d21"
    token = encode_queue_token(True, NOW, ident)
    assert decode_queue_token(token) == (True, NOW, ident)
    assert decode_queue_token("") is None
    other_lane = base64.urlsafe_b64encode(f"2|{NOW.isoformat()}|{ident}".encode()).decode()
    for forged in ("not-a-token", other_lane):
        with pytest.raises(ValueError):
            decode_queue_token(forged)

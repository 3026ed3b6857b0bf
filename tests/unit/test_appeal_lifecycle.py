"""A copyright case's life, told through the aggregate and the policies alone."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from casemesh.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from casemesh_appeals import policy
from casemesh_appeals.domain import CopyrightAppeal, Kind, State, Step, missing_elements
from casemesh_appeals.reasons import StatementOfReasons

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# When a decision's window for a counter-notice or an appeal closes.
WINDOW_END = MONDAY + timedelta(days=180)
# The uploader's counter-notice to the notice below, for the item it took down.
COUNTER = {"removed_item": "https://video.example/v/123", "reason": "my own dance"}


def reasons(ground: str, appeal_deadline: datetime) -> StatementOfReasons:
    return StatementOfReasons(ground=ground, facts="").completed(
        redress="", appeal_deadline=appeal_deadline
    )


def complete_notice() -> dict[str, object]:
    return {
        "filer": {"user_id": "claire", "legal_name": "Claire Studio"},
        "notice": {
            "relationship": "OWNER",
            "work": {"title": "Dance #1", "creation_time": "2026-01-01T00:00:00+00:00"},
            "originality_evidence": [{"name": "evidence/a", "sha256": "a" * 64}],
            "infringing_items": ["https://video.example/v/123"],
            "infringement_evidence": [{"name": "evidence/b", "sha256": "b" * 64}],
        },
        "good_faith_statement": True,
        "accuracy_statement": True,
    }


def notice(content: dict[str, object] | None = None) -> CopyrightAppeal:
    content = content or complete_notice()
    missing = missing_elements(Kind.TAKEDOWN_NOTICE, content)
    return CopyrightAppeal(
        filer_id="claire",
        request_id="r1",
        request_fingerprint="f",
        kind=Kind.TAKEDOWN_NOTICE,
        jurisdiction="cn",
        content=content,
        missing=missing,
        next_step=Step.YOUR_INFORMATION if missing else Step.REVIEW,
        next_step_due=MONDAY + timedelta(days=7),
    )


def state(a: CopyrightAppeal) -> State:
    return State(a.state)


def step(a: CopyrightAppeal) -> Step:
    return Step(a.next_step)


def test_a_notice_is_reviewed_upheld_countered_and_restored_when_the_window_passes() -> None:
    a = notice()
    assert state(a) is State.SUBMITTED and step(a) is Step.REVIEW
    a.assign(actor="li", assignee="li")
    assert state(a) is State.UNDER_REVIEW
    a.decide(
        actor="li",
        uphold=True,
        reasons=reasons("Copyright Law Art. 10", MONDAY + timedelta(days=180)),
        uploader={"user_id": "ursula"},
    )
    assert state(a) is State.UPHELD and step(a) is Step.COUNTER_NOTICE_OR_APPEAL
    with pytest.raises(PermissionDenied):
        a.file_counter_notice(
            actor="mallory", uploader={}, counter_notice={}, restore_due=MONDAY, now=MONDAY
        )
    restore_due = MONDAY + timedelta(days=15)
    a.file_counter_notice(
        actor="ursula",
        uploader={"user_id": "ursula"},
        counter_notice=COUNTER,
        restore_due=restore_due,
        now=MONDAY,
    )
    assert (state(a), a.next_step, a.next_step_due) == (
        State.FORWARDED_TO_CLAIMANT,
        Step.RESTORE,
        restore_due,
    )
    # Restored once the grace after the claimant's deadline has run (the
    # service gives its end, `until`); a row at the deadline itself, as a
    # release without the grace scheduled, restores too; one of another
    # time is stale.
    until = restore_due + timedelta(days=1)
    assert not a.restore_if_due(now=until - timedelta(seconds=1), due=until, until=until)
    assert not a.restore_if_due(now=until, due=until + timedelta(days=1), until=until)  # stale
    assert not a.restore_if_due(now=until, due=until - timedelta(hours=1), until=until)  # stale
    early = restore_due - timedelta(seconds=1)
    assert not a.restore_if_due(now=early, due=restore_due, until=until)
    assert a.restore_if_due(now=until, due=until, until=until)
    assert state(a) is State.RESTORED
    assert not a.restore_if_due(now=until, due=until, until=until)  # fires once
    assert not a.restore_if_due(now=until, due=restore_due, until=until)


def test_a_counter_notice_after_its_window_closed_is_refused() -> None:
    """The decision's window closes for a counter-notice as for an appeal:
    after it the case has ended, and nothing reopens it."""
    a = notice()
    a.decide(actor="li", uphold=True, reasons=reasons("g", WINDOW_END), uploader={"user_id": "u"})
    with pytest.raises(FailedPrecondition) as refused:
        a.file_counter_notice(
            actor="u",
            uploader={"user_id": "u"},
            counter_notice=COUNTER,
            restore_due=MONDAY,
            now=WINDOW_END + timedelta(seconds=1),
        )
    assert refused.value.reason == "COUNTER_NOTICE_WINDOW_CLOSED"
    assert state(a) is State.UPHELD
    a.file_counter_notice(  # at the deadline itself, as an appeal of the decision
        actor="u",
        uploader={"user_id": "u"},
        counter_notice=COUNTER,
        restore_due=MONDAY,
        now=WINDOW_END,
    )
    assert state(a) is State.FORWARDED_TO_CLAIMANT


def test_court_action_in_time_holds_the_content_down() -> None:
    a = notice()
    a.decide(actor="li", uphold=True, reasons=reasons("g", WINDOW_END), uploader={"user_id": "u"})
    due = MONDAY + timedelta(days=15)
    a.file_counter_notice(
        actor="u", uploader={"user_id": "u"}, counter_notice=COUNTER, restore_due=due, now=MONDAY
    )
    # Reported by the deadline, it is recorded until the grace after it ends.
    until = due + timedelta(days=1)
    with pytest.raises(FailedPrecondition, match="closed") as refused:
        a.record_court_action(actor="li", details="case 1", now=until, until=until, evidence=[])
    assert refused.value.reason == "COURT_ACTION_WINDOW_CLOSED"
    assert state(a) is State.FORWARDED_TO_CLAIMANT
    a.record_court_action(
        actor="li",
        details="Beijing Internet Court (2026) 123",
        now=due + timedelta(hours=1),
        until=until,
        evidence=[],
    )
    assert state(a) is State.HELD
    assert not a.restore_if_due(now=until, due=until, until=until)
    assert not a.restore_if_due(now=until, due=due, until=until)


@pytest.mark.parametrize(
    ("stays_down", "ended_as"), [(True, State.UPHELD_BY_COURT), (False, State.RESTORED)]
)
def test_a_held_case_ends_when_the_court_outcome_is_recorded(
    stays_down: bool, ended_as: State
) -> None:
    a = notice()
    a.decide(actor="li", uphold=True, reasons=reasons("g", WINDOW_END), uploader={"user_id": "u"})
    due = MONDAY + timedelta(days=15)
    a.file_counter_notice(
        actor="u", uploader={"user_id": "u"}, counter_notice=COUNTER, restore_due=due, now=MONDAY
    )
    outcome: dict[str, Any] = {
        "actor": "li",
        "content_stays_down": stays_down,
        "details": "判决",
        "evidence": [],
    }
    with pytest.raises(FailedPrecondition, match="FORWARDED_TO_CLAIMANT") as refused:
        a.record_court_outcome(**outcome)  # no court action recorded yet
    assert refused.value.reason == "CASE_NOT_HELD"
    a.record_court_action(actor="li", details="(2026) 123", now=MONDAY, until=due, evidence=[])
    assert a.ended_at(a.modified_on) is None  # held: kept while the court decides
    a.record_court_outcome(**outcome)
    assert (state(a), step(a), a.next_step_due) == (ended_as, Step.NONE, None)
    assert a.finished and a.ended_at(a.modified_on) == a.modified_on
    with pytest.raises(FailedPrecondition, match=ended_as.value):
        a.record_court_outcome(**outcome)  # recorded once


def test_a_notice_missing_elements_waits_for_them_and_names_them() -> None:
    content = complete_notice()
    content.pop("good_faith_statement")
    content["notice"]["infringing_items"] = []  # type: ignore[index]
    a = notice(content)
    assert state(a) is State.INFO_REQUESTED
    assert a.missing == ["notice.infringing_items", "good_faith_statement"]
    with pytest.raises(FailedPrecondition, match="good_faith_statement"):
        a.decide(actor="li", uphold=False, reasons=reasons("g", MONDAY), uploader=None)
    a.add_info(
        actor="claire", message="here", completion={"good_faith_statement": True}, review_due=MONDAY
    )
    assert (state(a), a.missing) == (State.INFO_REQUESTED, ["notice.infringing_items"])
    a.add_info(
        actor="claire",
        message="and the link",
        completion={"notice": {"infringing_items": ["https://video.example/v/9"]}},
        review_due=MONDAY + timedelta(days=7),
    )
    assert (state(a), a.missing) == (State.SUBMITTED, [])
    assert a.content["notice"]["work"]["title"] == "Dance #1"  # kept while merging


def test_an_unanswered_request_abandons_the_case_once() -> None:
    a = notice()
    due = MONDAY + timedelta(days=15)
    a.request_info(actor="li", message="the original file, please", due=due)
    assert not a.abandon_if_due(now=due - timedelta(hours=1), due=due)
    assert a.abandon_if_due(now=due, due=due)
    assert state(a) is State.ABANDONED
    with pytest.raises(FailedPrecondition):
        a.withdraw(actor="claire", reason="")


def test_only_the_filer_withdraws_and_only_an_open_case() -> None:
    a = notice()
    with pytest.raises(PermissionDenied):
        a.withdraw(actor="ursula", reason="")
    a.withdraw(actor="claire", reason="settled")
    assert state(a) is State.WITHDRAWN


def test_upholding_a_notice_names_the_uploader() -> None:
    with pytest.raises(InvalidArgument) as info:
        notice().decide(actor="li", uphold=True, reasons=reasons("g", MONDAY), uploader=None)
    assert info.value.violations[0].field == "affected_uploader"


def test_rejecting_a_notice_names_no_uploader() -> None:
    """Named on a rejection, the uploader would be dropped unsaid: refused,
    and the notice is as it was."""
    a = notice()
    with pytest.raises(InvalidArgument) as info:
        a.decide(actor="li", uphold=False, reasons=reasons("g", MONDAY), uploader={"user_id": "u"})
    assert info.value.violations[0].field == "affected_uploader"
    assert (state(a), a.decision, a.uploader) == (State.SUBMITTED, None, None)


def test_business_days_are_whole_local_days_after_receipt() -> None:
    ny = ZoneInfo("America/New_York")
    # DMCA 512(g): restore no sooner than 10 business days after the counter-notice.
    # Received Friday 8 Jan 2027, 22:00 New York; MLK Day (18 Jan) is a holiday.
    friday_night = datetime(2027, 1, 8, 22, 0, tzinfo=ny)
    us = policy.load()["us"]
    assert us.due(us.restore_after, friday_night) == datetime(2027, 1, 26, 0, 0, tzinfo=ny)
    # Without the holiday list it would be a day sooner.
    bare = policy.Period(10, business_days=True)
    assert bare.after(friday_night, zone=ny) == datetime(2027, 1, 23, 0, 0, tzinfo=ny)
    one = policy.Period(1, business_days=True)
    assert one.after(MONDAY, frozenset({date(2026, 3, 3)})) == datetime(2026, 3, 5, tzinfo=UTC)
    assert policy.Period(15).after(MONDAY) == MONDAY + timedelta(days=15)


def test_chinas_fifteen_days_run_to_midnight_of_the_fifteenth_day_after() -> None:
    """A counter-notice forwarded at 17:00 Beijing time on 2 March: the
    claimant has until 24:00 on 17 March to report court action (E-Commerce
    Law Art. 43; Civil Code Art. 201, 203: counted from the next day, the
    last day ending at 24:00), not until 17:00; a file naming 15 days gets
    the same."""
    beijing = ZoneInfo("Asia/Shanghai")
    forwarded = datetime(2027, 3, 2, 17, 0, tzinfo=beijing)
    cn = policy.load()["cn"]
    assert cn.due(cn.restore_after, forwarded) == datetime(2027, 3, 18, 0, 0, tzinfo=beijing)
    # Forwarded a minute after midnight, it is the same day's count.
    early = datetime(2027, 3, 2, 0, 1, tzinfo=beijing)
    assert cn.due(cn.restore_after, early) == datetime(2027, 3, 18, 0, 0, tzinfo=beijing)


def test_chinas_fifteen_days_ending_on_a_rest_day_end_with_the_next_working_day(
    tmp_path: Any,
) -> None:
    """Civil Code Art. 203: forwarded on Friday 6 March 2026, the 15th day
    is Saturday the 21st, so the claimant has until the end of Monday the
    23rd, and the content comes back a day after that. Holidays and make-up
    working days are the operator's to list (these are examples): a last
    day in a week of holidays moves past it, one on a Saturday worked
    does not."""
    beijing = ZoneInfo("Asia/Shanghai")
    cn = policy.load()["cn"]
    deadline = cn.due(cn.restore_after, datetime(2026, 3, 6, 10, 0, tzinfo=beijing))
    assert deadline == datetime(2026, 3, 24, 0, 0, tzinfo=beijing)
    assert cn.court_action_until(deadline) == datetime(2026, 3, 25, 0, 0, tzinfo=beijing)
    path = tmp_path / "cn.json"
    holidays = [f"2026-10-0{day}" for day in range(1, 8)]
    path.write_text(json.dumps({"cn": {"holidays": holidays, "workdays": ["2026-10-10"]}}))
    cn = policy.load(str(path))["cn"]
    deadline = cn.due(cn.restore_after, datetime(2026, 9, 16, 10, 0, tzinfo=beijing))
    assert deadline == datetime(2026, 10, 9, 0, 0, tzinfo=beijing)  # Thursday 8 October
    assert cn.court_action_until(deadline) == datetime(2026, 10, 10, 0, 0, tzinfo=beijing)
    saturday_worked = cn.due(cn.restore_after, datetime(2026, 9, 25, 10, 0, tzinfo=beijing))
    assert saturday_worked == datetime(2026, 10, 11, 0, 0, tzinfo=beijing)
    # A make-up working day is a business day too, wherever days are counted so.
    one = policy.Period(1, business_days=True)
    friday = datetime(2026, 10, 9, 10, 0, tzinfo=beijing)
    assert cn.due(one, friday) == datetime(2026, 10, 11, 0, 0, tzinfo=beijing)
    # The claimant's days move; the platform's grace after them does not.
    grace = cn.court_action_until(datetime(2026, 3, 21, 0, 0, tzinfo=beijing))
    assert grace == datetime(2026, 3, 22, 0, 0, tzinfo=beijing)


def test_the_grace_after_the_claimants_deadline_counts_from_the_day_after_it() -> None:
    """The claimant's deadline ends a day at local midnight; the grace after
    it counts the days after that one: forwarded in New York on Friday 8
    January 2027, told until the end of Monday 25 January (10 business
    days, MLK Day skipped), restored at the end of Wednesday 27 January (12,
    within DMCA 512(g)'s 14), not of Thursday. Told until 24:00 on 17 March
    in Beijing, restored at 24:00 on the 18th."""
    ny, beijing = ZoneInfo("America/New_York"), ZoneInfo("Asia/Shanghai")
    policies = policy.load()
    us, cn, eu = policies["us"], policies["cn"], policies["eu"]
    deadline = us.due(us.restore_after, datetime(2027, 1, 8, 22, 0, tzinfo=ny))
    assert deadline == datetime(2027, 1, 26, 0, 0, tzinfo=ny)
    assert us.court_action_until(deadline) == datetime(2027, 1, 28, 0, 0, tzinfo=ny)
    assert us.court_action_until(datetime(2027, 1, 23, tzinfo=ny)) == datetime(
        2027, 1, 27, tzinfo=ny
    )  # told until the end of a Friday: Monday and Tuesday
    deadline = cn.due(cn.restore_after, datetime(2027, 3, 2, 17, 0, tzinfo=beijing))
    assert cn.court_action_until(deadline) == datetime(2027, 3, 19, 0, 0, tzinfo=beijing)
    assert eu.court_action_until(MONDAY) == MONDAY + timedelta(days=1)


def test_us_business_days_skip_every_federal_holiday_whatever_the_year() -> None:
    """New Year's Day 2028 falls on a Saturday and is kept on Friday 31
    December 2027; holidays are worked out by the statute's rules, so a
    counter-notice in 2031 counts them too."""
    ny = ZoneInfo("America/New_York")
    us = policy.load()["us"]
    received = datetime(2027, 12, 16, 12, 0, tzinfo=ny)
    assert us.due(us.restore_after, received) == datetime(2028, 1, 4, 0, 0, tzinfo=ny)
    # Thanksgiving 2031 (27 November) and the Friday after it is not a holiday.
    received = datetime(2031, 11, 20, 12, 0, tzinfo=ny)
    assert us.due(us.restore_after, received) == datetime(2031, 12, 6, 0, 0, tzinfo=ny)
    assert {date(2032, 7, 5), date(2033, 6, 20), date(2030, 1, 21)} <= us.holidays


def test_six_months_are_calendar_months_never_shorter() -> None:
    """Six months run to 24:00 of the matching day (Regulation 1182/71 Art.
    3), wherever in the EU that comes last: at 10:00 UTC it is the same day
    everywhere, and the last midnight is Martinique's (UTC−4)."""
    eu = policy.load()["eu"]
    for start, end in (
        ("2027-03-01", "2027-09-02"),
        ("2027-07-03", "2028-01-04"),
        ("2027-08-01", "2028-02-02"),
        ("2027-08-31", "2028-03-02"),
    ):
        moment = datetime.fromisoformat(f"{start}T10:00:00+00:00")
        assert eu.due(eu.appeal_window, moment) == datetime.fromisoformat(f"{end}T04:00:00+00:00")


def test_six_months_from_just_after_midnight_run_to_the_end_of_that_local_day() -> None:
    """Told at 00:30 on 8 September in Brussels (22:30 UTC the day before), a
    person there has until 24:00 on 8 March, Brussels time: the day counted
    from is their own, not the one it still is further west."""
    brussels = ZoneInfo("Europe/Brussels")
    eu = policy.load()["eu"]
    told = datetime(2027, 9, 8, 0, 30, tzinfo=brussels)
    assert eu.due(eu.appeal_window, told) == datetime(2028, 3, 9, 0, 0, tzinfo=brussels)


def test_six_months_ending_on_a_weekend_or_holiday_run_to_the_next_working_day(
    tmp_path: Any,
) -> None:
    """Regulation 1182/71 Art. 3(4): decided on Friday 5 March 2027, six
    months would end on Sunday 5 September; a decision under any law may be
    appealed until the end of Monday the 6th wherever in the EU that comes
    last (Martinique's). A public holiday the EU policy lists moves an EU
    decision's end on to the Tuesday."""
    decided = datetime(2027, 3, 5, 12, 0, tzinfo=UTC)
    monday_in_martinique = datetime(2027, 9, 7, 4, 0, tzinfo=UTC)
    policies = policy.load()
    for code in ("cn", "us", "eu"):
        assert policies[code].appeal_deadline(decided) == monday_in_martinique
    path = tmp_path / "eu.json"
    path.write_text('{"eu": {"holidays": ["2027-09-06"]}}')
    eu = policy.load(str(path))["eu"]
    assert eu.appeal_deadline(decided) == monday_in_martinique + timedelta(days=1)


def test_policies_follow_the_law_and_refuse_to_break_it(tmp_path: object) -> None:
    policies = policy.load()
    to_working_day = {"whole_days": True, "ends_on_working_day": True}
    assert policies["cn"].restore_after == policy.Period(15, **to_working_day)
    assert policies["us"].restore_after == policy.Period(10, business_days=True)
    assert policies["eu"].appeal_window == policy.Period(months=6, **to_working_day)
    bad = tmp_path / "p.json"  # type: ignore[operator]
    bad.write_text('{"us": {"restore_after": {"days": 20, "business_days": true}}}')
    with pytest.raises(policy.PolicyError, match="10 to 14"):
        policy.load(str(bad))
    # Six months less a day is 184 days at most, but short after 31 January.
    short = tmp_path / "short.json"  # type: ignore[operator]
    short.write_text('{"eu": {"appeal_window": {"months": 5, "days": 29}}}')
    with pytest.raises(policy.PolicyError, match="six months"):
        policy.load(str(short))
    ok = tmp_path / "ok.json"  # type: ignore[operator]
    # Restored when the grace after the claimant's deadline ends: 10 and 2
    # business days by default, and together never more than 512(g)'s 14.
    assert policies["us"].court_notice_grace == policy.Period(2, business_days=True)
    longest = tmp_path / "longest.json"  # type: ignore[operator]
    longest.write_text('{"us": {"restore_after": {"days": 13, "business_days": true}}}')
    with pytest.raises(policy.PolicyError, match="at most 14 business days"):
        policy.load(str(longest))
    ok = tmp_path / "ok.json"  # type: ignore[operator]
    ok.write_text(
        '{"us": {"restore_after": {"days": 13, "business_days": true},'
        ' "court_notice_grace": {"days": 1, "business_days": true}}}'
    )
    assert policy.load(str(ok))["us"].restore_after.days == 13
    # No grace: restored at the deadline itself.
    none = tmp_path / "none.json"  # type: ignore[operator]
    none.write_text(
        '{"us": {"restore_after": {"days": 14, "business_days": true},'
        ' "court_notice_grace": {"days": 0}}}'
    )
    us = policy.load(str(none))["us"]
    deadline = datetime(2027, 1, 26, 0, 0, tzinfo=ZoneInfo("America/New_York"))
    assert us.court_action_until(deadline) == deadline
    # China's 15 days named in a file are counted as the law counts them.
    cn = tmp_path / "cn.json"  # type: ignore[operator]
    cn.write_text('{"cn": {"restore_after": {"days": 15}}}')
    assert policy.load(str(cn))["cn"].restore_after == policy.Period(15, **to_working_day)
    # So are the EU's six months.
    eu = tmp_path / "eu.json"  # type: ignore[operator]
    eu.write_text('{"eu": {"appeal_window": {"months": 6}}}')
    assert policy.load(str(eu))["eu"].appeal_window == policy.Period(months=6, **to_working_day)
    # Counted to midnight in Brussels alone, they would end hours early for
    # the EU's people further west.
    with pytest.raises(policy.PolicyError, match="six months"):
        policy.check(replace(policy.POLICIES["eu"], day_zones=()))


def test_no_jurisdictions_decision_is_appealed_for_less_than_the_eus_six_months(
    tmp_path: Any,
) -> None:
    """A removal applies in the EU whatever law decides it: decided at noon
    on 2 March, a Chinese or US decision may be appealed until 24:00 on 2
    September in Martinique, as an EU one may, even under a file that names
    a shorter window; a longer one stands."""
    decided = datetime(2027, 3, 2, 12, 0, tzinfo=UTC)
    six_months = datetime(2027, 9, 3, 4, 0, tzinfo=UTC)
    short = tmp_path / "short.json"
    short.write_text(
        '{"cn": {"appeal_window": {"days": 30}}, "us": {"appeal_window": {"days": 180}}}'
    )
    for policies in (policy.load(), policy.load(str(short))):
        for code in ("cn", "us", "eu"):
            assert policies[code].appeal_deadline(decided) == six_months
    longer = tmp_path / "longer.json"
    longer.write_text('{"us": {"appeal_window": {"months": 12}}}')
    assert policy.load(str(longer))["us"].appeal_deadline(decided) == decided.replace(year=2028)


@pytest.mark.parametrize(
    ("override", "refused"),
    [
        # China's 15 days (E-Commerce Law Art. 43) shortened.
        ('{"cn": {"restore_after": {"days": 5}}}', "15 calendar days"),
        ('{"cn": {"restore_after": {"days": 60}}}', "15 calendar days"),  # kept down too long
        ('{"cn": {"restore_after": {"days": 15, "business_days": true}}}', "15 calendar days"),
        # Read at every filing, not at start, these would fail each one.
        ('{"cn": {"review": {"days": "7"}}}', "whole numbers"),
        ('{"cn": {"review": {"days": -1}}}', "whole numbers"),
        ('{"us": {"review": {"days": 10000000, "business_days": true}}}', "whole numbers"),
        ('{"eu": {"review": {"weeks": 1}}}', "a period is"),
        ('{"us": {"restore_after": {"days": 10, "business_days": "yes"}}}', "true or false"),
        ('{"us": {"restore_after": {"days": 10, "months": 1, "business_days": true}}}', "months"),
        # Restored later than 512(g)'s 14 business days, or counted otherwise.
        ('{"us": {"court_notice_grace": {"days": 5, "business_days": true}}}', "at most 14"),
        ('{"us": {"court_notice_grace": {"days": 2}}}', "at most 14"),
        ('{"us": {"court_notice_grace": {"months": 1}}}', "at most 14"),
        ('{"eu": {"court_notice_grace": {"days": -1}}}', "whole numbers"),
        ('{"cn": {"info_response": {}}}', "no time"),
        # Fields of the wrong shape, named.
        ('{"cn": {"holidays": "2026-10-01"}}', "cn.holidays: a list of dates"),
        ('{"cn": {"holidays": ["2026-13-01"]}}', "cn.holidays: '2026-13-01' is not a date"),
        ('{"cn": {"holidays": [20261001]}}', "cn.holidays: 20261001 is not a date"),
        ('{"cn": {"workdays": ["2026-10-09"]}}', "cn.workdays: 2026-10-09 is not a Saturday"),
        (
            '{"cn": {"holidays": ["2026-10-10"], "workdays": ["2026-10-10"]}}',
            "cn.workdays: 2026-10-10 is listed as a holiday too",
        ),
        ('{"eu": {"redress": "x"}}', "eu.redress: texts by locale"),
        ('{"us": {"final_redress": {"en": 5}}}', "us.final_redress: texts by locale"),
        ('{"us": {"time_zone": "Mars/Olympus"}}', "us.time_zone: a time zone"),
        ('{"us": {"time_zone": 5}}', "us.time_zone: a time zone"),
        # A folder of the time zone database, not a zone in it.
        ('{"us": {"time_zone": "America"}}', "us.time_zone: a time zone"),
        ('{"cn": ["holidays"]}', "cn: policy fields by name"),
    ],
)
def test_a_policy_override_that_would_break_the_law_or_each_filing_stops_the_start(
    tmp_path: Any, override: str, refused: str
) -> None:
    """Refused at start, naming the jurisdiction and the period."""
    path = tmp_path / "policy.json"
    path.write_text(override)
    with pytest.raises(policy.PolicyError, match=refused) as error:
        policy.load(str(path))
    assert str(error.value).startswith(override[2:4])  # the jurisdiction named


def test_a_policy_file_not_by_jurisdiction_stops_the_start(tmp_path: Any) -> None:
    path = tmp_path / "policy.json"
    path.write_text('[{"cn": {}}]')
    with pytest.raises(policy.PolicyError, match="policies by jurisdiction"):
        policy.load(str(path))


def test_each_step_that_waits_on_time_sets_its_deadline() -> None:
    from types import SimpleNamespace

    from casemesh.platform.relay import StreamFollower
    from casemesh_appeals.application import Appeals, DeadlineKind

    a = notice()
    a.request_info(actor="li", message="?", due=MONDAY + timedelta(days=15))
    a.add_info(actor="claire", message="ok", completion={}, review_due=MONDAY)
    a.decide(
        actor="li",
        uphold=True,
        reasons=reasons("g", MONDAY + timedelta(days=180)),
        uploader={"user_id": "u"},
    )
    a.file_counter_notice(
        actor="u",
        uploader={"user_id": "u"},
        counter_notice=COUNTER,
        restore_due=MONDAY + timedelta(days=30),
        now=MONDAY,
    )
    events = list(a.collect_events())
    # The service reads each event's deadline from the case as it stands after it.
    keep = timedelta(days=1095)
    service = SimpleNamespace(
        _follower=StreamFollower(SimpleNamespace()),  # type: ignore[arg-type]
        retain_for=keep,
        policies=policy.load(),
    )
    deadlines = [Appeals.deadlines_of(service, e) for e in events]  # type: ignore[arg-type]
    assert [[(d.kind, d.due) for d in ds] for ds in deadlines] == [
        [],
        [(DeadlineKind.ABANDON, MONDAY + timedelta(days=15))],
        [],
        # Decided: once its window for a counter-notice or an appeal closes,
        # its retention period runs.
        [(DeadlineKind.DECISION_RETENTION, MONDAY + timedelta(days=180) + keep)],
        # Forwarded: restored once the grace after the claimant's deadline
        # (17:00 on 1 April, Beijing time) has run: 24:00 on 2 April there.
        [
            (
                DeadlineKind.RESTORE_AFTER_GRACE,
                datetime(2026, 4, 3, tzinfo=ZoneInfo("Asia/Shanghai")),
            )
        ],
    ]

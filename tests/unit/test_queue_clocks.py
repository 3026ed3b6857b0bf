"""The queue's SLA clocks as agents see them in the queue's order and state:
a breached case stays overdue through a pause, a new priority takes back a
warning its target no longer gives, and a report case or an appeal has its
first response once an agent takes it into review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh_casequeue import sla
from casemesh_casequeue.model import Case, Observation, Signal, advance, apply, new_case
from casemesh_casequeue.observe import observe
from tests.support import case_event

LEVELS = sla.load()
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


def ticket(name: str, version: int, at: datetime, status: str, **kw: Any) -> Observation:
    return Observation(
        name=name,
        type="ticket",
        version=version,
        at=at,
        status=status,
        open=True,
        waiting=status == "PENDING",
        category="content.upload_failed",
        **kw,
    )


def opened(name: str, at: datetime, priority: int) -> Case:
    obs = ticket(name, 1, at, "NEW", created=True, priority=priority)
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    return case


def test_a_case_breached_before_a_pause_stays_overdue_from_its_breach_after_it() -> None:
    """Urgent: resolution within 8 hours. A breaches at 09:00 (UTC), waits on
    the requester from 10:00 to 14:00; B breaches at 09:30 and stays open.
    Back with the agents, A is still the longer overdue: first in the queue."""
    a = opened("tickets/a", START, priority=4)
    b = opened("tickets/b", START + timedelta(minutes=30), priority=4)
    responded = ticket("tickets/a", 2, START + timedelta(minutes=10), "OPEN", responded=True)
    apply(a, responded, LEVELS)
    apply(b, ticket("tickets/b", 2, START + timedelta(minutes=40), "OPEN", responded=True), LEVELS)
    advance(a, START + timedelta(hours=9), LEVELS)
    advance(b, START + timedelta(hours=9), LEVELS)
    breached_a = a.clocks["resolution"].breached_at
    assert breached_a == START + timedelta(hours=8)
    assert b.clocks["resolution"].breached_at == START + timedelta(hours=8, minutes=30)

    apply(a, ticket("tickets/a", 3, START + timedelta(hours=10), "PENDING"), LEVELS)
    assert a.sla_state == "BREACHED" and not a.claimable
    back = ticket("tickets/a", 4, START + timedelta(hours=14), "OPEN")
    assert apply(a, back, LEVELS) == []  # breached once, not again

    assert a.due_key == breached_a  # not the moment it came back
    assert b.due_key is not None and a.due_key < b.due_key
    assert a.next_check is None  # nothing left for the timer to fire
    assert advance(a, START + timedelta(days=2), LEVELS) == []


def test_a_lowered_priority_takes_back_the_warning_and_warns_at_the_new_point() -> None:
    """Urgent (first response within an hour): warned at 09:48 in Shanghai.
    Lowered to low at 09:51 (8 business hours): no longer near its target,
    so not WARNING; warned again once 80% of the new target has run."""
    case = opened("tickets/p", START, priority=4)
    warned = advance(case, START + timedelta(minutes=50), LEVELS)
    assert [(s.kind, s.clock) for s in warned] == [("WARNED", "first_response")]
    assert case.sla_state == "WARNING"

    lowered = ticket("tickets/p", 2, START + timedelta(minutes=51), "OPEN", priority=1)
    assert apply(case, lowered, LEVELS) == []
    first = case.clocks["first_response"]
    assert first.due == START + timedelta(hours=8)  # 09:00 + 8 working hours, the same day
    assert not first.warned and case.sla_state == "ON_TRACK"
    assert case.next_check == first.warn_at

    # 80% of 8 hours: 6 h 24 min of working time, 51 minutes of it run already.
    warn_at = START + timedelta(hours=6, minutes=24)
    assert first.warn_at == warn_at
    assert advance(case, warn_at - timedelta(seconds=1), LEVELS) == []
    again = advance(case, warn_at, LEVELS)
    assert [(s.kind, s.clock, s.at) for s in again] == [("WARNED", "first_response", warn_at)]
    assert case.sla_state == "WARNING"


def test_a_warning_still_due_under_a_raised_priority_stands() -> None:
    """Normal (8 business hours), warned at 6 h 24 min; raised to high (4
    hours) an hour later: still past its warning point, and breached."""
    case = opened("tickets/r", START, priority=2)
    advance(case, START + timedelta(hours=6, minutes=30), LEVELS)
    assert case.clocks["first_response"].warned
    raised = ticket("tickets/r", 2, START + timedelta(hours=7), "OPEN", priority=3)
    apply(case, raised, LEVELS)
    assert case.clocks["first_response"].warned and case.sla_state == "WARNING"
    late = advance(case, START + timedelta(hours=7), LEVELS)
    assert [s.kind for s in late if s.clock == "first_response"] == ["BREACHED", "ESCALATED"]


def test_a_reply_told_after_the_timer_breached_the_case_takes_the_breach_back() -> None:
    """An agent replied 30 minutes in, but the tickets relay was away and the
    reply reached the queue after its timer had run the clocks two hours on:
    the first response is met, not breached, and the case back in its own
    queue at its own priority, as a replay of the topics in order makes it."""
    case = opened("tickets/late", START, priority=4)
    signals = advance(case, START + timedelta(hours=2), LEVELS)
    assert "BREACHED" in {s.kind for s in signals} and case.escalations
    replied = START + timedelta(minutes=30)
    apply(case, ticket("tickets/late", 2, replied, "OPEN", responded=True), LEVELS)

    replayed = opened("tickets/late", START, priority=4)
    apply(replayed, ticket("tickets/late", 2, replied, "OPEN", responded=True), LEVELS)
    advance(replayed, START + timedelta(hours=2), LEVELS)
    first = case.clocks["first_response"]
    assert (first.met_at, first.breached_at) == (replied, None)
    assert case.escalations == replayed.escalations == 0
    assert (case.queue, case.priority, case.sla_state) == (
        replayed.queue,
        replayed.priority,
        replayed.sla_state,
    )
    assert case.clocks == replayed.clocks


def heard(service: str, name: str, message: Any, at: datetime) -> Observation:
    """What the queue makes of `message`, published by `service` at `at`."""
    message.header.time.FromDatetime(at)
    obs = observe(case_event(service, name, message.header.version, message, at), LEVELS)
    assert obs is not None
    return obs


def report_case(version: int, at: datetime, message: Any, state: str) -> Observation:
    message.header.CopyFrom(rev.ReportEventHeader(aggregate_id="c1", version=version, state=state))
    return heard("reports", "report-cases/c1", message, at)


def appeal(version: int, at: datetime, message: Any, state: str) -> Observation:
    message.header.CopyFrom(aev.AppealEventHeader(appeal_id="a1", version=version, state=state))
    return heard("appeals", "appeals/a1", message, at)


def child_safety_case() -> Case:
    """Opened at START: taken into review within an hour, decided within four."""
    obs = report_case(
        1, START, rev.ReportCaseOpened(category="child_safety", lane="CHILD_SAFETY"), "OPEN"
    )
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    return case


def lived(case: Case, *events: Observation) -> list[Signal]:
    """The signals of `case` as the queue lives through `events`, its timer
    looking at the clocks every minute in between."""
    signals = []
    for obs in events:
        look = case.updated_at
        while (look := look + timedelta(minutes=1)) < obs.at:
            signals += advance(case, look, LEVELS)
        signals += apply(case, obs, LEVELS)
    return signals


def met_in_time(case: Case, taken: Observation, decided: Observation, queue: str) -> None:
    """`case` lived through being taken into review (`taken`) and decided
    (`decided`) in time: no warning, no breach, no escalation, its first
    response met when it was taken, and MET in `queue`, the one it came to."""
    assert lived(case, taken, decided) == []
    assert case.clocks["first_response"].met_at == taken.at
    assert (case.sla_state, case.queue, case.escalations) == ("MET", queue, 0)


def test_a_child_safety_case_taken_at_once_and_decided_in_time_is_never_breached() -> None:
    """Taken into review 5 minutes in, decided 2 hours in: within the hour
    and the four, so no warning, no breach, no escalation, and the case is
    MET in the queue it came to."""
    case = child_safety_case()
    taken = START + timedelta(minutes=5)
    decided = START + timedelta(hours=2)
    met_in_time(
        case,
        report_case(2, taken, rev.ReportCaseAssigned(assignee="agent-li"), "IN_REVIEW"),
        report_case(3, decided, rev.ReportCaseDecided(outcome="ACTION_TAKEN"), "ACTION_TAKEN"),
        "child-safety",
    )
    assert case.clocks["resolution"].met_at == decided


def test_a_child_safety_case_no_one_takes_within_the_hour_breaches_and_goes_to_the_leads() -> None:
    case = child_safety_case()
    taken = START + timedelta(minutes=70)
    signals = lived(
        case, report_case(2, taken, rev.ReportCaseAssigned(assignee="agent-li"), "IN_REVIEW")
    )
    breach = START + timedelta(hours=1)
    assert [(s.kind, s.clock, s.at) for s in signals] == [
        ("WARNED", "first_response", START + timedelta(minutes=48)),
        ("BREACHED", "first_response", breach),
        ("ESCALATED", "first_response", breach),
    ]
    assert (case.sla_state, case.queue) == ("BREACHED", "child-safety-leads")
    first = case.clocks["first_response"]
    assert (first.met_at, first.breached_at) == (taken, breach)  # taken late: still breached


def filed_appeal() -> Case:
    """A takedown notice filed at START: taken within 24 hours, decided
    within 45 business hours."""
    obs = appeal(1, START, aev.AppealFiled(kind="TAKEDOWN_NOTICE"), "SUBMITTED")
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    return case


def test_an_appeal_taken_in_time_and_decided_after_a_day_is_never_breached() -> None:
    """Taken an hour in, decided 30 hours in with nothing asked of the
    filer: both targets met."""
    taken = START + timedelta(hours=1)
    decided = START + timedelta(hours=30)
    met_in_time(
        filed_appeal(),
        appeal(2, taken, aev.AppealAssigned(assignee="agent-li"), "UNDER_REVIEW"),
        appeal(3, decided, aev.AppealDecided(outcome="UPHOLD"), "UPHELD"),
        "copyright",
    )


def test_an_appeal_no_one_takes_within_a_day_breaches() -> None:
    case = filed_appeal()
    taken = START + timedelta(hours=25)
    signals = lived(case, appeal(2, taken, aev.AppealAssigned(assignee="agent-li"), "UNDER_REVIEW"))
    breach = START + timedelta(hours=24)
    assert [(s.kind, s.clock, s.at) for s in signals if s.kind != "WARNED"] == [
        ("BREACHED", "first_response", breach),
        ("ESCALATED", "first_response", breach),
    ]
    assert (case.sla_state, case.queue) == ("BREACHED", "copyright-senior")


def reopened_and_breached(case: Case) -> datetime:
    """`case` taken 10 minutes in, decided 2 hours in, sent back to review
    by a reporter's upheld appeal 3 hours in; the timer, looking 6 hours in,
    finds its resolution target (4 hours, 2 of them run before the
    decision) breached 5 hours in. Returns the breach."""
    taken = rev.ReportCaseAssigned(assignee="agent-li")
    decided = rev.ReportCaseDecided(outcome="ACTION_TAKEN")
    lived(
        case,
        report_case(2, START + timedelta(minutes=10), taken, "IN_REVIEW"),
        report_case(3, START + timedelta(hours=2), decided, "ACTION_TAKEN"),
        report_case(4, START + timedelta(hours=3), rev.ReportCaseDecisionReversed(), "OPEN"),
    )
    breach = START + timedelta(hours=5)
    signals = advance(case, START + timedelta(hours=6), LEVELS)
    assert ("BREACHED", "resolution", breach) in [(s.kind, s.clock, s.at) for s in signals]
    assert (case.sla_state, case.queue, case.escalations) == ("BREACHED", "child-safety-leads", 1)
    return breach


# The uploader's appeal, filed 2 h 30 min in, before the case was reopened:
# its event carries the filing time, though the reports service lodges it
# only once it hears of it (its consumer behind, or away).
APPEAL_FILED = START + timedelta(hours=2, minutes=30)


def uploaders_appeal(version: int, state: str) -> Observation:
    message = rev.ReportCaseAppealed(appeal="appeals/x", appellant="uploader")
    return report_case(version, APPEAL_FILED, message, state)


def test_an_appeal_lodged_late_leaves_the_reopened_case_breached_with_the_leads() -> None:
    """The appeal, lodged after the timer found the reopened case breached,
    changes nothing of its clocks: the case stays BREACHED with the
    child-safety leads, escalated once, the breach at its moment, nothing
    told again, and the case last updated no earlier than it was before."""
    case = child_safety_case()
    breach = reopened_and_breached(case)
    reopened = case.updated_at

    assert apply(case, uploaders_appeal(5, "OPEN"), LEVELS) == []
    assert (case.sla_state, case.queue, case.escalations) == ("BREACHED", "child-safety-leads", 1)
    assert case.clocks["resolution"].breached_at == breach
    assert case.updated_at == reopened
    assert advance(case, START + timedelta(hours=6), LEVELS) == []


def test_an_appeal_lodged_after_the_case_was_decided_again_keeps_its_breach() -> None:
    """Decided again 7 hours in, after its breach; the appeal, lodged after
    that, finds the case closed: its breach stays in the read model."""
    case = child_safety_case()
    breach = reopened_and_breached(case)
    redecided = START + timedelta(hours=7)
    decided = rev.ReportCaseDecided(outcome="NO_VIOLATION")
    apply(case, report_case(5, redecided, decided, "NO_VIOLATION"), LEVELS)

    assert apply(case, uploaders_appeal(6, "NO_VIOLATION"), LEVELS) == []
    resolution = case.clocks["resolution"]
    assert (resolution.breached_at, resolution.met_at) == (breach, redecided)
    assert (case.sla_state, case.escalations) == ("BREACHED", 1)

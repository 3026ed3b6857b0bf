"""The queue's SLA clocks as agents see them in the queue's order and state:
a breached case stays overdue through a pause, and a new priority takes
back a warning its target no longer gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from casemesh_casequeue import sla
from casemesh_casequeue.model import Case, Observation, advance, apply, new_case

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

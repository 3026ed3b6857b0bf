"""When notifications may go out, and what the requester is told."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from casemesh.events.v1 import tickets_pb2 as ev
from casemesh_notifier.policy import backoff, quiet_until
from casemesh_notifier.steps import ticket_step
from casemesh_notifier.store import job_id


def test_quiet_hours_hold_sms_until_morning_in_the_recipients_zone() -> None:
    # 23:30 in Shanghai is 15:30 UTC.
    late = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    assert quiet_until(late, "22:00-08:00", "Asia/Shanghai") == datetime(
        2026, 3, 2, 0, 0, tzinfo=UTC
    )
    early = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 07:00 in Shanghai
    assert quiet_until(early, "22:00-08:00", "Asia/Shanghai") == datetime(
        2026, 3, 2, 0, 0, tzinfo=UTC
    )
    noon = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    assert quiet_until(noon, "22:00-08:00", "Asia/Shanghai") is None
    assert quiet_until(late, "", "Asia/Shanghai") is None
    assert quiet_until(datetime(2026, 3, 1, 13, 0, tzinfo=UTC), "12:00-14:00", "UTC") == datetime(
        2026, 3, 1, 14, 0, tzinfo=UTC
    )


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    first = [backoff(1, base=2, cap=60, rng=rng) for _ in range(50)]
    fifth = [backoff(5, base=2, cap=60, rng=rng) for _ in range(50)]
    late = [backoff(20, base=2, cap=60, rng=rng) for _ in range(50)]
    assert all(1 <= d <= 2 for d in first)
    assert all(16 <= d <= 32 for d in fifth)
    assert all(30 <= d <= 60 for d in late)
    assert len(set(fifth)) > 40  # jitter: replicas do not retry in lockstep


def header(status: int) -> ev.TicketEventHeader:
    return ev.TicketEventHeader(ticket_id="t1", version=2, status=status)  # type: ignore[arg-type]


def test_the_requester_hears_about_their_steps_but_not_internal_notes_or_own_replies() -> None:
    open_ = header(ev.TICKET_STATUS_OPEN)
    cases = [
        (ev.TicketCreated(header=header(ev.TICKET_STATUS_NEW)), "NEW", "ticket.received"),
        (
            ev.InfoRequested(header=header(ev.TICKET_STATUS_PENDING), message="?"),
            "OPEN",
            "ticket.info_requested",
        ),
        (ev.CommentAdded(header=open_, body="hi"), "OPEN", "ticket.agent_reply"),
        (ev.CommentAdded(header=open_, body="note", internal=True), "OPEN", None),
        (ev.CommentAdded(header=open_, body="me", by_requester=True), "PENDING", None),
        (
            ev.CommentAdded(header=open_, body="still broken", by_requester=True),
            "SOLVED",
            "ticket.reopened",
        ),
        (ev.TicketSolved(header=header(ev.TICKET_STATUS_SOLVED)), "OPEN", "ticket.solved"),
        (ev.TicketReopened(header=open_), "SOLVED", "ticket.reopened"),
        (ev.TicketClosed(header=header(ev.TICKET_STATUS_CLOSED)), "SOLVED", "ticket.closed"),
        (ev.TicketAssigned(header=open_), "NEW", None),
        (ev.TicketRated(header=header(ev.TICKET_STATUS_CLOSED), score=5), "CLOSED", None),
    ]
    for message, previous, template in cases:
        step = ticket_step(message, previous)
        assert (step.template if step else None) == template, message


def test_job_ids_are_one_per_event_channel_and_recipient() -> None:
    a = job_id("t1:1", "requester", "EMAIL", "a@example.com")
    assert a == job_id("t1:1", "requester", "EMAIL", "a@example.com")
    others = {
        job_id("t1:2", "requester", "EMAIL", "a@example.com"),
        job_id("t1:1", "requester", "SMS", "a@example.com"),
        job_id("t1:1", "requester", "EMAIL", "b@example.com"),
        job_id("t1:1", "uploader", "EMAIL", "a@example.com"),
    }
    assert a not in others and len(others) == 4

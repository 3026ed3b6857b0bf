"""The deadline timer on a real event store: it reads only the events that
set deadlines, and still schedules every one of them while many commands
are being stored together (group commit), once, across a restart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from casemesh.platform import following
from casemesh.platform.identity import Identity
from casemesh.platform.timers import Timer, case_timer
from casemesh_tickets.application import DeadlineKind, NewTicket, Tickets
from tests.support import wait_until

USER = Identity("timer-user", frozenset({"user"}))
AGENT = Identity("timer-agent", frozenset({"agent"}))
TICKETS = 60


def started(app: Tickets, dsn: str) -> Timer:
    timer = case_timer(app, dsn, "ticket_timers")
    timer.start()
    return timer


def life(app: Tickets, i: int) -> set[tuple[str, str]]:
    """A ticket commented on several times; every third solved, every third
    cancelled. The deadlines its life set."""
    t = app.create_ticket(
        USER,
        NewTicket(
            request_id=f"life-{i}",
            category="account.login",
            subject=f"无法登录 {i}",
            description="收不到验证码",
            locale="zh-CN",
            contact={"email": "timer@example.com", "phone": "", "channels": ["EMAIL"]},
        ),
    )
    for n in range(3):
        app.add_comment(AGENT, t.id, f"处理中 {n}", internal=n % 2 == 0, etag="")
    if i % 3 == 0:
        app.solve(AGENT, t.id, "已处理", etag="")
        return {(t.id, DeadlineKind.AUTO_CLOSE)}
    if i % 3 == 1:
        app.cancel(USER, t.id, "", etag="")
        return {(t.id, DeadlineKind.RETENTION)}
    return set()


def scheduled(timer: Timer) -> list[tuple[str, str]]:
    return [(d.aggregate_id, d.kind) for d in timer.table.pending()]


def test_every_deadline_is_scheduled_once_while_commands_are_stored_together(
    app: Tickets, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: reads that stop at their limit, not at the newest event.
    monkeypatch.setattr(following, "BATCH", 5)
    timer = started(app, dsn)
    try:
        with ThreadPoolExecutor(8) as pool:
            expected = set().union(*pool.map(lambda i: life(app, i), range(TICKETS)))
        assert len(expected) == 2 * TICKETS // 3
        wait_until(lambda: len(scheduled(timer)) >= len(expected))
    finally:
        timer.stop()
    assert sorted(scheduled(timer)) == sorted(expected)

    # Restarted, it reads on from where it was, not from the start: with
    # the rows it wrote taken away, only what was stored while it was away
    # is scheduled.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ticket_timers")
    more = life(app, 3 * TICKETS)
    again = started(app, dsn)
    try:
        # In order: had it read from the start, older deadlines came first.
        wait_until(lambda: scheduled(again))
    finally:
        again.stop()
    assert scheduled(again) == list(more)

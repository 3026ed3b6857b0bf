"""The deadline timer on a real event store: it reads only the events that
set deadlines, and still schedules every one of them while many commands
are being stored together (group commit), once, across a restart."""

from __future__ import annotations

import contextlib
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing import persistence
from eventsourcing.persistence import Tracking
from prometheus_client import REGISTRY

from casemesh.platform import following
from casemesh.platform.identity import Identity
from casemesh.platform.pools import DatabaseUnavailable
from casemesh.platform.timers import Deadline, Timer, case_timer
from casemesh_tickets.application import DeadlineKind, NewTicket, Tickets
from casemesh_tickets.domain import Ticket
from tests.application.story import FakeClock
from tests.integration.test_pools import new_ticket
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


def rolling_update(app: Tickets, dsn: str, *, newer_fails_once: bool) -> None:
    """Replicas of two releases side by side on one table and one tracking
    row: the older release's timer reads solves and closes only (cancels
    are a class it does not know), the newer one's cancels too. While the
    newer one handles a cancel, the older one records the shared position
    past it; with `newer_fails_once`, the newer one then fails (the
    database away) and resumes. Every deadline is scheduled."""
    older = dataclasses.replace(
        case_timer(app, dsn, "rollout_timers"), events=(Ticket.Solved, Ticket.Closed)
    )
    overtaken: list[Any] = []

    def reading(event: Any) -> list[Deadline]:
        if isinstance(event, Ticket.Cancelled) and not overtaken:
            overtaken.append(event)
            older._scheduler.catch_up()
            if newer_fails_once:
                raise DatabaseUnavailable("the database is away")
        return app.deadlines_of(event)

    newer = dataclasses.replace(case_timer(app, dsn, "rollout_timers"), deadlines_of=reading)
    newer.start()
    try:
        solved = app.create_ticket(USER, new_ticket("rollout-solved"))
        cancelled = app.create_ticket(USER, new_ticket("rollout-cancelled"))
        app.cancel(USER, cancelled.id, "", etag="")
        app.solve(AGENT, solved.id, "已处理", etag="")
        last = app.recorder.max_notification_id()
        wait_until(lambda: overtaken and newer._scheduler._at == last)
    finally:
        newer.stop()
    assert sorted(scheduled(newer)) == sorted(
        [(solved.id, DeadlineKind.AUTO_CLOSE), (cancelled.id, DeadlineKind.RETENTION)]
    )


def test_a_replica_of_the_older_release_recording_first_leaves_no_deadline_unscheduled(
    app: Tickets, dsn: str
) -> None:
    """During a rolling update the older release's timer records the shared
    position past an event that sets a deadline only in the newer release.
    The newer one's batch holding it was then refused whole, and the
    position taken as the other replica's: the cancelled ticket's personal
    data was kept for good. Its deadline is scheduled."""
    rolling_update(app, dsn, newer_fails_once=False)


def test_a_replica_resuming_after_a_failure_reads_on_from_where_it_got_itself(
    app: Tickets, dsn: str
) -> None:
    """A failure (the database away) while the older release's timer
    records the shared position past what the newer one has yet to handle:
    resumed from the shared position, the newer one skipped it."""
    rolling_update(app, dsn, newer_fails_once=True)


def test_a_deadline_whose_time_moved_is_kept_and_fired_at_its_new_time(
    app: Tickets, dsn: str
) -> None:
    """The service was restarted with a longer auto-close: the deadline set
    at the solve fires, finds the ticket not due yet, and its new time is
    kept in its place, to close the ticket then."""
    timer = case_timer(app, dsn, "moved_timers")  # not started: fired by hand
    ((ticket, _),) = life(app, 6 * TICKETS)  # solved
    events = app.repository.event_store.get(UUID(ticket))
    (deadline,) = app.deadlines_of([e for e in events if isinstance(e, Ticket.Solved)][-1])
    timer.table.schedule([deadline], Tracking(app.name, 1))
    app.auto_close_after += timedelta(days=1)
    assert timer.table.fire_due(deadline.due, app.fire) == 1
    (moved,) = timer.table.pending()
    assert moved == Deadline(ticket, DeadlineKind.AUTO_CLOSE, deadline.due + timedelta(days=1))
    assert app.get_ticket(USER, ticket).status == "SOLVED"


def test_a_shorter_auto_close_put_back_still_closes_the_ticket_at_its_time(
    app: Tickets, dsn: str
) -> None:
    """Restarted with 48 hours, the timer moved a ticket's 96-hour
    auto-close to 48 hours at start; the setting was then put back to 96.
    At 48 hours the deadline moves back to 96, to the row the recheck had
    left fired: the ticket still closes then, rather than stay solved for
    good, its replies refused (TICKET_FINAL) and its data never erased."""
    timer = case_timer(app, dsn, "put_back_timers")  # not started: fired by hand
    ((ticket, _),) = life(app, 10 * TICKETS)  # solved
    events = app.repository.event_store.get(UUID(ticket))
    event = [e for e in events if isinstance(e, Ticket.Solved)][-1]
    solved = event.timestamp
    app.clock = clock = FakeClock(solved + timedelta(hours=1))
    app.auto_close_after = timedelta(hours=96)
    (deadline,) = app.deadlines_of(event)
    timer.table.schedule([deadline], Tracking(app.name, 1))

    app.auto_close_after = timedelta(hours=48)
    assert timer.table.recheck(app.deadlines_rechecked, clock.now(), app.fire) == 1
    assert [d.due for d in timer.table.pending()] == [solved + timedelta(hours=48)]

    app.auto_close_after = timedelta(hours=96)
    clock.now_is(solved + timedelta(hours=48))
    assert timer.table.fire_due(clock.now(), app.fire) == 1
    assert timer.table.pending() == [deadline]
    assert app.get_ticket(USER, ticket).status == "SOLVED"

    clock.now_is(solved + timedelta(hours=96))
    assert timer.table.fire_due(clock.now(), app.fire) == 1
    assert app.get_ticket(USER, ticket).status == "CLOSED"


@pytest.mark.parametrize(("shorter", "after"), [(1, 2.0), (3, 3.5)])
def test_a_shorter_auto_close_closes_at_start_what_is_past_it_now(
    app: Tickets, dsn: str, shorter: int, after: float
) -> None:
    """The service is restarted with a shorter auto-close (4 days, then
    `shorter`) `after` days after a ticket was solved, past the new time:
    its row, due 4 days after the solve, is fired when the timer starts, and
    the ticket closes then, as a reply to it is already refused then
    (TICKET_FINAL), not when the old time comes."""
    ((ticket, _),) = life(app, 7 * TICKETS)  # solved
    events = app.repository.event_store.get(UUID(ticket))
    solved = [e for e in events if isinstance(e, Ticket.Solved)][-1].timestamp
    timer = started(app, dsn)
    try:
        wait_until(lambda: scheduled(timer))
    finally:
        timer.stop()
    (row,) = timer.table.pending()
    assert row.due == solved + timedelta(days=4)
    # Rechecked under the setting it was given with, it stands as it is.
    assert timer.table.recheck(app.deadlines_rechecked, app.clock.now(), app.fire) == 0
    assert timer.table.pending() == [row]

    app.auto_close_after = timedelta(days=shorter)
    app.clock = FakeClock(solved + timedelta(days=after))
    again = started(app, dsn)
    try:
        wait_until(lambda: app.get_ticket(USER, ticket).status == "CLOSED")
    finally:
        again.stop()
    assert scheduled(again) == [(ticket, DeadlineKind.RETENTION)]  # the closed ticket's


def test_a_deadline_of_a_kind_this_release_does_not_know_waits_for_one_that_does(
    app: Tickets, dsn: str
) -> None:
    """A newer release scheduled a kind this one does not know, and was
    rolled back: its row is left unfired, and passed over after the first
    try, not tried again at every tick; the others fire as ever."""
    timer = case_timer(app, dsn, "unknown_timers")  # not started: fired by hand
    ((ticket, _),) = life(app, 8 * TICKETS)  # solved
    now = app.clock.now()
    newer = Deadline(ticket, "escalate", now - timedelta(hours=1))
    known = Deadline(ticket, DeadlineKind.AUTO_CLOSE, now - timedelta(hours=1))
    timer.table.schedule([newer, known], Tracking(app.name, 1))
    tried: list[Deadline] = []

    def fire(deadline: Deadline) -> Deadline | None:
        tried.append(deadline)
        return app.fire(deadline)

    assert timer.table.fire_due(now, fire) == 1  # the auto-close: moved to its time
    assert timer.table.fire_due(now, fire) == 0
    assert timer.table.fire_due(now + timedelta(seconds=1), fire) == 0
    assert tried.count(newer) == 1
    assert newer in timer.table.pending()


def test_a_deadline_whose_command_loses_a_race_stays_due_and_counts_no_failure(
    app: Tickets, dsn: str
) -> None:
    """A command that lost the event store's version check to a change
    stored at the same moment is no failure (an alert reads the failures):
    the deadline stays due and fires at the next tick."""
    timer = case_timer(app, dsn, "raced_timers")  # not started: fired by hand
    ((ticket, _),) = life(app, 8 * TICKETS)  # solved
    now = app.clock.now()
    known = Deadline(ticket, DeadlineKind.AUTO_CLOSE, now - timedelta(hours=1))
    timer.table.schedule([known], Tracking(app.name, 1))
    failures = ("casemesh_background_failures_total", {"task": "raced_timers-command"})
    before = REGISTRY.get_sample_value(*failures)
    assert before is not None

    def raced(deadline: Deadline) -> Deadline | None:
        raise persistence.IntegrityError("the case changed meanwhile")

    assert timer.table.fire_due(now, raced) == 0
    assert REGISTRY.get_sample_value(*failures) == before
    assert known in timer.table.pending()
    assert timer.table.fire_due(now, app.fire) == 1


def test_a_deadline_whose_command_outlasts_the_idle_limit_fires_once(
    app: Tickets, dsn: str
) -> None:
    """The firing's transaction waits, idle, while the command runs: past
    the connection's idle-in-transaction limit (1 s here) it must still mark
    its deadline fired, never lose its lock to a second firing."""
    timer = case_timer(app, dsn, "slow_timers")  # not started: fired by hand
    ((ticket, _),) = life(app, 9 * TICKETS)  # solved
    now = app.clock.now()
    due = Deadline(ticket, DeadlineKind.AUTO_CLOSE, now - timedelta(hours=1))
    timer.table.schedule([due], Tracking(app.name, 1))
    pool = app.recorder.datastore.pool  # type: ignore[attr-defined]

    def idle_limit(limit: str) -> None:
        with contextlib.ExitStack() as held:
            for conn in [held.enter_context(pool.connection()) for _ in range(pool.max_size)]:
                conn.execute(f"SET SESSION idle_in_transaction_session_timeout = '{limit}'")
                conn.commit()

    def firing(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
        """Whether a firing's session waits idle in its transaction: at all,
        and for over 2 s."""
        row = conn.execute(
            "SELECT count(*) > 0, coalesce(bool_or(now() - state_change > interval '2 s'), false)"
            " FROM pg_stat_activity WHERE state = 'idle in transaction'"
            " AND query LIKE '%%FOR UPDATE SKIP LOCKED%%'"
        ).fetchone()
        assert row is not None
        return row[0], row[1]

    fired: list[Deadline] = []

    def slow(deadline: Deadline) -> Deadline | None:
        fired.append(deadline)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Past the limit, or until the firing's session was ended.
            wait_until(lambda: firing(conn) != (True, False), timeout=30, interval=0.05)
        return app.fire(deadline)

    idle_limit("1s")
    try:
        assert timer.table.fire_due(now, slow) == 1
    finally:
        idle_limit("0")
    assert timer.table.fire_due(now, slow) == 0
    assert fired == [due]


def test_a_follower_failing_on_the_same_events_is_counted_and_shows_how_far_behind(
    app: Tickets,
) -> None:
    """A follower that cannot handle what it reads (a key gone, say) reads
    it again every second for ever: the operator sees its failures counted
    and its lag, as a consumer's (the alerts read both)."""
    for i in range(3):
        app.create_ticket(USER, new_ticket(f"stuck-{i}"))

    def refuse(batch: Any, reached: int) -> None:
        raise RuntimeError("cannot read this")

    follower = following.Follower(app, "stuck", lambda: None, refuse)
    task = {"task": f"{app.name}-stuck"}

    def failures() -> float:
        return REGISTRY.get_sample_value("casemesh_background_failures_total", task) or 0.0

    assert failures() == 0.0  # there to alert on before any failure
    follower.start()
    try:
        wait_until(lambda: failures() >= 2, timeout=30, interval=0.05)
    finally:
        follower.stop()
    lag = REGISTRY.get_sample_value("casemesh_follower_lag_events", {"follower": task["task"]})
    assert lag == app.recorder.max_notification_id()

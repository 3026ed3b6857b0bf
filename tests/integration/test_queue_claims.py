"""The case queue's claims and clocks on a real PostgreSQL database: 32 agents
claiming from 10,000 open cases at once, expired leases, claims kept through
a rebuild, and the SLA clock arithmetic the whole queue rests on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.platform.callers import _VOUCHED
from casemesh.platform.clock import SystemClock
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.errors import AlreadyExists, InvalidArgument, NotFound
from casemesh.platform.identity import Identity, Vouched
from casemesh.platform.pools import async_pool
from casemesh.rules import leases
from casemesh.v1 import casequeue_pb2 as pb
from casemesh_casequeue import sla, store, timer
from casemesh_casequeue.__main__ import become_ready
from casemesh_casequeue.api import QueueServicer, _queues, as_told, shown
from casemesh_casequeue.consumer import Progress
from casemesh_casequeue.metrics import QueueCollector
from casemesh_casequeue.model import Case, Observation, advance, apply, new_case
from casemesh_casequeue.observe import observe
from casemesh_casequeue.store import Consumed
from casemesh_casequeue.watch import Broadcaster
from casemesh_devstack.ports import free_port
from tests.support import case_event, eventually

LEVELS = sla.load()
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


def opened(i: int, at: datetime, priority: int = 2) -> Observation:
    return Observation(
        name=f"tickets/{uuid.UUID(int=i)}",
        type="ticket",
        version=1,
        at=at,
        status="NEW",
        open=True,
        waiting=False,
        created=True,
        category="content.upload_failed",
        priority=priority,
    )


async def seed(dsn: str, n: int, now: datetime) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            for i in range(n):
                obs = opened(i, now - timedelta(seconds=n - i), priority=1 + i % 4)
                case = new_case(obs, LEVELS)
                apply(case, obs, LEVELS)
                await store._save(cur, case)
        await conn.commit()


async def test_32_agents_claim_10000_cases_each_exactly_once(queue_db: str) -> None:
    now = datetime.now(UTC)
    await seed(queue_db, 10_000, now)
    claimed: dict[str, list[str]] = {}

    async def agent(n: int) -> None:
        me = f"agent-{n}"
        async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
            while True:
                case = await store.claim_next(conn, me, [], timedelta(minutes=10), now)
                if case is None:
                    return
                claimed.setdefault(case.name, []).append(me)

    await asyncio.gather(*(agent(n) for n in range(32)))
    assert len(claimed) == 10_000  # none skipped
    assert all(len(holders) == 1 for holders in claimed.values())  # none handed twice
    async with await psycopg.AsyncConnection.connect(queue_db) as conn:
        cur = await conn.execute("SELECT count(DISTINCT holder) FROM queue_cases")
        row = await cur.fetchone()
        assert row is not None and row[0] > 1  # the work was shared


async def test_a_claim_picked_to_end_a_deadlock_is_made_again(
    queue_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims waiting on each other's locks (every free case locked) can
    deadlock; PostgreSQL rolls one back, which changed nothing, and the
    agent is given a case rather than an error."""
    now = datetime.now(UTC)
    await seed(queue_db, 1, now)
    execute = psycopg.AsyncCursor.execute
    deadlocks = [psycopg.errors.DeadlockDetected("deadlock detected")] * 2

    async def deadlocked_twice(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        if deadlocks and "queue_claim" in str(query):
            raise deadlocks.pop()
        return await execute(self, query, params, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", deadlocked_twice)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        case = await store.claim_next(conn, "agent-1", [], timedelta(minutes=10), now)
    assert case is not None and case.holder == "agent-1"
    assert deadlocks == []


async def test_the_most_urgent_goes_first_and_an_expired_lease_returns_the_case(
    queue_db: str,
) -> None:
    now = datetime.now(UTC)
    await seed(queue_db, 6, now)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        first = await store.claim_next(conn, "a", [], timedelta(seconds=30), now)
        assert first is not None and first.priority == 4
        # Within the lease nobody else gets it; once it expires the next claim does.
        again = await store.claim_next(conn, "b", [], timedelta(seconds=30), now)
        assert again is not None and again.name != first.name
        later = now + timedelta(seconds=31)
        assert await store.renew(conn, "a", first.name, timedelta(seconds=30), later) == (
            store.NotHeld.NOT_HOLDER
        )
        back = await store.claim_next(conn, "c", [], timedelta(seconds=30), later)
        assert back is not None and back.name == first.name and back.holder == "c"
        released = await store.release(conn, "c", first.name, later)
        assert not isinstance(released, store.NotHeld) and released.holder == ""
        assert await store.release(conn, "c", first.name, later) == store.NotHeld.NOT_HOLDER


async def test_a_renewal_extends_a_claim_and_never_shortens_it(queue_db: str) -> None:
    """An agent who claimed a case for an hour and renews it with the
    default lease (0: 600 s) ten minutes in keeps the hour: a renewal
    extends the lease, and the case does not go back to the queue early."""
    now = datetime.now(UTC)
    await seed(queue_db, 1, now)
    default = timedelta(seconds=leases.granted(0))
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        held = await store.claim_next(conn, "a", [], timedelta(seconds=3600), now)
        assert held is not None and held.lease_until == now + timedelta(seconds=3600)
        renewed = await store.renew(conn, "a", held.name, default, now + timedelta(minutes=10))
        assert isinstance(renewed, Case) and renewed.lease_until == held.lease_until
        # Past what is left of the hour, it extends it.
        late = now + timedelta(minutes=55)
        renewed = await store.renew(conn, "a", held.name, default, late)
        assert isinstance(renewed, Case) and renewed.lease_until == late + default
        case = await store.get(conn, held.name)
        assert case is not None and case.lease_until == late + default


async def test_claims_held_through_a_queue_outage_longer_than_their_lease_stay_held(
    queue_db: str,
) -> None:
    """The queue's database (or every replica) is away for 20 minutes while
    agents hold cases under 300 s leases: nobody could renew, so nobody loses
    a claim, whichever comes first once it is back (a renewal, another
    agent's claim, the timer's look), and replicas coming back at once push
    a lease on by the gap once."""
    t0 = datetime.now(UTC)
    lease, outage = timedelta(seconds=300), timedelta(minutes=20)
    await seed(queue_db, 3, t0)
    async with (
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as other,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as third,
    ):
        a = await store.claim_next(conn, "a", [], lease, t0)
        b = await store.claim_next(conn, "b", [], lease, t0)
        assert a is not None and b is not None
        await store.expire_leases(conn, t0)
        # Back: a renewal first.
        back = t0 + outage
        renewed = await store.renew(conn, "a", a.name, lease, back)
        assert isinstance(renewed, Case) and renewed.lease_until == back + lease
        await store.expire_leases(conn, back)
        # Away again; back: another agent's claim first. It gets the case
        # nobody holds, and then none.
        back += outage
        c = await store.claim_next(conn, "c", [], lease, back)
        assert c is not None and c.name not in (a.name, b.name)
        assert await store.claim_next(conn, "c", [], lease, back) is None
        await store.expire_leases(conn, back)
        # Away again; back: two agents' renewals and a replica's timer's
        # look at once. The third agent's lease is pushed on by the gap once.
        back += outage
        a_renewed, b_renewed, _ = await asyncio.gather(
            store.renew(conn, "a", a.name, lease, back),
            store.renew(other, "b", b.name, lease, back),
            store.expire_leases(third, back),
        )
        assert isinstance(a_renewed, Case) and isinstance(b_renewed, Case)
        held = await store.get(conn, c.name)
        assert held is not None and held.holder == "c"
        assert held.lease_until == back + lease  # claimed an outage ago, pushed on by it


async def test_a_lease_left_to_run_out_while_the_timer_looks_runs_out(queue_db: str) -> None:
    """With the timer looking as it does, a lease nobody renews runs out on
    time: its case goes back to the queue and its agent's renewal is refused."""
    t0 = datetime.now(UTC)
    await seed(queue_db, 1, t0)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        held = await store.claim_next(conn, "a", [], timedelta(seconds=30), t0)
        assert held is not None
        for second in range(31):  # every second, as the timer looks
            await store.expire_leases(conn, t0 + timedelta(seconds=second))
        late = t0 + timedelta(seconds=33)
        case = await store.get(conn, held.name)
        assert case is not None and case.holder == ""
        renewal = await store.renew(conn, "a", held.name, timedelta(seconds=30), late)
        assert renewal == store.NotHeld.NOT_HOLDER
        again = await store.claim_next(conn, "b", [], timedelta(seconds=30), late)
        assert again is not None and again.name == held.name


def moved(obs: Observation, version: int, at: datetime, *, waiting: bool) -> Observation:
    """The case of `obs` set waiting on its customer, or answered again."""
    return dataclasses.replace(
        obs, version=version, at=at, status="PENDING" if waiting else "OPEN", waiting=waiting,
        created=False, category=None, priority=None,
    )  # fmt: skip


async def test_claims_held_when_the_queue_is_rebuilt_are_still_held_after_the_replay(
    queue_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator rebuilds the queue while agents work on cases, and it is
    away 20 minutes, longer than their 300 s leases. Once the replay has
    caught up, each still holds their case: another agent's claim does not
    get it, and the holder's renewal works, as does a retry of the claim
    that gave it. A case an event after its claim took out of the queue
    (its customer asked to wait, then answered while the queue was away)
    comes back free, as it would have had there been no rebuild. Two
    instances caught up at once put each claim back once; from then on
    neither looks for a kept claim at each event that takes a case out of
    the queue (most events of a replay)."""
    lease, away = timedelta(seconds=300), timedelta(minutes=20)
    urgent = opened(21, START, priority=4)
    other = opened(22, START, priority=1)
    history = [
        urgent,
        moved(urgent, 2, START + timedelta(minutes=1), waiting=True),
        moved(urgent, 3, START + timedelta(minutes=2), waiting=False),
        other,
    ]
    meanwhile = [
        moved(other, 2, START + timedelta(minutes=4), waiting=True),
        moved(other, 3, START + timedelta(minutes=5), waiting=False),
    ]
    now = START + timedelta(minutes=3)
    async with (
        await psycopg.AsyncConnection.connect(queue_db) as consumer,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn,
    ):
        assert not (await store.kept_claims(conn)).waiting  # no rebuild yet
        for offset, obs in enumerate(history):
            await consumed(consumer, obs, offset)
        a = await store.claim_next(conn, "a", [], lease, now, request_id="r-1")
        c = await store.claim_next(conn, "c", [], lease, now)
        assert a is not None and a.name == urgent.name
        assert c is not None and c.name == other.name
        await store.expire_leases(conn, now)  # the timer's last look before the stop
        async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as job:
            generation = await store.rebuild(job)
        # Two instances start; the replay, with what the topics got while
        # the queue was away.
        kept = [await store.kept_claims(conn), await store.kept_claims(conn)]
        assert all(k.waiting for k in kept)
        for offset, obs in enumerate([*history, *meanwhile]):
            await consumed(consumer, obs, offset, kept[offset % 2])
        back = now + away
        async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as second:
            restored = await asyncio.gather(
                store.restore_claims(conn, generation, back, kept[0]),
                store.restore_claims(second, generation, back, kept[1]),
            )
        assert sorted(restored) == [0, 1]  # once
        assert not any(k.waiting for k in kept)

        b = await store.claim_next(conn, "b", [], lease, back)
        assert b is not None and b.name == other.name  # free again
        assert await store.claim_next(conn, "b", [], lease, back) is None
        held = await store.get(conn, urgent.name)
        assert held is not None and held.holder == "a" and held.hold_since == a.hold_since
        # The lease it had left when the queue went away, counted from its return.
        assert held.lease_until == back + lease
        again = await store.claim_next(conn, "a", [], lease, back, request_id="r-1")
        assert again is not None and again.name == urgent.name
        later = back + timedelta(seconds=20)
        renewed = await store.renew(conn, "a", urgent.name, lease, later)
        assert isinstance(renewed, Case) and renewed.lease_until == later + lease
        assert await store.renew(conn, "c", other.name, lease, later) == store.NotHeld.NOT_HOLDER
        # The customer is asked to wait: the claim goes as ever, and no kept
        # claim is looked for (none can be left).
        sent = statements_sent(monkeypatch)
        await consumed(consumer, moved(urgent, 4, later, waiting=True), 6, kept[0])
        held = await store.get(conn, urgent.name)
        assert held is not None and held.holder == ""
        assert sent and not [q for q in sent if "queue_kept_claims" in q]


def statements_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements sent to PostgreSQL from now on, on any connection."""
    sent: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def sending(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        sent.append(str(query))
        return await execute(self, query, params, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", sending)
    return sent


async def test_an_instance_serves_agents_once_the_claims_a_rebuild_kept_are_back(
    queue_db: str,
) -> None:
    """A starting instance becomes ready (the gateway sends it agents) only
    after its replay has caught up and the kept claims are back on their
    cases, never while an agent's claim could still get a held case."""
    t0 = datetime.now(UTC)
    await seed(queue_db, 1, t0)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        held = await store.claim_next(conn, "a", [], timedelta(seconds=300), t0)
        assert held is not None
        generation = await store.rebuild(conn)
    replaying, replayed = asyncio.Event(), asyncio.Event()

    async def catching_up() -> None:
        replaying.set()
        await replayed.wait()

    ready, stop = asyncio.Event(), asyncio.Event()
    told: list[store.Rebuilt] = []
    pool = async_pool(queue_db, max_size=2)
    await pool.open()
    becoming = asyncio.create_task(
        become_ready(catching_up(), pool, SystemClock(), generation, ready, stop, told.append)
    )
    try:
        await asyncio.wait_for(replaying.wait(), 30)
        await seed(queue_db, 1, t0)  # the replay
        assert not ready.is_set() and holder_of(queue_db) == ""
        replayed.set()
        await asyncio.wait_for(ready.wait(), 30)
        assert holder_of(queue_db) == "a" and not told
    finally:
        stop.set()
        await asyncio.wait_for(becoming, 30)
        await pool.close()


def test_business_hours_skip_nights_and_weekends() -> None:
    cal = LEVELS.calendar
    friday_5pm = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai
    due = cal.add(friday_5pm, 2 * 3600)  # one hour on Friday, one on Monday
    assert due == datetime(2026, 3, 9, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
    assert cal.between(friday_5pm, due) == 2 * 3600


def test_a_pause_moves_the_due_time_and_a_missed_target_breaches_once() -> None:
    obs = opened(1, START, priority=3)  # high: first response 4 h, resolution 24 h
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    due = case.clocks["resolution"].due
    assert due == START + timedelta(hours=24)

    def event(version: int, at: datetime, status: str, **kw: Any) -> Observation:
        return Observation(
            name=obs.name,
            type="ticket",
            version=version,
            at=at,
            status=status,
            open=True,
            waiting=status == "PENDING",
            **kw,
        )

    # Waiting on the requester for a day does not count.
    apply(case, event(2, START + timedelta(hours=1), "PENDING", responded=True), LEVELS)
    assert case.sla_state == "PAUSED" and case.clocks["resolution"].due is None
    apply(case, event(3, START + timedelta(hours=25), "OPEN"), LEVELS)
    assert case.clocks["resolution"].due == due + timedelta(days=1)
    # Left open past the target: one breach, one escalation, the status untouched.
    late = due + timedelta(days=1, minutes=1)
    signals = advance(case, late, LEVELS)
    assert [s.kind for s in signals] == ["WARNED", "BREACHED", "ESCALATED"]
    assert signals[1].at == due + timedelta(days=1)  # breached at the due time, not later
    assert advance(case, late + timedelta(hours=5), LEVELS) == []
    assert case.priority == 4 and case.queue == "tier2" and case.status == "OPEN"


def test_a_watch_hears_a_case_escalated_out_of_its_queues_and_no_others() -> None:
    obs = opened(1, START, priority=3)
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    home = case.queue
    advance(case, START + timedelta(days=2), LEVELS)
    assert case.queue == "tier2" != home
    # Shown leaving the watched queue, by the escalation's note naming it
    # (`store.note`); its own note is for the watches of tier2 and of all,
    # as is that of a second breach, which finds the case gone from home.
    assert shown({home}, "ESCALATED", case, [home]) and not shown({home}, "ESCALATED", case)
    assert shown({"tier2"}, "ESCALATED", case) and shown(set(), "UPDATED", case)
    assert not shown({"ads"}, "ESCALATED", case) and not shown({"ads"}, "ESCALATED", case, [home])
    assert not shown({home}, "UPDATED", case)


def test_a_note_of_a_case_leaving_a_queue_is_for_that_queues_watches_alone() -> None:
    """A change that took a case out of a queue is noted twice: as ever, for
    the watches of the queue the case is in now (and of all), and naming the
    queue it left, for the watches of that one which the first misses."""
    assert store.read_note(store.note("UPDATED", "tickets/a", "tier2")) == (
        "UPDATED",
        "tickets/a",
        "tier2",
    )
    assert store.read_note("UPDATED|tickets/a") == ("UPDATED", "tickets/a", "")
    obs = dataclasses.replace(opened(1, START), category="account.login_failed")
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    assert case.queue == "account"
    assert shown({"tier2"}, "UPDATED", case, ["tier2"]) and not shown({"tier2"}, "UPDATED", case)
    assert not shown(set(), "UPDATED", case, ["tier2"])  # it hears the change's own note
    assert not shown({"tier2", "account"}, "UPDATED", case, ["tier2"])  # the same
    assert not shown({"ads"}, "UPDATED", case, ["tier2"])


def test_a_queue_name_that_is_no_queue_is_refused_by_its_place() -> None:
    """A mistyped queue would otherwise list, claim and watch nothing, with
    no word why."""
    with pytest.raises(InvalidArgument) as info:
        _queues(["account", "acount"], LEVELS.queue_names)
    assert [v.field for v in info.value.violations] == ["queues[1]"]
    # The skill queues, the one for the rest, and those cases escalate to.
    assert _queues([" account ", "general", "tier2"], LEVELS.queue_names) == [
        "account",
        "general",
        "tier2",
    ]


def test_a_new_priority_counts_from_its_own_moment_not_back_to_the_start() -> None:
    friday_5pm = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)  # 17:00 in Shanghai
    obs = Observation(
        name="tickets/p",
        type="ticket",
        version=1,
        at=friday_5pm,
        status="NEW",
        open=True,
        waiting=False,
        created=True,
        category="content.upload_failed",
        priority=2,  # business hours
    )
    case = new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    monday = datetime(2026, 3, 9, 0, 59, tzinfo=UTC)  # 08:59 in Shanghai
    raised = Observation(
        name="tickets/p", type="ticket", version=2, at=monday, status="OPEN", open=True,
        waiting=False, priority=4,
    )  # fmt: skip
    assert apply(case, raised, LEVELS) == []  # nothing breached retroactively
    # Friday's working hour counts against the new one-hour target: due now, not
    # back on Friday evening.
    assert case.clocks["first_response"].due == monday
    signals = advance(case, monday + timedelta(minutes=1), LEVELS)
    assert [s.at for s in signals if s.kind == "BREACHED"] == [monday]


def test_an_overdue_case_comes_before_a_fresh_one_of_the_same_priority() -> None:
    old, new = opened(1, START, priority=4), opened(2, START + timedelta(hours=3), priority=4)
    cases = []
    for o in (old, new):
        c = new_case(o, LEVELS)
        apply(c, o, LEVELS)
        cases.append(c)
    advance(cases[0], START + timedelta(hours=2), LEVELS)  # first response breached
    assert cases[0].priority == 4 and cases[0].due_key is not None
    assert cases[1].due_key is not None and cases[0].due_key < cases[1].due_key


async def test_watchers_hear_of_claims_renewals_and_leases_that_ran_out(queue_db: str) -> None:
    now = datetime.now(UTC)
    await seed(queue_db, 2, now)
    async with (
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as watcher,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn,
    ):
        # A restart on the existing database changes nothing.
        await store.create_schema(conn)
        await watcher.execute(f"LISTEN {store.CHANGES_CHANNEL}")
        first = await store.claim_next(conn, "a", [], timedelta(seconds=30), now)
        later = now + timedelta(seconds=31)
        again = await store.claim_next(conn, "b", [], timedelta(seconds=30), later)
        assert first is not None and again is not None and again.name == first.name
        renewed = await store.renew(conn, "b", again.name, timedelta(seconds=60), later)
        assert not isinstance(renewed, store.NotHeld)
        heard = [n.payload async for n in watcher.notifies(timeout=5.0, stop_after=4)]
    assert heard == [
        f"CLAIMED|{first.name}",
        f"RELEASED|{first.name}",
        f"CLAIMED|{first.name}",
        f"UPDATED|{first.name}",  # renewed: watchers count the new lease down
    ]


async def test_a_case_closed_after_its_warning_was_due_is_last_heard_removed(
    queue_db: str,
) -> None:
    """The closing event first catches up the case's clocks (a warning due
    before it closed): a watcher hears the warning, then REMOVED; and a
    change heard after the case closed is told as REMOVED, as the case it
    carries is the closed one."""
    obs = opened(7, START, priority=4)
    solved = Observation(
        name=obs.name, type="ticket", version=2, at=START + timedelta(hours=5), status="SOLVED",
        open=False, waiting=False, priority=4,
    )  # fmt: skip
    async with (
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as watcher,
        await psycopg.AsyncConnection.connect(queue_db) as conn,
    ):
        await watcher.execute(f"LISTEN {store.CHANGES_CHANNEL}")
        for i, o in enumerate((obs, solved)):
            where = Consumed("casemesh.tickets.v1", 0, i)
            event = CloudEvent(
                id=f"{o.name}:{o.version}", source="tickets", type="t", subject=o.name, time=o.at,
                data=b"", key=o.name,
            )  # fmt: skip
            assert await store.consume(conn, event, o, where, LEVELS)
            await conn.commit()
        heard: list[str] = []
        async for note in watcher.notifies(timeout=10.0):
            heard.append(note.payload.partition("|")[0])
            if heard[-1] == "REMOVED":
                break
        case = await store.get(conn, obs.name)
    assert heard[0] == "ADDED" and heard[-1] == "REMOVED"
    assert {"WARNED", "BREACHED"} <= set(heard[1:-1])
    assert case is not None and not case.open
    # Heard after it closed, any change carries the closed case: REMOVED;
    # one carrying a case reopened since is UPDATED, the others as they are.
    assert {as_told(change, case) for change in heard} == {"REMOVED"}
    reopened = dataclasses.replace(case, status="OPEN", open=True)
    assert [as_told(c, reopened) for c in ("REMOVED", "WARNED", "ADDED")] == [
        "UPDATED",
        "WARNED",
        "ADDED",
    ]


async def test_a_case_already_closed_is_heard_removed_once_whatever_follows(
    queue_db: str,
) -> None:
    """A ticket solved, then closed, then rated: every watcher dropped it when
    it was solved, and is not told the same removal again for each later
    event (each told change also costs every replica a read)."""
    new = opened(14, START)

    def then(version: int, minutes: int, status: str) -> Observation:
        return Observation(
            name=new.name, type="ticket", version=version, at=START + timedelta(minutes=minutes),
            status=status, open=False, waiting=False,
        )  # fmt: skip

    # Last, a change to another case: once it is heard, all before it were.
    last = dataclasses.replace(opened(15, START), status="PENDING", waiting=True)
    async with (
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as watcher,
        await psycopg.AsyncConnection.connect(queue_db) as conn,
    ):
        await watcher.execute(f"LISTEN {store.CHANGES_CHANNEL}")
        events = (new, then(2, 10, "SOLVED"), then(3, 20, "CLOSED"), then(4, 30, "CLOSED"), last)
        for offset, obs in enumerate(events):
            await consumed(conn, obs, offset)
        heard: list[tuple[str, str, str]] = []
        async for n in watcher.notifies(timeout=WATCH_WAIT_S):
            heard.append(store.read_note(n.payload))
            if heard[-1][1] == last.name:
                break
        case = await store.get(conn, new.name)
    assert heard == [("ADDED", new.name, ""), ("REMOVED", new.name, ""), ("ADDED", last.name, "")]
    # The later events are kept all the same: the case is as its stream says.
    assert case is not None and case.version == 4 and case.status == "CLOSED"


async def test_a_claim_sent_again_under_its_request_id_gets_the_same_case(
    queue_db: str,
) -> None:
    now = datetime.now(UTC)
    await seed(queue_db, 3, now)
    lease = timedelta(seconds=30)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        first = await store.claim_next(conn, "a", [], lease, now, "c1")
        again = await store.claim_next(conn, "a", [], lease, now, "c1")  # answer lost
        assert first is not None and again is not None and again.name == first.name
        # Another id is another claim; the same id from another agent is theirs.
        other = await store.claim_next(conn, "a", [], lease, now, "c2")
        theirs = await store.claim_next(conn, "b", [], lease, now, "c1")
        assert other is not None and theirs is not None
        assert len({first.name, other.name, theirs.name}) == 3
        # Once the case is no longer theirs, the id claims afresh (none is left).
        await store.release(conn, "a", first.name, now)
        back = await store.claim_next(conn, "a", [], lease, now, "c1")
        assert back is not None and back.name == first.name  # the only free one
        assert await store.claim_next(conn, "a", [], lease, now, "c3") is None


async def test_a_claim_id_sent_with_another_request_is_refused_while_its_case_is_held(
    queue_db: str,
) -> None:
    """The id of a claim whose case the agent holds, sent for other queues or
    another lease, is ALREADY_EXISTS: not the held case, which may be of a
    queue the agent did not ask for now, and not a second case."""
    now = datetime.now(UTC)
    await seed(queue_db, 3, now)
    lease = timedelta(seconds=30)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        first = await store.claim_next(conn, "a", [], lease, now, "c1")
        assert first is not None
        for queues, asked in ((["tier2"], lease), ([], timedelta(seconds=60))):
            with pytest.raises(AlreadyExists, match="request_id 'c1'") as refused:
                await store.claim_next(conn, "a", queues, asked, now, "c1")
            assert refused.value.reason == "REQUEST_ID_REUSED"
        cur = await conn.execute("SELECT name FROM queue_cases WHERE holder = 'a'")
        assert [name for (name,) in await cur.fetchall()] == [first.name]
        again = await store.claim_next(conn, "a", [], lease, now, "c1")
        assert again is not None and again.name == first.name
        # One claimed by a replica from before the digest kept the id alone:
        # a retry gets its case, whatever it asks.
        await conn.execute("UPDATE queue_cases SET claim_request = 'c1' WHERE holder = 'a'")
        kept = await store.claim_next(conn, "a", ["tier2"], lease, now, "c1")
        assert kept is not None and kept.name == first.name


@contextlib.asynccontextmanager
async def queue_after(
    queue_db: str, topic: str, events: list[Any]
) -> AsyncIterator[tuple[Callable[[str], Awaitable[str]], str]]:
    """The queue's service once it has read `events` from `topic`, and a
    ticket less urgent than them: "Next" as an agent, and the ticket's name."""
    ticket = opened(30, START, priority=1)
    async with await psycopg.AsyncConnection.connect(queue_db) as consumer:
        for offset, event in enumerate(events):
            where = Consumed(topic, 0, offset)
            assert await store.consume(consumer, event, observe(event, LEVELS), where, LEVELS)
        await consumer.commit()
        await consumed(consumer, ticket, 0)
    servicer = QueueServicer(
        async_pool(queue_db), SystemClock(), Broadcaster(queue_db), LEVELS.queue_names
    )
    await servicer.pool.open()
    try:
        yield partial(next_case_of, servicer), ticket.name
    finally:
        await servicer.pool.close()


async def next_case_of(servicer: QueueServicer, agent: str) -> str:
    """The case `agent` is handed by "Next" through the service."""
    caller = _VOUCHED.set(Vouched(Identity(agent, frozenset({"agent"}))))
    try:
        claimed = await servicer.ClaimNextCase(pb.ClaimNextCaseRequest(), cast(Any, None))
        return claimed.name
    finally:
        _VOUCHED.reset(caller)


def appeal_filed(
    n: int, filer: str, kind: str = "DECISION_APPEAL", appeal_of: str = ""
) -> tuple[str, aev.AppealFiled]:
    """The name of the `n`th appeal, filed by `filer`, and its AppealFiled."""
    name = f"appeals/{uuid.UUID(int=0xA9 << 64 | n)}"
    header = aev.AppealEventHeader(
        appeal_id=name.removeprefix("appeals/"), version=1, actor=filer, state="SUBMITTED"
    )
    header.time.FromDatetime(START)
    filed = aev.AppealFiled(
        header=header, kind=kind, filer=aev.AppealParty(user_id=filer), appeal_of=appeal_of
    )
    return name, filed


async def test_an_agent_is_never_given_an_appeal_they_are_a_party_to(queue_db: str) -> None:
    """Agent X is a user too. The appeals service refuses them their own
    case (PERMISSION_DENIED, OWN_CASE: nobody decides their own case), so
    Next never gives them one, though it is the most urgent: not the appeal
    they filed of a report decision, nor another user's appeal of that
    decision, nor the uploader's appeal of the takedown X claimed. X gets
    the ticket below them, then NOT_FOUND; agent Y gets the appeals."""
    decided = uuid.uuid4()
    decision = f"report-cases/{decided}"
    notice, notice_filed = appeal_filed(1, "agent-x", kind="TAKEDOWN_NOTICE")
    upheld = aev.AppealDecided(
        header=aev.AppealEventHeader(appeal_id=notice.removeprefix("appeals/"), version=2,
                                     actor="agent-z", state="UPHELD"),
        outcome="UPHOLD", affected_uploader=aev.AppealParty(user_id="user-u"),
    )  # fmt: skip
    upheld.header.time.FromDatetime(START + timedelta(minutes=1))
    own, own_filed = appeal_filed(2, "agent-x", appeal_of=decision)
    # (The appeals service takes a report case's id in any spelling of its UUID.)
    theirs, theirs_filed = appeal_filed(
        3, "user-v", appeal_of=f"report-cases/{decided.hex.upper()}"
    )
    uploaders, uploaders_filed = appeal_filed(4, "user-u", appeal_of=notice)
    events = [
        case_event("appeals", notice, 1, notice_filed, START),
        case_event("appeals", notice, 2, upheld, START + timedelta(minutes=1)),
        *(case_event("appeals", n, 1, m, START) for n, m in (
            (own, own_filed), (theirs, theirs_filed), (uploaders, uploaders_filed))),
    ]  # fmt: skip
    async with queue_after(queue_db, "casemesh.appeals.v1", events) as (next_case, ticket):
        assert await next_case("agent-x") == ticket
        with pytest.raises(NotFound):
            await next_case("agent-x")
        assert {await next_case("agent-y") for _ in range(3)} == {own, theirs, uploaders}


async def test_replicas_from_before_request_ids_still_claim(queue_db: str) -> None:
    # During a rolling update the old replicas call the claim without an id.
    now = datetime.now(UTC)
    await seed(queue_db, 1, now)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT name, holder FROM queue_claim(%s, %s, %s, %s)",
            ("old", now, now + timedelta(seconds=30), []),
        )
        rows = await cur.fetchall()
    assert [holder for _, holder in rows] == ["old"]


async def test_a_case_locked_for_a_moment_is_waited_for_not_reported_missing(
    queue_db: str,
) -> None:
    """The only free case is being updated (an event about it applied) when
    an agent claims: the claim waits for that and gets it, rather than tell
    the agent the queue is empty while their list shows the case."""
    now = datetime.now(UTC)
    await seed(queue_db, 1, now)
    name = opened(0, now).name
    async with await psycopg.AsyncConnection.connect(queue_db) as updating:
        await updating.execute("SELECT 1 FROM queue_cases WHERE name = %s FOR UPDATE", (name,))
        async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as agent:
            claim = asyncio.create_task(
                store.claim_next(agent, "agent-1", [], timedelta(minutes=10), now)
            )
            # The claim is waiting on the row lock, not answered "none".
            async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as look:
                for _ in range(200):
                    cur = await look.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                        " WHERE NOT l.granted AND a.datname = current_database()"
                    )
                    row = await cur.fetchone()
                    if row and row[0]:
                        break
                    assert not claim.done(), "the claim answered without waiting"
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the claim never waited for the locked case")
            await updating.commit()
            case = await asyncio.wait_for(claim, timeout=10)
    assert case is not None and case.name == name and case.holder == "agent-1"


def test_report_priority_floors_count_highest_first_however_listed(tmp_path: Any) -> None:
    raw = json.loads((Path(sla.__file__).parent / "sla.json").read_text())
    raw["report_priority"] = sorted(raw["report_priority"])  # lowest floor first
    policy = tmp_path / "sla.json"
    policy.write_text(json.dumps(raw))
    levels = sla.load(str(policy))
    assert levels.priority_of_report("NORMAL", 10_000) == 4
    assert levels.priority_of_report("NORMAL", 0) == LEVELS.priority_of_report("NORMAL", 0)


def holder_of(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT holder FROM queue_cases").fetchone()
        assert row is not None
        return str(row[0])


async def test_a_lease_runs_out_while_kafka_is_away(queue_db: str) -> None:
    """The SLA timer asks Kafka how far its clocks may run; a lease that ran
    out is released (agents watching see the case free) whether Kafka
    answers or not."""
    await lease_runs_out(queue_db, f"127.0.0.1:{free_port()}")  # nothing listens there


async def test_a_lease_runs_out_while_kafka_hangs(queue_db: str) -> None:
    """A broker that takes connections and never answers holds the SLA
    timer's calls for their whole timeout (40 s): leases are not held up
    behind them."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await lease_runs_out(queue_db, f"127.0.0.1:{port}", lease=timedelta(seconds=3))
    finally:
        server.close()


async def lease_runs_out(
    queue_db: str, bootstrap: str, lease: timedelta = timedelta(seconds=-50)
) -> None:
    """A case claimed with `lease` left is released within 15 s of the
    timer's start, with Kafka at `bootstrap`."""
    now = datetime.now(UTC)
    await seed(queue_db, 1, now)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        held = await store.claim_next(
            conn, "a", [], timedelta(seconds=10), now + lease - timedelta(seconds=10)
        )
    assert held is not None and holder_of(queue_db) == "a"
    pool = async_pool(queue_db, max_size=2)
    await pool.open()
    stop = asyncio.Event()
    running = asyncio.create_task(
        timer.run_timer(
            pool=pool,
            clock=SystemClock(),
            levels=LEVELS,
            bootstrap=bootstrap,
            group_id=f"it-away-{uuid.uuid4().hex[:8]}",
            progress=Progress(),
            grace=timedelta(seconds=30),
            stop=stop,
        )
    )
    try:
        await eventually(lambda: holder_of(queue_db) == "", within=15)
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        await pool.close()


async def test_the_breached_figure_counts_the_cases_waiting_for_an_agent(queue_db: str) -> None:
    """A case stays BREACHED while it is open: the figure the alert reads
    counts those waiting for an agent, not those an agent holds or that
    wait on the requester (nobody need act on them)."""
    opened_at = START - timedelta(days=3)
    async with await psycopg.AsyncConnection.connect(queue_db) as conn:
        async with conn.cursor() as cur:
            for i, (waiting, holder) in enumerate(
                [(False, ""), (False, "agent-1"), (True, ""), (False, "")]
            ):
                obs = opened(100 + i, opened_at, priority=4)
                case = new_case(obs, LEVELS)
                apply(case, obs, LEVELS)
                advance(case, START, LEVELS)
                if waiting:
                    apply(case, dataclasses.replace(obs, version=2, at=START, waiting=True), LEVELS)
                case.holder = holder
                await store._save(cur, case)
        await conn.commit()
    figures = {
        (s.name, s.labels.get("queue")): s.value
        for family in QueueCollector(queue_db, SystemClock(), []).collect()
        for s in family.samples
    }
    assert sum(v for (name, _), v in figures.items() if name == "casemesh_queue_breached") == 2


async def test_a_case_whose_first_event_was_set_aside_is_queued_from_the_next(
    queue_db: str,
) -> None:
    """The event that opened a case could not be applied (set aside, and
    alerted on): the case reaches agents from its next event, open, rather
    than never; an event of a closed case never seen queues nothing."""
    first = opened(8, START)
    later = Observation(
        name=first.name, type="ticket", version=2, at=START + timedelta(minutes=5),
        status="OPEN", open=True, waiting=False,
    )  # fmt: skip
    gone = dataclasses.replace(
        opened(9, START), version=3, created=False, status="CLOSED", open=False
    )
    async with await psycopg.AsyncConnection.connect(queue_db) as conn:
        for i, o in enumerate((later, gone)):
            event = CloudEvent(
                id=f"{o.name}:{o.version}", source="tickets", type="t", subject=o.name, time=o.at,
                data=b"", key=o.name,
            )  # fmt: skip
            assert await store.consume(
                conn, event, o, Consumed("casemesh.tickets.v1", 0, i), LEVELS
            )
        await conn.commit()
        queued = await store.get(conn, later.name)
        assert await store.get(conn, gone.name) is None
    assert queued is not None and queued.open and queued.claimable and queued.version == 2


WATCH_WAIT_S = 30.0


async def consumed(
    conn: psycopg.AsyncConnection[Any],
    obs: Observation,
    offset: int,
    kept: store.KeptClaims | None = None,
) -> None:
    """`obs` applied as the consumer applies its event, and committed."""
    event = CloudEvent(
        id=f"{obs.name}:{obs.version}", source="tickets", type="t", subject=obs.name, time=obs.at,
        data=b"", key=obs.name,
    )  # fmt: skip
    where = Consumed("casemesh.tickets.v1", 0, offset)
    assert await store.consume(conn, event, obs, where, LEVELS, kept)
    await conn.commit()


async def told(watch: AsyncIterator[pb.QueueChange], until: str) -> list[tuple[str, str, str]]:
    """The changes a watch tells (past heartbeats) up to one of the case
    named `until`, within `WATCH_WAIT_S`: what changed, the case's name,
    and the queue it shows the case in."""
    said: list[tuple[str, str, str]] = []
    async with asyncio.timeout(WATCH_WAIT_S):
        while not said or said[-1][1] != until:
            change = await anext(watch)
            if change.change != "HEARTBEAT":
                said.append((change.change, change.queue_case.name, change.queue_case.queue))
    return said


@contextlib.asynccontextmanager
async def watching(
    dsn: str, *queues: list[str]
) -> AsyncIterator[list[AsyncGenerator[pb.QueueChange, None]]]:
    """A WatchQueue call of each of `queues` by an agent, each past its
    WATCHING: from then on, it hears every change it is shown."""
    broadcaster, stop = Broadcaster(dsn), asyncio.Event()
    servicer = QueueServicer(async_pool(dsn), SystemClock(), broadcaster, LEVELS.queue_names)
    agent = _VOUCHED.set(Vouched(Identity("agent-1", frozenset({"agent"}))))
    running = asyncio.create_task(broadcaster.run(stop))
    watches = [
        cast(
            AsyncGenerator[pb.QueueChange, None],
            servicer.WatchQueue(pb.WatchQueueRequest(queues=q), cast(Any, None)),
        )
        for q in queues
    ]
    try:
        for watch in watches:
            assert await told(watch, "") == [("WATCHING", "", "")]
        yield watches
    finally:
        for watch in watches:
            await watch.aclose()
        stop.set()
        await asyncio.wait_for(running, WATCH_WAIT_S)
        _VOUCHED.reset(agent)


async def queue_of(conn: psycopg.AsyncConnection[Any], name: str) -> str:
    case = await store.get(conn, name)
    assert case is not None
    return case.queue


async def test_the_timer_tells_a_warning_once_and_a_breach_once(queue_db: str) -> None:
    """The timer changes nothing but what its signal says: a warning is heard
    as WARNED alone, a breach as BREACHED and ESCALATED (not UPDATED besides).
    The home queue's watchers hear the escalation that took the case out of
    their queue, and nothing of a second breach once it is in tier2."""
    case = dataclasses.replace(opened(16, START, priority=3), category="account.login_failed")
    async with (
        await psycopg.AsyncConnection.connect(queue_db) as consumer,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn,
    ):
        await consumed(consumer, case, 0)
        queued = await store.get(conn, case.name)
        assert queued is not None and queued.queue == "account"
        first, resolution = queued.clocks["first_response"], queued.clocks["resolution"]
        assert first.warn_at and first.due and resolution.due
        async with watching(queue_db, [], ["account"]) as (every, account):
            # After each look of the timer, a case waiting on its requester
            # (no clock runs, so no look fires it) comes to ads: once a watch
            # of all hears it, every watch heard all that came before it.
            looks = {
                first.warn_at: [("WARNED", case.name, "account")],
                first.due: [("BREACHED", case.name, "tier2"), ("ESCALATED", case.name, "tier2")],
                resolution.due: [
                    ("WARNED", case.name, "tier2"),
                    ("BREACHED", case.name, "tier2"),
                    ("ESCALATED", case.name, "tier2"),
                ],
            }
            for i, (until, heard) in enumerate(looks.items(), start=1):
                assert await store.fire_due(conn, until, LEVELS)
                mark = dataclasses.replace(
                    opened(16 + i, START), category="ads.billing", status="PENDING", waiting=True
                )
                await consumed(consumer, mark, i)
                assert await told(every, mark.name) == [*heard, ("ADDED", mark.name, "ads")]
            # A case comes to account, for its watch to end on.
            mark = dataclasses.replace(opened(20, START), category="account.login_failed")
            await consumed(consumer, mark, 4)
            assert await told(account, mark.name) == [
                ("WARNED", case.name, "account"),
                ("ESCALATED", case.name, "tier2"),  # it left account: the watch drops it
                ("ADDED", mark.name, "account"),
            ]


async def test_a_watch_of_tier2_is_told_a_case_left_it_when_its_breach_is_taken_back(
    queue_db: str,
) -> None:
    """An agent replied 30 minutes in, but the reply reached the queue after
    its timer had breached the case and escalated it to tier2: the breach is
    taken back and the case is in `account` again. An agent whose console
    shows tier2 is told so (and drops the row) rather than keep a case that
    is no longer there until they reload; a watch of another queue hears
    nothing of it, and one of all queues hears it once."""
    back = dataclasses.replace(opened(11, START, priority=4), category="account.login_failed")
    stays = dataclasses.replace(opened(12, START, priority=4), category="ads.billing")
    reply = Observation(
        name=back.name, type="ticket", version=2, at=START + timedelta(minutes=30),
        status="OPEN", open=True, waiting=False, responded=True,
    )  # fmt: skip
    added = dataclasses.replace(opened(13, START + timedelta(hours=2)), category="ads.billing")
    async with (
        await psycopg.AsyncConnection.connect(queue_db) as consumer,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn,
    ):
        for offset, obs in enumerate((back, stays)):
            await consumed(consumer, obs, offset)
        assert await store.fire_due(conn, START + timedelta(hours=2), LEVELS)
        assert [await queue_of(conn, o.name) for o in (back, stays)] == ["tier2", "tier2"]
        async with watching(queue_db, ["tier2"], ["ads"], []) as (tier2, ads, every):
            await consumed(consumer, reply, 2)
            assert await queue_of(conn, back.name) == "account"
            # Then an agent claims the next case of tier2 (the one still
            # there), and a case comes to ads.
            claimed = await store.claim_next(
                conn, "agent-2", ["tier2"], timedelta(minutes=5), START
            )
            assert claimed is not None and claimed.name == stays.name
            await consumed(consumer, added, 3)
            assert await told(tier2, stays.name) == [
                ("UPDATED", back.name, "account"),
                ("CLAIMED", stays.name, "tier2"),
            ]
            assert await told(ads, added.name) == [("ADDED", added.name, "ads")]
            assert await told(every, added.name) == [
                ("UPDATED", back.name, "account"),
                ("CLAIMED", stays.name, "tier2"),
                ("ADDED", added.name, "ads"),
            ]


async def test_an_agent_is_never_given_a_report_case_or_its_appeal_they_are_a_party_to(
    queue_db: str,
) -> None:
    """Agent F reported a video first, agent X after them: the reports
    service refuses both its case (OWN_CASE), and the gateway the appeals of
    its decision, so Next never gives them either, though they are the most
    urgent. Each gets the ticket below them, then NOT_FOUND; agent Y gets
    both."""
    decided = uuid.uuid4()
    case = f"report-cases/{decided}"
    events: list[Any] = []
    steps: list[tuple[str, Any]] = [
        (
            "OPEN",
            rev.ReportCaseOpened(
                category="violence_terrorism", lane="ORDINARY", first_reporter="agent-f"
            ),
        ),
        ("OPEN", rev.ReportAddedToCase(reporter="agent-x")),
        ("NO_VIOLATION", rev.ReportCaseDecided(outcome="NO_VIOLATION")),
        ("OPEN", rev.ReportCaseDecisionReversed()),
    ]
    for version, (state, message) in enumerate(steps, start=1):
        at = START + timedelta(minutes=version)
        message.header.CopyFrom(
            rev.ReportEventHeader(aggregate_id=str(decided), version=version, state=state)
        )
        message.header.time.FromDatetime(at)
        events.append(case_event("reports", case, version, message, at))
    appeal, filed = appeal_filed(5, "user-v", appeal_of=case)
    events.append(case_event("appeals", appeal, 1, filed, START))
    async with queue_after(queue_db, "casemesh.reports.v1", events) as (next_case, ticket):
        assert await next_case("agent-x") == ticket
        with pytest.raises(NotFound):
            await next_case("agent-x")
        with pytest.raises(NotFound):  # the ticket is X's now
            await next_case("agent-f")
        assert {await next_case("agent-y") for _ in range(2)} == {case, appeal}


def report_case_event(case: uuid.UUID, version: int, state: str, message: Any) -> CloudEvent:
    """`message`, the `version`th event of the report case `case` (its state
    after: `state`), a minute after the one before, as the reports relay
    publishes it."""
    at = START + timedelta(minutes=version)
    message.header.CopyFrom(
        rev.ReportEventHeader(aggregate_id=str(case), version=version, state=state)
    )
    message.header.time.FromDatetime(at)
    return case_event("reports", f"report-cases/{case}", version, message, at)


async def consumed_events(conn: psycopg.AsyncConnection[Any], events: list[CloudEvent]) -> None:
    """`events` applied as the consumer applies them, a batch of 500 a
    transaction."""
    for offset, event in enumerate(events):
        where = Consumed(f"casemesh.{event.source.removeprefix('casemesh/')}.v1", 0, offset)
        assert await store.consume(conn, event, observe(event, LEVELS), where, LEVELS)
        if offset % 500 == 499:
            await conn.commit()
    await conn.commit()


async def test_a_video_reported_by_5000_users_keeps_each_reporter_once_beside_its_case(
    queue_db: str,
) -> None:
    """A viral video is reported by 5,000 users, one event each. Each is
    recorded as a party once, beside the case: the case's own row does not
    grow with them (each event would otherwise read and write all those
    before it). Next passes the case over for a reporter among them, and
    gives it to an agent who reported nothing."""
    decided = uuid.uuid4()
    case = f"report-cases/{decided}"
    opened = rev.ReportCaseOpened(
        category="violence_terrorism", lane="ORDINARY", first_reporter="user-0"
    )
    events = [report_case_event(decided, 1, "OPEN", opened)]
    for version in range(2, 5002):
        added = rev.ReportAddedToCase(reporter=f"user-{version - 1}", base_priority=1)
        events.append(report_case_event(decided, version, "OPEN", added))
    async with await psycopg.AsyncConnection.connect(queue_db) as consumer:
        await consumed_events(consumer, events)
    lease, now = timedelta(seconds=300), datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT version, pg_column_size(parties) FROM queue_cases WHERE name = %s", (case,)
        )
        row = await cur.fetchone()
        assert row is not None and row[0] == 5001
        assert row[1] < 100  # an empty array, not 5,001 user ids
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT party) FROM queue_case_parties WHERE name = %s",
            (case,),
        )
        assert await cur.fetchone() == (5001, 5001)
        assert await store.claim_next(conn, "user-2500", [], lease, now) is None
        assert await store.claim_next(conn, "user-0", [], lease, now) is None
        taken = await store.claim_next(conn, "agent-y", [], lease, now)
        assert taken is not None and taken.name == case


async def test_a_claim_kept_by_a_rebuild_is_not_given_back_to_a_party_of_its_case(
    queue_db: str,
) -> None:
    """Agent X holds a report case, agent Z user V's appeal of a report
    decision, when the operator rebuilds the queue. While it is away, X
    reports the same video, and Z appeals that decision too. Once the
    replay has caught up, neither gets their case back: the reports service
    and the gateway refuse them its work (OWN_CASE), and their claims would
    hide the cases from everyone until their leases ran out. Agent Y gets
    both."""
    reported, decided = uuid.uuid4(), uuid.uuid4()
    report = f"report-cases/{reported}"
    opened = rev.ReportCaseOpened(
        category="violence_terrorism", lane="ORDINARY", first_reporter="user-f"
    )
    appeal, filed = appeal_filed(6, "user-v", appeal_of=f"report-cases/{decided}")
    own, own_filed = appeal_filed(7, "agent-z", appeal_of=f"report-cases/{decided}")
    first = [report_case_event(reported, 1, "OPEN", opened)]
    second = [case_event("appeals", appeal, 1, filed, START)]
    meanwhile = [
        report_case_event(reported, 2, "OPEN", rev.ReportAddedToCase(reporter="agent-x")),
        case_event("appeals", own, 1, own_filed, START + timedelta(minutes=5)),
    ]
    lease, now = timedelta(seconds=300), START + timedelta(minutes=3)
    async with (
        await psycopg.AsyncConnection.connect(queue_db) as consumer,
        await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as conn,
    ):
        await consumed_events(consumer, first)
        x = await store.claim_next(conn, "agent-x", [], lease, now)
        await consumed_events(consumer, second)
        z = await store.claim_next(conn, "agent-z", [], lease, now)
        assert x is not None and x.name == report
        assert z is not None and z.name == appeal
        await store.expire_leases(conn, now)
        generation = await store.rebuild(conn)
        await consumed_events(consumer, [*first, *second, *meanwhile])
        back = now + timedelta(minutes=20)
        assert await store.restore_claims(conn, generation, back) == 0
        for name in (report, appeal):
            case = await store.get(conn, name)
            assert case is not None and case.holder == ""
        taken = [await store.claim_next(conn, "agent-y", [], lease, back) for _ in range(3)]
        assert {c.name for c in taken if c is not None} == {report, appeal, own}

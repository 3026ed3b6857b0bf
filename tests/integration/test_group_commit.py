"""Group commit on a real PostgreSQL: callers that arrive together share a
transaction, yet each is answered for its own events alone — a caller that
lost a race stores none of its events, and its batch-mates store all of
theirs."""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from casemesh.platform.groupcommit import BATCH_COMMANDS, GroupCommitRecorder, _Write
from casemesh.platform.pools import DatabaseUnavailable
from casemesh_tickets.application import Tickets
from tests.support import wait_until

ROUNDS = 12
CALLERS = 12


def event(ident: uuid.UUID, version: int = 1) -> StoredEvent:
    """An event of its own (two commands never store the very same state)."""
    return StoredEvent(ident, version, "bench:Event", f'{{"n": "{uuid.uuid4()}"}}'.encode())


def batches() -> tuple[float, float]:
    """(batches written, commands written) so far in this process."""
    (metric,) = BATCH_COMMANDS.collect()
    samples = {s.name: s.value for s in metric.samples}
    return samples["casemesh_event_store_batch_commands_count"], samples[
        "casemesh_event_store_batch_commands_sum"
    ]


def test_callers_together_are_answered_each_for_their_own_events(app: Tickets, dsn: str) -> None:
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    taken = uuid.uuid4()
    recorder.insert_events([event(taken)])
    written_before, commands_before = batches()

    # Per round: callers of two events each; one of them also writes a version
    # already stored, and two of them race for one new version.
    results: dict[str, object] = {}
    plans: dict[str, list[StoredEvent]] = {}
    for r in range(ROUNDS):
        contested = uuid.uuid4()
        for c in range(CALLERS):
            events = [event(uuid.uuid4()), event(uuid.uuid4())]
            if c == 0:
                events[1] = event(taken)
            elif c in (1, 2):
                events[1] = event(contested)
            plans[f"{r}-{c}"] = events

    def call(key: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            results[key] = list(recorder.insert_events(plans[key]))
        except IntegrityError as exc:
            results[key] = exc

    for r in range(ROUNDS):
        barrier = threading.Barrier(CALLERS)
        threads = [
            threading.Thread(target=call, args=(f"{r}-{c}", barrier)) for c in range(CALLERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, notification_id FROM tickets_events"
        ).fetchall()
    stored = {(oid, v): n for oid, v, n in rows}
    for key, events in plans.items():
        outcome = results[key]
        keys = [(e.originator_id, e.originator_version) for e in events]
        if isinstance(outcome, IntegrityError):
            # Refused: not one of its events is stored (the other one was new).
            assert keys[0] not in stored, key
        else:
            # Acknowledged: all stored, with the ids it was told, in order.
            assert outcome == [stored[k] for k in keys], key
            assert outcome == sorted(outcome)

    def caller(c: int) -> list[object]:
        return [results[f"{r}-{c}"] for r in range(ROUNDS)]

    assert all(isinstance(o, IntegrityError) for o in caller(0))
    assert all(
        isinstance(a, IntegrityError) != isinstance(b, IntegrityError)
        for a, b in zip(caller(1), caller(2), strict=True)
    ), "exactly one of two racing callers wins"
    assert all(isinstance(o, list) for c in range(3, CALLERS) for o in caller(c))
    # The very same event again (an earlier try whose answer was lost) is its own.
    again = event(uuid.uuid4())
    first = recorder.insert_events([again])
    assert recorder.insert_events([again]) == first
    written, commands = batches()
    assert commands - commands_before == ROUNDS * CALLERS + 2
    assert written - written_before < ROUNDS * CALLERS, "no two callers ever shared a transaction"


def test_in_one_batch_the_first_writer_of_a_version_wins_and_the_loser_stores_nothing(
    app: Tickets, dsn: str
) -> None:
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    contested = event(uuid.uuid4())
    rival = StoredEvent(contested.originator_id, 1, contested.topic, b'{"n": "rival"}')
    first = _Write([event(uuid.uuid4()), contested])
    loser = _Write([rival, event(uuid.uuid4())])
    bystander = _Write([event(uuid.uuid4())])
    retry = _Write([contested])  # the very event again: the first writer's retry
    recorder._write_together([first, loser, bystander, retry])

    assert isinstance(loser.error, IntegrityError) and loser.ids == []
    assert first.error is None and bystander.error is None and retry.error is None
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT originator_id, state, notification_id FROM tickets_events"
            " ORDER BY notification_id"
        ).fetchall()
    stored = {oid: (state, n) for oid, state, n in rows}
    assert loser.events[1].originator_id not in stored, "the loser stored none of its events"
    assert stored[contested.originator_id][0] == contested.state
    assert retry.ids == [first.ids[1]]
    assert first.ids + bystander.ids == [n for _, _, n in rows], "ids follow the batch's order"


def test_a_batch_is_stored_exactly_as_its_callers_gave_it(app: Tickets, dsn: str) -> None:
    """The batch's columns are sent in PostgreSQL's binary array form, made
    here: every kind of value comes back as it went in."""
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    given = [
        StoredEvent(uuid.uuid4(), 1, "casemesh_tickets.domain:Ticket.Created", b""),
        StoredEvent(str(uuid.uuid4()), 2**40, "m:Évènement.票", bytes(range(256)) * 3000),
        StoredEvent(uuid.uuid4(), 7, "m:E", b'{"n": "\\u7968\\u0000"}'),
    ]
    writes = [_Write(given[:2]), _Write(given[2:])]
    recorder._write_together(writes)

    assert [w.error for w in writes] == [None, None]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state, notification_id"
            " FROM tickets_events WHERE notification_id = ANY(%s) ORDER BY notification_id",
            (writes[0].ids + writes[1].ids,),
        ).fetchall()
    assert [(str(o), v, t, bytes(s)) for o, v, t, s, _ in rows] == [
        (str(e.originator_id), e.originator_version, e.topic, e.state) for e in given
    ]


def test_a_caller_is_not_refused_for_a_batch_mate_that_was_refused_itself(
    app: Tickets, dsn: str
) -> None:
    """A stale command (it saves a case and a report, the report's version
    taken meanwhile) comes first in a batch and takes the next version of
    the case; a fresh command writes that version too. The stale one is
    refused and keeps nothing; the fresh one is stored, as it would have
    been had each been written alone."""
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    case, report = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events([event(case, 1), event(report, 1)])
    stale = _Write([event(case, 2), event(report, 1)])
    fresh = _Write([event(case, 2)])
    bystander = _Write([event(uuid.uuid4())])
    recorder._write_together([stale, fresh, bystander])

    assert isinstance(stale.error, IntegrityError) and stale.ids == []
    assert fresh.error is None and len(fresh.ids) == 1
    assert bystander.error is None and len(bystander.ids) == 1
    with psycopg.connect(dsn) as conn:
        (state,) = conn.execute(
            "SELECT state FROM tickets_events WHERE originator_id = %s AND originator_version = 2",
            (case,),
        ).fetchone() or (None,)
    assert state == fresh.events[0].state


def test_a_write_interrupted_midway_leaves_no_caller_waiting_and_the_next_one_leads(
    app: Tickets,
) -> None:
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    write = recorder._write_together
    batches: list[int] = []

    def interrupted_second_batch(batch: list[Any]) -> None:
        batches.append(len(batch))
        if len(batches) == 1:  # hold the first batch until three more wait behind it
            wait_until(lambda: len(recorder._queue) >= 3, timeout=30, interval=0.01)
        elif len(batches) == 2:
            raise KeyboardInterrupt
        write(batch)

    recorder._write_together = interrupted_second_batch  # type: ignore[method-assign]
    results: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            results[n] = list(recorder.insert_events([event(uuid.uuid4())]))
        except BaseException as exc:
            results[n] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    wait_until(lambda: batches, timeout=30, interval=0.01)
    crowd = [threading.Thread(target=call, args=(n,)) for n in (1, 2, 3)]
    for t in crowd:
        t.start()
    for t in [first, *crowd]:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in [first, *crowd]), "a caller was left waiting"
    assert isinstance(results[0], list)
    told = [type(results[n]).__name__ for n in (1, 2, 3)]
    assert sorted(told) == ["KeyboardInterrupt", "RuntimeError", "RuntimeError"], told
    call(4)  # nobody is left holding the lead
    assert isinstance(results[4], list)


def test_a_write_to_a_primary_just_demoted_is_an_outage_and_leaves_its_connection(
    app: Tickets,
) -> None:
    """In a failover a pooled connection still on the old primary answers
    "read-only transaction": its callers hear UNAVAILABLE (retry), not that
    the write failed on our side, and the connection is not given to the
    next batch."""
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    pool = recorder.datastore.pool

    def every_connection(read_only: bool) -> list[Any]:
        with contextlib.ExitStack() as held:
            conns = [held.enter_context(pool.connection()) for _ in range(pool.max_size)]
            for conn in conns:
                conn.execute(f"SET SESSION default_transaction_read_only = {read_only}")
                conn.commit()
            return conns

    demoted = every_connection(True)
    try:
        with pytest.raises(DatabaseUnavailable):
            recorder._write_together([_Write([event(uuid.uuid4())])])
        assert sum(conn.closed for conn in demoted) == 1
    finally:
        every_connection(False)
    write = _Write([event(uuid.uuid4())])
    recorder._write_together([write])
    assert write.error is None and write.ids


def test_a_caller_is_not_answered_with_a_row_a_refused_batch_mate_inserted(
    app: Tickets, dsn: str
) -> None:
    """Two commands write the very same event (one a retry of the other's
    lost answer, say); the first of them also writes a version already
    stored, so it is refused and its rows are deleted. The second must not
    be answered with the id of the row the first inserted (gone with it): it
    is stored itself, or refused — never told "stored" with no row."""
    recorder = app.recorder
    assert isinstance(recorder, GroupCommitRecorder)
    taken = uuid.uuid4()
    recorder.insert_events([event(taken, 5)])
    same = event(uuid.uuid4())
    stale = _Write([same, event(taken, 5)])
    twin = _Write([same])
    recorder._write_together([stale, twin])

    assert isinstance(stale.error, IntegrityError) and stale.ids == []
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT notification_id FROM tickets_events WHERE originator_id = %s",
            (same.originator_id,),
        ).fetchall()
    assert twin.error is None, twin.error
    assert twin.ids == [n for (n,) in rows], "the twin was told of a row that is not there"

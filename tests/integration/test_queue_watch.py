"""The queue's watch on a real PostgreSQL: a watcher hears each change; when
the service's LISTEN connection is lost, every watch is told it may have
missed changes (so its client reads the queue again), and watching works
again once the connection is back; a watcher too far behind to take the
next change is told so first thing, and left alone after."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from casemesh_casequeue import store
from casemesh_casequeue.watch import LOST, Broadcaster, Change, ChangesLost
from tests.support import column

WAIT_S = 30.0


async def told(dsn: str, payload: str) -> None:
    await column(dsn, "SELECT pg_notify(%s, %s)", store.CHANGES_CHANNEL, payload)


async def heard(changes: asyncio.Queue[Change], dsn: str, payload: str) -> Change:
    """The next change heard, telling `payload` until one is (a NOTIFY sent
    before the LISTEN is in place is not heard)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        await told(dsn, payload)
        try:
            return await asyncio.wait_for(changes.get(), 0.5)
        except TimeoutError:
            assert loop.time() < deadline, f"{payload} never heard"


async def listeners(dsn: str) -> list[int]:
    return await column(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
        " AND pid <> pg_backend_pid() AND datname = current_database()",
    )


async def test_a_lost_listen_connection_ends_every_watch_and_watching_resumes(
    queue_db: str,
) -> None:
    broadcaster, stop = Broadcaster(queue_db), asyncio.Event()
    running = asyncio.create_task(broadcaster.run(stop))
    try:
        async with broadcaster.subscribe() as first, broadcaster.subscribe() as second:
            assert await heard(first, queue_db, "ADDED|tickets/a") == ("ADDED", "tickets/a", None)
            assert await second.get() == ("ADDED", "tickets/a", None)

            (pid,) = await listeners(queue_db)
            await told(queue_db, "UPDATED|tickets/b")  # maybe heard, maybe not: either is fine
            await column(queue_db, "SELECT pg_terminate_backend(%s)", pid)

            # Each watch hears, after whatever came before, that it may have missed some.
            for changes in (first, second):
                change = await asyncio.wait_for(changes.get(), WAIT_S)
                while change[0] != LOST:
                    change = await asyncio.wait_for(changes.get(), WAIT_S)

        # A new watch, once the connection is back, hears changes again (one
        # started before it is back is refused: UNAVAILABLE, try again).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while True:
            try:
                async with broadcaster.subscribe() as again:
                    change = await heard(again, queue_db, "CLAIMED|tickets/c")
                    assert change == ("CLAIMED", "tickets/c", None)
                    break
            except ChangesLost:
                assert loop.time() < deadline, "the watch never came back"
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT_S)


async def test_a_watcher_too_far_behind_is_told_at_once_and_nothing_more_is_kept_for_it(
    queue_db: str,
) -> None:
    """A client stopped reading its watch: once its queue is full, the next
    change it would miss makes its very next read LOST (it reads the queue
    again now, not after thousands of out-of-date changes), frees what was
    kept for it, and is logged once; later changes add nothing to it. A
    watcher that keeps up hears every change, in order."""
    broadcaster, stop = Broadcaster(queue_db), asyncio.Event()
    running = asyncio.create_task(broadcaster.run(stop))
    try:
        async with broadcaster.subscribe() as stalled, broadcaster.subscribe() as keeping_up:
            await heard(keeping_up, queue_db, "ADDED|tickets/watching")
            many = stalled.maxsize + 1  # more than it can hold, whatever it holds now
            with capture_logs() as logs:
                await column(
                    queue_db,
                    "SELECT count(pg_notify(%s, 'UPDATED|tickets/' || n))"
                    " FROM generate_series(1, %s) AS n",
                    store.CHANGES_CHANNEL,
                    many,
                )
                for n in range(1, many + 1):
                    change = await asyncio.wait_for(keeping_up.get(), WAIT_S)
                    while change[0] == "ADDED":  # a repeat of the first, told twice
                        change = await asyncio.wait_for(keeping_up.get(), WAIT_S)
                    assert change == ("UPDATED", f"tickets/{n}", None)

                assert stalled.get_nowait() == (LOST, "", None)
                assert stalled.empty()
                assert await heard(keeping_up, queue_db, "CLAIMED|tickets/later") == (
                    "CLAIMED",
                    "tickets/later",
                    None,
                )
                assert stalled.empty()
            behind = [e for e in logs if e["event"] == "queue.watcher_behind"]
            assert len(behind) == 1
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT_S)

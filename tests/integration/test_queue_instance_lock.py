"""The lock every running casequeue instance holds, which keeps a rebuild
from dropping the read model under it, on a real PostgreSQL: taken again
after the database drops it, and an instance that finds a rebuild ran
while it was not held stops (its consumer group no longer matches)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from casemesh_casequeue import store
from tests.support import column

WAIT_S = 30.0


async def holders(dsn: str) -> list[int]:
    """The sessions holding the instance lock."""
    return await column(
        dsn,
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()",
    )


async def drop_session(dsn: str, pid: int) -> None:
    await column(dsn, "SELECT pg_terminate_backend(%s)", pid)


async def rebuild_refused(dsn: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        try:
            await store.rebuild(conn)
        except RuntimeError:
            return True
        return False


async def held_by_a_new_session(dsn: str, old: int) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while (found := await holders(dsn)) in ([], [old]):
        assert loop.time() < deadline, "the lock was not taken again"
        await asyncio.sleep(0.05)
    (pid,) = found
    return pid


async def started(dsn: str) -> tuple[psycopg.AsyncConnection[object], int]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await store.hold_instance_lock(conn)
    return conn, await store.generation(conn)


async def test_the_lock_is_taken_again_after_the_database_drops_it(queue_db: str) -> None:
    conn, generation = await started(queue_db)
    stop = asyncio.Event()
    keeping = asyncio.create_task(
        store.keep_instance_lock(queue_db, conn, generation, stop, every_s=0.1)
    )
    try:
        (first,) = await holders(queue_db)
        await drop_session(queue_db, first)
        await held_by_a_new_session(queue_db, first)
        assert await rebuild_refused(queue_db)
    finally:
        stop.set()
        await asyncio.wait_for(keeping, WAIT_S)
    assert await holders(queue_db) == []  # let go at the end


async def test_an_instance_that_finds_a_rebuild_ran_without_its_lock_stops(
    queue_db: str,
) -> None:
    conn, generation = await started(queue_db)
    keeping = asyncio.create_task(
        store.keep_instance_lock(queue_db, conn, generation, asyncio.Event(), every_s=0.1)
    )
    # As a rebuild leaves it, while the lock was away.
    await column(queue_db, "UPDATE queue_generation SET generation = generation + 1")
    (pid,) = await holders(queue_db)
    await drop_session(queue_db, pid)
    with pytest.raises(store.Rebuilt):
        await asyncio.wait_for(keeping, WAIT_S)

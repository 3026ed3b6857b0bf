"""The lock every running casequeue instance holds, which keeps a rebuild
from dropping the read model under it, on a real PostgreSQL: taken again
after the database drops it, and an instance that finds a rebuild ran
while it was not held stops (its consumer group no longer matches); its
consumer, which may find it first, applies nothing more."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from casemesh.events.v1 import casequeue_pb2 as qev
from casemesh.platform.envelope import CloudEvent, type_of
from casemesh.platform.pools import async_pool
from casemesh_casequeue import consumer, sla, store
from casemesh_casequeue.consumer import Progress
from tests.conftest import Infra
from tests.support import column, eventually

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


async def test_a_consumer_that_finds_a_rebuild_ran_under_it_applies_nothing(
    queue_db: str, infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart drops the instance's lock, and a rebuild runs in
    the seconds before the instance notices. An event then read is not
    applied to the new read model (its id recorded as consumed, the replay
    would skip it for good): the consumer ends the instance instead, and the
    record is neither set aside nor committed, but read again."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"it.rebuilt.{run}", f"it-rebuilt-{run}"
    await infra.kafka.create_topics([topic], partitions=1)
    monkeypatch.setattr(consumer, "TOPICS", (topic,))
    conn, generation = await started(queue_db)
    # The lock gone, as in a database restart.
    await conn.execute(f"SELECT pg_advisory_unlock_shared({store.INSTANCES_LOCK})")
    await conn.close()
    assert not await rebuild_refused(queue_db)  # the rebuild runs

    event = CloudEvent(
        id=f"tickets/{run}:7",
        source="casemesh/casequeue",
        type=type_of(qev.SlaWarning),
        subject=f"tickets/{run}",
        time=datetime.now(UTC),
        data=qev.SlaWarning().SerializeToString(),
        key=f"tickets/{run}",
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, event.data, key=event.key.encode(), headers=event.kafka_headers()
        )
    finally:
        await producer.stop()

    told: list[store.Rebuilt] = []
    pool = async_pool(queue_db, max_size=2)
    await pool.open()
    broker = consumer.build_broker(
        pool=pool,
        bootstrap=infra.kafka.bootstrap,
        group_id=group,
        levels=sla.load(),
        progress=Progress(),
        generation=generation,
        rebuilt=told.append,
    )
    await broker.start()
    try:
        await eventually(lambda: told, within=WAIT_S)
    finally:
        await broker.stop()
        await pool.close()
    assert await column(queue_db, "SELECT event_id FROM queue_consumed") == []
    assert await committed(infra.kafka.bootstrap, group, TopicPartition(topic, 0)) is None


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> Any:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    try:
        return await reader.committed(tp)
    finally:
        await reader.stop()


async def wait_for_lock(dsn: str, pid: int) -> bool:
    """Whether the session `pid` comes to wait on a lock (within WAIT_S)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        async with asyncio.timeout(WAIT_S):
            while True:
                cur = await admin.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
                )
                if (row := await cur.fetchone()) and row[0]:
                    return True
                await admin.execute("SELECT pg_sleep(0.05)")


async def test_a_rebuild_waits_for_the_batch_being_applied(queue_db: str) -> None:
    """A rebuild that comes while a batch is being applied waits for it (and
    then drops it with the rest); the next batch finds the new generation."""
    (generation,) = await column(queue_db, "SELECT generation FROM queue_generation")
    async with await psycopg.AsyncConnection.connect(queue_db) as applying:
        await store.check_generation(applying, generation)  # the batch's transaction
        async with await psycopg.AsyncConnection.connect(queue_db, autocommit=True) as other:
            rebuilding = asyncio.create_task(store.rebuild(other))
            # It reaches the generation's row and waits on the batch's lock.
            waiting = await wait_for_lock(queue_db, other.info.backend_pid)
            assert waiting and not rebuilding.done()
            await applying.commit()
            assert await asyncio.wait_for(rebuilding, WAIT_S) == generation + 1
        with pytest.raises(store.Rebuilt):
            await store.check_generation(applying, generation)

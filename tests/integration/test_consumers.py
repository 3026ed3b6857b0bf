"""Consumers on real neighbours: the shared consumer (`casemesh.platform.consuming`)
against a real Kafka broker and PostgreSQL, and the notifier's consumer on a
real database. A record that meets an outage is read again until it applies,
and nothing after it is committed first; a record that can never apply is set
aside where an operator finds it, and the records behind it are applied."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaRouter, TestKafkaBroker
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform import consuming
from casemesh.platform.clock import SystemClock
from casemesh.platform.consuming import (
    Place,
    consumer_broker,
    consumer_lag,
    start_broker,
    subscribe,
)
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.pools import async_pool
from casemesh_notifier.consumers import build_broker, build_router
from casemesh_notifier.planner import Planner
from casemesh_notifier.schema import create_schema
from tests.conftest import Infra
from tests.integration import test_delivery as delivery_test


def created(ticket: str) -> CloudEvent:
    """A ticket's first event, asking for e-mail only."""
    return delivery_test.created(ticket, channels=(ev.CONTACT_CHANNEL_EMAIL,))


@pytest.fixture()
async def pool(infra: Infra) -> AsyncIterator[AsyncConnectionPool[Any]]:
    name = f"consumers_it_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    await create_schema(dsn)  # the notifier's tables
    p = async_pool(dsn, min_size=1, max_size=4)
    await p.open()
    async with p.connection() as conn:
        await conn.execute("CREATE TABLE applied (n serial, event_id text PRIMARY KEY)")
    yield p
    await p.close()


async def rows(pool: AsyncConnectionPool[Any], sql: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        found: list[tuple[Any, ...]] = await (await conn.execute(sql)).fetchall()
        return found


async def test_an_outage_is_ridden_out_and_a_bad_record_set_aside_on_a_real_broker(
    infra: Infra, pool: AsyncConnectionPool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consuming, "FIRST_PAUSE_S", 0.2)
    topic = f"it.consuming.{uuid.uuid4().hex[:8]}"
    group = f"it-{topic}"
    await infra.kafka.create_topics([topic], partitions=1)
    outage = [psycopg.OperationalError("the database is away")] * 3

    async def apply(event: CloudEvent, place: Place) -> None:
        if event.id == "b:1" and outage:
            raise outage.pop()
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO applied (event_id) VALUES (%s) ON CONFLICT DO NOTHING", (event.id,)
            )

    def build() -> Any:
        router = KafkaRouter()
        subscribe(router, [topic], consumer="it-consumer", group_id=group, handle=apply)
        return consumer_broker(infra.kafka.bootstrap, "it-consumer", router)

    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    await producer.start()
    try:
        for record in (created("a"), None, created("b"), created("c")):
            if record is None:  # no envelope at all
                await producer.send_and_wait(topic, b"\x00not an event", key=b"x")
            else:
                await producer.send_and_wait(
                    topic, record.data, key=record.key.encode(), headers=record.kafka_headers()
                )
    finally:
        await producer.stop()

    stop = asyncio.Event()
    broker = await start_broker(build, stop, "it_consumer")
    assert broker is not None
    try:

        async def done() -> bool:
            lag = await consumer_lag(infra.kafka.bootstrap, group, [topic])
            return sum(lag.values()) == 0

        for _ in range(120):
            if await done():
                break
            await asyncio.sleep(0.5)
        assert await done(), "the consumer did not commit every record within 60 s"
    finally:
        await broker.stop()

    # b waited out the outage, in its place; c came after it; all committed.
    assert await rows(pool, "SELECT event_id FROM applied ORDER BY n") == [
        ("a:1",),
        ("b:1",),
        ("c:1",),
    ]
    assert outage == []
    assert (
        REGISTRY.get_sample_value(
            "casemesh_consumer_set_aside_total",
            {"consumer": "it-consumer", "topic": topic, "reason": "malformed_envelope"},
        )
        == 1.0
    )


async def test_the_notifier_keeps_what_it_cannot_plan_and_plans_the_rest(
    pool: AsyncConnectionPool[Any],
) -> None:
    router = build_router(pool=pool, group_id="it", clock=SystemClock(), planner=Planner())
    broker = build_broker("unused:9092", router)
    good = created("t1")
    headers = {k: v.decode() for k, v in good.kafka_headers()}
    unknown = {**headers, "ce_id": "t2:1", "ce_type": "casemesh.tickets.TicketLost.v1"}
    async with TestKafkaBroker(broker) as b:
        await b.publish(b"garbage", "casemesh.tickets.v1", headers={"ce_id": "x"})
        await b.publish(good.data, "casemesh.tickets.v1", key=b"t2", partition=1, headers=unknown)
        await b.publish(good.data, "casemesh.tickets.v1", key=b"t1", headers=headers)
        await b.publish(good.data, "casemesh.tickets.v1", key=b"t1", headers=headers)

    kept = await rows(pool, "SELECT consumer, event_id, topic, error FROM unprocessable_events")
    assert sorted((c, e, t, err.split(":")[0]) for c, e, t, err in kept) == [
        ("notifier", "", "casemesh.tickets.v1", "malformed_envelope"),
        ("notifier", "t2:1", "casemesh.tickets.v1", "unknown_type"),
    ]
    # The good one planned once, though it came twice.
    assert await rows(pool, "SELECT event_id FROM consumed_events") == [("t1:1",)]
    jobs = await rows(pool, "SELECT channel FROM notification_jobs")
    assert jobs == [("EMAIL",)]

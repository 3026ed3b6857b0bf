"""A relay asked to stop while Kafka is away stops within a bound (SIGTERM
is not left to the orchestrator's SIGKILL): aiokafka's idempotent producer
retries what it sent for as long as the broker is away, so neither the
wait for its acks nor its own `stop` would ever end. What it had sent is not
recorded as published (sent again by the next relay). The tickets relay and
an outbox publisher, each on a broker of its own that is stopped under it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from casemesh.platform import outbox
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.ports import free_port
from casemesh_tickets.application import Tickets
from tests.conftest import REPO, Infra
from tests.integration.test_pools import new_ticket
from tests.integration.test_relay_wakeups import ALICE, relay_after_a_ticket
from tests.support import eventually

# Generous: a relay that stops does so within STOP_WAIT_S two or three times over.
STOPS_WITHIN_S = 60.0


@pytest.fixture()
def kafka(infra: Infra) -> Iterator[LocalKafka]:
    """A broker of the test's own, to stop under it."""
    broker = LocalKafka(
        infra.root / f"kafka-{uuid.uuid4().hex[:8]}",
        free_port(),
        free_port(),
        REPO / ".run" / "cache" / "kafka-4.1.1",
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def counting_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one with each message handed to a producer."""
    sends: list[int] = []
    send = AIOKafkaProducer.send

    async def counted(self: AIOKafkaProducer, *args: Any, **kwargs: Any) -> Any:
        sends.append(1)
        return await send(self, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaProducer, "send", counted)
    return sends


async def stops_in_time(
    kafka: LocalKafka, running: asyncio.Task[None], stop: asyncio.Event
) -> None:
    """Sets `stop` and waits for `running` to end: it must, Kafka still away."""
    stop.set()
    done, _ = await asyncio.wait({running}, timeout=STOPS_WITHIN_S)
    if not done:  # the broker back, so that the stuck relay ends with the test
        await asyncio.to_thread(kafka.start)
        await asyncio.wait({running}, timeout=STOPS_WITHIN_S)
    assert done, f"still running {STOPS_WITHIN_S:.0f} s after it was asked to stop"
    running.result()


async def test_a_relay_stops_in_time_while_kafka_is_away(
    kafka: LocalKafka, dsn: str, app: Tickets, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await relay_after_a_ticket(app, kafka, dsn)
    sends = counting_sends(monkeypatch)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.position == 1)
        await asyncio.to_thread(kafka.stop)
        await asyncio.to_thread(app.create_ticket, ALICE, new_ticket("during"))
        await eventually(lambda: len(sends) == 2)  # sent; no broker to take it
        await stops_in_time(kafka, running, stop)
        assert relay.position == 1, "recorded as published without the broker's ack"
    finally:
        stop.set()
        if not running.done():
            running.cancel()


async def test_an_outbox_publisher_stops_in_time_while_kafka_is_away(
    kafka: LocalKafka, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    await kafka.create_topics([topic], partitions=1)
    box = outbox.Outbox("unit_outbox", topic, "casemesh/unit", "case_id")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(outbox.outbox_schema(box))

    def add_row() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO unit_outbox (event_id, case_id, ce_type, payload, created_at)"
                " VALUES (%s, %s, 'casemesh.unit.Happened.v1', '', %s)",
                (str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC)),
            )
            conn.execute("NOTIFY unit_outbox")

    def unpublished() -> int:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM unit_outbox WHERE published_at IS NULL"
            ).fetchone()
        return row[0] if row else -1

    publisher = outbox.OutboxPublisher(
        conninfo=dsn, bootstrap=kafka.bootstrap, outbox=box, client_id="unit"
    )
    sends = counting_sends(monkeypatch)
    add_row()
    stop = asyncio.Event()
    running = asyncio.create_task(publisher.run(stop))
    try:
        await eventually(lambda: unpublished() == 0)
        await asyncio.to_thread(kafka.stop)
        await asyncio.to_thread(add_row)
        await eventually(lambda: len(sends) == 2)
        await stops_in_time(kafka, running, stop)
        assert unpublished() == 1, "marked published without the broker's ack"
    finally:
        stop.set()
        if not running.done():
            running.cancel()


def starts_for_ever(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Producers whose start never ends (an idempotent one asks for its id
    until the broker answers: a broker reachable for its first request, then
    not); a list that grows by one with each start begun."""
    begun: list[int] = []

    async def never(self: AIOKafkaProducer) -> None:
        begun.append(1)
        await asyncio.Event().wait()

    monkeypatch.setattr(AIOKafkaProducer, "start", never)
    return begun


async def test_a_relay_whose_producer_cannot_start_stops_in_time(
    kafka: LocalKafka, dsn: str, app: Tickets, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = await relay_after_a_ticket(app, kafka, dsn)
    begun = starts_for_ever(monkeypatch)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: len(begun) == 1)
        await stops_in_time(kafka, running, stop)
        assert relay.position == 0
    finally:
        stop.set()
        if not running.done():
            running.cancel()


async def test_an_outbox_publisher_whose_producer_cannot_start_stops_in_time(
    kafka: LocalKafka, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = outbox.Outbox("unit_outbox", "test.outbox.never", "casemesh/unit", "case_id")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(outbox.outbox_schema(box))
    publisher = outbox.OutboxPublisher(
        conninfo=dsn, bootstrap=kafka.bootstrap, outbox=box, client_id="unit"
    )
    begun = starts_for_ever(monkeypatch)
    stop = asyncio.Event()
    running = asyncio.create_task(publisher.run(stop))
    try:
        await eventually(lambda: len(begun) == 1)
        await stops_in_time(kafka, running, stop)
    finally:
        stop.set()
        if not running.done():
            running.cancel()

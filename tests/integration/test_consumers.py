"""Consumers on real neighbours: the shared consumer (`casemesh.platform.consuming`)
against a real Kafka broker and PostgreSQL, and the notifier's consumer on a
real database. A record that meets an outage is read again until it applies,
and nothing after it is committed first; a record that can never apply is set
aside where an operator finds it, and the records behind it are applied."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.produce import ProduceRequest
from faststream.kafka import KafkaRouter, TestKafkaBroker
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from casemesh import topics
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform import consuming
from casemesh.platform.clock import Clock, SystemClock
from casemesh.platform.consuming import (
    HeardUntil,
    Place,
    consumer_broker,
    consumer_lag,
    start_broker,
    subscribe,
)
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.personal import ERASED
from casemesh.platform.pools import async_pool, guard_pool
from casemesh_notifier.consumers import build_broker, build_router
from casemesh_notifier.planner import Planner
from casemesh_notifier.schema import create_schema
from tests.conftest import Infra
from tests.integration import test_delivery as delivery_test
from tests.integration.test_notifier_erasure import erasure, processes
from tests.support import Hearing, memory_sealer, record_batch

notifier = delivery_test.notifier  # the notifier on a real database, sending to fakes


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


@dataclass(frozen=True)
class Garbled:
    """An event's record with a header value that is not UTF-8 text, or
    null (none of ours writes one; any producer can)."""

    event: CloudEvent
    value: bytes | None = b"\xff\xfe latin-1: caf\xe9"


async def produce(
    infra: Infra,
    topic: str,
    records: Sequence[CloudEvent | Garbled | None],
    partition: int | None = None,
) -> None:
    """Writes the records to `topic` (None: a record with no envelope at all),
    to `partition` if given."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    await producer.start()
    try:
        for record in records:
            if record is None:
                await producer.send_and_wait(
                    topic, b"\x00not an event", key=b"x", partition=partition
                )
            elif isinstance(record, Garbled):
                event = record.event
                headers = [*event.kafka_headers(), ("x-origin", record.value)]
                await producer.send_and_wait(
                    topic, event.data, key=event.key.encode(), headers=headers, partition=partition
                )
            else:
                await producer.send_and_wait(
                    topic,
                    record.data,
                    key=record.key.encode(),
                    headers=record.kafka_headers(),
                    partition=partition,
                )
    finally:
        await producer.stop()


async def produce_unreadable(infra: Infra, topic: str, partition: int, event: CloudEvent) -> None:
    """Writes `event`'s record to `partition` with one header more, whose name
    is not UTF-8 text. aiokafka's producer cannot write it (it encodes names)
    and its consumer fails to read it; any other producer can write it, and
    Kafka keeps it. So it goes as a record batch of its own, made by hand, in
    a produce request of its own."""
    headers = [*event.kafka_headers(), ("?-origin", b"elsewhere")]
    batch = record_batch([(event.key.encode(), event.data, headers)], unreadable="?-origin")
    client = AIOKafkaClient(bootstrap_servers=infra.kafka.bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        request = ProduceRequest(
            transactional_id=None,
            required_acks=-1,
            timeout=10_000,
            topics=[(topic, [(partition, batch)])],
        )
        response = await client.send(leader, request)
        [(_, [(_, error, *_)])] = response.topics
        assert error == 0, f"Kafka refused the record: error {error}"
    finally:
        await client.close()


async def consume_all(infra: Infra, build: Any, group: str, topic: str) -> None:
    """Runs the consumer `build` makes until `group` committed every record of `topic`."""
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


def set_aside_count(consumer: str, topic: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "casemesh_consumer_set_aside_total",
        {"consumer": consumer, "topic": topic, "reason": reason},
    )
    return value or 0.0


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

    garbled = Garbled(created("garbled"))
    await produce(infra, topic, [created("a"), None, created("b"), garbled, created("c")])
    await consume_all(infra, build, group, topic)

    # b waited out the outage, in its place; c came after it; all committed.
    # The record with no envelope and the one whose header is not text were
    # set aside.
    assert await rows(pool, "SELECT event_id FROM applied ORDER BY n") == [
        ("a:1",),
        ("b:1",),
        ("c:1",),
    ]
    assert outage == []
    assert set_aside_count("it-consumer", topic, "malformed_envelope") == 2.0


async def test_pooled_connections_read_a_table_after_another_release_adds_a_column(
    pool: AsyncConnectionPool[Any],
) -> None:
    """A rolling deploy: the new release's schema step adds a column to a
    table the old release's pooled connections have read many times with
    `SELECT *` (a consumer loading a case, say). Their next read still
    works (a statement psycopg had prepared by itself would fail on each of
    them: "cached plan must not change result type"), on a services' pool
    and on the event store's; a statement prepared on purpose still is."""
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE cases_read (name text PRIMARY KEY, status text)")
        await conn.execute("INSERT INTO cases_read VALUES ('c-1', 'open')")
    query = "SELECT * FROM cases_read WHERE name = %s"
    conninfo = pool.conninfo
    assert isinstance(conninfo, str)
    # One connection each, so that every read is on it.
    event_store = ConnectionPool(
        conninfo, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    guard_pool(event_store)  # as the event store's pool is
    services = async_pool(conninfo, max_size=1)

    async def read() -> list[tuple[Any, ...]]:
        async with services.connection() as conn:
            services_row = await (await conn.execute(query, ("c-1",))).fetchone()
        with event_store.connection() as conn:
            event_store_row = conn.execute(query, ("c-1",)).fetchone()
        return [services_row, event_store_row]

    async with services:
        with event_store:
            for _ in range(8):  # past psycopg's threshold for preparing a statement
                assert await read() == [("c-1", "open")] * 2
            async with pool.connection() as conn:  # the new release's schema step
                await conn.execute("ALTER TABLE cases_read ADD COLUMN lane text DEFAULT 'general'")
            assert await read() == [("c-1", "open", "general")] * 2

            with event_store.connection() as conn:
                conn.execute("SELECT count(*) FROM cases_read", prepare=True)
                prepared = conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
            assert prepared == [("SELECT count(*) FROM cases_read",)]


async def test_how_far_a_group_has_heard_its_topics_follows_its_committed_offsets(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"it.heard.{uuid.uuid4().hex[:8]}"
    group = f"it-{topic}"
    await infra.kafka.create_topics([topic], partitions=2)
    applied: list[str] = []

    async def apply(event: CloudEvent, place: Place) -> None:
        applied.append(event.id)

    def build() -> Any:
        router = KafkaRouter()
        subscribe(router, [topic], consumer="it-heard", group_id=group, handle=apply)
        return consumer_broker(infra.kafka.bootstrap, "it-heard", router)

    heard = HeardUntil(infra.kafka.bootstrap, group, [topic])
    start = datetime(2026, 12, 1, tzinfo=UTC)
    minute = timedelta(minutes=1)
    await produce(infra, topic, [created("a"), created("b"), created("c")])
    assert await heard.check(start) is None  # the group has read nothing yet

    await consume_all(infra, build, group, topic)
    assert await heard.check(start + minute) == start + minute
    await produce(infra, topic, [created("d")])
    assert await heard.check(start + 2 * minute) == start + minute  # d not read yet
    assert await heard.check(start + 3 * minute) == start + minute

    def away(*_: Any) -> Any:
        raise KafkaConnectionError("Kafka is away")

    with monkeypatch.context() as kafka:
        kafka.setattr(consuming, "group_positions", away)
        assert await heard.check(start + 4 * minute) == start + minute  # the last known
    await consume_all(infra, build, group, topic)
    # Read to its end: everything written before the second check is heard,
    # and so is everything before this one.
    assert await heard.check(start + 5 * minute) == start + 5 * minute
    assert sorted(applied) == ["a:1", "b:1", "c:1", "d:1"]
    # A topic Kafka does not describe (not made yet, or a broker that does not
    # know it yet) is not taken as read.
    partly = HeardUntil(infra.kafka.bootstrap, group, [topic, f"{topic}.missing"])
    assert await partly.check(start + 6 * minute) is None


async def test_the_notifier_keeps_what_it_cannot_plan_and_plans_the_rest(
    pool: AsyncConnectionPool[Any],
) -> None:
    router = build_router(
        pool=pool, group_id="it", clock=SystemClock(), planner=Planner(memory_sealer())
    )
    broker = build_broker("unused:9092", router)
    good = created("t1")
    headers = {k: v.decode() for k, v in good.kafka_headers()}
    unknown = {**headers, "ce_id": "t2:1", "ce_type": "casemesh.tickets.TicketLost.v1"}
    async with TestKafkaBroker(broker) as b:
        await b.publish(b"garbage", topics.TICKETS, headers={"ce_id": "x"})
        await b.publish(good.data, topics.TICKETS, key=b"t2", partition=1, headers=unknown)
        await b.publish(good.data, topics.TICKETS, key=b"t1", headers=headers)
        await b.publish(good.data, topics.TICKETS, key=b"t1", headers=headers)

    kept = await rows(pool, "SELECT consumer, event_id, topic, error FROM unprocessable_events")
    assert sorted((c, e, t, err.split(":")[0]) for c, e, t, err in kept) == [
        ("notifier", "", topics.TICKETS, "malformed_envelope"),
        ("notifier", "t2:1", topics.TICKETS, "unknown_type"),
    ]
    # The good one planned once, though it came twice.
    assert await rows(pool, "SELECT event_id FROM consumed_events") == [("t1:1",)]
    jobs = await rows(pool, "SELECT channel FROM notification_jobs")
    assert jobs == [("EMAIL",)]


class Batches(Planner):
    """The notifier's planner, noting the transaction each batch of events
    was planned in; `fault`, if set, is called as each batch is planned."""

    def __init__(self) -> None:
        super().__init__(memory_sealer())
        self.planned: list[tuple[int, str]] = []  # (transaction id, event id)
        self.fault: Any = None

    async def plan_batch(
        self,
        conn: psycopg.AsyncConnection[Any],
        events: Sequence[tuple[CloudEvent, Any]],
        now: Any,
        spans: Any = None,
    ) -> Any:
        row = await (await conn.execute("SELECT txid_current()")).fetchone()
        assert row is not None
        self.planned.extend((row[0], event.id) for event, _ in events)
        if self.fault is not None:
            await self.fault(conn, [event for event, _ in events])
        return await super().plan_batch(conn, events, now, spans)

    def transactions(self) -> list[list[str]]:
        """The event ids planned in each transaction, in order."""
        by_tx: dict[int, list[str]] = {}
        for tx, event_id in self.planned:
            by_tx.setdefault(tx, []).append(event_id)
        return list(by_tx.values())


async def notifier_topic(infra: Infra) -> tuple[str, str]:
    topic = f"it.notifier.{uuid.uuid4().hex[:8]}"
    await infra.kafka.create_topics([topic], partitions=1)
    return topic, f"it-{topic}"


def notifier_build(
    infra: Infra,
    pool: AsyncConnectionPool[Any],
    planner: Planner,
    group: str,
    topic: str,
    clock: Clock | None = None,
) -> Any:
    return lambda: build_broker(
        infra.kafka.bootstrap,
        build_router(
            pool=pool,
            group_id=group,
            clock=clock or SystemClock(),
            planner=planner,
            topic_names=[topic],
        ),
    )


async def test_a_poison_record_in_a_batch_is_set_aside_alone_and_its_batch_mates_planned(
    infra: Infra, pool: AsyncConnectionPool[Any]
) -> None:
    topic, group = await notifier_topic(infra)
    before = set_aside_count("notifier", topic, "handler_error")
    good = [created(f"good-{n}") for n in range(5)]
    # A ticket's first event whose body is no TicketCreated: planning it fails
    # for good, and with it the batch it came in.
    poison = replace(created("poison"), data=b"\xff\xff\xff")
    await produce(infra, topic, [*good[:2], poison, *good[2:]])
    planner = Batches()

    await consume_all(infra, notifier_build(infra, pool, planner, group, topic), group, topic)

    # They came as one batch; its transaction was rolled back at the poison,
    # then each was planned alone.
    ids = [e.id for e in good]
    first, *alone = planner.transactions()
    assert first == [*ids[:2], poison.id, *ids[2:]]
    assert alone == [[i] for i in [*ids[:2], poison.id, *ids[2:]]]
    assert sorted(await rows(pool, "SELECT event_id FROM consumed_events")) == [
        (i,) for i in sorted(ids)
    ]
    assert len(await rows(pool, "SELECT id FROM notification_jobs")) == len(good)
    kept = await rows(pool, "SELECT event_id, kafka_offset, error FROM unprocessable_events")
    assert [(e, o, err.split(":")[0]) for e, o, err in kept] == [(poison.id, 2, "handler_error")]
    assert set_aside_count("notifier", topic, "handler_error") == before + 1


async def test_a_record_whose_header_is_not_text_is_set_aside_and_its_batch_mates_planned(
    infra: Infra, pool: AsyncConnectionPool[Any]
) -> None:
    """The broker's client would have failed the whole batch before the
    consumer saw it, and the next commit gone past it: every record lost."""
    topic, group = await notifier_topic(infra)
    before = set_aside_count("notifier", topic, "malformed_envelope")
    good = [created(f"good-{n}") for n in range(4)]
    garbled = [Garbled(created("garbled")), Garbled(created("null"), None)]
    await produce(infra, topic, [*good[:2], *garbled, *good[2:]])

    await consume_all(infra, notifier_build(infra, pool, Batches(), group, topic), group, topic)

    assert sorted(await rows(pool, "SELECT event_id FROM consumed_events")) == sorted(
        (e.id,) for e in good
    )
    assert len(await rows(pool, "SELECT id FROM notification_jobs")) == len(good)
    kept = await rows(pool, "SELECT kafka_offset, error FROM unprocessable_events ORDER BY 1")
    assert [(o, err.split(":")[0]) for o, err in kept] == [
        (2, "malformed_envelope"),
        (3, "malformed_envelope"),
    ]
    assert set_aside_count("notifier", topic, "malformed_envelope") == before + 2


async def test_a_record_the_kafka_client_cannot_read_is_set_aside_and_loses_no_other(
    infra: Infra, pool: AsyncConnectionPool[Any]
) -> None:
    """aiokafka fails to read a record whose header name is not UTF-8 text
    (before any parser of ours). Taking it with other partitions' records
    would throw theirs away, and move those partitions past them; and the
    record would be fetched again, and fail again, for ever."""
    topic = f"it.notifier.{uuid.uuid4().hex[:8]}"
    group = f"it-{topic}"
    await infra.kafka.create_topics([topic], partitions=2)
    before = set_aside_count("notifier", topic, "malformed_envelope")
    first = [created(f"first-{n}") for n in range(5)]
    unreadable = created("unreadable")
    after = [created(f"after-{n}") for n in range(2)]
    # Fetched together: partition 0's records, then the unreadable one first
    # on partition 1, with the records behind it.
    await produce(infra, topic, first, partition=0)
    await produce_unreadable(infra, topic, 1, unreadable)
    await produce(infra, topic, after, partition=1)

    build = notifier_build(infra, pool, Batches(), group, topic)
    await consume_all(infra, build, group, topic)

    # Every record of partition 0 planned, and those behind the unreadable one.
    planned = sorted(await rows(pool, "SELECT event_id FROM consumed_events"))
    assert planned == sorted((e.id,) for e in [*first, *after])
    assert len(await rows(pool, "SELECT id FROM notification_jobs")) == len(first) + len(after)
    # The unreadable one set aside where an operator finds it, once.
    kept = await rows(
        pool, "SELECT event_id, kafka_partition, kafka_offset, error FROM unprocessable_events"
    )
    assert [(e, p, o, err.split(":")[0]) for e, p, o, err in kept] == [
        ("", 1, 0, "malformed_envelope")
    ]
    assert "UnicodeDecodeError" in kept[0][3]
    assert set_aside_count("notifier", topic, "malformed_envelope") == before + 1

    # The partition is not stuck behind it: what comes next is planned.
    later = created("later")
    await produce(infra, topic, [later], partition=1)
    await consume_all(infra, build, group, topic)
    assert (later.id,) in await rows(pool, "SELECT event_id FROM consumed_events")
    assert len(await rows(pool, "SELECT event_id FROM unprocessable_events")) == 1


async def test_a_database_outage_mid_batch_loses_nothing_and_sends_nothing_twice(
    infra: Infra, notifier: delivery_test.Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consuming, "FIRST_PAUSE_S", 0.2)
    topic, group = await notifier_topic(infra)
    events = [created(f"outage-{n}") for n in range(6)]
    await produce(infra, topic, list(events))
    planner = Batches()

    async def connection_dies(conn: psycopg.AsyncConnection[Any], batch: list[CloudEvent]) -> None:
        """The server ends the planning session of the first batch."""
        if planner.fault is not None:
            planner.fault = None
            async with await psycopg.AsyncConnection.connect(notifier.dsn) as other:
                await other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

    planner.fault = connection_dies
    await consume_all(
        infra,
        notifier_build(infra, notifier.pool, planner, group, topic, notifier.clock),
        group,
        topic,
    )

    ids = [e.id for e in events]
    first, *again = planner.transactions()
    assert first == ids  # planned, then rolled back with the session
    assert [i for tx in again for i in tx] == ids  # read again from the batch's first
    assert sorted(notifier.rows("SELECT event_id FROM consumed_events")) == [
        (i,) for i in sorted(ids)
    ]
    assert notifier.rows("SELECT count(*) FROM unprocessable_events") == [(0,)]
    assert await notifier.drain() == len(events)
    assert await notifier.drain() == 0
    sent = [m.job_id for m in notifier.email.delivered]
    assert len(sent) == len(set(sent)) == len(events)  # one e-mail an event, each once


async def test_an_erasure_read_from_the_topic_cancels_the_persons_unsent_jobs(
    infra: Infra, notifier: delivery_test.Notifier
) -> None:
    topic, group = await notifier_topic(infra)
    first, second = created("erased-1"), created("erased-2")
    erased = erasure("alice")  # the requester of both tickets
    # The first ticket's job is planned before the erasure arrives; the
    # second's comes with it (and the erasure twice: redelivered).
    await produce(infra, topic, [first])
    build = notifier_build(
        infra, notifier.pool, Planner(memory_sealer()), group, topic, notifier.clock
    )
    await consume_all(infra, build, group, topic)
    await produce(infra, topic, [second, erased, erased])
    await consume_all(infra, build, group, topic)

    assert sorted(notifier.rows("SELECT event_id FROM consumed_events")) == sorted(
        [(first.id,), (second.id,), (erased.id,)]
    )
    assert (
        notifier.rows("SELECT status, recipient, subject, body FROM notification_jobs")
        == [("cancelled", "", "", "")] * 2
    )
    assert (
        notifier.rows("SELECT user_id, email, phone, subject FROM case_parties")
        == [("alice", "", "", "")] * 2
    )
    assert await notifier.drain() == 0
    assert notifier.email.delivered == []


async def test_every_replica_forgets_the_keys_it_holds_of_an_erased_person(
    infra: Infra,
) -> None:
    """As the notifier's `__main__` wires it: each process's own follower of
    erasures drops the person's keys from its sealer."""
    await infra.kafka.create_topics([topics.PRIVACY])
    privacy, *replicas = processes(3)
    person = f"users/{uuid.uuid4().hex[:8]}"
    token = privacy.sealer.seal("lin@example.com", person)
    # Each replica revealed something of theirs: it holds their key.
    assert [r.sealer.reveal(token) for r in replicas] == ["lin@example.com"] * 2
    await privacy.erase(person)
    assert [r.sealer.reveal(token) for r in replicas] == ["lin@example.com"] * 2

    cfg = Hearing("notifier", infra.kafka.bootstrap)
    followers = [ErasureFollower(cfg, None, replica.forget) for replica in replicas]
    for follower in followers:
        follower.start()
    try:
        await produce(infra, topics.PRIVACY, [erasure(person)])

        def forgotten() -> list[bool]:
            return [r.sealer.reveal(token) == ERASED for r in replicas]

        for _ in range(120):
            if all(forgotten()):
                break
            await asyncio.sleep(0.5)
        assert forgotten() == [True, True], "each replica forgets within 60 s"
    finally:
        for follower in followers:
            await asyncio.to_thread(follower.stop)

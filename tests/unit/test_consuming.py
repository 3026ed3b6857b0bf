"""The one way Casemesh consumers receive events (`casemesh.platform.consuming`):
a record that can never apply is set aside, counted and committed, and the
next one is applied; a record that meets an outage is not committed and is
applied when it comes again; the handler runs in the trace of the action that
caused the event. FastStream's TestKafkaBroker: no broker needed."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing import persistence
from faststream.kafka import KafkaBroker, KafkaRouter, TestKafkaBroker
from faststream.kafka import message as kafka_message
from opentelemetry import trace
from prometheus_client import REGISTRY

from casemesh import topics
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform import consuming
from casemesh.platform.consuming import Place, SetAside, subscribe
from casemesh.platform.envelope import CloudEvent, message_class
from casemesh.platform.personal.errors import UnknownDataKey, UnknownMasterKey
from casemesh.platform.pools import DatabaseUnavailable
from casemesh.platform.telemetry import configure_tracing
from casemesh_devstack.ports import free_port

TOPIC = topics.TICKETS
CONSUMER = "unit-consumer"


def ticket_event(
    n: int, *, type: str = "casemesh.tickets.TicketSolved.v1", **kw: Any
) -> CloudEvent:
    return CloudEvent(
        id=f"ticket-{n}:1",
        source="casemesh/tickets",
        type=type,
        subject=f"tickets/ticket-{n}",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data=tev.TicketSolved(
            header=tev.TicketEventHeader(ticket_id=f"ticket-{n}")
        ).SerializeToString(),
        key=f"ticket-{n}",
        **kw,
    )


def set_aside_count(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "casemesh_consumer_set_aside_total",
        {"consumer": CONSUMER, "topic": TOPIC, "reason": reason},
    )
    return value or 0.0


@dataclass
class Consumer:
    """A consumer whose handler fails as told, and what became of each record."""

    broker: KafkaBroker
    applied: list[str] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    fail: dict[str, list[Exception]] = field(default_factory=dict)  # event id -> next failures
    aside_fails: list[Exception] = field(default_factory=list)
    commits: int = 0
    committed: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    rewinds: list[int] = field(default_factory=list)
    trace_ids: list[int] = field(default_factory=list)
    spans: list[Any] = field(default_factory=list)

    async def send(self, event: CloudEvent) -> None:
        headers = {k: v.decode() for k, v in event.kafka_headers()}
        await self.publish(event.data, key=event.key.encode(), headers=headers)

    async def publish(self, body: bytes, **kw: Any) -> None:
        await self.broker.publish(body, TOPIC, **kw)
        # Its commit goes in the background, with nothing to wait for here.
        await asyncio.sleep(0)


@pytest.fixture()
async def consumer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Consumer]:
    monkeypatch.setattr(consuming, "FIRST_PAUSE_S", 0.0)
    monkeypatch.setattr(consuming, "MAX_PAUSE_S", 0.0)
    monkeypatch.setattr(consuming, "COMMIT_EVERY_S", 0.0)
    router = KafkaRouter()
    c = Consumer(consuming.consumer_broker("localhost:9092", "unit", router))

    async def handle(event: CloudEvent, place: Place) -> None:
        c.trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        c.spans.append(trace.get_current_span())
        failures = c.fail.get(event.id)
        if failures:
            raise failures.pop(0)
        c.applied.append(event.id)

    async def keep(aside: SetAside) -> None:
        if c.aside_fails:
            raise c.aside_fails.pop(0)
        c.set_aside.append(aside)

    async def commit(self: Any, offsets: dict[Any, int]) -> None:
        c.commits += 1
        c.committed.update({tp.partition: end for tp, end in offsets.items()})

    def seek(self: Any, partition: Any, offset: int) -> None:
        c.rewinds.append(offset)

    # What the acknowledgement does to the group's offset.
    monkeypatch.setattr(kafka_message.FakeConsumer, "commit", commit)
    monkeypatch.setattr(kafka_message.FakeConsumer, "seek", seek)
    subscribe(router, [TOPIC], consumer=CONSUMER, group_id="unit", handle=handle, set_aside=keep)
    async with TestKafkaBroker(c.broker) as broker:
        c.broker = broker
        yield c


async def test_a_record_that_can_never_apply_is_set_aside_and_the_next_is_applied(
    consumer: Consumer,
) -> None:
    before = {r: set_aside_count(r) for r in consuming.REASONS}
    # Not a CloudEvent at all.
    await consumer.publish(b"\x00garbage", headers={"ce_id": "x"})
    # A type no Casemesh service publishes.
    await consumer.send(ticket_event(1, type="casemesh.tickets.TicketTeleported.v1"))
    # The handler finds it cannot apply (not an outage).
    consumer.fail["ticket-2:1"] = [ValueError("no such case")]
    await consumer.send(ticket_event(2))
    await consumer.send(ticket_event(3))

    assert consumer.applied == ["ticket-3:1"]
    assert [(a.reason, a.event.id if a.event else None) for a in consumer.set_aside] == [
        ("malformed_envelope", None),
        ("unknown_type", "ticket-1:1"),
        ("handler_error", "ticket-2:1"),
    ]
    assert "no such case" in consumer.set_aside[2].error
    for reason in consuming.REASONS:
        assert set_aside_count(reason) == before[reason] + 1, reason
    # Each was committed, so none blocks the partition.
    assert consumer.commits == 4
    assert consumer.rewinds == []


async def test_a_record_not_yet_due_is_read_again_quietly(consumer: Consumer) -> None:
    """A handler waiting for a record's time (`Later`: an erasure's second
    pass): the record is read again, not committed nor set aside, and its
    span is no error (traces sampled on errors, error rates, would count
    every wait)."""
    configure_tracing("unit")
    consumer.fail["ticket-5:1"] = [consuming.Later(0.0)]
    await consumer.send(ticket_event(5))
    assert (consumer.applied, consumer.set_aside, consumer.commits) == ([], [], 0)
    assert len(consumer.rewinds) == 1
    [waited] = consumer.spans
    assert waited.status.status_code is not trace.StatusCode.ERROR
    assert not waited.events  # no exception recorded
    await consumer.send(ticket_event(5))
    assert consumer.applied == ["ticket-5:1"] and consumer.commits == 1


async def test_a_body_no_decoder_could_read_is_set_aside_not_read_for_ever(
    consumer: Consumer,
) -> None:
    before = set_aside_count("malformed_envelope")
    for content_type, body in (("application/json", b"not json"), ("text/plain", b"\xff\xfe")):
        await consumer.publish(body, headers={"ce_id": "y", "content-type": content_type})
    await consumer.send(ticket_event(4))
    assert [a.reason for a in consumer.set_aside] == ["malformed_envelope"] * 2
    assert consumer.applied == ["ticket-4:1"]
    assert (consumer.commits, consumer.rewinds) == (3, [])
    assert set_aside_count("malformed_envelope") == before + 2


async def test_a_record_that_meets_an_outage_is_not_committed_and_applies_when_read_again(
    consumer: Consumer,
) -> None:
    before = sum(set_aside_count(r) for r in consuming.REASONS)
    failures: list[Exception] = [
        psycopg.OperationalError("the database is away"),
        OSError("connection refused"),
        DatabaseUnavailable("no connection within 1 s"),
        # What the event store makes of "read-only transaction" from a
        # primary demoted in a failover.
        persistence.InternalError("cannot execute INSERT in a read-only transaction"),
        # The database not yet as the consumer expects: a statement prepared
        # before another release's schema step added a column, a cluster
        # made anew at the address, not yet given its tables.
        psycopg.errors.FeatureNotSupported("cached plan must not change result type"),
        psycopg.errors.UndefinedTable('relation "queue_cases" does not exist'),
        persistence.ProgrammingError('relation "reports_events" does not exist'),
        # A personal-data key this process cannot have yet.
        UnknownMasterKey("a data key wrapped by master key 2027-01, not in the secret"),
        UnknownDataKey("no data key 7 in the key database"),
    ]
    consumer.fail["ticket-7:1"] = list(failures)
    event = ticket_event(7)
    await consumer.send(event)
    assert consumer.applied == []
    assert (consumer.commits, consumer.rewinds) == (0, [0])  # rewound to the record
    for tries in range(2, len(failures) + 1):
        await consumer.send(event)  # what the rewind makes Kafka do
        assert (consumer.commits, consumer.rewinds) == (0, [0] * tries)
    await consumer.send(event)
    assert consumer.applied == ["ticket-7:1"]
    assert consumer.commits == 1
    assert consumer.set_aside == []
    assert sum(set_aside_count(r) for r in consuming.REASONS) == before


def wrapped(error: psycopg.Error) -> persistence.ProgrammingError:
    """`error` as the event store raises it: its own error, from the driver's."""
    try:
        raise persistence.ProgrammingError(str(error)) from error
    except persistence.ProgrammingError as exc:
        return exc


async def test_a_record_the_database_refuses_for_what_it_holds_is_set_aside(
    consumer: Consumer,
) -> None:
    """Errors of the record's data, not of the database's state: read again,
    they would fail again and block the partition for ever."""
    refusals = [
        psycopg.errors.StringDataRightTruncation("value too long for type character(3)"),
        psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
        psycopg.errors.CardinalityViolation(
            "ON CONFLICT DO UPDATE command cannot affect row a second time"
        ),
        persistence.DataError('invalid input syntax for type uuid: "x"'),
        psycopg.errors.RaiseException("the record's value is out of range"),
        psycopg.errors.TooManyRows("query returned more than one row"),
        psycopg.ProgrammingError("cannot adapt type 'dict'"),
        wrapped(psycopg.errors.CardinalityViolation("more than one row returned by a subquery")),
    ]
    for n, refusal in enumerate(refusals, start=20):
        consumer.fail[f"ticket-{n}:1"] = [refusal]
        await consumer.send(ticket_event(n))
    assert consumer.applied == []
    assert [a.reason for a in consumer.set_aside] == ["handler_error"] * len(refusals)
    assert [a.error.split("(")[0] for a in consumer.set_aside] == [
        type(r).__name__ for r in refusals
    ]
    assert (consumer.commits, consumer.rewinds) == (len(refusals), [])


async def test_setting_aside_that_meets_an_outage_is_tried_again(consumer: Consumer) -> None:
    before = set_aside_count("unknown_type")
    consumer.aside_fails.append(psycopg.OperationalError("the database is away"))
    event = ticket_event(8, type="casemesh.tickets.Nonsense.v1")
    await consumer.send(event)
    assert (consumer.set_aside, consumer.commits, consumer.rewinds) == ([], 0, [0])
    assert set_aside_count("unknown_type") == before
    await consumer.send(event)
    assert [a.reason for a in consumer.set_aside] == ["unknown_type"]
    assert (consumer.commits, set_aside_count("unknown_type")) == (1, before + 1)


async def test_the_handler_runs_in_the_trace_that_caused_the_event(consumer: Consumer) -> None:
    configure_tracing("unit")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    await consumer.send(ticket_event(9, trace_headers=(("traceparent", traceparent),)))
    assert consumer.applied == ["ticket-9:1"]
    assert consumer.trace_ids == [int(trace_id, 16)]


def test_every_type_a_casemesh_service_publishes_is_known() -> None:
    from casemesh_appeals.application import PUBLIC_NAMES as APPEALS
    from casemesh_notifier.registry import MESSAGES
    from casemesh_reports.events import Translator as reports
    from casemesh_tickets.views import PUBLIC_NAMES as TICKETS

    published = [
        *(f"casemesh.tickets.{n}.v1" for n in TICKETS.values()),
        *(f"casemesh.appeals.{n}.v1" for n in APPEALS.values()),
        *reports(lambda event: None).types,
        *MESSAGES,
        "casemesh.helpcenter.PhoneChangeVerified.v1",
        "casemesh.casequeue.SlaBreached.v1",
        "casemesh.notifications.NotificationDelivered.v1",
    ]
    assert [t for t in published if message_class(t) is None] == []
    assert message_class("casemesh.tickets.TicketSolved.v1") is tev.TicketSolved
    for unknown in ("casemesh.tickets.AppealFiled.v1", "casemesh.tickets.Nope.v1", "TicketSolved"):
        assert message_class(unknown) is None, unknown


async def test_a_consumer_logs_no_line_per_batch_at_info() -> None:
    """FastStream's "Received" and "Processed" for each batch are debug:
    at info they would be two lines a batch of every consumer."""
    router, seen = KafkaRouter(), []

    @router.subscriber(TOPIC, group_id="unit")
    async def handle(body: bytes) -> None:
        seen.append(body)

    broker = consuming.consumer_broker("localhost:9092", "unit", router)
    async with TestKafkaBroker(broker) as test:
        await test.publish(b"x", TOPIC)
        # The test broker puts a mock where the logger would be.
        mock: Any = broker.config.logger.logger.logger
        said = [c.args[:2] for c in mock.log.call_args_list]
    assert seen == [b"x"]
    assert said == [(logging.DEBUG, "Received"), (logging.DEBUG, "Processed")]


def test_a_consumer_broker_makes_no_producer_or_topic_and_says_nothing_of_it() -> None:
    """Consumers only consume: FastStream makes no producer or admin client
    for them and creates no topic (the deployment does, with its retention);
    its warning at each subscriber's start that it creates none is dropped,
    and nothing else it says is."""
    broker = consuming.consumer_broker("localhost:9092", "unit", KafkaRouter())
    assert (broker.config.consumer_only, broker.config.allow_auto_create_topics) == (True, False)
    said = logging.getLogger("casemesh.faststream")

    def kept(message: str) -> bool:
        record = said.makeRecord(said.name, logging.WARNING, __file__, 0, message, (), None)
        return said.filter(record)

    assert not kept("Auto create topics is disabled. Make sure the topics exist.")
    assert kept("Failed to create topic casemesh.tickets.v1: TopicAlreadyExistsError")


async def test_records_applied_while_a_commit_is_on_its_way_are_committed_together_in_the_next(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = asyncio.Event()
    sent: list[dict[int, int]] = []

    async def slow_commit(self: Any, offsets: dict[Any, int]) -> None:
        sent.append({tp.partition: end for tp, end in offsets.items()})
        await answered.wait()  # Kafka has not answered yet

    monkeypatch.setattr(kafka_message.FakeConsumer, "commit", slow_commit)
    async with asyncio.timeout(10):  # a consumer waiting for the commit would wait for ever
        for n in (11, 12, 13):
            await consumer.send(ticket_event(n))
    assert consumer.applied == ["ticket-11:1", "ticket-12:1", "ticket-13:1"]
    assert len(sent) == 1  # the first commit is still on its way
    answered.set()
    for _ in range(10):  # the commits run on this loop, with nothing else to wait for
        await asyncio.sleep(0)
    assert len(sent) == 2  # the other two went together, in one commit
    assert consumer.rewinds == []


async def test_a_consumer_that_stopped_commits_nothing_more(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await consumer.send(ticket_event(21))
    assert consumer.commits == 1
    # Its group may have gone on without it: what it applied is read again
    # by whoever holds the partition next.
    monkeypatch.setattr(kafka_message.FakeConsumer, "_closed", True, raising=False)
    await consumer.send(ticket_event(22))
    assert consumer.applied == ["ticket-21:1", "ticket-22:1"]
    assert consumer.commits == 1


def test_a_consumer_thread_stops_without_waiting_for_a_lag_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lag reading under way when the worker is stopped (Kafka slow to
    answer it) is given up, not waited for: the stop comes out of the grace
    a pod is given to finish its calls."""
    reading = threading.Event()

    async def slow_reading(bootstrap: str, group: str, topics: Any) -> None:
        reading.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(consuming, "_measure_lag", slow_reading)
    monkeypatch.setattr(consuming, "LAG_READING_S", 600.0)

    async def ignore(event: CloudEvent, place: Place) -> None:
        pass

    class Lagged(consuming.ConsumerThread):
        def subscriptions(self) -> list[consuming.Subscription]:
            return [consuming.Subscription(CONSUMER, "unit-lagged", [TOPIC], ignore, lag=True)]

    # Nothing listens there: its broker waits for Kafka, as while it is away.
    worker = Lagged("unit-lagged", f"127.0.0.1:{free_port()}")
    worker.start()
    assert reading.wait(30), "the lag was never read"
    worker.stop()
    assert not worker._thread.is_alive(), "the stop waited for the lag reading"


async def test_a_lag_reading_cancelled_while_it_closes_still_closes_its_admin_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop cancels a lag reading under way; cancelled while its consumer
    closes, the reading closes its admin client all the same (its
    connections are not left open for the life of the process)."""
    closing, closed = asyncio.Event(), asyncio.Event()

    class Admin:
        def __init__(self, **_: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def list_consumer_group_offsets(self, group: str) -> dict[Any, Any]:
            raise RuntimeError("Kafka does not answer")

        async def close(self) -> None:
            closed.set()

    class Reader:
        def __init__(self, **_: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            closing.set()
            await asyncio.Event().wait()  # a close that takes its time

    monkeypatch.setattr(consuming, "AIOKafkaAdminClient", Admin)
    monkeypatch.setattr(consuming, "AIOKafkaConsumer", Reader)
    reading = asyncio.create_task(consuming.group_positions("kafka:9092", "group", [TOPIC]))
    await asyncio.wait_for(closing.wait(), 10)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert closed.is_set()

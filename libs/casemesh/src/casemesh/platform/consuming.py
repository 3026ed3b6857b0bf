"""Kafka consumers (FastStream): one way to receive Casemesh events, starting
a broker that outlives a Kafka outage, and watching how far behind a group is.

`subscribe` gives a handler each record as a `CloudEvent` (whose `message()`
is the protobuf message its type names), parsed once here, inside a consumer
span that continues the trace of the action that caused it (`traceparent`).
`subscribe_batch` does the same for whatever records have arrived (up to a
bound), calling the handler for each inside one unit of work (a transaction)
and committing the batch's offsets once: the round trips an event costs are
then shared by the batch. Whatever the consumer, a record ends one of two
ways:

- **applied**: the handler returned (and, in a batch, the unit of work
  committed); the offset is committed after it (its work committed first, so
  a crash in between only redelivers, and the handler's own record of event
  ids makes that a no-op). The commit goes in the background (`_Commits`),
  at most one a second: the next records are fetched without waiting for
  Kafka's answer, and records applied meanwhile are committed together;
- **set aside**: it can never apply (an envelope that does not parse, a
  header value that is not UTF-8 text among them, and a record the Kafka
  client cannot read at all, with a header name that is not UTF-8 text, say
  (`casemesh.platform.fetching`); a `ce_type` no Casemesh service publishes;
  or a handler error that is none of those below: data the database
  refuses, a broken invariant). It is logged (`consumer.set_aside`), handed
  to the consumer's `set_aside` (the notifier keeps it in
  `unprocessable_events`), counted in
  `casemesh_consumer_set_aside_total{consumer,topic,reason}` (alert
  `CasemeshConsumerSetAside`) and committed, so it never blocks its partition.
  In a batch, the unit of work is then rolled back and each record applied
  in a unit of its own, so the record is set aside alone and its batch-mates
  apply.

A failure that says the database or the broker is away, that a concurrent
writer won a race, that the database is not yet as the consumer expects (a
table or column missing, a statement a deploy changed), or that a personal
data key cannot be had (`passing`), is neither: nothing is committed (a
batch's unit of work rolls back whole), the consumer pauses (backing off up
to `MAX_PAUSE_S`) and the records are read again from the first, for as long
as it takes. The process never exits over it. A stop or a bug in the middle
of a batch rewinds its records the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from eventsourcing import persistence
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from opentelemetry import trace

from casemesh.platform import envelope
from casemesh.platform.backoff import backoff
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.errors import Aborted
from casemesh.platform.fetching import Reader, Unreadable
from casemesh.platform.logging import get_logger, library_logger
from casemesh.platform.metrics import CONSUMER_LAG, CONSUMER_SET_ASIDE
from casemesh.platform.personal.errors import UnknownDataKey, UnknownMasterKey
from casemesh.platform.pools import DATABASE_OUTAGE
from casemesh.platform.telemetry import extract_headers, tracer
from casemesh.topics import MAX_RECORD_BYTES

log = get_logger(__name__)


class NotYet(Exception):
    """A record that cannot be applied now but can be once something outside
    the consumer is put right (a key the key database does not give: the
    wrong database, a master key missing from the secret): read again after
    a pause, like an outage, never set aside."""


class Later(NotYet):
    """A record not due before `seconds` from now: read again then (after at
    most MAX_PAUSE_S, to be asked again), quietly: waiting is its work."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"due in {seconds:.1f} s")
        self.seconds = seconds


# Failures that pass: the database or a connection away, a lost race under
# optimistic concurrency (the event store's version check, ABORTED), the
# database not as the consumer expects for a while, a key missing, or
# `NotYet`.
RETRYABLE: tuple[type[Exception], ...] = (
    NotYet,
    *DATABASE_OUTAGE,
    OSError,
    persistence.IntegrityError,
    Aborted,
    # What the database is, not what the record holds: a table, column or
    # function not there (a schema step half done, a cluster made anew at
    # the address), a statement a deploy changed under a session, a
    # privilege, the server's own trouble, a session it timed out. (A
    # primary just demoted in a failover, answering "read-only
    # transaction", is among the outages.) A record the database refuses
    # for what it holds is a DataError or psycopg's IntegrityError (a
    # constraint it breaks), and is set aside; the event store's
    # IntegrityError, above, is its version check.
    psycopg.ProgrammingError,
    psycopg.NotSupportedError,
    psycopg.InternalError,
    persistence.ProgrammingError,
    persistence.NotSupportedError,
    persistence.InternalError,
    # A key the key database does not give (a master key missing from this
    # process's secret, the wrong key database), as `NotYet` says.
    UnknownDataKey,
    UnknownMasterKey,
)
# Among those, by SQLSTATE, what a statement made of the records' data: a
# PL/pgSQL RAISE, ASSERT or STRICT row count (class P0), a CASE with no
# branch for a value (20000), one row updated twice by an upsert or a
# subquery with more than one row (21000), a statement after one that failed
# and was caught (25P02, which the first failure decides). Read again, they
# fail again.
OF_THE_RECORDS = ("P0", "20", "21", "25P02")


def of_the_records(exc: BaseException) -> bool:
    """Whether `exc`, or the driver's error it wraps (the event store wraps
    psycopg's), tells of the records' data (`OF_THE_RECORDS`), or is the
    driver refusing a value it cannot send (a ProgrammingError of no
    SQLSTATE: a type it cannot adapt)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, psycopg.Error):
            state = seen.sqlstate
            if state is None:
                return isinstance(seen, psycopg.ProgrammingError)
            return state.startswith(OF_THE_RECORDS)
        seen = seen.__cause__
    return False


def passing(exc: BaseException) -> bool:
    """Whether `exc` is a failure that passes (`RETRYABLE`): the records are
    read again after a pause, never set aside."""
    return isinstance(exc, RETRYABLE) and not of_the_records(exc)


# A consumer commits its offsets at most this often: what it applies in
# between goes in one commit (Kafka appends each commit to its offsets
# topic). A crash re-reads at most this much, which changes nothing.
COMMIT_EVERY_S = 1.0
# A commit Kafka refused (it is away) is tried again this long after, with
# whatever was applied meanwhile.
COMMIT_RETRY_S = 1.0

# The pause before a record that met a passing failure is read again doubles
# from FIRST_PAUSE_S up to MAX_PAUSE_S (short enough for a graceful stop).
FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 10.0

# Why a record was set aside (the `reason` label).
MALFORMED_ENVELOPE = "malformed_envelope"
UNKNOWN_TYPE = "unknown_type"
HANDLER_ERROR = "handler_error"
REASONS = (MALFORMED_ENVELOPE, UNKNOWN_TYPE, HANDLER_ERROR)


@dataclass(frozen=True)
class Place:
    """Where a record sits in Kafka, and when it was written there."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True)
class SetAside:
    """A record that can never apply: where it is, why, and its event if it
    parsed (None for a malformed envelope)."""

    consumer: str
    place: Place
    reason: str
    error: str
    event: CloudEvent | None


Handler = Callable[[CloudEvent, Place], Awaitable[None]]
SetAsideHandler = Callable[[SetAside], Awaitable[None]]
# A batch consumer's unit of work (a database transaction, say), and its
# handler of one record within it.
Unit = TypeVar("Unit")
Begin = Callable[[], AbstractAsyncContextManager[Unit]]
UnitHandler = Callable[[Unit, CloudEvent, Place], Awaitable[None]]

# The most records a batch subscriber takes at once, and how long a
# subscriber waits for one when none has arrived before it looks again (a
# record that arrives meanwhile ends the wait at once; a partition being read
# again after its client failed to read it is looked at this often).
MAX_BATCH = 200
WAIT_MS = 100


def subscribe(
    router: KafkaRouter,
    topics: Sequence[str],
    *,
    consumer: str,
    group_id: str,
    handle: Handler,
    set_aside: SetAsideHandler | None = None,
) -> None:
    """Subscribes `handle` to `topics` in `group_id`, from the first record of a
    partition the group never committed, one record at a time (the handler
    commits its own work). `consumer` names it in logs, spans and metrics;
    `set_aside`, if given, records a record that can never apply (it may
    itself meet an outage: the record is then read again)."""

    async def alone(_: None, event: CloudEvent, place: Place) -> None:
        await handle(event, place)

    _listen(router, _Records(consumer, group_id, _no_unit, alone, set_aside, topics), None)


def subscribe_batch(
    router: KafkaRouter,
    topics: Sequence[str],
    *,
    consumer: str,
    group_id: str,
    begin: Begin[Unit],
    handle: UnitHandler[Unit],
    set_aside: SetAsideHandler | None = None,
    max_records: int | None = MAX_BATCH,
    commit_every_s: float | None = None,
) -> None:
    """Like `subscribe`, but takes whatever records have arrived (up to
    `max_records`) together: `handle` is called for each inside ONE unit of
    work opened by `begin` (a transaction: its exit commits, an exception
    rolls it back), then the offsets of the whole batch are committed once.
    When a record fails for good, the unit is rolled back and each record of
    the batch is applied in a unit of its own, so only that one is set aside.
    `max_records` None: one record at a time, as `subscribe`.
    `commit_every_s`: the least time between two offset commits
    (`COMMIT_EVERY_S` unless given; 0 for a consumer whose group's committed
    offsets others read as how far it has got, when a second matters)."""
    records = _Records(consumer, group_id, begin, handle, set_aside, topics, commit_every_s)
    _listen(router, records, max_records)


def _listen(router: KafkaRouter, records: _Records[Any], max_records: int | None) -> None:
    """Hands `records` what its topics receive, `max_records` at a time (None:
    one by one, not as a batch)."""

    async def on_records(received: _Received) -> None:
        await records.take(received)

    reader = Reader(records.consumer, max_records or 1, WAIT_MS)

    async def fetched(kafka: Any) -> Any:
        taken = await reader.take(kafka)
        if max_records is None:
            return taken[0] if taken else None
        return tuple(taken)

    subscriber = router.subscriber(
        *records.topics,
        group_id=records.group_id,
        # `_Records` commits what it applied and rewinds what it did not.
        ack_policy=AckPolicy.MANUAL,
        # A record asking for a reply (a `reply_to` header) gets none: the
        # broker has no producer, and a reply failing would rewind the
        # record for ever.
        no_reply=True,
        auto_offset_reset="earliest",
        parser=_parsed,
        decoder=_records_received,
        batch=max_records is not None,
        max_records=max_records,
        # A fetch takes up to the topics' largest record from a partition
        # (aiokafka's default is 1 MiB: Kafka hands a larger record over all
        # the same, but alone, a fetch for each).
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
    )
    # FastStream's own taking (`getmany`, or `getone`) loses the records of
    # other partitions taken with one the client cannot read, and never gets
    # past that one (`casemesh.platform.fetching`).
    subscriber.get_msg = fetched  # type: ignore[method-assign,assignment]
    subscriber(on_records)


async def _parsed(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's parsing of a record or a batch, which decodes every
    header value as UTF-8 text. A record with a value that is not, or a
    null one (none of ours writes one; any producer can), would fail its
    whole batch before `_Records` saw it, and the next commit would pass the
    batch by. Such a batch is parsed from copies whose header values are
    decoded leniently, and keeps the records as they came: `_Records` sets
    aside the record whose envelope does not parse, and applies the rest.
    (A header name that is not UTF-8 fails in the Kafka client itself,
    before any parser: `fetching.Reader` hands it on as `Unreadable`.)"""
    try:
        return await original(records)
    except (UnicodeDecodeError, AttributeError):  # AttributeError: a null header value
        copies = tuple(map(_leniently, records)) if isinstance(records, tuple) else None
        message = await original(_leniently(records) if copies is None else copies)
        message.raw_message = records
        return message


def _leniently(record: Any) -> Any:
    """A copy of the record with each header value that is not UTF-8 text
    decoded with replacements, and a null one empty. (The copy lacks the
    `consumer` a concurrent subscriber's records carry; ours are not.)"""
    headers = [(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in record.headers]
    return replace(record, headers=headers)


async def _records_received(msg: Any) -> _Received:
    # The records as they came (one, or a batch's), handed to the handler as
    # its one argument: the envelope is parsed in `_Records`, where a record
    # that cannot be read is set aside. FastStream's own decoding would fail
    # before, and rewind the record for ever.
    raw = msg.raw_message
    return _Received(tuple(raw) if isinstance(raw, tuple | list) else (raw,), msg.consumer)


@dataclass(frozen=True)
class _Received:
    """Records as a subscriber received them, and the Kafka consumer that
    fetched them."""

    records: tuple[Any, ...]
    consumer: Any

    def ends(self) -> dict[TopicPartition, int]:
        """The offset to commit for each partition: the one after its last record."""
        ends: dict[TopicPartition, int] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            ends[tp] = max(ends.get(tp, 0), r.offset + 1)
        return ends

    def rewind(self) -> None:
        """Has the records read again, from the first of each partition."""
        first: dict[TopicPartition, int] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            # A partition taken from this member meanwhile is read by its new
            # one from the group's last commit.
            with contextlib.suppress(Exception):
                self.consumer.seek(tp, offset)


class _Commits:
    """The offsets of applied records, committed in the background, one
    commit at a time and at most one every `COMMIT_EVERY_S`: records applied
    while one is on its way or waiting are committed together. A commit
    Kafka refuses is tried again (`COMMIT_RETRY_S`) for the partitions the
    consumer still holds; those it lost are read by their new member from
    the group's last commit (the handlers' record of event ids makes the
    repeat a no-op), as they are after a stop or a crash with a commit
    still to go."""

    def __init__(self, consumer: str, every_s: float | None = None) -> None:
        self._name, self._every_s = consumer, every_s
        self._due: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._last: float | None = None

    def applied(self, received: _Received) -> None:
        if received.consumer is not self._consumer:
            self._due, self._consumer = {}, received.consumer
        for tp, end in received.ends().items():
            self._due[tp] = max(self._due.get(tp, 0), end)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        loop = asyncio.get_running_loop()
        every = COMMIT_EVERY_S if self._every_s is None else self._every_s
        while self._due:
            if self._last is not None and self._last + every > loop.time():
                await asyncio.sleep(self._last + every - loop.time())
            consumer, due = self._consumer, self._due
            if getattr(consumer, "_closed", False):
                # Stopped: its group may have gone on without it. What it
                # applied since its last commit is read again, by whoever
                # holds the partitions next.
                self._due = {}
                return
            self._due, self._last = {}, loop.time()
            try:
                await consumer.commit(due)
            except Exception as exc:
                held = _assigned(consumer) if consumer is self._consumer else set()
                kept = {tp: end for tp, end in due.items() if tp in held}
                # Stopped, or its partitions gone to another member: nothing to retry.
                said = log.warning if kept else log.info
                said(
                    "consumer.commit_failed", consumer=self._name, error=repr(exc), retry=bool(kept)
                )
                for tp, end in kept.items():
                    self._due[tp] = max(self._due.get(tp, 0), end)
                if kept:
                    await asyncio.sleep(COMMIT_RETRY_S)


def _assigned(consumer: Any) -> set[TopicPartition]:
    """The partitions `consumer` holds now (none if it cannot say)."""
    try:
        return set(consumer.assignment())
    except Exception:
        return set()


@asynccontextmanager
async def _no_unit() -> AsyncIterator[None]:
    yield None


class _Records(Generic[Unit]):
    """What a subscriber does with the records it received: each applied or
    set aside, or, on an outage, none committed (they are read again)."""

    def __init__(
        self,
        consumer: str,
        group_id: str,
        begin: Begin[Unit],
        handle: UnitHandler[Unit],
        set_aside: SetAsideHandler | None,
        topics: Sequence[str],
        commit_every_s: float | None = None,
    ) -> None:
        for topic in topics:  # every series exists from the start, so alerts see the first
            for reason in REASONS:
                CONSUMER_SET_ASIDE.labels(consumer, topic, reason)
        self.consumer, self.group_id, self.topics = consumer, group_id, tuple(topics)
        self._begin, self._handle, self._set_aside = begin, handle, set_aside
        self._pause = _Pause()
        self._commits = _Commits(consumer, commit_every_s)

    async def take(self, received: _Received) -> None:
        """Applies or sets aside each record and commits them; rewinds them
        if they met an outage, or if anything else stopped them."""
        try:
            done = await self._take(received.records)
        except BaseException:
            received.rewind()
            raise
        if done:
            self._commits.applied(received)
        else:
            received.rewind()

    async def _take(self, records: Sequence[Any]) -> bool:
        """Whether the records were each applied or set aside; False once
        they met an outage (after the pause), none of them committed."""
        readable: list[tuple[CloudEvent, Place]] = []
        unreadable: list[tuple[CloudEvent | None, Place, tuple[str, str]]] = []
        for record in records:
            place = Place(record.topic, record.partition, record.offset, record.timestamp)
            if isinstance(record, Unreadable):
                unreadable.append((None, place, (MALFORMED_ENVELOPE, record.error)))
                continue
            try:
                event = envelope.parse(record.key, record.value or b"", record.headers)
            except Exception as exc:  # whatever is wrong in it, retrying cannot mend it
                unreadable.append((None, place, (MALFORMED_ENVELOPE, repr(exc))))
                continue
            if envelope.message_class(event.type) is None:
                failure = (UNKNOWN_TYPE, f"no Casemesh event has the type {event.type!r}")
                unreadable.append((event, place, failure))
            else:
                readable.append((event, place))
        try:
            failed = await self._apply(readable)
            for maybe, place, (reason, error) in [*unreadable, *failed]:
                with self._span(maybe, place):
                    aside = SetAside(self.consumer, place, reason, error[:1000], maybe)
                    await _record(aside, self._set_aside, self._said(maybe, place))
        except Later as exc:
            await asyncio.sleep(min(max(exc.seconds, 0.0), MAX_PAUSE_S))
            return False
        except Exception as exc:
            if not passing(exc):
                raise
            wait = self._pause.longer()
            first = records[0]
            said = self._said(None, Place(first.topic, first.partition, first.offset, 0))
            said.error("consumer.retrying", records=len(records), error=repr(exc), retry_in=wait)
            await asyncio.sleep(wait)
            return False
        self._pause.reset()
        return True

    async def _apply(
        self, batch: Sequence[tuple[CloudEvent, Place]]
    ) -> list[tuple[CloudEvent, Place, tuple[str, str]]]:
        """Applies the batch in one unit; if one of them can never apply, each
        in a unit of its own. Returns those that can never apply, with why; a
        failure that passes (`passing`) passes through."""
        if not batch:
            return []
        try:
            async with self._begin() as unit:
                for event, place in batch:
                    later: Later | None = None
                    with self._span(event, place):
                        try:
                            await self._handle(unit, event, place)
                        except Later as exc:
                            later = exc  # waiting is its work, no error of its span
                    if later is not None:
                        raise later
        except Exception as exc:
            if passing(exc):
                raise
            if len(batch) == 1:
                event, place = batch[0]
                return [(event, place, (HANDLER_ERROR, repr(exc)))]
            return [failed for one in batch for failed in await self._apply([one])]
        return []

    def _span(self, event: CloudEvent | None, place: Place) -> Any:
        """The record's consumer span, continuing the trace that caused it."""
        return tracer("casemesh.consumer").start_as_current_span(
            f"{place.topic} process",
            context=extract_headers(dict(event.trace_headers)) if event else None,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.consumer.group.name": self.group_id,
                "messaging.destination.name": place.topic,
                "messaging.destination.partition.id": str(place.partition),
                "messaging.kafka.offset": place.offset,
                "messaging.message.id": event.id if event else "",
            },
        )

    def _said(self, event: CloudEvent | None, place: Place) -> Any:
        return log.bind(
            consumer=self.consumer,
            topic=place.topic,
            partition=place.partition,
            offset=place.offset,
            event_id=event.id if event else None,
        )


class _Pause:
    def __init__(self) -> None:
        self._next = FIRST_PAUSE_S

    def longer(self) -> float:
        wait, self._next = self._next, min(self._next * 2, MAX_PAUSE_S)
        return wait

    def reset(self) -> None:
        self._next = FIRST_PAUSE_S


async def _record(aside: SetAside, set_aside: SetAsideHandler | None, said: Any) -> None:
    """Hands the record to the consumer's `set_aside`, then logs and counts it.
    A `set_aside` that fails for good must not block the partition either:
    the log line and the counter still tell."""
    if set_aside is not None:
        try:
            await set_aside(aside)
        except Exception as exc:
            if passing(exc):
                raise
            said.error("consumer.set_aside_unrecorded", error=repr(exc))
    said.error(
        "consumer.set_aside",
        type=aside.event.type if aside.event else None,
        reason=aside.reason,
        error=aside.error,
    )
    CONSUMER_SET_ASIDE.labels(aside.consumer, aside.place.topic, aside.reason).inc()


class _TopicsMadeByTheDeployment(logging.Filter):
    """Drops FastStream's warning, at each subscriber's start, that it
    creates no topic: none of ours should (see `consumer_broker`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Auto create topics is disabled")


_FASTSTREAM_LOG = library_logger("casemesh.faststream")
_FASTSTREAM_LOG.addFilter(_TopicsMadeByTheDeployment())


def consumer_broker(bootstrap: str, client_id: str, router: KafkaRouter) -> KafkaBroker:
    """A broker for `router`'s subscribers (started by `start_broker`).

    It only consumes: it makes no producer and no admin client (each would
    be a connection of its own, left open by a start that failed while
    Kafka was away), and creates no topic. The deployment makes the topics,
    with their partitions and retention (deploy/k8s/base/topics.yaml); one
    a consumer created would have the broker's defaults."""
    # FastStream logs "Received" and "Processed" for every batch (and that a
    # subscriber waits for messages) at this level: two lines a batch of
    # every consumer, telling nothing the consumer metrics and traces do
    # not. Failures are logged at ERROR whatever it is.
    broker = KafkaBroker(
        bootstrap,
        client_id=client_id,
        logger=_FASTSTREAM_LOG,
        log_level=logging.DEBUG,
        consumer_only=True,
        allow_auto_create_topics=False,
        # The handler takes the records as they came (`_listen`): nothing to
        # inject or validate. With FastDepends on, each batch would also hop
        # to a worker thread and back to resolve the message it is given.
        apply_types=False,
    )
    broker.include_router(router)
    return broker


async def start_broker(
    build: Callable[[], KafkaBroker], stop: asyncio.Event, name: str
) -> KafkaBroker | None:
    """Starts a freshly built broker, waiting (with backoff, jittered: the
    replicas of every consumer do not all come back at once) for Kafka to
    be reachable; None if `stop` is set first."""
    tries = 0
    while not stop.is_set():
        broker = build()
        try:
            await broker.start()
        except asyncio.CancelledError:  # given up while Kafka is away
            with contextlib.suppress(Exception):
                await broker.stop()
            raise
        except Exception as exc:
            tries += 1
            delay = backoff(tries, base=1.0, cap=30.0)
            log.error(f"{name}.kafka_unavailable", error=repr(exc), retry_in=round(delay, 1))
            with contextlib.suppress(Exception):
                await broker.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        log.info(f"{name}.started")
        return broker
    return None


@dataclass(frozen=True)
class Subscription:
    """One consumer of a `ConsumerThread`: its name (logs, spans, metrics),
    its group, its topics and its handler: of one record at a time
    (`subscribe`), or, given `batch`, of each record within a unit of work
    `batch` opens for the records received together (`subscribe_batch`)."""

    consumer: str
    group_id: str
    topics: Sequence[str]
    handle: Handler | UnitHandler[Any]
    batch: Begin[Any] | None = None
    # Whether the group's lag is measured (`watch_lag`) while it runs.
    lag: bool = False


class ConsumerThread:
    """A worker (`serve_servicer`'s) that consumes beside a process's own
    work, on an event loop of its own in a thread: each of `subscriptions()`
    gets a broker of its own, started once Kafka is reachable (waiting for
    it as long as it takes), all stopped with the worker. `name` names the
    thread and its log lines."""

    def __init__(self, name: str, bootstrap: str) -> None:
        self._name, self._bootstrap = name, bootstrap
        self.name = name  # in logs
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def subscriptions(self) -> Sequence[Subscription]:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop already ended
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._follow())
        except Exception as exc:
            log.error(f"{self._name}.failed", error=repr(exc))
        finally:
            # As asyncio.run does: what is left (a commit waiting its turn)
            # is cancelled, not destroyed pending.
            left = asyncio.all_tasks(self._loop)
            for task in left:
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            self._loop.close()

    async def _follow(self) -> None:
        brokers, watching = [], []
        try:
            for wanted in self.subscriptions():
                if wanted.lag:
                    lag = watch_lag(self._bootstrap, wanted.group_id, wanted.topics, self._stop)
                    watching.append(asyncio.create_task(lag))
                build = functools.partial(self._broker, wanted)
                broker = await start_broker(build, self._stop, wanted.consumer)
                if broker is not None:
                    brokers.append(broker)
            await self._stop.wait()
        finally:
            self._stop.set()  # whatever ended it
            # A lag reading under way is not waited for: Kafka slow to answer
            # would hold the stop for up to `LAG_READING_S`, eating into the
            # grace the pod is given to finish its calls.
            for task in watching:
                task.cancel()
            for broker in brokers:
                await broker.stop()
            await asyncio.gather(*watching, return_exceptions=True)

    def _broker(self, wanted: Subscription) -> KafkaBroker:
        router = KafkaRouter()
        consumer, group_id = wanted.consumer, wanted.group_id
        if wanted.batch is None:
            handle = cast(Handler, wanted.handle)
            subscribe(router, wanted.topics, consumer=consumer, group_id=group_id, handle=handle)
        else:
            subscribe_batch(
                router,
                wanted.topics,
                consumer=consumer,
                group_id=group_id,
                begin=wanted.batch,
                handle=cast(UnitHandler[Any], wanted.handle),
            )
        return consumer_broker(self._bootstrap, f"casemesh-{wanted.consumer}", router)


# The longest a lag reading is waited for before it is tried again.
LAG_READING_S = 10.0


async def watch_lag(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    stop: asyncio.Event,
    interval: float = 15.0,
) -> None:
    """Every `interval` seconds, sets `casemesh_consumer_lag_records` for each
    partition of `topics`: the end offset minus the group's committed offset
    (a partition the group never committed counts from its first record).
    Kafka being away (or the group's coordinator not elected yet, just after
    a start) only pauses the figures; a failed reading is tried again soon."""
    while not stop.is_set():
        wait = interval
        try:
            # A client retrying against a broker that is coming back can
            # wait for ever; a reading that does not come soon is tried again.
            async with asyncio.timeout(LAG_READING_S):
                await _measure_lag(bootstrap, group, topics)
        except Exception as exc:
            log.warning("consumer_lag.unavailable", group=group, error=repr(exc))
            wait = min(interval, 2.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


async def _measure_lag(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    for tp, lag in (await consumer_lag(bootstrap, group, topics)).items():
        CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(lag)


async def consumer_lag(
    bootstrap: str, group: str, topics: Sequence[str]
) -> dict[TopicPartition, int]:
    """Records on each partition of `topics` after `group`'s committed offset
    (a partition the group never committed counts from its first record)."""
    return {
        tp: max(0, end - read)
        for tp, (read, end) in (await group_positions(bootstrap, group, topics)).items()
    }


async def group_positions(
    bootstrap: str, group: str, topics: Sequence[str]
) -> dict[TopicPartition, tuple[int, int]]:
    """For each partition of `topics`: `group`'s committed offset (its first
    record's, if the group never committed one), read first, and the
    partition's end offset, read after. Raises unless Kafka describes every
    topic and partition (a broker just started may not know some yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{group}-lag")
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await admin.start()
        await reader.start()
        committed = await admin.list_consumer_group_offsets(group)
        described = await admin.describe_topics(list(topics))
        known = {
            t["topic"]
            for t in described
            if not t.get("error_code")
            and t["partitions"]
            and not any(p.get("error_code") for p in t["partitions"])
        }
        if missing := sorted(set(topics) - known):
            raise RuntimeError(f"Kafka does not describe {missing} (yet)")
        partitions = sorted(
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if t["topic"] in known
            for p in t["partitions"]
        )
        ends = await reader.end_offsets(partitions)
        starts = await reader.beginning_offsets(partitions)
        positions: dict[TopicPartition, tuple[int, int]] = {}
        for tp in partitions:
            done = committed.get(tp)
            read = done.offset if done is not None and done.offset >= 0 else starts[tp]
            positions[tp] = (read, ends[tp])
        return positions
    finally:
        # The admin client closes even when the reading is cancelled (a
        # stop) while the reader closes.
        try:
            with contextlib.suppress(Exception):
                await reader.stop()
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


class Heard:
    """A time before which every record of some partitions has been read:
    each `at` notes its time with where the partitions end then, and a time
    noted counts as heard once the read positions have reached all its ends
    (the records written before it), and are not past where the partitions
    end now (a topic made again, its offsets begun anew: nothing is known
    then). None until the first time noted is reached."""

    # Times noted and not reached yet, at most (beyond, every other one is
    # dropped: the times reached come further apart).
    MAX_NOTED = 1000

    def __init__(self) -> None:
        self._noted: list[tuple[datetime, dict[TopicPartition, int]]] = []
        self.last: datetime | None = None

    def at(
        self, now: datetime, positions: Mapping[TopicPartition, tuple[int, int]]
    ) -> datetime | None:
        """Notes `now` with the ends of `positions` (partition → (read, end))
        and returns the latest time heard."""
        self._noted.append((now, {tp: end for tp, (_, end) in positions.items()}))
        reached = [
            n
            for n, (_, ends) in enumerate(self._noted)
            if all(
                tp in positions and end <= positions[tp][0] <= positions[tp][1]
                for tp, end in ends.items()
            )
        ]
        if reached:
            self.last = self._noted[reached[-1]][0]
            del self._noted[: reached[-1] + 1]
        if len(self._noted) > self.MAX_NOTED:
            self._noted = self._noted[::2]
        return self.last


class HeardUntil:
    """A time before which every record of `topics` has been read (applied
    or set aside) by the consumer `group`, from its committed offsets
    (`Heard`). It reads no record; it knows only what it noted, so it says
    None (nothing known to be heard) until its first time noted is reached,
    which is at once for a group that has read everything. A check Kafka
    does not answer in full gives the last time known."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str]) -> None:
        self._bootstrap, self._group, self._topics = bootstrap, group, tuple(topics)
        self._heard = Heard()

    async def check(self, now: datetime) -> datetime | None:
        try:
            async with asyncio.timeout(10.0):
                positions = await group_positions(self._bootstrap, self._group, self._topics)
        except Exception as exc:
            log.warning("consumer.heard_unknown", group=self._group, error=repr(exc))
            return self._heard.last
        return self._heard.at(now, positions)

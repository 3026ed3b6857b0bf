"""The relay: every stored event reaches Kafka, once per aggregate version, in order.

It follows the application's notification log (events and their notification
ids commit in one transaction; the library serialises inserts, so ids become
visible in order), publishes each event with an idempotent producer
(`acks=all`, key = aggregate id), and only after the broker acknowledged it
records the position in a tracking table. A crash between the ack and the
tracking write republishes: consumers dedupe on `ce_id`.

One relay per service publishes at a time: a PostgreSQL advisory lock decides,
so replicas can scale freely; the others wait on standby. Push-driven: the
relay's subscription (the library's, on a connection of its own) LISTENs for
the recorder's NOTIFY, and reads the log again after every quiet second all
the same (`read_again`: a wake-up can be missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from eventsourcing.application import Application, Repository
from eventsourcing.persistence import EventStore, Mapper, Notification, Tracking
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresSubscription,
    PostgresTrackingRecorder,
)
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from psycopg.sql import SQL, Identifier

from casemesh.platform import schema
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.eventstore import schema_lock, trace_carrier
from casemesh.platform.logging import get_logger
from casemesh.platform.metrics import RELAY_ACTIVE, RELAY_FAILURES, RELAY_LAG, RELAY_PUBLISHED
from casemesh.platform.pools import with_keepalives
from casemesh.platform.telemetry import tracer
from casemesh.topics import MAX_RECORD_BYTES

log = get_logger(__name__)

# Translates one stored notification (and its domain event) to its public event.
Translate = Callable[[Notification, Any], CloudEvent]

BATCH = 500
LAG_INTERVAL = 5.0  # seconds between readings of the lag
# A relay that ran this long (seconds) past its last back-off starts a new
# failure's back-off from one second again.
STEADY_S = 30.0


class StreamFollower:
    """The aggregate as it stands right after a given event, for relays that
    publish state-after fields. Events of one aggregate arrive in order, so it
    keeps each aggregate as of its last event and applies the next one (the
    library's mutate); it reads the store only on a cold start or a gap.
    Given `mapper` (e.g. `leaving_sealed(app.mapper)`, for a reader of events
    read with their personal texts sealed), it reads the store through it,
    so the aggregates it keeps hold tokens, never clear text."""

    def __init__(
        self, app: Application[Any], cache_size: int = 10_000, *, mapper: Mapper[Any] | None = None
    ) -> None:
        self._app = app
        # The store as `mapper` reads it (None: as the application does).
        self._sealed = None if mapper is None else Repository(EventStore(mapper, app.recorder))
        self._cache_size = cache_size
        self._recent: OrderedDict[Any, Any] = OrderedDict()

    def __call__(self, domain_event: Any) -> Any:
        ident, version = domain_event.originator_id, domain_event.originator_version
        aggregate = self._recent.pop(ident, None)
        if version == 1 or (aggregate is not None and aggregate.version == version - 1):
            aggregate = domain_event.mutate(None if version == 1 else aggregate)
        elif aggregate is None or aggregate.version != version:
            aggregate = self._read(ident, version)
        self._recent[ident] = aggregate
        if len(self._recent) > self._cache_size:
            self._recent.popitem(last=False)
        return aggregate

    def _read(self, ident: Any, version: int) -> Any:
        """The aggregate at `version` from the store (through `mapper`, if given)."""
        repository = self._app.repository if self._sealed is None else self._sealed
        return repository.get(ident, version=version)


def public_name_in(
    names: Mapping[type[Any], str | Mapping[type[Any], str]], domain_event: Any, after: Any
) -> str:
    """The public name `names` give `domain_event`, recorded by the aggregate
    `after` (an event class several aggregate types record is named per type)."""
    name = names[type(domain_event)]
    return name if isinstance(name, str) else name[type(after)]


@dataclass(frozen=True)
class EventTranslator:
    """Builds the CloudEvent of one stored event: id `<aggregate id>:<version>`,
    type `casemesh.<service>.<PublicName>.v1`, subject `<collection>/<id>`.
    `render(event, after)` makes the public message, given `after(event)`."""

    service: str
    # The resource collection: fixed, or, for a service that keeps several
    # aggregate types, of the aggregate right after the event.
    collection: str | Callable[[Any], str]
    # Event class → its public name; for an event class several aggregate
    # types record (`ExpiringCase.Expired`), aggregate class → public name.
    public_names: Mapping[type[Any], str | Mapping[type[Any], str]]
    render: Callable[[Any, Any], Message]
    after: Callable[[Any], Any]

    def public_name(self, domain_event: Any, after: Any) -> str:
        """The public name of `domain_event`, recorded by `after`."""
        return public_name_in(self.public_names, domain_event, after)

    @property
    def source(self) -> str:
        return f"casemesh/{self.service}"

    def type_of(self, public_name: str) -> str:
        return f"casemesh.{self.service}.{public_name}.v1"

    @property
    def types(self) -> list[str]:
        """Every `ce_type` this translator publishes, sorted (docs/asyncapi.yaml lists them)."""
        names = self.public_names.values()
        flat = [n for name in names for n in ([name] if isinstance(name, str) else name.values())]
        return sorted({self.type_of(n) for n in flat})

    def __call__(self, notification: Notification, domain_event: Any) -> CloudEvent:
        after = self.after(domain_event)
        message = self.render(domain_event, after)
        ident = str(domain_event.originator_id)
        c = self.collection
        return CloudEvent(
            id=f"{ident}:{domain_event.originator_version}",
            source=self.source,
            type=self.type_of(self.public_name(domain_event, after)),
            subject=f"{c if isinstance(c, str) else c(after)}/{ident}",
            time=domain_event.timestamp,
            data=message.SerializeToString(),
            key=ident,
        )


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=30000,
        # As large as the topics take (aiokafka's default is 1 MiB): a record
        # it refused would be tried again for ever, stopping its topic.
        max_request_size=MAX_RECORD_BYTES,
    )


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock held on its own connection."""

    def __init__(self, conninfo: str, name: str) -> None:
        self._conninfo = conninfo
        self._key = zlib.crc32(name.encode())
        self._conn: psycopg.Connection[Any] | None = None

    def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed:
            # Keepalives: a connection dropped by the network (and with it the
            # lock) is noticed within a minute, not hours later.
            self._conn = psycopg.connect(
                with_keepalives(self._conninfo), autocommit=True, connect_timeout=5
            )
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        return bool(row and row[0])

    def still_held(self) -> bool:
        try:
            assert self._conn is not None
            self._conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


# The longest a relay waits before it tries again after a failure (Kafka or
# its database away): once Kafka is back, what was stored meanwhile starts
# to reach it within this long.
MOST_BACKOFF_S = 30.0

# Once asked to stop, how long a relay still waits for the broker to take
# what it sent, and then for its producer to stop. aiokafka's idempotent
# producer retries a batch for as long as Kafka is away (it never expires
# one), so either wait could last the whole outage: past the orchestrator's
# grace period (SIGKILL). What it gives up was not recorded as published:
# the next relay sends it again (consumers dedupe).
STOP_WAIT_S = 5.0
# How often a relay waiting for the broker checks that it still holds its lock.
LOCK_CHECK_S = 1.0


async def delivered(sending: Awaitable[None], stop: asyncio.Event, lock: AdvisoryLock) -> bool:
    """Whether `sending` (a batch's sends and the broker's acks, or a
    producer's start: an idempotent one asks the broker for its id until it
    answers) completed; its failure is raised. While Kafka is away it can
    wait for ever, so it is
    watched: every `LOCK_CHECK_S` the lock must still be held (else
    RuntimeError, as in the publishing loop: a standby may have taken over),
    and once `stop` is set it gets `STOP_WAIT_S` more, then is given up
    (False)."""
    task = asyncio.ensure_future(sending)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            done, _ = await asyncio.wait(
                {task, stopping}, timeout=LOCK_CHECK_S, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                task.result()
                return True
            if not stop.is_set() and not await asyncio.to_thread(lock.still_held):
                raise RuntimeError("lost the lock connection while waiting for Kafka")
        done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_S)
        if task in done:
            task.result()
            return True
        return False
    finally:
        stopping.cancel()
        task.cancel()  # nothing, once it is done


async def stop_producer(producer: AIOKafkaProducer, name: str) -> None:
    """Stops `producer`, letting it deliver what it holds for `STOP_WAIT_S`
    at the most (its own `stop` would wait out a Kafka outage); then it is
    let go: its sender and its connections end, and what it held is sent
    again by the next producer (it was not recorded as published)."""
    try:
        # Its flush first, on its own: cut short, it leaves nothing behind
        # (its `stop` cut short would leave its flush running for ever).
        async with asyncio.timeout(STOP_WAIT_S):
            await producer.flush()
    except TimeoutError:
        log.warning("relay.producer_abandoned", topic=name, after_s=STOP_WAIT_S)
        await _let_go(producer)
        return
    except Exception as exc:  # its stop says the rest
        log.debug("relay.producer_not_flushed", topic=name, error=repr(exc))
    try:
        async with asyncio.timeout(STOP_WAIT_S):
            await producer.stop()
    except TimeoutError:
        await _let_go(producer)
    except Exception as exc:  # the relay is failing already, or stopping
        log.debug("relay.producer_not_stopped", topic=name, error=repr(exc))


async def _let_go(producer: AIOKafkaProducer) -> None:
    """What a producer's `stop` does after its flush (aiokafka has no
    abort): one left running would retry for ever. Its batches are left as
    they are: nobody waits on them any more."""
    producer._closed = True
    with contextlib.suppress(Exception):
        async with asyncio.timeout(STOP_WAIT_S):
            await producer._sender.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(STOP_WAIT_S):
            await producer.client.close()


async def run_while_holding(
    lock: AdvisoryLock,
    publish_until: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    name: str,
    standby_poll_seconds: float = 2.0,
) -> None:
    """Runs `publish_until` while this process holds `lock`; waits on standby
    while another does. After a failure (broker or database gone) it lets the
    lock go, backs off and starts again from the last recorded position."""
    delay, failed_at = 1.0, float("-inf")
    while not stop.is_set():
        try:
            # Asking for the lock needs the database too: an outage of any
            # length is waited out here, never a reason to exit.
            if not await asyncio.to_thread(lock.try_acquire):
                log.info("relay.standby", topic=name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), standby_poll_seconds)
                continue
            await publish_until(stop)
            delay = 1.0
        except Exception as exc:
            if time.monotonic() - failed_at > delay + STEADY_S:
                delay = 1.0  # it ran well since the last failure: a new outage
            failed_at = time.monotonic()
            log.error("relay.failed", topic=name, error=repr(exc), retry_in=delay)
            RELAY_FAILURES.labels(name).inc()
            lock.release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, MOST_BACKOFF_S)
    lock.release()


def read_again(subscription: Any) -> None:
    """Has the library's subscription read the log again, as a NOTIFY
    would. Done after every quiet second: a wake-up can be missed (an event
    committed between the subscription's first read and its LISTEN, which
    the library starts after it; a listening connection the network dropped
    without a word), and a missed one would leave a stored event unpublished
    until the service's next write."""
    subscription._has_been_notified.set()


class Subscription(PostgresSubscription):
    """The library's subscription, LISTENing on a connection of its own
    rather than one of the application's pool: the library gives its own
    back to the pool still listening when the relay stops (Kafka away, the
    lock lost), and the NOTIFYs that pile up on it make the pool's guard
    take it for one the server dropped: a warning, a sweep of the pool and
    a reconnection at each restart of the relay, the database being fine."""

    def __init__(self, recorder: PostgresApplicationRecorder, conninfo: str, gt: int) -> None:
        self._conninfo = with_keepalives(conninfo)  # before the library starts listening
        super().__init__(recorder, gt=gt)

    def _listen(self) -> None:
        # As the library's, on its own connection, closed when it ends.
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                conn.execute(SQL("LISTEN {}").format(Identifier(self._recorder.channel_name)))
                while not self._has_been_stopped and not self._thread_error:
                    for _ in conn.notifies(timeout=0.1, stop_after=1):
                        self._has_been_notified.set()
        except BaseException as exc:
            if self._thread_error is None:
                self._thread_error = exc
            self.stop()


class Relay:
    def __init__(
        self,
        *,
        app: Application[Any],
        topic: str,
        translate: Translate,
        bootstrap: str,
        conninfo: str,
        standby_poll_seconds: float = 2.0,
    ) -> None:
        recorder = app.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            raise TypeError("the relay needs the PostgreSQL application recorder")
        self._app = app
        self._recorder = recorder
        self._topic = topic
        self._translate = translate
        self._bootstrap = bootstrap
        self._conninfo = conninfo
        self._lock = AdvisoryLock(conninfo, f"casemesh-relay:{topic}")
        self._tracking = PostgresTrackingRecorder(
            recorder.datastore, tracking_table_name="kafka_relay_tracking"
        )
        with schema_lock(conninfo):  # replicas' relays start together
            schema.create_table(self._tracking)
        self._standby_poll = standby_poll_seconds
        self.published = 0
        RELAY_ACTIVE.labels(topic).set(0)
        RELAY_PUBLISHED.labels(topic).inc(0)
        RELAY_FAILURES.labels(topic).inc(0)  # 0 before any (an alert reads it)

    @property
    def position(self) -> int:
        return self._tracking.max_tracking_id(self._topic) or 0

    def lag(self) -> float:
        """Stored events not yet published (an upper bound while behind: a
        rolled-back insert leaves a gap in the notification ids; 0 once
        everything is published); NaN when the database cannot be read."""
        try:
            head = self._recorder.max_notification_id() or 0
            return float(max(0, head - self.position))
        except Exception:
            return float("nan")

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set; on a broker or database failure it backs
        off and resumes from the last recorded position."""
        lag = asyncio.create_task(self._watch_lag(stop))
        try:
            await run_while_holding(
                self._lock,
                self._publish_until,
                stop,
                name=self._topic,
                standby_poll_seconds=self._standby_poll,
            )
        finally:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

    async def _watch_lag(self, stop: asyncio.Event) -> None:
        """Every few seconds, on every replica, whether or not this one
        publishes or Kafka answers: so the lag grows while events wait."""
        gauge = RELAY_LAG.labels(self._topic)
        while not stop.is_set():
            gauge.set(await asyncio.to_thread(self.lag))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAG_INTERVAL)

    async def _publish_until(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Notification | BaseException] = asyncio.Queue(maxsize=2 * BATCH)
        producer = make_producer(self._bootstrap, f"relay-{self._topic}")
        subscription: Any = None
        thread: threading.Thread | None = None

        def pump() -> None:
            # The library's subscription blocks; bridge it onto the event loop.
            try:
                with subscription:
                    for notification in subscription:
                        asyncio.run_coroutine_threadsafe(queue.put(notification), loop).result()
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()

        # Everything started here is stopped in `finally`, whatever fails first
        # (an unreachable broker must not leak subscriptions and connections).
        try:
            if not await delivered(producer.start(), stop, self._lock):
                return  # stopped while the producer could not start
            start = await asyncio.to_thread(lambda: self.position)
            subscription = Subscription(self._recorder, self._conninfo, gt=start)
            thread = threading.Thread(target=pump, name=f"relay-{self._topic}", daemon=True)
            thread.start()
            log.info("relay.active", topic=self._topic, position=start)
            RELAY_ACTIVE.labels(self._topic).set(1)
            while not stop.is_set():
                try:
                    first = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    first = None
                # Publish only while this process still holds the lock.
                if not await asyncio.to_thread(self._lock.still_held):
                    raise RuntimeError("lost the relay lock connection")
                if first is None:
                    read_again(subscription)
                    continue
                batch = [first]
                while len(batch) < BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                for item in batch:
                    if isinstance(item, BaseException):
                        raise item
                notifications = [n for n in batch if isinstance(n, Notification)]
                await self._publish(producer, notifications, stop)
        finally:
            RELAY_ACTIVE.labels(self._topic).set(0)
            if subscription is not None:
                subscription.stop()
            while thread is not None and thread.is_alive():
                # Drain so the pump thread can finish.
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.sleep(0.01)
            await stop_producer(producer, self._topic)

    def _translate_batch(self, batch: list[Notification]) -> list[tuple[CloudEvent, Any]]:
        translated = []
        for notification in batch:
            domain_event = self._app.mapper.to_domain_event(notification)
            translated.append((self._translate(notification, domain_event), domain_event))
        return translated

    async def _publish(
        self, producer: AIOKafkaProducer, batch: list[Notification], stop: asyncio.Event
    ) -> None:
        # Decoding and translating may read the store: keep it off the event loop.
        translated = await asyncio.to_thread(self._translate_batch, batch)
        if not await delivered(self._send(producer, translated), stop, self._lock):
            log.warning("relay.stopped_unacknowledged", topic=self._topic, count=len(batch))
            return
        last = batch[-1].id
        await asyncio.to_thread(self._tracking.insert_tracking, Tracking(self._topic, last))
        self.published += len(batch)
        RELAY_PUBLISHED.labels(self._topic).inc(len(batch))
        log.debug("relay.published", topic=self._topic, count=len(batch), position=last)

    async def _send(
        self, producer: AIOKafkaProducer, translated: list[tuple[CloudEvent, Any]]
    ) -> None:
        """Sends the batch, in order, and waits for the broker's acks."""
        acks = []
        for event, domain_event in translated:
            parent = propagate.extract(trace_carrier(domain_event))
            token = otel_context.attach(parent)
            try:
                with tracer("casemesh.relay").start_as_current_span(
                    f"{self._topic} publish",
                    kind=trace.SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": self._topic,
                        "messaging.message.id": event.id,
                    },
                ):
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier)
                    headers = replace(event, trace_headers=tuple(carrier.items())).kafka_headers()
                    acks.append(
                        await producer.send(
                            self._topic, value=event.data, key=event.key.encode(), headers=headers
                        )
                    )
            finally:
                otel_context.detach(token)
        await asyncio.gather(*acks)

"""The notifier, measured as an operator would see it, each figure against a
reference taken in the same run, alternately (A-B-A-B, `bench.report`):

- drain rate: a backlog of e-mail jobs (one per ticket created) sent to an
  SMTP relay on loopback and recorded, against one raw smtplib session
  sending the same number of messages back to back to the same relay; and
  the notifier's CPU per e-mail against the raw session's per message;
- consuming rate: a backlog of ticket events on Kafka planned (jobs and
  consumed-event rows committed), against a bare aiokafka consumer reading
  the same backlog, and against the consumer taking one event at a time (a
  transaction an event; its offsets committed in the background, as every
  consumer's are);
- a claim over a backlog: a sender claiming a batch while 5,000 jobs wait
  beside 100,000 sent, the table's statistics taken before they came (as
  after a burst, until autovacuum looks again), against the same with
  statistics taken after;
- command → e-mail: events written to Kafka at a steady rate, each timed
  from its write to the relay's receipt of its e-mail, the whole notifier
  running (consumer, senders); the reference is the bare Kafka hop (a bare
  aiokafka consumer's receipt of the same stream).

The relay runs in a process of its own, as a real one would, and offers
PIPELINING as common relays (Postfix, Exim) do; the bench process is then
the notifier alone, so its CPU time over a drain is the notifier's cost per
e-mail (database driver, SMTP client, events), printed against the raw
session's CPU per message."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import resource
import smtplib
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from psycopg_pool import AsyncConnectionPool

from bench.report import Goal, interleaved, row
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.clock import SystemClock
from casemesh.platform.consuming import MAX_BATCH, start_broker
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import configure_logging
from casemesh.platform.personal import AsyncSealer, DataKeys, MasterKeys, MemoryKeyStore, Sealer
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.platform.pools import async_pool
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.ports import free_port
from casemesh_notifier.channels import SmtpChannel
from casemesh_notifier.consumers import build_broker, build_router
from casemesh_notifier.delivery import BATCH, Delivery
from casemesh_notifier.planner import Planner
from casemesh_notifier.schema import create_schema
from casemesh_notifier.settings import NotifierSettings

# The bench's events carry no sealed fields: revealing them asks no key store.
MASTER_KEYS = f"bench:{new_master_key()}"


def memory_sealer() -> AsyncSealer:
    return AsyncSealer(Sealer(DataKeys(MemoryKeyStore(), MasterKeys.parse(MASTER_KEYS))))


# Before batching, the notifier drained 17–32 e-mails/s; the goal is ten times 25/s.
BEFORE = 25.0
DRAIN = Goal("notifier drain, e-mails/s", "/s", 1.0)
CPU = Goal("notifier CPU per e-mail", "ms", 4.0, limit=2.0)
# Consuming: events planned a second from a backlog; batched, the goal is ten
# times the consumer of one transaction an event.
BACKLOG = 1000
CONSUMING = Goal("notifier consuming, events planned/s", "/s", None)
BATCHED = Goal("  batched, against one event a time", "/s", 10.0)
# Command → e-mail at half the most CreateTicket the gateway took (177/s,
# docs/scaling.md): one e-mail a ticket.
RATE = 90.0
# Jobs waiting while a claim is timed; claims timed (the median printed).
WAITING = 5_000
SENT_BEFORE = 100_000
CLAIMS = 5
STALE = Goal(f"claim of {BATCH}, {WAITING:,} waiting, stale stats", "ms", 2.0)
TIMED = 450
P50 = Goal("Kafka → e-mail at the relay, p50", "ms", None, limit=25.0)
P99 = Goal("Kafka → e-mail at the relay, p99", "ms", None, limit=100.0)
NUMBERS = itertools.count(1_000_000)


def serve_sink(port: int, ready: Any, arrivals: Any = None) -> None:
    """The relay: accepts every message, offering PIPELINING; with `arrivals`
    (a queue), puts (recipient, time received) there for each."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if arrivals is not None:
                now = time.time()
                for recipient in envelope.rcpt_tos:
                    arrivals.put((recipient, now))
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def created(n: int, ticket: str | None = None) -> CloudEvent:
    ticket = ticket or str(uuid.uuid4())
    msg = ev.TicketCreated(
        header=ev.TicketEventHeader(ticket_id=ticket, version=1, status=ev.TICKET_STATUS_NEW),
        requester=f"bench-{n}",
        category="content.upload_failed",
        subject="上传失败",
        contact=ev.ContactPreferences(
            email=f"bench-{n}@example.com", channels=[ev.CONTACT_CHANNEL_EMAIL], locale="zh-CN"
        ),
    )
    return CloudEvent(
        id=f"{ticket}:1",
        source="casemesh/tickets",
        type="casemesh.tickets.TicketCreated.v1",
        subject=f"tickets/{ticket}",
        time=datetime.now(UTC),
        data=msg.SerializeToString(),
        key=ticket,
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_smtp(port: int, n: int, cpu: list[float]) -> float:
    """One smtplib session sending n messages; appends its CPU ms per message."""
    start, used = time.perf_counter(), cpu_seconds()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "s@casemesh.local", f"r{i}@example.com", "x"
            msg.set_content("您好，我们已收到您的工单。")
            smtp.send_message(msg)
    elapsed = time.perf_counter() - start
    cpu.append((cpu_seconds() - used) * 1000 / n)
    return n / elapsed


@asynccontextmanager
async def senders(dsn: str, port: int, concurrency: int) -> AsyncIterator[Senders]:
    """The notifier's database pool and senders (not yet running), sending
    e-mail to the relay on `port`."""
    cfg = NotifierSettings(
        master_keys=MASTER_KEYS,
        keys_database_url="postgresql://x@h/casemesh_keys",  # not reached
        database_url=dsn,
        smtp_host="127.0.0.1",
        smtp_port=port,
        sms_url="http://127.0.0.1:9",
        send_concurrency=concurrency,
    )
    pool = async_pool(dsn, min_size=1, max_size=concurrency + 4)
    await pool.open()
    email = SmtpChannel(host="127.0.0.1", port=port, sender=cfg.mail_from)
    try:
        yield Senders(pool, Delivery(pool=pool, conninfo=dsn, channels={"EMAIL": email}, cfg=cfg))
    finally:
        await email.aclose()
        await pool.close()


@dataclass(frozen=True)
class Senders:
    pool: AsyncConnectionPool[Any]
    delivery: Delivery


async def drain(dsn: str, port: int, n: int, concurrency: int, cpu: list[float]) -> float:
    """Plans n e-mail jobs, then times the notifier sending and recording
    them all (watched as an operator would: the jobs marked sent); appends
    its CPU ms per e-mail."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await clear(conn)
        planner = Planner(memory_sealer())
        async with conn.transaction():
            for i in range(n):
                await planner.plan(
                    conn, created(i), topic="bench", partition=0, offset=i, now=datetime.now(UTC)
                )
        async with senders(dsn, port, concurrency) as notifier:
            stop = asyncio.Event()
            start, used = time.perf_counter(), cpu_seconds()
            task = asyncio.create_task(notifier.delivery.run(stop))
            sent = 0
            while sent < n:
                await asyncio.sleep(0.02)
                cur = await conn.execute(
                    "SELECT count(*) FROM notification_jobs WHERE status = 'sent'"
                )
                sent = (await cur.fetchone() or (0,))[0]
            elapsed = time.perf_counter() - start
            cpu.append((cpu_seconds() - used) * 1000 / n)
            stop.set()
            await task
    return n / elapsed


async def claim_ms(dsn: str, port: int, stale: bool) -> float:
    """The median time a sender takes to claim a batch while WAITING jobs
    (two to a case) wait beside SENT_BEFORE sent ones: with the statistics
    the server took when a few jobs waited (`stale`: autovacuum kept away
    meanwhile), or after they all came."""

    async def add(conn: psycopg.AsyncConnection[Any], count: int, status: str) -> None:
        await conn.execute(
            "INSERT INTO notification_jobs (id, cause_event_id, case_name, party, channel,"
            " recipient, template, locale, body, status, next_attempt_at, created_at)"
            " SELECT gen_random_uuid(), %s || g, 'tickets/' || %s || (g / 2), 'requester',"
            " 'EMAIL', 'u' || g || '@example.com', 'ticket_created', 'zh-CN', 'body', %s,"
            " now() - interval '1 minute', now() FROM generate_series(1, %s) AS g",
            (status, status, status, count),
        )

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await clear(conn)
        await conn.execute("ALTER TABLE notification_jobs SET (autovacuum_enabled = false)")
        try:
            await add(conn, SENT_BEFORE, "sent")
            if stale:
                await add(conn, 5, "pending")
                await conn.execute("ANALYZE notification_jobs")
                # The statistics kept.
                await conn.execute("DELETE FROM notification_jobs WHERE status = 'pending'")
            await add(conn, WAITING, "pending")
            if not stale:
                await conn.execute("ANALYZE notification_jobs")
            async with senders(dsn, port, 1) as notifier:
                took = []
                for _ in range(CLAIMS):
                    start = time.perf_counter()
                    claimed = await notifier.delivery.claim_many(BATCH)
                    took.append((time.perf_counter() - start) * 1000)
                    assert len(claimed) == BATCH, claimed
        finally:
            await conn.execute("ALTER TABLE notification_jobs RESET (autovacuum_enabled)")
            await clear(conn)
    return statistics.median(took)


async def clear(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(
        "TRUNCATE notification_jobs, notification_outbox, consumed_events, case_parties,"
        " unprocessable_events"
    )


async def planned(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM consumed_events")
    return int((await cur.fetchone() or (0,))[0])


async def write(
    bootstrap: str, topic: str, events: list[CloudEvent], rate: float | None = None
) -> dict[str, float]:
    """Writes the events to `topic`, `rate` a second if given (else at once);
    returns when each was written (epoch seconds), by key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    written: dict[str, float] = {}
    try:
        start = time.perf_counter()
        acks = []
        for i, event in enumerate(events):
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            written[event.key] = time.time()
            acks.append(
                await producer.send(
                    topic, event.data, key=event.key.encode(), headers=event.kafka_headers()
                )
            )
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return written


def fresh(what: str) -> str:
    return f"bench.{what}.{uuid.uuid4().hex[:8]}"


async def consume_backlog(dsn: str, bootstrap: str, topic: str, n: int, batched: bool) -> float:
    """Events planned a second by the notifier's consumer reading the backlog
    of n events on `topic`, from its start (joining the group included);
    `batched` False: one event at a time, a transaction an event."""
    group, planner = fresh("notifier"), Planner(memory_sealer())
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await clear(conn)
        pool = async_pool(dsn, min_size=1, max_size=4)
        await pool.open()
        router = build_router(
            pool=pool,
            group_id=group,
            clock=SystemClock(),
            planner=planner,
            topic_names=[topic],
            max_records=MAX_BATCH if batched else None,
        )
        stop = asyncio.Event()
        start = time.perf_counter()
        broker = await start_broker(lambda: build_broker(bootstrap, router), stop, "bench")
        try:
            # Watched from outside, as an operator would the planned events.
            while await planned(conn) < n:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - start
        finally:
            if broker is not None:
                await broker.stop()
            await pool.close()
    return n / elapsed


async def bare_consumer(bootstrap: str, topic: str, n: int) -> float:
    """Records a second a bare aiokafka consumer reads the same backlog, from
    its start (joining the group included); it commits its offsets at the end."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=fresh("bare"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    start = time.perf_counter()
    await consumer.start()
    try:
        seen = 0
        while seen < n:
            fetched = await consumer.getmany(timeout_ms=100)
            seen += sum(len(records) for records in fetched.values())
        await consumer.commit()
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def stream(n: int) -> list[CloudEvent]:
    """n ticket events, each e-mailing a recipient of its own (bench-<n>@…)."""
    return [created(next(NUMBERS)) for _ in range(n)]


def recipient(event: CloudEvent) -> str:
    return ev.TicketCreated.FromString(event.data).contact.email


def arrived(arrivals: Any, wanted: set[str], timeout: float = 120.0) -> dict[str, float]:
    """When the relay received each wanted recipient's e-mail (others are skipped)."""
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(wanted):
        who, when = arrivals.get(timeout=max(0.1, deadline - time.monotonic()))
        if who in wanted:
            got[who] = when
    return got


async def notifier_latency(
    dsn: str, kafka: LocalKafka, port: int, arrivals: Any, n: int, p99: list[float]
) -> float:
    """The whole notifier (consumer and 4 senders) on a fresh topic; n events
    written at RATE a second, each timed from its write to its e-mail's
    arrival at the relay. Returns the p50 in ms, appends the p99."""
    topic = fresh("latency")
    await kafka.create_topics([topic], partitions=3)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await clear(conn)
    async with senders(dsn, port, 4) as notifier:
        router = build_router(
            pool=notifier.pool,
            group_id=fresh("notifier"),
            clock=SystemClock(),
            planner=Planner(memory_sealer()),
            topic_names=[topic],
        )
        stop = asyncio.Event()
        sending = asyncio.create_task(notifier.delivery.run(stop))
        broker = await start_broker(lambda: build_broker(kafka.bootstrap, router), stop, "bench")
        try:
            # A few first: the group has joined and the sessions are open.
            warm = stream(20)
            await write(kafka.bootstrap, topic, warm)
            await asyncio.to_thread(arrived, arrivals, {recipient(e) for e in warm})
            events = stream(n)
            written = await write(kafka.bootstrap, topic, events, RATE)
            got = await asyncio.to_thread(arrived, arrivals, {recipient(e) for e in events})
        finally:
            stop.set()
            if broker is not None:
                await broker.stop()
            await sending
    return percentiles([got[recipient(e)] - written[e.key] for e in events], p99)


async def bare_latency(kafka: LocalKafka, n: int, p99: list[float]) -> float:
    """The bare Kafka hop: the same stream, each event timed from its write to
    a bare aiokafka consumer's receipt. Returns the p50 in ms, appends the p99."""
    topic = fresh("latency")
    await kafka.create_topics([topic], partitions=3)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=fresh("bare"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: dict[str, float] = {}

    async def read() -> None:
        async for record in consumer:
            got[record.key.decode()] = time.time()

    reading = asyncio.create_task(read())
    try:
        for events, rate in ((stream(20), None), (stream(n), RATE)):
            written = await write(kafka.bootstrap, topic, events, rate)
            while not all(e.key in got for e in events):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await consumer.stop()
    return percentiles([got[e.key] - written[e.key] for e in events], p99)


def percentiles(seconds: list[float], p99: list[float]) -> float:
    """The p50 of `seconds` in ms; appends the p99 in ms."""
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100)
    p99.append(cuts[98])
    return cuts[49]


def run(dsn: str, kafka: LocalKafka, n: int = 1000, concurrency: int = 4) -> None:
    configure_logging("bench", "warning", "console")
    asyncio.run(create_schema(dsn))
    spawn = multiprocessing.get_context("spawn")
    port, timed_port = free_port(), free_port()
    ready, timed_ready, arrivals = spawn.Event(), spawn.Event(), spawn.Queue()
    sinks = [
        spawn.Process(target=serve_sink, args=(port, ready), daemon=True),
        spawn.Process(target=serve_sink, args=(timed_port, timed_ready, arrivals), daemon=True),
    ]
    for sink in sinks:
        sink.start()
    ours: list[float] = []
    theirs: list[float] = []
    ours_p99: list[float] = []
    bare_p99: list[float] = []
    backlog = fresh("backlog")
    try:
        ready.wait(30)
        timed_ready.wait(30)
        rate, raw = interleaved(
            lambda: asyncio.run(drain(dsn, port, n, concurrency, ours)),
            lambda: raw_smtp(port, n, theirs),
        )
        report_drain(rate, raw, ours, theirs, n, concurrency)
        stale, fresh_stats = interleaved(
            lambda: asyncio.run(claim_ms(dsn, port, stale=True)),
            lambda: asyncio.run(claim_ms(dsn, port, stale=False)),
        )
        print(row(STALE, stale, fresh_stats, "the same, statistics taken after"), flush=True)
        asyncio.run(kafka.create_topics([backlog], partitions=3))
        asyncio.run(write(kafka.bootstrap, backlog, stream(BACKLOG)))
        consumed, bare = interleaved(
            lambda: asyncio.run(consume_backlog(dsn, kafka.bootstrap, backlog, BACKLOG, True)),
            lambda: asyncio.run(bare_consumer(kafka.bootstrap, backlog, BACKLOG)),
        )
        print(f"\nNotifier consuming ({BACKLOG} ticket events on Kafka, 3 partitions)")
        print(row(CONSUMING, consumed, bare, "bare aiokafka consumer"), flush=True)
        consumed_too, before = interleaved(
            lambda: asyncio.run(consume_backlog(dsn, kafka.bootstrap, backlog, BACKLOG, True)),
            lambda: asyncio.run(consume_backlog(dsn, kafka.bootstrap, backlog, BACKLOG, False)),
        )
        print(row(BATCHED, consumed_too, before, "a transaction an event"), flush=True)
        p50, bare_p50 = interleaved(
            lambda: asyncio.run(
                notifier_latency(dsn, kafka, timed_port, arrivals, TIMED, ours_p99)
            ),
            lambda: asyncio.run(bare_latency(kafka, TIMED, bare_p99)),
        )
    finally:
        for sink in sinks:
            sink.terminate()
            sink.join()
    print(f"\nCommand → e-mail ({TIMED} events written to Kafka at {RATE:.0f}/s)")
    print(row(P50, p50, bare_p50, "bare Kafka hop, p50"))
    print(row(P99, statistics.median(ours_p99), statistics.median(bare_p99), "bare Kafka hop, p99"))


def report_drain(
    rate: float, raw: float, ours: list[float], theirs: list[float], n: int, concurrency: int
) -> None:
    ours.sort()
    theirs.sort()
    print(f"\nNotifier drain ({n} e-mail jobs, {concurrency} senders, SMTP relay on loopback)")
    print(row(DRAIN, rate, raw, "raw smtplib, one session"))
    print(
        f"  {'':<40} absolute: {rate:.0f} /s, goal ≥ {10 * BEFORE:.0f} /s"
        f" (10× the {BEFORE:.0f}/s before): {'met' if rate >= 10 * BEFORE else 'NOT MET'}"
    )
    mid = len(ours) // 2
    print(row(CPU, ours[mid], theirs[mid], "raw smtplib client, per message"), flush=True)

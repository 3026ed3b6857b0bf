"""`./dev bench`: each goal of the write path, queue and help centre, measured
against a reference taken in the same run and printed as measured │
reference │ ratio │ goal (`bench/report.py`):

- the writer: event-store appends and CreateTicket against raw INSERT
  transactions, and two writer processes against one (`bench/writer.py`,
  fsync on);
- CreateTicket through the tickets service with personal data sealed
  against the same with sealing off (`bench/sealing.py`, fsync on);
- the relay: a stored backlog onto Kafka against a bare producer;
- ClaimNextCase latency over 100,000 open cases (`bench/queue.py`);
- help-centre search latency over 10,000 articles (`bench/helpcenter.py`);
- the notifier: its e-mail drain rate, its consuming rate from a backlog on
  Kafka, and command → e-mail latency at a steady rate (`bench/notifier.py`).

Starts its own PostgreSQL clusters and Kafka broker (like the tests).
`--only PART` runs one part.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import gateway as gateway_bench
from bench import helpcenter as help_bench
from bench import notifier as notifier_bench
from bench import queue as queue_bench
from bench import sealing as sealing_bench
from bench import writer as writer_bench
from bench.report import Goal, row
from casemesh import topics
from casemesh.platform.identity import Identity
from casemesh.platform.relay import Relay, make_producer
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_tickets.__main__ import status_lookup
from casemesh_tickets.application import Tickets, open_tickets
from casemesh_tickets.events import Translator

REPO = Path(__file__).resolve().parent.parent


def bench_creates(app: Tickets, n: int, workers: int) -> float:
    """Stores `n` tickets (the relay's backlog)."""
    who = Identity("bench-user", frozenset({"user"}))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: app.create_ticket(who, writer_bench.new_ticket()), range(n)))
    return n / (time.perf_counter() - start)


async def bench_raw_producer(bootstrap: str, n: int) -> float:
    producer = make_producer(bootstrap, "bench-raw")
    await producer.start()
    try:
        payload = b"x" * 300
        start = time.perf_counter()
        acks = [
            await producer.send("bench.raw", value=payload, key=str(i % 500).encode())
            for i in range(n)
        ]
        await asyncio.gather(*acks)
        return n / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def bench_relay(app: Tickets, dsn: str, bootstrap: str, backlog: int) -> float:
    relay = Relay(
        app=app,
        topic="bench.tickets",
        translate=Translator(status_lookup(app)),
        bootstrap=bootstrap,
        conninfo=dsn,
    )
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    # Measured from outside, as an operator would watch the relay's position.
    while relay.position < backlog:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return backlog / elapsed


def relay(pg: LocalPostgres, kafka: LocalKafka, n: int) -> None:
    """Relay: a stored backlog of `n` ticket events onto Kafka, against a bare
    producer sending as many records (fsync off: this measures the relay)."""
    asyncio.run(kafka.create_topics(["bench.raw", "bench.tickets"], partitions=3))
    pg.create_database("bench")
    dsn = pg.dsn("bench")
    app = open_tickets(dsn, pool_size=8)
    try:
        bench_creates(app, n, 8)
        backlog = app.recorder.max_notification_id() or 0
        raw_kafka = asyncio.run(bench_raw_producer(kafka.bootstrap, backlog))
        relayed = asyncio.run(bench_relay(app, dsn, kafka.bootstrap, backlog))
    finally:
        app.close()
    print(f"\nRelay ({backlog} stored events; one run each)")
    goal = Goal("relay, stored backlog → Kafka", "/s", None)
    print(row(goal, relayed, raw_kafka, "bare aiokafka producer, acks=all"))


PARTS = ("writer", "sealing", "relay", "gateway", "queue", "help", "notifier")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("-n", type=int, default=2000, help="events relayed")
    parser.add_argument("--queue-cases", type=int, default=100_000, help="open cases in the queue")
    parser.add_argument("--only", choices=PARTS, help="run one part")
    args = parser.parse_args()
    parts = [args.only] if args.only else list(PARTS)

    root = Path(tempfile.mkdtemp(prefix="casemesh-bench-"))
    root.chmod(0o755)
    print("Each goal: measured │ reference, taken in the same run │ ratio │ goal.")
    print(
        "Clusters run with fsync off (throwaway), except the writer's and the key database,"
        " which flush every commit."
    )
    pg = LocalPostgres(root / "pg", free_port())
    durable = LocalPostgres(root / "pg-durable", free_port(), durable=True)
    keys = LocalPostgres(root / "pg-keys", free_port(), durable=True)
    kafka = LocalKafka(root / "kafka", free_port(), free_port(), REPO / ".run/cache/kafka-4.1.1")
    try:
        pg.start()
        if "writer" in parts or "sealing" in parts:
            durable.start()
        if "writer" in parts:
            durable.create_database("bench_writer")
            writer_bench.run(durable.dsn("bench_writer"))
        if {"sealing", "relay", "gateway", "notifier"}.intersection(parts):
            kafka.start()
            asyncio.run(kafka.create_topics(list(topics.ALL), partitions=3, configs=topics.CONFIGS))
        if "sealing" in parts:
            keys.start()
            sealing_bench.run(durable, keys, kafka.bootstrap)
            keys.stop()
        durable.stop()
        if "relay" in parts:
            relay(pg, kafka, args.n)
        if "gateway" in parts:
            gateway_bench.run(root, pg, kafka)
        if "queue" in parts:
            pg.create_database("bench_queue")
            queue_bench.run(pg.dsn("bench_queue"), cases=args.queue_cases)
        if "help" in parts:
            pg.create_database("bench_help")
            help_bench.run(pg.dsn("bench_help"))
        if "notifier" in parts:
            pg.create_database("bench_notifier")
            notifier_bench.run(pg.dsn("bench_notifier"), kafka)
    finally:
        kafka.stop()
        keys.stop()
        durable.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`./dev bench`: writer and relay throughput against their raw ceilings, and
the queue's ClaimNextCase latency (`bench/queue.py`) and help-centre search
latency over 10,000 articles (`bench/helpcenter.py`), and the notifier's
e-mail drain rate (`bench/notifier.py`).

Starts its own PostgreSQL cluster and Kafka broker (like the tests) and prints:
- ticket creates per second (one command = one transaction through the event
  store) against a bare psycopg loop of one-row insert transactions;
- relay events per second (stored backlog → Kafka, acks=all, idempotent)
  against a bare aiokafka producer sending the same number of records.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from bench import helpcenter as help_bench
from bench import notifier as notifier_bench
from bench import queue as queue_bench
from casemesh.platform.identity import Identity
from casemesh.platform.relay import Relay, make_producer
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_tickets.__main__ import status_lookup
from casemesh_tickets.application import NewTicket, Tickets, open_tickets
from casemesh_tickets.events import Translator

REPO = Path(__file__).resolve().parent.parent


def new_ticket(i: int) -> NewTicket:
    return NewTicket(
        request_id=f"bench-{i}-{uuid.uuid4().hex[:8]}",
        category="content.upload_failed",
        subject="上传失败",
        description="视频上传到 99% 失败",
        locale="zh-CN",
        contact={"email": "bench@example.com", "phone": "", "channels": ["EMAIL"]},
    )


def bench_raw_inserts(dsn: str, n: int, workers: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_bench (id bigserial PRIMARY KEY, body text)")

    def work(count: int) -> None:
        with psycopg.connect(dsn) as conn:
            for _ in range(count):
                conn.execute("INSERT INTO raw_bench (body) VALUES (%s)", ("x" * 200,))
                conn.commit()

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, [n // workers] * workers))
    return (n // workers * workers) / (time.perf_counter() - start)


def bench_creates(app: Tickets, n: int, workers: int) -> float:
    who = Identity("bench-user", frozenset({"user"}))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: app.create_ticket(who, new_ticket(i)), range(n)))
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("-n", type=int, default=2000, help="commands / records per measurement")
    parser.add_argument("--workers", type=int, default=8, help="concurrent writers")
    parser.add_argument("--queue-cases", type=int, default=100_000, help="open cases in the queue")
    parser.add_argument(
        "--only", choices=["writers", "queue", "help", "notifier"], help="run one part"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="casemesh-bench-"))
    root.chmod(0o755)
    pg = LocalPostgres(root / "pg", free_port())
    kafka = LocalKafka(root / "kafka", free_port(), free_port(), REPO / ".run/cache/kafka-4.1.1")
    try:
        pg.start()
        if args.only in (None, "queue"):
            pg.create_database("bench_queue")
            queue_bench.run(pg.dsn("bench_queue"), cases=args.queue_cases)
        if args.only in (None, "help"):
            pg.create_database("bench_help")
            help_bench.run(pg.dsn("bench_help"))
        if args.only in (None, "notifier"):
            pg.create_database("bench_notifier")
            notifier_bench.run(pg.dsn("bench_notifier"))
        if args.only in ("queue", "help", "notifier"):
            return
        kafka.start()
        asyncio.run(kafka.create_topics(["bench.raw", "bench.tickets"], partitions=3))
        pg.create_database("bench")
        dsn = pg.dsn("bench")
        app = open_tickets(dsn, pool_size=args.workers)

        raw_tx = bench_raw_inserts(dsn, args.n, args.workers)
        creates = bench_creates(app, args.n, args.workers)
        backlog = app.recorder.max_notification_id() or 0
        raw_kafka = asyncio.run(bench_raw_producer(kafka.bootstrap, backlog))
        relayed = asyncio.run(bench_relay(app, dsn, kafka.bootstrap, backlog))
        app.close()

        print(f"\nCasemesh benchmarks ({args.n} operations, {args.workers} writers)")
        print("  note: the local cluster runs with fsync=off, so commit cost is CPU, not disk")
        print(f"  raw psycopg insert transactions  {raw_tx:10.0f} /s")
        print(
            f"  CreateTicket (event store)       {creates:10.0f} /s   ratio {creates / raw_tx:.2f}"
        )
        print(f"  raw aiokafka producer (acks=all) {raw_kafka:10.0f} /s")
        print(
            f"  relay, stored backlog → Kafka    {relayed:10.0f} /s"
            f"   ratio {relayed / raw_kafka:.2f}"
        )
    finally:
        kafka.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""ClaimNextCase latency: 32 agents at once over 100,000 open cases, through
the queue's gRPC service, against the raw ceiling of a bare psycopg round trip
at the same concurrency, measured alternately (A-B-A-B). Every claim of a run
must hand out a case nobody else holds: a case claimed twice fails the run."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

import grpc
import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.report import Goal, interleaved, row
from casemesh.platform.callers import VouchedCalls
from casemesh.platform.clock import SystemClock
from casemesh.platform.grpcutil import DomainErrorInterceptor
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    InternalTokenVerifier,
    new_signing_key,
    verify_key_of,
)
from casemesh.v1 import casequeue_pb2 as pb
from casemesh.v1 import casequeue_pb2_grpc as pb_grpc
from casemesh_casequeue import sla, store
from casemesh_casequeue.api import QueueServicer
from casemesh_casequeue.model import Observation, apply, new_case
from casemesh_casequeue.watch import Broadcaster

QUEUE = pb.DESCRIPTOR.services_by_name["CaseQueueService"].full_name


def percentiles(samples: list[float], high: int = 99) -> tuple[float, float]:
    """p50 and the `high` percentile, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[high - 1] * 1000


async def seed(dsn: str, n: int) -> None:
    levels = sla.load()
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await store.create_schema(conn)
    rows = []
    for i in range(n):
        obs = Observation(
            name=f"tickets/{uuid.UUID(int=i)}",
            type="ticket",
            version=1,
            at=now - timedelta(seconds=n - i),
            status="NEW",
            open=True,
            waiting=False,
            created=True,
            category=("account.login", "content.upload_failed", "ads.consulting")[i % 3],
            priority=1 + i % 4,
        )
        case = new_case(obs, levels)
        apply(case, obs, levels)
        rows.append(store._row(case))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            await cur.executemany(store.INSERT, rows)
        await conn.commit()
        await conn.set_autocommit(True)
        await conn.execute("VACUUM ANALYZE queue_cases")


async def paced(each: int, every: float | None, offset: float) -> AsyncIterator[float]:
    """`each` start times: back to back when `every` is None (the next call
    starts when the last is answered), else one every `every` seconds from
    `offset` on, whatever the answers do. A late call's time counts from when
    it was due, so a queue that builds up is measured, not hidden."""
    due = time.perf_counter() + offset
    for _ in range(each):
        if every is None:
            yield time.perf_counter()
            continue
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        yield due
        due += every


def phase(n: int, agents: int, every: float | None) -> float:
    """Agent `n`'s first call, spread evenly over one interval."""
    return 0.0 if every is None else every * n / agents


async def raw_round_trips(
    dsn: str, agents: int, each: int, every: float | None = None
) -> list[float]:
    samples: list[float] = []

    async def one(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            async for t in paced(each, every, phase(n, agents, every)):
                await conn.execute("SELECT 1")
                samples.append(time.perf_counter() - t)

    await asyncio.gather(*(one(n) for n in range(agents)))
    return samples


def serve(dsn: str, key: str, agents: int, control: Connection) -> None:
    """The queue's gRPC service in a process of its own, as deployed (and as
    PostgreSQL is for the reference): its port is sent on `control`, and it
    stops when anything comes back."""

    async def main() -> None:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn, min_size=agents, max_size=agents, open=False, kwargs={"autocommit": True}
        )
        await pool.open()
        # As deployed: every call carries the gateway's token, checked before the claim.
        server = grpc.aio.server(
            interceptors=[
                DomainErrorInterceptor(),
                VouchedCalls(InternalTokenVerifier(verify_key_of(key), [QUEUE])),
            ]
        )
        pb_grpc.add_CaseQueueServiceServicer_to_server(
            QueueServicer(pool, SystemClock(), Broadcaster(dsn), sla.load().queue_names), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        control.send(port)
        await asyncio.get_running_loop().run_in_executor(None, control.recv)
        await server.stop(None)
        await pool.close()

    asyncio.run(main())


async def claims(
    address: str, key: str, agents: int, each: int, every: float | None = None
) -> list[float]:
    signer = InternalTokenSigner(key)
    samples: list[float] = []
    holders: dict[str, list[str]] = {}

    async def agent(n: int) -> None:
        metadata = signer.metadata(Identity(f"agent-{n}", frozenset({"agent"})), QUEUE)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.CaseQueueServiceStub(channel)
            async for t in paced(each, every, phase(n, agents, every)):
                case = await stub.ClaimNextCase(pb.ClaimNextCaseRequest(), metadata=metadata)
                samples.append(time.perf_counter() - t)
                holders.setdefault(case.name, []).append(case.holder)

    await asyncio.gather(*(agent(n) for n in range(agents)))
    # Leases last ten minutes, longer than a run: no case may come back.
    twice = {name: who for name, who in holders.items() if len(who) > 1}
    if twice:
        raise AssertionError(f"{len(twice)} cases claimed twice, e.g. {next(iter(twice.items()))}")
    return samples


@contextlib.contextmanager
def queue_service(dsn: str, key: str, agents: int) -> Iterator[str]:
    """The address of the queue's service running in a child process."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    child = spawn.Process(target=serve, args=(dsn, key, agents, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the queue's service did not start in 60 s")
        yield f"127.0.0.1:{ours.recv()}"
    finally:
        ours.send("stop")
        child.join(30)
        if child.is_alive():
            child.kill()


P99 = Goal("ClaimNextCase p99", "ms", 3.0, limit=10.0)
P50 = Goal("ClaimNextCase p50 (for information)", "ms", None)


def compare(address: str, key: str, dsn: str, agents: int, each: int, every: float | None) -> None:
    """Claims against bare round trips under the same load, A-B-A-B: p99 by
    the goal, p50 for information."""
    p50s: dict[str, list[float]] = {"claims": [], "raw": []}

    def p99_of(kind: str, samples: list[float]) -> float:
        p50, p99 = percentiles(samples)
        p50s[kind].append(p50)
        return p99

    p99, raw99 = interleaved(
        lambda: p99_of("claims", asyncio.run(claims(address, key, agents, each, every))),
        lambda: p99_of("raw", asyncio.run(raw_round_trips(dsn, agents, each, every))),
    )
    p50, raw50 = statistics.median(p50s["claims"]), statistics.median(p50s["raw"])
    print(row(P99, p99, raw99, "bare psycopg round trip p99"))
    print(row(P50, p50, raw50, "bare psycopg round trip p50"))


def run(
    dsn: str, cases: int = 100_000, agents: int = 32, each: int = 100, every: float = 0.1
) -> None:
    """Two loads: every agent claiming back to back (the service saturated:
    latency is then mostly the calls queued before it), and every agent
    claiming once every `every` seconds (still far beyond an agent's pace)."""
    started = time.perf_counter()
    asyncio.run(seed(dsn, cases))
    seeded = time.perf_counter() - started
    print(f"\nClaimNextCase: {agents} agents × {each} claims a run over {cases} open cases")
    print(f"  (seeded in {seeded:.0f} s; the service runs in a process of its own)")
    key = new_signing_key()
    with queue_service(dsn, key, agents) as address:
        print(f"  {agents} agents claiming back to back:")
        compare(address, key, dsn, agents, each, None)
        print(f"  {agents} agents claiming once every {every * 1000:.0f} ms each:")
        compare(address, key, dsn, agents, each, every)
    print("  (no case was claimed twice)")

"""ClaimNextCase latency: 32 agents at once over 100,000 open cases, through
the queue's gRPC service, against the raw ceiling of a bare psycopg round trip
at the same concurrency, measured alternately (A-B-A-B). Every claim of a run
must hand out a case nobody else holds: a case claimed twice fails the run."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
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
from casemesh_devstack.ports import free_port

P99 = Goal("ClaimNextCase p99, 32 agents", "ms", 3.0, limit=10.0)
P50 = Goal("ClaimNextCase p50 (for information)", "ms", 3.0)


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


async def raw_round_trips(dsn: str, agents: int, each: int) -> list[float]:
    samples: list[float] = []

    async def one() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for _ in range(each):
                t = time.perf_counter()
                await conn.execute("SELECT 1")
                samples.append(time.perf_counter() - t)

    await asyncio.gather(*(one() for _ in range(agents)))
    return samples


async def claims(dsn: str, agents: int, each: int) -> list[float]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=agents, max_size=agents, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    # As deployed: every call carries the gateway's token, checked before the claim.
    key = new_signing_key()
    queue = pb.DESCRIPTOR.services_by_name["CaseQueueService"].full_name
    server = grpc.aio.server(
        interceptors=[
            DomainErrorInterceptor(),
            VouchedCalls(InternalTokenVerifier(verify_key_of(key), [queue])),
        ]
    )
    signer = InternalTokenSigner(key)
    pb_grpc.add_CaseQueueServiceServicer_to_server(
        QueueServicer(pool, SystemClock(), Broadcaster(dsn)), server
    )
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    samples: list[float] = []
    holders: dict[str, list[str]] = {}

    async def agent(n: int) -> None:
        metadata = signer.metadata(Identity(f"agent-{n}", frozenset({"agent"})), queue)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.CaseQueueServiceStub(channel)
            for _ in range(each):
                t = time.perf_counter()
                case = await stub.ClaimNextCase(pb.ClaimNextCaseRequest(), metadata=metadata)
                samples.append(time.perf_counter() - t)
                holders.setdefault(case.name, []).append(case.holder)

    try:
        await asyncio.gather(*(agent(n) for n in range(agents)))
    finally:
        await server.stop(None)
        await pool.close()
    # Leases last ten minutes, longer than a run: no case may come back.
    twice = {name: who for name, who in holders.items() if len(who) > 1}
    if twice:
        raise AssertionError(f"{len(twice)} cases claimed twice, e.g. {next(iter(twice.items()))}")
    return samples


def run(dsn: str, cases: int = 100_000, agents: int = 32, each: int = 100) -> None:
    started = time.perf_counter()
    asyncio.run(seed(dsn, cases))
    seeded = time.perf_counter() - started
    p50s: dict[str, list[float]] = {"claims": [], "raw": []}

    def p99_of(kind: str, samples: list[float]) -> float:
        p50, p99 = percentiles(samples)
        p50s[kind].append(p50)
        return p99

    p99, raw99 = interleaved(
        lambda: p99_of("claims", asyncio.run(claims(dsn, agents, each))),
        lambda: p99_of("raw", asyncio.run(raw_round_trips(dsn, agents, each))),
    )
    p50, raw50 = statistics.median(p50s["claims"]), statistics.median(p50s["raw"])
    print(f"\nClaimNextCase: {agents} agents × {each} claims over {cases} open cases")
    print(f"  (seeded in {seeded:.0f} s; no case claimed twice)")
    print(row(P99, p99, raw99, "bare psycopg round trip p99"))
    print(row(P50, p50, raw50, "bare psycopg round trip p50"))

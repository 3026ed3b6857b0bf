"""`python -m casemesh_casequeue serve`: the queue's gRPC service, the consumer
of the case topics, the SLA timer and the publisher of SLA events.
`python -m casemesh_casequeue rebuild`: drop the read model, keeping the
claims agents hold; the next start replays the topics from offset 0 and
puts the claims back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.clock import Clock, clock_from_setting
from casemesh.platform.consuming import start_broker, watch_lag
from casemesh.platform.entrypoint import run_command
from casemesh.platform.grpcutil import serve
from casemesh.platform.logging import get_logger
from casemesh.platform.outbox import OutboxPublisher
from casemesh.platform.pools import async_pool, wait_for_database, with_keepalives
from casemesh.v1 import casequeue_pb2, casequeue_pb2_grpc
from casemesh_casequeue import sla, store
from casemesh_casequeue.api import QueueServicer
from casemesh_casequeue.consumer import Progress, build_broker, catch_up
from casemesh_casequeue.metrics import QueueCollector
from casemesh_casequeue.observe import TOPICS
from casemesh_casequeue.settings import QueueSettings, RebuildSettings
from casemesh_casequeue.timer import run_timer
from casemesh_casequeue.watch import Broadcaster

log = get_logger(__name__)


async def run(cfg: QueueSettings) -> None:
    levels = sla.load(cfg.sla_policy_file)
    clock = clock_from_setting(cfg.clock_offset_file)
    # Keepalives: a connection the network dropped, and the lock with it, is noticed.
    conninfo = with_keepalives(cfg.database_url)
    wait_for_database(conninfo, database="casequeue")
    instance = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    await store.create_schema(instance)
    await store.hold_instance_lock(instance)
    generation = await store.generation(instance)
    kept = await store.kept_claims(instance)
    group = f"{cfg.consumer_group}-{generation}"
    pool = async_pool(cfg.database_url, min_size=2, max_size=cfg.db_pool_size)
    await pool.open()
    stop = asyncio.Event()
    progress = Progress()
    changes = Broadcaster(cfg.database_url)
    publisher = OutboxPublisher(
        conninfo=cfg.database_url,
        bootstrap=cfg.kafka_bootstrap,
        outbox=store.SLA_EVENTS,
        client_id="casequeue-outbox",
    )
    REGISTRY.register(QueueCollector(cfg.database_url, clock, sorted(levels.queue_names)))
    halt = asyncio.Event()  # SIGTERM, or the consumer or the lock failing
    failed: list[BaseException] = []

    def fail(name: str, exc: BaseException) -> None:
        log.error("queue.failed", task=name, error=repr(exc))
        failed.append(exc)
        halt.set()  # a queue that no longer follows the topics must not serve

    def rebuilt(exc: store.Rebuilt) -> None:
        """A rebuild under this instance ends it, as the lock's keeper would
        (told once: the consumer meets it again until it stops)."""
        if not halt.is_set():
            fail("consumer", exc)

    # Not ready (no agents' calls) until the topics are read to where they
    # ended now, and the claims a rebuild kept are back.
    ready = asyncio.Event()
    caught_up = catch_up(cfg.kafka_bootstrap, group, asyncio.Event(), stop)
    tasks = [
        asyncio.create_task(
            become_ready(caught_up, pool, clock, generation, ready, stop, rebuilt, kept),
            name="catch-up",
        ),
        asyncio.create_task(changes.run(stop), name="watch"),
        asyncio.create_task(publisher.run(stop), name="outbox"),
        asyncio.create_task(watch_lag(cfg.kafka_bootstrap, group, TOPICS, stop), name="lag"),
        asyncio.create_task(
            run_timer(
                pool=pool,
                clock=clock,
                levels=levels,
                bootstrap=cfg.kafka_bootstrap,
                group_id=group,
                progress=progress,
                grace=timedelta(seconds=cfg.sla_grace_seconds),
                stop=stop,
            ),
            name="timer",
        ),
    ]
    # Once caught up, the queue answers agents while Kafka is away (what it
    # has stays readable).
    consumer = asyncio.create_task(
        start_broker(
            lambda: build_broker(
                pool=pool,
                bootstrap=cfg.kafka_bootstrap,
                group_id=group,
                levels=levels,
                progress=progress,
                generation=generation,
                rebuilt=rebuilt,
                kept=kept,
            ),
            stop,
            "queue_consumer",
        ),
        name="consumer",
    )
    # Kept until the end: a rebuild under this instance (the lock lost to a
    # database restart) ends it too.
    lock = asyncio.create_task(
        store.keep_instance_lock(conninfo, instance, generation, stop), name="instance-lock"
    )

    def fatal(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            fail(task.get_name(), exc)

    consumer.add_done_callback(fatal)
    lock.add_done_callback(fatal)
    servicer = QueueServicer(pool, clock, changes, levels.queue_names)
    service = casequeue_pb2.DESCRIPTOR.services_by_name["CaseQueueService"].full_name
    try:
        await serve(
            cfg,
            register=lambda s: casequeue_pb2_grpc.add_CaseQueueServiceServicer_to_server(
                servicer, s
            ),
            service_names=[service],
            stop=halt,
            endless_streams=[f"/{service}/WatchQueue"],
            ready=ready,
        )
    finally:
        stop.set()
        if not consumer.done():
            consumer.cancel()  # still waiting for Kafka
        await asyncio.wait([consumer])
        if not consumer.cancelled() and consumer.exception() is None:
            broker = consumer.result()
            if broker is not None:
                await broker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, lock, return_exceptions=True), timeout=15)
        await pool.close()
    if failed:
        raise SystemExit(1)


# How soon claims are put back again after the database did not answer.
RESTORE_AGAIN_S = 1.0


async def become_ready(
    caught_up: Awaitable[None],
    pool: AsyncConnectionPool[Any],
    clock: Clock,
    generation: int,
    ready: asyncio.Event,
    stop: asyncio.Event,
    rebuilt: Callable[[store.Rebuilt], None],
    kept: store.KeptClaims | None = None,
) -> None:
    """Sets `ready` once the replay has `caught_up` (`catch_up`: it ends
    early only at `stop`) and the claims a rebuild kept are back on their
    cases (`store.restore_claims`, which tells `kept` none waits any more):
    an agent served before then could be given a case another agent still
    works on, whose renewal would then be refused."""
    await caught_up
    while not stop.is_set():
        try:
            async with pool.connection() as conn:
                restored = await store.restore_claims(conn, generation, clock.now(), kept)
        except store.Rebuilt as exc:
            rebuilt(exc)
            return
        except Exception as exc:  # the database away: the claims wait, and so do agents
            log.warning("queue.claims_not_restored", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTORE_AGAIN_S)
            continue
        if restored:
            log.info("queue.claims_restored", claims=restored)
        ready.set()
        return


async def rebuild(cfg: RebuildSettings) -> None:
    async with await psycopg.AsyncConnection.connect(cfg.database_url, autocommit=True) as conn:
        await store.create_schema(conn)
        try:
            generation = await store.rebuild(conn)
        except RuntimeError as exc:
            raise SystemExit(f"casemesh_casequeue rebuild: {exc}") from None
    print(f"read model dropped; the next start replays the topics (generation {generation})")


if __name__ == "__main__":
    run_command(__package__, {"serve": (QueueSettings, run), "rebuild": (RebuildSettings, rebuild)})

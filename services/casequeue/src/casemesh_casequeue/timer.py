"""The SLA timer: warnings, breaches and expired leases, fired once each.

It starts only once the consumer has caught up with the topics as they stood
at start-up, so a replay or a backlog never fires a clock that a later event
(already on the topic) would have paused or stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.clock import Clock
from casemesh.platform.logging import get_logger
from casemesh_casequeue import store
from casemesh_casequeue.consumer import Progress
from casemesh_casequeue.observe import TOPICS
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)


async def end_offsets(bootstrap: str) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in TOPICS
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        ends = await consumer.end_offsets(parts)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def caught_up(
    bootstrap: str, group_id: str, progress: Progress, targets: dict[tuple[str, int], int]
) -> bool:
    """Every partition read up to where it stood at start-up (by this process,
    or as the group's committed offsets show, when other replicas read it)."""
    pending = [
        tp for tp, end in targets.items() if end > 0 and progress.applied.get(tp, -1) < end - 1
    ]
    if not pending:
        return True
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        for topic, partition in pending:
            committed = await consumer.committed(TopicPartition(topic, partition))
            if committed is None or committed < targets[(topic, partition)]:
                return False
        return True
    finally:
        await consumer.stop()


async def run_timer(
    *,
    pool: AsyncConnectionPool[Any],
    clock: Clock,
    levels: ServiceLevels,
    bootstrap: str,
    group_id: str,
    progress: Progress,
    stop: asyncio.Event,
) -> None:
    targets: dict[tuple[str, int], int] | None = None
    while not stop.is_set():
        try:
            if targets is None:
                targets = await end_offsets(bootstrap)
            if not await caught_up(bootstrap, group_id, progress, targets):
                await _pause(stop, 0.5)
                continue
            log.info("queue.timer_started")
            break
        except Exception as exc:  # Kafka away: try again
            log.error("queue.timer_waiting", error=repr(exc))
            await _pause(stop, 2.0)
    while not stop.is_set():
        try:
            async with pool.connection() as conn:
                fired = await store.fire_due(conn, clock.now(), levels)
            if fired:
                log.info("queue.sla_fired", signals=fired)
                continue
        except Exception as exc:  # the database away: the next tick retries
            log.error("queue.timer_failed", error=repr(exc))
        # The test clock may jump: look again every second.
        await _pause(stop, 1.0)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

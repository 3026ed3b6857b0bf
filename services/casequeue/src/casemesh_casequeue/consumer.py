"""The consumer of the three case topics (FastStream): each event applied in
one transaction with the record of its id; the offset is committed after it
(NACK_ON_ERROR), so a redelivery changes nothing and nothing is skipped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import psycopg
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from casemesh.platform import envelope
from casemesh.platform.logging import get_logger, library_logger
from casemesh_casequeue import store
from casemesh_casequeue.observe import TOPICS, observe
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)


class Progress:
    """Per partition: the last offset applied, and the time of its record (for
    the timer, which never runs its clocks past what the topics have told)."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, int], int] = {}
        self.times: dict[tuple[str, int], datetime] = {}

    def saw(self, topic: str, partition: int, offset: int, timestamp_ms: int) -> None:
        self.applied[(topic, partition)] = offset
        self.times[(topic, partition)] = datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def build_broker(
    *,
    pool: AsyncConnectionPool[Any],
    bootstrap: str,
    group_id: str,
    levels: ServiceLevels,
    progress: Progress,
) -> KafkaBroker:
    router = KafkaRouter()

    @router.subscriber(
        *TOPICS,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
    async def on_case_event(body: bytes, msg: KafkaMessage) -> None:
        record: Any = msg.raw_message
        where = store.Consumed(record.topic, record.partition, record.offset)
        try:
            event = envelope.parse(record.key, record.value, record.headers)
            obs = observe(event, levels)
        except Exception as exc:  # not ours, or no case can come of it: retrying cannot help
            log.error(
                "queue.event_skipped", topic=record.topic, offset=record.offset, error=repr(exc)
            )
        else:
            try:
                async with pool.connection() as conn:
                    await store.consume(conn, event, obs, where, levels)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                # The database is away: pause, then the nack rewinds to this record.
                log.error("queue.event_retry", event_id=event.id, error=repr(exc))
                await asyncio.sleep(1.0)
                raise
            except Exception as exc:  # this record can never be applied: set it aside, loudly
                log.error("queue.event_unprocessable", event_id=event.id, error=repr(exc))
        progress.saw(record.topic, record.partition, record.offset, record.timestamp)

    broker = KafkaBroker(
        bootstrap, client_id="casemesh-casequeue", logger=library_logger("casemesh.faststream")
    )
    broker.include_router(router)
    return broker

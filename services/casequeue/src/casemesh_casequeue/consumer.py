"""The consumer of the three case topics (FastStream): each event applied in
one transaction with the record of its id; the offset is committed after it
(NACK_ON_ERROR), so a redelivery changes nothing and nothing is skipped."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from google.protobuf.message import DecodeError
from psycopg_pool import AsyncConnectionPool

from casemesh.platform import envelope
from casemesh.platform.logging import get_logger, library_logger
from casemesh_casequeue import store
from casemesh_casequeue.observe import TOPICS, observe
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)


class Progress:
    """The last offset applied per partition (for the timer's catch-up check)."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, int], int] = {}


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
        except (envelope.EnvelopeError, DecodeError, ValueError, LookupError) as exc:
            # Not ours, or no case can come of it: retrying cannot help.
            log.error(
                "queue.event_skipped", topic=record.topic, offset=record.offset, error=repr(exc)
            )
        else:
            try:
                async with pool.connection() as conn:
                    await store.consume(conn, event, obs, where, levels)
            except psycopg.OperationalError as exc:
                log.error("queue.event_retry", event_id=event.id, error=repr(exc))
                await asyncio.sleep(1.0)
                raise
        progress.applied[(record.topic, record.partition)] = record.offset

    broker = KafkaBroker(
        bootstrap, client_id="casemesh-casequeue", logger=library_logger("casemesh.faststream")
    )
    broker.include_router(router)
    return broker

"""Kafka consumers of the notifier (FastStream).

Manual acknowledgement in effect: the offset is committed only after the
planning transaction committed (NACK_ON_ERROR: an exception rewinds to the
record, so it is consumed again); a redelivered event is a no-op because its
id is already recorded as consumed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from google.protobuf.message import DecodeError
from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from casemesh import topics
from casemesh.platform import envelope
from casemesh.platform.clock import Clock
from casemesh.platform.logging import get_logger, library_logger
from casemesh.platform.telemetry import extract_headers, tracer
from casemesh_notifier.planner import Planner

log = get_logger(__name__)

TICKETS_TOPIC = topics.TICKETS
APPEALS_TOPIC = topics.APPEALS
REPORTS_TOPIC = topics.REPORTS
CODES_TOPIC = topics.VERIFICATION
TOPICS = (TICKETS_TOPIC, APPEALS_TOPIC, REPORTS_TOPIC, CODES_TOPIC)


def build_router(
    *, pool: AsyncConnectionPool[Any], group_id: str, clock: Clock, planner: Planner
) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(
        *TOPICS,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
    async def on_case_event(body: bytes, msg: KafkaMessage) -> None:
        record = msg.raw_message
        assert not isinstance(record, tuple)
        try:
            event = envelope.parse(record.key, record.value, record.headers)
        except envelope.EnvelopeError as exc:
            # A record that is not ours cannot be made valid by retrying.
            log.error("event.malformed", topic=record.topic, offset=record.offset, error=str(exc))
            return
        with tracer("casemesh.notifier").start_as_current_span(
            f"{record.topic} process",
            context=extract_headers(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.message.id": event.id},
        ):
            try:
                async with pool.connection() as conn:
                    await planner.consume(
                        conn,
                        event,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        now=clock.now(),
                    )
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                # The database is away: pause, then let the nack rewind to this record.
                log.error("event.retry", event_id=event.id, error=repr(exc))
                await asyncio.sleep(1.0)
                raise
            except (DecodeError, psycopg.Error) as exc:
                # This record can never be planned (retrying would block its
                # partition for good): set it aside where operators see it.
                log.error("event.unprocessable", event_id=event.id, error=repr(exc))
                async with pool.connection() as conn:
                    await conn.execute(
                        "INSERT INTO unprocessable_events (consumer, event_id, topic,"
                        " kafka_partition, kafka_offset, error) VALUES (%s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (
                            "notifier",
                            event.id,
                            record.topic,
                            record.partition,
                            record.offset,
                            repr(exc)[:1000],
                        ),
                    )

    return router


def build_broker(bootstrap: str, router: KafkaRouter) -> KafkaBroker:
    broker = KafkaBroker(
        bootstrap, client_id="casemesh-notifier", logger=library_logger("casemesh.faststream")
    )
    broker.include_router(router)
    return broker

"""Kafka consumers of the notifier (`casemesh.platform.consuming`).

The offset is committed only after the planning transaction committed, and a
redelivered event is a no-op because its id is already recorded as consumed.
A record that can never be planned is set aside in `unprocessable_events`,
where operators see it, and the notifier reads on.
"""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter
from psycopg_pool import AsyncConnectionPool

from casemesh import topics
from casemesh.platform.clock import Clock
from casemesh.platform.consuming import Place, SetAside, consumer_broker, subscribe
from casemesh.platform.envelope import CloudEvent
from casemesh_notifier.planner import Planner

TICKETS_TOPIC = topics.TICKETS
APPEALS_TOPIC = topics.APPEALS
REPORTS_TOPIC = topics.REPORTS
CODES_TOPIC = topics.VERIFICATION
TOPICS = (TICKETS_TOPIC, APPEALS_TOPIC, REPORTS_TOPIC, CODES_TOPIC)
CONSUMER = "notifier"


def build_router(
    *, pool: AsyncConnectionPool[Any], group_id: str, clock: Clock, planner: Planner
) -> KafkaRouter:
    async def plan(event: CloudEvent, place: Place) -> None:
        async with pool.connection() as conn:
            await planner.consume(
                conn,
                event,
                topic=place.topic,
                partition=place.partition,
                offset=place.offset,
                now=clock.now(),
            )

    async def keep(aside: SetAside) -> None:
        p = aside.place
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO unprocessable_events (consumer, event_id, topic,"
                " kafka_partition, kafka_offset, error) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (
                    aside.consumer,
                    aside.event.id if aside.event else "",
                    p.topic,
                    p.partition,
                    p.offset,
                    f"{aside.reason}: {aside.error}",
                ),
            )

    router = KafkaRouter()
    subscribe(router, TOPICS, consumer=CONSUMER, group_id=group_id, handle=plan, set_aside=keep)
    return router


def build_broker(bootstrap: str, router: KafkaRouter) -> KafkaBroker:
    return consumer_broker(bootstrap, "casemesh-notifier", router)

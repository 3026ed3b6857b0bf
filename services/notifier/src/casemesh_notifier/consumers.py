"""Kafka consumers of the notifier (`casemesh.platform.consuming`).

Events are planned in batches: whatever records have arrived, together
(`Planner.plan_batch`: a few statements for the whole batch) in one
transaction, then one offset commit for them all. The offsets are committed
only after the planning transaction committed, and a redelivered event is a
no-op because its id is already recorded as consumed.
An erasure (`PersonErased`, casemesh.privacy.v1) is applied on the same
path, in its batch's transaction (`Planner`, `erasures.py`). That reaches one
replica; each process also hears every erasure in a consumer group of its
own and forgets the person's keys it holds in memory
(`casemesh.platform.forgetting.ErasureFollower`, started by `__main__`).
A verified phone-number change (`PhoneChangeVerified`, casemesh.helpcenter.v1)
is applied on the same path too (`phone_changes.py`). That topic keeps 30
days: read from the group's committed offsets, as the others, it needs
nothing more unless the notifier stays away longer.
A record that can never be planned is set aside in `unprocessable_events`,
where operators see it, and the notifier reads on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from faststream.kafka import KafkaBroker, KafkaRouter
from opentelemetry import trace
from psycopg_pool import AsyncConnectionPool

from casemesh import topics
from casemesh.platform.clock import Clock
from casemesh.platform.consuming import (
    MAX_BATCH,
    Place,
    SetAside,
    consumer_broker,
    subscribe_batch,
)
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh_notifier import store
from casemesh_notifier.planner import Planner

TICKETS_TOPIC = topics.TICKETS
APPEALS_TOPIC = topics.APPEALS
REPORTS_TOPIC = topics.REPORTS
CODES_TOPIC = topics.VERIFICATION
# Erasures: the person's clear data scrubbed, their unsent jobs cancelled.
PRIVACY_TOPIC = topics.PRIVACY
# Verified phone-number changes: the user's cases and unsent SMS follow them.
CHANGES_TOPIC = topics.HELPCENTER
TOPICS = (
    TICKETS_TOPIC,
    APPEALS_TOPIC,
    REPORTS_TOPIC,
    CODES_TOPIC,
    PRIVACY_TOPIC,
    CHANGES_TOPIC,
)
CONSUMER = "notifier"

log = get_logger(__name__)


@dataclass
class _Batch:
    conn: psycopg.AsyncConnection[Any]
    events: list[tuple[CloudEvent, Place]] = field(default_factory=list)
    # Each event's consumer span, which continues the trace that caused it.
    spans: dict[str, trace.Span] = field(default_factory=dict)


def build_router(
    *,
    pool: AsyncConnectionPool[Any],
    group_id: str,
    clock: Clock,
    planner: Planner,
    topic_names: Sequence[str] = TOPICS,
    max_records: int | None = MAX_BATCH,
) -> KafkaRouter:
    """The notifier's subscriber: up to `max_records` events planned in one
    transaction (None: each event alone, one offset commit an event)."""

    @asynccontextmanager
    async def planning() -> AsyncIterator[_Batch]:
        """One transaction for the batch of events received together,
        planned as the batch closes; the senders are woken once, on its
        commit, if it planned any job."""
        async with pool.connection() as conn, conn.transaction():
            batch = _Batch(conn)
            yield batch
            planned = await planner.plan_batch(conn, batch.events, clock.now(), batch.spans)
            for event_id, jobs in planned.items():
                with trace.use_span(batch.spans[event_id], end_on_exit=False):
                    log.info("jobs.planned", event_id=event_id, count=len(jobs))
            if planned:
                await store.wake_senders(conn)

    async def plan(batch: _Batch, event: CloudEvent, place: Place) -> None:
        batch.events.append((event, place))
        batch.spans[event.id] = trace.get_current_span()

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
    subscribe_batch(
        router,
        topic_names,
        consumer=CONSUMER,
        group_id=group_id,
        begin=planning,
        handle=plan,
        set_aside=keep,
        max_records=max_records,
    )
    return router


def build_broker(bootstrap: str, router: KafkaRouter) -> KafkaBroker:
    return consumer_broker(bootstrap, "casemesh-notifier", router)

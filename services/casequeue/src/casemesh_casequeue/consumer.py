"""The consumer of the three case topics: the events received together are
applied in one transaction, each with the record of its id, and their
offsets committed once after it (`subscribe_batch` in
`casemesh.platform.consuming`), so a redelivery changes nothing and nothing
is skipped. A record that can never apply is set aside there (logged and
counted; its batch-mates are applied one by one) and the queue reads on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from faststream.kafka import KafkaBroker, KafkaRouter
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.consuming import Place, SetAside, consumer_broker, subscribe_batch
from casemesh.platform.envelope import CloudEvent
from casemesh_casequeue import store
from casemesh_casequeue.observe import TOPICS, observe
from casemesh_casequeue.sla import ServiceLevels


class Progress:
    """Per partition: the last offset applied, and the time of its event (for
    the timer, which never runs its clocks past what the topics have told)."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, int], int] = {}
        self.times: dict[tuple[str, int], datetime] = {}

    def saw(self, place: Place, at: datetime | None = None) -> None:
        """A record applied (its event made `at`) or set aside (the time
        Kafka gave it: the event's own is not known). Not the record's time
        when its event is known: a relay publishes what it stored during a
        Kafka outage minutes after it happened, and the clocks must not run
        past the backlog's events. Records of one partition may be told out
        of order (a batch's set-aside record after its batch-mates): the
        furthest one counts."""
        key = (place.topic, place.partition)
        if place.offset < self.applied.get(key, -1):
            return
        self.applied[key] = place.offset
        self.times[key] = at or datetime.fromtimestamp(place.timestamp_ms / 1000, UTC)


@dataclass
class _Batch:
    conn: psycopg.AsyncConnection[Any]
    # Each record applied, with its event's time.
    places: list[tuple[Place, datetime]] = field(default_factory=list)


def build_broker(
    *,
    pool: AsyncConnectionPool[Any],
    bootstrap: str,
    group_id: str,
    levels: ServiceLevels,
    progress: Progress,
) -> KafkaBroker:
    @asynccontextmanager
    async def applying() -> AsyncIterator[_Batch]:
        """One transaction for the events received together; the timer hears
        of them once it committed."""
        async with pool.connection() as conn:
            async with conn.transaction():
                batch = _Batch(conn)
                yield batch
            for place, at in batch.places:
                progress.saw(place, at)

    async def apply(batch: _Batch, event: CloudEvent, place: Place) -> None:
        obs = observe(event, levels)
        where = store.Consumed(place.topic, place.partition, place.offset)
        await store.consume(batch.conn, event, obs, where, levels)
        batch.places.append((place, event.time))

    async def passed(aside: SetAside) -> None:
        progress.saw(aside.place)  # the topics told this much, though nothing came of it

    router = KafkaRouter()
    subscribe_batch(
        router,
        TOPICS,
        consumer="casequeue",
        group_id=group_id,
        begin=applying,
        handle=apply,
        set_aside=passed,
        # The SLA timer reads the group's committed offsets as how far the
        # other replicas have read: each batch's commit goes at once.
        commit_every_s=0.0,
    )
    return consumer_broker(bootstrap, "casemesh-casequeue", router)

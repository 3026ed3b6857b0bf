"""The consumer of the three case topics: each event applied in one
transaction with the record of its id, the offset committed after it
(`casemesh.platform.consuming`), so a redelivery changes nothing and nothing
is skipped. A record that can never apply is set aside there (logged and
counted) and the queue reads on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.consuming import Place, SetAside, consumer_broker, subscribe
from casemesh.platform.envelope import CloudEvent
from casemesh_casequeue import store
from casemesh_casequeue.observe import TOPICS, observe
from casemesh_casequeue.sla import ServiceLevels


class Progress:
    """Per partition: the last offset applied, and the time of its record (for
    the timer, which never runs its clocks past what the topics have told)."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, int], int] = {}
        self.times: dict[tuple[str, int], datetime] = {}

    def saw(self, place: Place) -> None:
        key = (place.topic, place.partition)
        self.applied[key] = place.offset
        self.times[key] = datetime.fromtimestamp(place.timestamp_ms / 1000, UTC)


def build_broker(
    *,
    pool: AsyncConnectionPool[Any],
    bootstrap: str,
    group_id: str,
    levels: ServiceLevels,
    progress: Progress,
) -> KafkaBroker:
    async def apply(event: CloudEvent, place: Place) -> None:
        obs = observe(event, levels)
        async with pool.connection() as conn:
            where = store.Consumed(place.topic, place.partition, place.offset)
            await store.consume(conn, event, obs, where, levels)
        progress.saw(place)

    async def passed(aside: SetAside) -> None:
        progress.saw(aside.place)  # the topics told this much, though nothing came of it

    router = KafkaRouter()
    subscribe(
        router,
        TOPICS,
        consumer="casequeue",
        group_id=group_id,
        handle=apply,
        set_aside=passed,
    )
    return consumer_broker(bootstrap, "casemesh-casequeue", router)

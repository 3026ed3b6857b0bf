"""The consumer of the three case topics: the events received together are
applied in one transaction, each with the record of its id, and their
offsets committed once after it (`subscribe_batch` in
`casemesh.platform.consuming`), so a redelivery changes nothing and nothing
is skipped. A record that can never apply is set aside there (logged and
counted; its batch-mates are applied one by one) and the queue reads on.
`catch_up` says when a starting instance has read what the topics held,
and may serve agents."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker, KafkaRouter
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.consuming import (
    NotYet,
    Place,
    SetAside,
    consumer_broker,
    group_positions,
    subscribe_batch,
)
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh_casequeue import store
from casemesh_casequeue.observe import TOPICS, observe
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)


class Progress:
    """Per partition: the last offset applied, and the time of its event (for
    the timer, which never runs its clocks past what the topics have told)."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, int], int] = {}
        self.times: dict[tuple[str, int], datetime] = {}

    def saw(self, place: Place, at: datetime | None) -> None:
        """A record read, and the time of its event (None: not known, as for
        a record set aside whose envelope did not parse; the partition then
        keeps the time it had, if any). Never the time Kafka gave the
        record: a relay publishes what it stored during a Kafka outage
        minutes after it happened, and the clocks must not run past the
        backlog's events. Records of one partition may be told out of order
        (a batch's set-aside record after its batch-mates): the furthest one
        counts."""
        key = (place.topic, place.partition)
        if place.offset < self.applied.get(key, -1):
            return
        self.applied[key] = place.offset
        if at is not None:
            self.times[key] = at

    def set_aside(self, aside: SetAside) -> None:
        """A record set aside: the topics told this much, though nothing came
        of it. Its event's time if it parsed."""
        self.saw(aside.place, aside.event.time if aside.event is not None else None)


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
    generation: int,
    rebuilt: Callable[[store.Rebuilt], None],
    kept: store.KeptClaims | None = None,
) -> KafkaBroker:
    """The consumer of the read model of `generation`. Should it find the
    read model rebuilt under it (its instance lock lost to a database
    restart), it applies nothing more and calls `rebuilt`, which stops the
    instance: the records are read again by the next one, under the new
    generation's group. `kept`: whether claims a rebuild kept may still
    wait (`store.KeptClaims`; None: they may)."""

    @asynccontextmanager
    async def applying() -> AsyncIterator[_Batch]:
        """One transaction for the events received together; the timer hears
        of them once it committed."""
        async with pool.connection() as conn:
            async with conn.transaction():
                try:
                    await store.check_generation(conn, generation)
                except store.Rebuilt as exc:
                    rebuilt(exc)
                    # Read again (by the next instance), not set aside.
                    raise NotYet(str(exc)) from exc
                batch = _Batch(conn)
                yield batch
            for place, at in batch.places:
                progress.saw(place, at)

    async def apply(batch: _Batch, event: CloudEvent, place: Place) -> None:
        obs = observe(event, levels)
        where = store.Consumed(place.topic, place.partition, place.offset)
        await store.consume(batch.conn, event, obs, where, levels, kept)
        batch.places.append((place, event.time))

    async def passed(aside: SetAside) -> None:
        progress.set_aside(aside)

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


# How often a starting instance asks how far its group has read, and how long
# it waits for Kafka's answer.
CATCH_UP_EVERY_S = 1.0
CATCH_UP_WAIT_S = 10.0


async def catch_up(
    bootstrap: str,
    group_id: str,
    ready: asyncio.Event,
    stop: asyncio.Event,
    every_s: float = CATCH_UP_EVERY_S,
) -> None:
    """Sets `ready` once the group has read (applied or set aside) every
    partition of the case topics up to where it ended when this instance
    first heard from Kafka. Until then the instance is not ready, and gets no
    agents' calls: after a rebuild (a replay from offset 0) or a long stop,
    its read model still lacks what the topics hold (a case's closing event),
    and a claim would hand out a case that is done. Records written since the
    start do not hold it back; while Kafka does not answer, it is not ready."""
    ends: dict[TopicPartition, int] | None = None
    told = False  # how far behind it started: said once
    while not stop.is_set():
        try:
            async with asyncio.timeout(CATCH_UP_WAIT_S):
                positions = await group_positions(bootstrap, group_id, TOPICS)
            if ends is None:
                ends = {tp: end for tp, (_, end) in positions.items()}
            behind = sum(max(0, end - positions[tp][0]) for tp, end in ends.items())
        except Exception as exc:  # Kafka away, or not describing the topics yet
            log.warning("queue.catch_up_unknown", error=repr(exc))
        else:
            if not behind:
                log.info("queue.caught_up")
                ready.set()
                return
            if not told:
                log.info("queue.catching_up", records=behind)
                told = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)

"""The SLA timer: warnings and breaches, fired once each, and expired leases.

A clock is read only up to what the topics have told: never past the time of
the event of the last record applied on a partition that still has records
to read (or, on one another replica reads, past a time before which the
group has read everything), and always a grace period behind now (an event
stamped before a due time may still be on its way from its relay). So a
backlog, a replay or a rebalance never fires a clock that a later event would
have paused or stopped, and a rebuild from offset 0 comes to the same
breaches. After Kafka was away, they wait a while longer (`Settling`): what
the relays stored meanwhile is still to come."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.clock import Clock
from casemesh.platform.consuming import Heard
from casemesh.platform.logging import get_logger
from casemesh.platform.relay import MOST_BACKOFF_S
from casemesh_casequeue import store
from casemesh_casequeue.consumer import Progress
from casemesh_casequeue.observe import TOPICS
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)


class Horizon:
    """How far the topics have told: `now - grace` when every partition is
    read to its end; else, for each partition behind, the time of the last
    event this instance read there (applied or set aside), or, on a partition
    another replica reads (or took over from this one), the latest time at
    which every partition's end has since been read by the group (None
    before one is known). A topic whose partitions Kafka does not give (yet)
    raises: its clocks are not read at all."""

    def __init__(self, bootstrap: str, group_id: str, progress: Progress) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
        )
        self._progress = progress
        self._heard = Heard()

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()

    async def stop(self) -> None:
        await self._consumer.stop()

    def _partitions(self) -> list[TopicPartition]:
        """Every partition of the topics, as the client's metadata (refreshed
        every few minutes) has them: partitions added later come in."""
        found = {topic: self._consumer.partitions_for_topic(topic) for topic in TOPICS}
        if missing := sorted(topic for topic, parts in found.items() if not parts):
            raise RuntimeError(f"Kafka does not give the partitions of {missing} (yet)")
        return [TopicPartition(topic, p) for topic, parts in found.items() for p in sorted(parts)]

    async def until(self, now: datetime, grace: timedelta) -> datetime | None:
        ends = await self._consumer.end_offsets(self._partitions())
        # How far each partition has been read: by this instance (applied),
        # or by the group (committed), whichever is further.
        read: dict[TopicPartition, int] = {}
        for tp, end in ends.items():
            applied = self._progress.applied.get((tp.topic, tp.partition), -1) + 1
            if end == 0 or applied >= end:
                read[tp] = end
            else:
                read[tp] = max(applied, await self._consumer.committed(tp) or 0)
        heard = self._heard.at(now, {tp: (read[tp], end) for tp, end in ends.items()})
        behind = [tp for tp, end in ends.items() if read[tp] < end]
        if not behind:
            return now - grace
        times = []
        for tp in behind:
            key = (tp.topic, tp.partition)
            mine = self._progress.applied.get(key)
            if mine is not None and read[tp] == mine + 1 and key in self._progress.times:
                # This instance's, and nobody has read further: the time of
                # the last event it read there (none known when all it read
                # there were records that did not parse: as if not read).
                times.append(self._progress.times[key])
            elif heard is None:
                return None
            else:
                times.append(heard)
        return min(min(times), now - grace)


# The longest the timer waits for Kafka's answers before it looks again
# (aiokafka's own request timeout is 40 s), and for its client to stop.
KAFKA_WAIT_S = 30.0
STOP_WAIT_S = 5.0


class Settling:
    """How far the horizon is trusted right after it (re)started. While
    Kafka was away (or before this process reached it) the relays could not
    publish what their services stored meanwhile, and once it is back they
    start to only after their backoff (`relay.MOST_BACKOFF_S`): for a while
    every partition can look read to its end with events still to come (a
    ticket solved during the outage). So for `settle` after a start the
    clocks go no further than they had before it (after a process start,
    nowhere)."""

    def __init__(self, settle: timedelta) -> None:
        self._settle = settle
        self._trusted_from: datetime | None = None
        self._held: datetime | None = None

    def started(self, now: datetime) -> None:
        self._trusted_from = now + self._settle

    def bound(self, until: datetime | None, now: datetime) -> datetime | None:
        """`until` as far as it may be trusted at `now`."""
        if self._trusted_from is None or now < self._trusted_from:
            if until is None or self._held is None:
                return None
            return min(until, self._held)
        if until is not None:
            self._held = until
        return until


async def run_timer(
    *,
    pool: AsyncConnectionPool[Any],
    clock: Clock,
    levels: ServiceLevels,
    bootstrap: str,
    group_id: str,
    progress: Progress,
    grace: timedelta,
    stop: asyncio.Event,
) -> None:
    """Fires the SLA clocks and expires leases until `stop`. Leases need the
    database only, and run out whether Kafka answers or not: in a loop of
    their own, never held up by a Kafka call that hangs; and a stop ends
    both at once, whatever they wait for."""
    horizon = _Horizons(bootstrap, group_id, progress)
    loops = [
        asyncio.create_task(_expire_leases(pool, clock), name="leases"),
        asyncio.create_task(_fire_clocks(pool, clock, levels, horizon, grace), name="sla"),
    ]
    try:
        await stop.wait()
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await horizon.drop()


class _Horizons:
    """The SLA timer's `Horizon`, made anew after a failure."""

    def __init__(self, bootstrap: str, group_id: str, progress: Progress) -> None:
        self._args = (bootstrap, group_id, progress)
        self.current: Horizon | None = None

    async def get(self) -> tuple[Horizon, bool]:
        """The horizon, and whether it is a new one."""
        if self.current is not None:
            return self.current, False
        made = Horizon(*self._args)
        try:
            await made.start()
        except BaseException:
            await _stopped(made)
            raise
        self.current = made
        return made, True

    async def drop(self) -> None:
        if self.current is not None:
            await _stopped(self.current)
            self.current = None


async def _fire_clocks(
    pool: AsyncConnectionPool[Any],
    clock: Clock,
    levels: ServiceLevels,
    horizons: _Horizons,
    grace: timedelta,
) -> None:
    settling = Settling(grace + timedelta(seconds=MOST_BACKOFF_S))
    while True:
        now = clock.now()
        try:
            # A broker that takes connections and never answers would hold
            # each call for the client's whole timeout (40 s): the timer asks
            # again instead (and the clocks settle again: Kafka was as good
            # as away).
            async with asyncio.timeout(KAFKA_WAIT_S):
                horizon, new = await horizons.get()
                if new:
                    settling.started(now)
                told = await horizon.until(now, grace)
            until = settling.bound(told, now)
            fired = 0
            if until is not None:
                async with pool.connection() as conn:
                    fired = await store.fire_due(conn, until, levels)
            if fired:
                log.info("queue.sla_fired", signals=fired)
                continue
        except Exception as exc:  # Kafka or the database away: look again shortly
            log.error("queue.timer_failed", error=repr(exc))
            await horizons.drop()
        await asyncio.sleep(1.0)  # the test clock may jump: look every second


async def _stopped(horizon: Horizon) -> None:
    """Stops the horizon's Kafka client, giving up on a broker that does not
    answer (its connections go with the process's)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(STOP_WAIT_S):
            await horizon.stop()


async def _expire_leases(pool: AsyncConnectionPool[Any], clock: Clock) -> None:
    """Looks for lapsed leases every second. A look that could not be made
    (the database away) is no loss: the first one after pushes every lease
    held on by the time between (`store.expire_leases`)."""
    while True:
        try:
            async with pool.connection() as conn:
                await store.expire_leases(conn, clock.now())
        except Exception as exc:
            log.error("queue.lease_expiry_failed", error=repr(exc))
        await asyncio.sleep(1.0)

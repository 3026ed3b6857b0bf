"""Starting Kafka consumers (FastStream) that outlive a broker outage, and
watching how far behind their group is."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from casemesh.platform.logging import get_logger
from casemesh.platform.metrics import CONSUMER_LAG

log = get_logger(__name__)


async def start_broker(
    build: Callable[[], KafkaBroker], stop: asyncio.Event, name: str
) -> KafkaBroker | None:
    """Starts a freshly built broker, waiting (with backoff) for Kafka to be
    reachable; None if `stop` is set first."""
    delay = 1.0
    while not stop.is_set():
        broker = build()
        try:
            await broker.start()
        except asyncio.CancelledError:  # given up while Kafka is away
            with contextlib.suppress(Exception):
                await broker.stop()
            raise
        except Exception as exc:
            log.error(f"{name}.kafka_unavailable", error=repr(exc), retry_in=delay)
            with contextlib.suppress(Exception):
                await broker.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
            continue
        log.info(f"{name}.started")
        return broker
    return None


async def watch_lag(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    stop: asyncio.Event,
    interval: float = 15.0,
) -> None:
    """Every `interval` seconds, sets `casemesh_consumer_lag_records` for each
    partition of `topics`: the end offset minus the group's committed offset
    (a partition the group never committed counts from its first record).
    Kafka being away (or the group's coordinator not elected yet, just after
    a start) only pauses the figures; a failed reading is tried again soon."""
    while not stop.is_set():
        wait = interval
        try:
            # A client retrying against a broker that is coming back can
            # wait for ever; a reading that does not come soon is tried again.
            async with asyncio.timeout(10.0):
                await _measure_lag(bootstrap, group, topics)
        except Exception as exc:
            log.warning("consumer_lag.unavailable", group=group, error=repr(exc))
            wait = min(interval, 2.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


async def _measure_lag(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    for tp, lag in (await consumer_lag(bootstrap, group, topics)).items():
        CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(lag)


async def consumer_lag(
    bootstrap: str, group: str, topics: Sequence[str]
) -> dict[TopicPartition, int]:
    """Records on each partition of `topics` after `group`'s committed offset
    (a partition the group never committed counts from its first record)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{group}-lag")
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await admin.start()
        await reader.start()
        committed = await admin.list_consumer_group_offsets(group)
        described = await admin.describe_topics(list(topics))
        partitions = sorted(
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if not t.get("error_code")
            for p in t["partitions"]
        )
        if not partitions:
            raise RuntimeError(f"no partitions known yet for {list(topics)}")
        ends = await reader.end_offsets(partitions)
        starts = await reader.beginning_offsets(partitions)
        lag: dict[TopicPartition, int] = {}
        for tp in partitions:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lag[tp] = max(0, ends[tp] - position)
        return lag
    finally:
        with contextlib.suppress(Exception):
            await reader.stop()
        with contextlib.suppress(Exception):
            await admin.close()

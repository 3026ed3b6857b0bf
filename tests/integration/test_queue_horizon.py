"""How far the queue's SLA timer may run its clocks (`Horizon`), on a real
broker: never past what the topics have told, and not at all while Kafka
does not give every topic's partitions (a broker just started): read as
"nothing to read", that would fire every clock due."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from casemesh.platform.consuming import Place, SetAside
from casemesh_casequeue import timer
from casemesh_casequeue.consumer import Progress
from tests.conftest import Infra

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
GRACE = timedelta(seconds=30)


async def test_the_clocks_stop_where_the_topics_stop_telling(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4().hex[:8]
    told, quiet = f"it.horizon.{run}.told", f"it.horizon.{run}.quiet"
    await infra.kafka.create_topics([told, quiet], partitions=2)
    monkeypatch.setattr(timer, "TOPICS", (told, quiet))
    horizon = timer.Horizon(infra.kafka.bootstrap, f"it-horizon-{run}", Progress())
    await horizon.start()
    try:
        # Nothing written anywhere: nothing to wait for.
        assert await horizon.until(NOW, GRACE) == NOW - GRACE

        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(told, b"x", key=b"case-1")
        finally:
            await producer.stop()
        # A record not applied yet, on a partition never read, and nothing
        # known to be read before it: no clock runs.
        fresh = timer.Horizon(infra.kafka.bootstrap, f"it-horizon-{run}", Progress())
        await fresh.start()
        try:
            assert await fresh.until(NOW, GRACE) is None
        finally:
            await fresh.stop()
        # Known: everything written before NOW (nothing) was read.
        assert await horizon.until(NOW + timedelta(minutes=1), GRACE) == NOW

        monkeypatch.setattr(timer, "TOPICS", (told, quiet, f"it.horizon.{run}.missing"))
        with pytest.raises(RuntimeError, match="missing"):
            await horizon.until(NOW, GRACE)
    finally:
        await horizon.stop()


async def test_partitions_another_replica_reads_do_not_stop_the_clocks(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas share the topic's partitions. This one has read its own
    (0) to the end; the other always has a record in hand on its own (1), as
    under steady traffic. The clocks still run: up to the latest time every
    partition's end then has since been read by the group."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"it.horizon.{run}.shared", f"it-horizon-{run}"
    await infra.kafka.create_topics([topic], partitions=2)
    monkeypatch.setattr(timer, "TOPICS", (topic,))
    mine, theirs = TopicPartition(topic, 0), TopicPartition(topic, 1)
    progress = Progress()
    horizon = timer.Horizon(infra.kafka.bootstrap, group, progress)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    other = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    await horizon.start()
    await producer.start()
    await other.start()
    try:
        sent = await producer.send_and_wait(topic, b"x", partition=0)
        progress.saw(Place(topic, 0, sent.offset, sent.timestamp), NOW)  # read here
        for _ in range(2):
            await producer.send_and_wait(topic, b"y", partition=1)
        other.assign([mine, theirs])
        await other.commit({theirs: 1})  # the other replica: one of two read

        # Nothing known of the other's partition yet.
        assert await horizon.until(NOW, GRACE) is None
        # A new record arrives there while the other reads what was there
        # at NOW: the time NOW is heard, though that partition is never idle.
        await producer.send_and_wait(topic, b"z", partition=1)
        await other.commit({theirs: 2})
        later = NOW + timedelta(minutes=5)
        assert await horizon.until(later, GRACE) == NOW

        # This replica's partition 0 taken over by the other (a rebalance),
        # which has read past where this one stopped and has a record in
        # hand: what this one last read there no longer tells anything.
        for _ in range(2):
            sent = await producer.send_and_wait(topic, b"w", partition=0)
        await other.commit({mine: sent.offset, theirs: 3})
        assert await horizon.until(later + timedelta(minutes=1), GRACE) == later
    finally:
        await other.stop()
        await producer.stop()
        await horizon.stop()


async def test_a_partition_read_only_as_far_as_a_record_that_did_not_parse(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first record of a partition was set aside unread (its envelope
    did not parse): no event time is known there, and the clocks wait for
    what the group is known to have read, rather than stop for good."""
    run = uuid.uuid4().hex[:8]
    topic, group = f"it.horizon.{run}.garbled", f"it-horizon-{run}"
    await infra.kafka.create_topics([topic], partitions=1)
    monkeypatch.setattr(timer, "TOPICS", (topic,))
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    await producer.start()
    try:
        garbled = await producer.send_and_wait(topic, b"\x00not an event", partition=0)
        await producer.send_and_wait(topic, b"\x00nor this", partition=0)
    finally:
        await producer.stop()
    progress = Progress()
    place = Place(topic, 0, garbled.offset, garbled.timestamp)
    progress.set_aside(SetAside("casequeue", place, "malformed_envelope", "", None))
    horizon = timer.Horizon(infra.kafka.bootstrap, group, progress)
    await horizon.start()
    try:
        assert await horizon.until(NOW, GRACE) is None  # nothing known to be read yet
    finally:
        await horizon.stop()

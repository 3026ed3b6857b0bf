"""When a starting casequeue instance may serve agents (`catch_up`), on a
real broker: once its consumer group has read every partition of the case
topics to where it ended at the start (after a rebuild, a replay from
offset 0), not before; records written since do not hold it back."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from casemesh.platform.consuming import group_positions
from casemesh_casequeue import consumer
from casemesh_devstack.ports import free_port
from tests.conftest import Infra


class Asks:
    """`catch_up`'s questions to Kafka (answered or not), counted, so that a
    test waits for it to have looked, not for a while."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.asked = asyncio.Condition()
        ask = group_positions

        async def counted(*args: Any) -> Any:
            async with self.asked:
                self.count += 1
                self.asked.notify_all()
            return await ask(*args)

        monkeypatch.setattr(consumer, "group_positions", counted)

    async def looked_again(self) -> None:
        """Until `catch_up` has asked twice more (a whole look since now)."""
        async with asyncio.timeout(30), self.asked:
            since = self.count
            await self.asked.wait_for(lambda: self.count >= since + 2)


async def test_an_instance_is_ready_once_its_group_read_what_the_topics_held(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4().hex[:8]
    topic, group = f"it.ready.{run}", f"it-ready-{run}"
    await infra.kafka.create_topics([topic], partitions=2)
    monkeypatch.setattr(consumer, "TOPICS", (topic,))
    asks = Asks(monkeypatch)
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka.bootstrap)
    replaying = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    await producer.start()
    await replaying.start()
    ready, stop = asyncio.Event(), asyncio.Event()
    try:
        for partition in (0, 0, 1):
            await producer.send_and_wait(topic, b"x", partition=partition)
        waiting = asyncio.create_task(
            consumer.catch_up(infra.kafka.bootstrap, group, ready, stop, every_s=0.1)
        )
        await asks.looked_again()
        assert not ready.is_set()  # nothing read yet
        replaying.assign([first, second])
        await replaying.commit({first: 2})
        await asks.looked_again()
        assert not ready.is_set()  # one partition still behind
        # Written after the start (the topics never stop): not waited for.
        await producer.send_and_wait(topic, b"y", partition=1)
        await replaying.commit({second: 1})
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.wait_for(waiting, 30)  # done: once ready, it stays so
    finally:
        stop.set()
        await replaying.stop()
        await producer.stop()


async def test_an_instance_started_while_kafka_is_away_is_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How far behind it is cannot be known: it serves nobody until it is."""
    asks = Asks(monkeypatch)
    ready, stop = asyncio.Event(), asyncio.Event()
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    waiting = asyncio.create_task(consumer.catch_up(nowhere, "it-away", ready, stop, every_s=0.1))
    await asks.looked_again()
    assert not ready.is_set() and not waiting.done()
    stop.set()
    await asyncio.wait_for(waiting, 30)

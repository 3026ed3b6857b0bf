"""Topics are created with what they keep (`casemesh.topics.CONFIGS`), and a
topic an earlier run made (the local broker keeps its data) is set so too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from casemesh import topics
from tests.conftest import Infra


async def config_of(bootstrap: str, topic: str, config: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {config: None})]
        )
        (_, _, _, _, entries) = response.resources[0]
        return str(next(value for name, value, *_ in entries if name == config))
    finally:
        await admin.close()


async def test_a_topic_made_before_takes_the_configs_it_is_now_told(infra: Infra) -> None:
    topic = f"test.kept.{uuid.uuid4().hex[:8]}"
    await infra.kafka.create_topics([topic], partitions=1)  # as an older run made it
    largest = str(topics.MAX_RECORD_BYTES)
    assert await config_of(infra.kafka.bootstrap, topic, "retention.ms") != "-1"
    assert await config_of(infra.kafka.bootstrap, topic, "max.message.bytes") != largest
    kept = {topic: topics.CONFIGS[topics.TICKETS]}  # as a case stream is kept
    await infra.kafka.create_topics([topic], partitions=1, configs=kept)
    # (The broker answers a describe from metadata that may lag a moment.)
    bootstrap = infra.kafka.bootstrap
    await eventually_async(lambda: config_of(bootstrap, topic, "retention.ms"), "-1")
    await eventually_async(lambda: config_of(bootstrap, topic, "max.message.bytes"), largest)


async def eventually_async(read: Callable[[], Awaitable[str]], want: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while (got := await read()) != want:
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.2)

"""How far the queue's SLA timer may run its clocks (`Horizon`), on a real
broker: never past what the topics have told, and not at all while Kafka
does not give every topic's partitions (a broker just started): read as
"nothing to read", that would fire every clock due."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

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
        # A record not applied yet, on a partition never read: no clock runs.
        assert await horizon.until(NOW, GRACE) is None

        monkeypatch.setattr(timer, "TOPICS", (told, quiet, f"it.horizon.{run}.missing"))
        with pytest.raises(RuntimeError, match="missing"):
            await horizon.until(NOW, GRACE)
    finally:
        await horizon.stop()

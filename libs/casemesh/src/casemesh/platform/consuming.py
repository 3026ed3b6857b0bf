"""Starting Kafka consumers (FastStream) that outlive a broker outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from faststream.kafka import KafkaBroker

from casemesh.platform.logging import get_logger

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

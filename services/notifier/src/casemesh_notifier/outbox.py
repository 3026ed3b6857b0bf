"""Publishes the notifier's outcome events (`casemesh.notifications.v1`) from
its outbox table: rows commit with the outcome they describe, and are marked
published only after Kafka acknowledged them. One publisher at a time
(advisory lock); push-driven by NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh.platform.relay import AdvisoryLock, make_producer, run_while_holding

log = get_logger(__name__)

TOPIC = "casemesh.notifications.v1"
SOURCE = "casemesh/notifier"


class OutboxPublisher:
    def __init__(self, *, conninfo: str, bootstrap: str) -> None:
        self._conninfo = conninfo
        self._bootstrap = bootstrap
        self._lock = AdvisoryLock(conninfo, f"casemesh-relay:{TOPIC}")

    async def run(self, stop: asyncio.Event) -> None:
        await run_while_holding(self._lock, self._publish_until, stop, name=TOPIC)

    async def _publish_until(self, stop: asyncio.Event) -> None:
        producer = make_producer(self._bootstrap, "notifier-outbox")
        await producer.start()
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True
        )
        try:
            await conn.execute("LISTEN notification_outbox")
            while not stop.is_set():
                published = await self._publish_batch(conn, producer)
                if published == 0:
                    # Wait for a NOTIFY (or re-check after a second).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            async for _ in conn.notifies():
                                break
        finally:
            await producer.stop()
            await conn.close()

    async def _publish_batch(self, conn: psycopg.AsyncConnection[Any], producer: Any) -> int:
        cur = await conn.execute(
            "SELECT id, event_id, job_id, ce_type, payload, created_at FROM notification_outbox"
            " WHERE published_at IS NULL ORDER BY id LIMIT 200"
        )
        rows = await cur.fetchall()
        if not rows:
            return 0
        acks = []
        for _id, event_id, job_id, ce_type, payload, created_at in rows:
            event = CloudEvent(
                id=event_id,
                source=SOURCE,
                type=ce_type,
                subject=f"notifications/{job_id}",
                time=created_at,
                data=bytes(payload),
                key=str(job_id),
            )
            acks.append(
                await producer.send(
                    TOPIC, value=event.data, key=event.key.encode(), headers=event.kafka_headers()
                )
            )
        await asyncio.gather(*acks)
        await conn.execute(
            "UPDATE notification_outbox SET published_at = now() WHERE id = ANY(%s)",
            ([r[0] for r in rows],),
        )
        return len(rows)

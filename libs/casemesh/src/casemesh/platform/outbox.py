"""Publishes events that a service records in an outbox table: rows commit
with the change they describe, and are marked published only after Kafka
acknowledged them. One publisher at a time (advisory lock); push-driven by
NOTIFY on the table's channel.

The table and its columns are as `outbox_schema` creates them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import psycopg
from google.protobuf.message import Message
from psycopg.sql import SQL, Identifier, Literal

from casemesh.platform import envelope
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh.platform.metrics import OUTBOX_PENDING
from casemesh.platform.pools import with_keepalives
from casemesh.platform.relay import (
    AdvisoryLock,
    delivered,
    make_producer,
    run_while_holding,
    stop_producer,
)

log = get_logger(__name__)

BATCH = 200
BACKLOG_INTERVAL = 5.0  # seconds between readings of the backlog


@dataclass(frozen=True)
class Outbox:
    table: str
    topic: str
    source: str
    # The column naming what an event is about, and the prefix that makes it a
    # resource name (the CloudEvents subject; the column is also the key).
    subject_column: str
    subject_prefix: str = ""
    # Erase a row's payload once Kafka has it (events carrying a secret).
    erase_published: bool = False
    # The messages (of casemesh.events.v1) its rows may carry: what
    # docs/asyncapi.yaml lists for the topic; `type_of` refuses any other.
    messages: tuple[type[Message], ...] = ()

    def type_of(self, message: Message) -> str:
        """The `ce_type` of a row carrying `message`, one this outbox declares."""
        if type(message) not in self.messages:
            raise ValueError(f"{self.table} does not declare {type(message).__name__}")
        return envelope.type_of(message)

    @property
    def types(self) -> list[str]:
        """Every `ce_type` this outbox publishes, sorted."""
        return sorted(envelope.type_of(m) for m in self.messages)


def outbox_schema(outbox: Outbox, subject_type: str = "text") -> str:
    """The outbox's table and the partial index on its unpublished rows (both
    created only if missing), as SQL statements ending with ";"."""
    table, subject = outbox.table, outbox.subject_column
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY,"
        f" event_id text NOT NULL UNIQUE, {subject} {subject_type} NOT NULL, ce_type text NOT NULL,"
        " payload bytea NOT NULL, created_at timestamptz NOT NULL, published_at timestamptz);\n"
        f"CREATE INDEX IF NOT EXISTS {table}_unpublished ON {table} (id)"
        " WHERE published_at IS NULL;\n"
    )


class OutboxPublisher:
    def __init__(self, *, conninfo: str, bootstrap: str, outbox: Outbox, client_id: str) -> None:
        self._conninfo = conninfo
        self._bootstrap = bootstrap
        self._outbox = outbox
        self._client_id = client_id
        self._lock = AdvisoryLock(conninfo, f"casemesh-relay:{outbox.topic}")

    async def _watch_pending(self, stop: asyncio.Event) -> None:
        """Every few seconds, on every replica: the rows not yet published
        (the table's partial index on them keeps it cheap), whether or not
        this process publishes or Kafka answers; NaN while the database
        cannot be read."""
        gauge = OUTBOX_PENDING.labels(self._outbox.topic)
        query = SQL("SELECT count(*) FROM {} WHERE published_at IS NULL").format(
            Identifier(self._outbox.table)
        )
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            with_keepalives(self._conninfo),
                            autocommit=True,
                            connect_timeout=3,
                            options="-c statement_timeout=5000",
                        )
                    row = await (await conn.execute(query)).fetchone()
                    gauge.set(row[0] if row else 0)
                except psycopg.Error:
                    gauge.set(float("nan"))
                    if conn is not None:
                        await conn.close()
                    conn = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), BACKLOG_INTERVAL)
        finally:
            if conn is not None:
                await conn.close()

    async def run(self, stop: asyncio.Event) -> None:
        pending = asyncio.create_task(self._watch_pending(stop))
        try:
            await run_while_holding(self._lock, self._publish_until, stop, name=self._outbox.topic)
        finally:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending

    async def _publish_until(self, stop: asyncio.Event) -> None:
        # The producer is stopped whatever fails first, its own start
        # included (Kafka or the database away): each try makes a new one.
        producer = make_producer(self._bootstrap, self._client_id)
        try:
            if not await delivered(producer.start(), stop, self._lock):
                return  # stopped while the producer could not start
            # Held while it publishes: one the network dropped silently fails
            # within seconds (`with_keepalives`), and the publisher starts again.
            conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
                with_keepalives(self._conninfo), autocommit=True
            )
            try:
                await conn.execute(SQL("LISTEN {}").format(Identifier(self._outbox.table)))
                while not stop.is_set():
                    # Only while this process holds the lock: one whose lock
                    # session ended (terminated, timed out idle) would publish
                    # beside the standby that took it over.
                    if not await asyncio.to_thread(self._lock.still_held):
                        raise RuntimeError("lost the outbox lock connection")
                    published = await self._publish_batch(conn, producer, stop)
                    if published == 0 and not stop.is_set():
                        # Wait for a NOTIFY (or re-check after a second), then
                        # take every other one already here: the next SELECT
                        # answers them all (one each would make as many
                        # empty SELECTs after a burst).
                        async for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
                        async for _ in conn.notifies(timeout=0):
                            pass
            finally:
                await conn.close()
        finally:
            await stop_producer(producer, self._outbox.topic)

    async def _publish_batch(
        self, conn: psycopg.AsyncConnection[Any], producer: Any, stop: asyncio.Event
    ) -> int:
        """Publishes the oldest unpublished rows, and marks them published
        once Kafka has them all; how many (0 for none, or when `stop` came
        first: they stay unpublished, sent again by the next publisher)."""
        o = self._outbox
        cur = await conn.execute(
            SQL(
                "SELECT id, event_id, {subject}, ce_type, payload, created_at FROM {table}"
                " WHERE published_at IS NULL ORDER BY id LIMIT {batch}"
            ).format(
                subject=Identifier(o.subject_column),
                table=Identifier(o.table),
                batch=Literal(BATCH),
            )
        )
        rows = await cur.fetchall()
        if not rows:
            return 0
        if not await delivered(self._send(producer, rows), stop, self._lock):
            log.warning("outbox.stopped_unacknowledged", topic=o.topic, count=len(rows))
            return 0
        erase = SQL(", payload = ''") if o.erase_published else SQL("")
        await conn.execute(
            SQL("UPDATE {} SET published_at = now(){} WHERE id = ANY(%s)").format(
                Identifier(o.table), erase
            ),
            ([r[0] for r in rows],),
        )
        return len(rows)

    async def _send(self, producer: Any, rows: list[Any]) -> None:
        """Sends the rows' events, in order, and waits for the broker's acks."""
        o = self._outbox
        acks = []
        for _id, event_id, subject, ce_type, payload, created_at in rows:
            event = CloudEvent(
                id=event_id,
                source=o.source,
                type=ce_type,
                subject=f"{o.subject_prefix}{subject}",
                time=created_at,
                data=bytes(payload),
                key=str(subject),
            )
            acks.append(
                await producer.send(
                    o.topic, value=event.data, key=event.key.encode(), headers=event.kafka_headers()
                )
            )
        await asyncio.gather(*acks)

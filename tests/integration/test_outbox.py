"""An outbox publisher on a real PostgreSQL: it publishes only while it
holds its lock."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from casemesh.platform import outbox
from tests.conftest import Infra


async def test_a_publisher_whose_lock_session_ended_stops_publishing(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's session ends while the publisher's own connection stays
    (terminated by an operator, an idle timeout, a pooler): the standby takes
    the lock over. The publisher stops at its next look rather than go on
    publishing beside it."""
    name = f"outbox_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    box = outbox.Outbox("unit_outbox", "casemesh.unit.v1", "casemesh/unit", "case_id")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(outbox.outbox_schema(box))

    class Producer:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("nothing to publish")

    monkeypatch.setattr(outbox, "make_producer", lambda *_: Producer())
    publisher = outbox.OutboxPublisher(
        conninfo=dsn, bootstrap="127.0.0.1:9", outbox=box, client_id="unit"
    )
    lock = publisher._lock
    assert await asyncio.to_thread(lock.try_acquire)
    publishing = asyncio.create_task(publisher._publish_until(asyncio.Event()))
    assert lock._conn is not None
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (lock._conn.info.backend_pid,))
    with pytest.raises(RuntimeError, match="lost the outbox lock"):
        await asyncio.wait_for(publishing, 30)
    lock.release()

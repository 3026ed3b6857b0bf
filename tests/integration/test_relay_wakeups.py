"""The relay publishes what is stored even when no wake-up reaches it: the
library's subscription reads the log first and only then LISTENs, so an
event committed in between sends its NOTIFY to nobody (as does one whose
listening connection the network dropped without a word)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from casemesh.platform.identity import Identity
from casemesh.platform.pools import dropped
from casemesh.platform.relay import Relay, Subscription
from casemesh_devstack.kafka import LocalKafka
from casemesh_tickets.__main__ import status_lookup
from casemesh_tickets.application import Tickets
from casemesh_tickets.events import Translator
from tests.conftest import Infra
from tests.integration.test_pools import new_ticket
from tests.support import eventually

ALICE = Identity("alice", frozenset({"user"}))


async def relay_after_a_ticket(app: Tickets, kafka: LocalKafka, dsn: str) -> Relay:
    """A relay (not started) of `app` to a topic of its own, with a ticket
    of ALICE's stored before it starts."""
    topic = f"test.relay.{uuid.uuid4().hex[:8]}"
    await kafka.create_topics([topic], partitions=1)
    app.create_ticket(ALICE, new_ticket("before"))
    return Relay(
        app=app,
        topic=topic,
        translate=Translator(status_lookup(app)),
        bootstrap=kafka.bootstrap,
        conninfo=dsn,
    )


async def test_an_event_whose_wake_up_was_missed_is_published_all_the_same(
    infra: Infra, dsn: str, app: Tickets, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deaf(subscription: Any) -> None:
        """A LISTEN that hears nothing, until the subscription stops."""
        while not subscription._has_been_stopped:
            threading.Event().wait(0.1)

    monkeypatch.setattr(Subscription, "_listen", deaf)
    relay = await relay_after_a_ticket(app, infra.kafka, dsn)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.position == 1)  # what was stored before it started
        await asyncio.to_thread(app.create_ticket, ALICE, new_ticket("after"))
        head = app.recorder.max_notification_id()
        await eventually(lambda: relay.position == head)
        assert relay.published == head
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_a_relay_that_stopped_leaves_no_listening_connection_in_the_pool(
    infra: Infra, dsn: str, app: Tickets
) -> None:
    """A relay stops (Kafka away, its lock lost) while the service goes on
    writing: the pool it shares must hold no connection still hearing each
    write, which its guard would take for one the server dropped."""
    relay = await relay_after_a_ticket(app, infra.kafka, dsn)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.position == 1)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    for n in range(3):
        await asyncio.to_thread(app.create_ticket, ALICE, new_ticket(f"after-{n}"))
    pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
    idle = list(pool._pool)  # as the pool holds them, unchecked
    assert idle, "the pool keeps idle connections"
    assert not any(dropped(conn) for conn in idle), "a pooled connection hears every write"

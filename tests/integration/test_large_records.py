"""A record larger than Kafka's default largest (1 MiB) goes through. A
writer stores events of 512 KiB at the most, and the record its relay
publishes can be about twice as large (a personal text sealed in base64,
fields derived from the state after the event): the relay publishes it, a
consumer built as the services build theirs receives it, and the events
stored after it follow. (A record the producer or the topic refused would
be tried again for ever, every later event of its topic waiting behind it.)"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter

from casemesh import topics
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.consuming import Place, consumer_broker, start_broker, subscribe
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.eventstore import MAX_EVENT_BYTES
from casemesh.platform.relay import Relay, Translate
from casemesh_tickets.__main__ import status_lookup
from casemesh_tickets.application import Tickets
from casemesh_tickets.domain import Ticket
from casemesh_tickets.events import Translator
from tests.conftest import Infra
from tests.integration.test_pools import new_ticket
from tests.integration.test_relay_wakeups import ALICE
from tests.support import eventually

MiB = 1024 * 1024


def swelling(translate: Translate) -> Translate:
    """`translate`, with a created ticket's description published three
    times over: a stand-in for the translations whose records outgrow
    their stored events."""

    def swollen(notification: Any, domain_event: Any) -> CloudEvent:
        event = translate(notification, domain_event)
        message = ev.TicketCreated.FromString(event.data)
        message.description *= 3
        return replace(event, data=message.SerializeToString())

    return swollen


def a_long_ticket(description: str) -> Ticket:
    """A ticket with a description longer than a request may give: whatever
    a command's own checks let through, the store takes any event of up to
    `MAX_EVENT_BYTES`."""
    new = new_ticket("long")
    made = {k: v for k, v in vars(new).items() if k not in ("description", "evidence")}
    return Ticket(
        requester=ALICE.subject,
        request_fingerprint="-",
        priority=3,
        description=description,
        evidence=[],
        **made,
    )


async def test_an_event_whose_record_is_twice_its_size_reaches_consumers_and_the_relay_goes_on(
    infra: Infra, dsn: str, app: Tickets
) -> None:
    topic = f"test.large.{uuid.uuid4().hex[:8]}"
    # Made as the deployment makes a case topic.
    await infra.kafka.create_topics(
        [topic], partitions=1, configs={topic: topics.CONFIGS[topics.TICKETS]}
    )
    long = a_long_ticket("x" * 480_000)
    await asyncio.to_thread(app.save, long)
    [stored] = app.recorder.select_notifications(start=1, limit=1)
    assert len(stored.state) <= MAX_EVENT_BYTES

    relay = Relay(
        app=app,
        topic=topic,
        translate=swelling(Translator(status_lookup(app))),
        bootstrap=infra.kafka.bootstrap,
        conninfo=dsn,
    )
    received: dict[str, int] = {}  # event id → the size of its message

    async def handle(event: CloudEvent, place: Place) -> None:
        received[event.id] = len(event.data)

    group = f"it-large-{uuid.uuid4().hex[:8]}"

    def build() -> KafkaBroker:
        router = KafkaRouter()
        subscribe(router, [topic], consumer="it-large", group_id=group, handle=handle)
        return consumer_broker(infra.kafka.bootstrap, "it-large", router)

    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    broker = await start_broker(build, stop, "it_large")
    assert broker is not None
    try:
        await eventually(lambda: f"{long.id}:1" in received)
        assert 1.1 * MiB < received[f"{long.id}:1"] < 2 * MiB
        after = await asyncio.to_thread(app.create_ticket, ALICE, new_ticket("after"))
        await eventually(lambda: f"{after.id}:1" in received)
        assert relay.position == app.recorder.max_notification_id()
    finally:
        stop.set()
        await broker.stop()
        await asyncio.wait_for(running, 30)

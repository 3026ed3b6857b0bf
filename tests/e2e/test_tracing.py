"""One trace per user action: the trace a front end starts at the gateway
continues through the tickets service, the stored event, the relay's Kafka
record and the notifier."""

from __future__ import annotations

import asyncio
import uuid

from casemesh import topics
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack
from tests.support import Client, read_topic, wait_until


def test_the_callers_trace_reaches_kafka_and_the_notifier(stack: Stack) -> None:
    trace_id = uuid.uuid4().hex
    client = Client(stack.gateway, stack.secret, f"traced-{trace_id[:6]}")
    client.metadata.append(("traceparent", f"00-{trace_id}-{'ab' * 8}-01"))
    ticket = client.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="other.general",
                subject="trace",
                description="d",
                locale="en",
                contact=pb.Contact(email="t@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id="trace-1",
        )
    )
    ticket_id = ticket.name.split("/")[1]
    records = asyncio.run(
        read_topic(stack.infra.kafka.bootstrap, topics.TICKETS, PARTITIONS, {f"{ticket_id}:1"}, 30)
    )
    (headers,) = [h for _, h in records if h["ce_id"] == f"{ticket_id}:1"][:1]
    assert headers["traceparent"].split("-")[1] == trace_id

    def logged(service: str) -> bool:
        return f'"trace_id": "{trace_id}"' in stack.supervisor.log_path(service).read_text()

    assert logged("tickets")
    wait_until(lambda: logged("notifier"), timeout=30)

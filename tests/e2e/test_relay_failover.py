"""One relay publishes at a time; a standby takes over when it dies."""

from __future__ import annotations

import asyncio
import uuid

from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack
from tests.support import Client, read_topic, wait_until


def test_a_standby_relay_takes_over_from_a_killed_one(stack: Stack) -> None:
    sup = stack.supervisor
    argv, env = sup.command("tickets-relay")
    sup.start("tickets-relay-standby", argv, env)
    standby_log = sup.log_path("tickets-relay-standby")
    try:
        wait_until(lambda: "relay.standby" in standby_log.read_text(), timeout=30)
        sup.kill("tickets-relay")
        client = Client(stack.gateway, stack.secret, f"failover-{uuid.uuid4().hex[:6]}")
        ticket = client.CreateTicket(
            pb.CreateTicketRequest(
                ticket=pb.Ticket(
                    category="other.general",
                    subject="s",
                    description="d",
                    locale="en",
                    contact=pb.Contact(email="f@example.com", channels=[pb.CHANNEL_EMAIL]),
                ),
                request_id="failover-1",
            )
        )
        event_id = f"{ticket.name.split('/')[1]}:1"
        records = asyncio.run(
            read_topic(
                stack.infra.kafka.bootstrap, "casemesh.tickets.v1", PARTITIONS, {event_id}, 30
            )
        )
        assert event_id in {h["ce_id"] for _, h in records}
        assert "relay.active" in standby_log.read_text()
    finally:
        sup.stop("tickets-relay-standby")
        sup.restart("tickets-relay")

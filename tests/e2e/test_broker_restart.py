"""Kafka goes away and comes back (and the notifier restarts meanwhile):
tickets opened meanwhile are stored, the relay's lag says they wait, and once
the broker returns their events are published and every requester is told,
once."""

from __future__ import annotations

import time
import uuid

from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.replicas import metric
from tests.support import Client, wait_until


def test_tickets_opened_while_kafka_is_down_reach_the_requesters_after_it_returns(
    stack: Stack,
) -> None:
    client = Client(stack.gateway, stack.secret, f"outage-{uuid.uuid4().hex[:6]}")
    emails = [f"outage-{uuid.uuid4().hex[:8]}@example.com" for _ in range(5)]
    kafka = stack.infra.kafka
    kafka.stop()
    try:
        for i, email in enumerate(emails):
            opened = client.CreateTicket(
                pb.CreateTicketRequest(
                    ticket=pb.Ticket(
                        category="other.general",
                        subject=f"outage {i}",
                        description="d",
                        locale="en",
                        contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
                    ),
                    request_id=f"outage-{i}",
                )
            )
            assert opened.status == pb.TICKET_STATUS_NEW  # stored although Kafka is down
        # A notifier that starts while Kafka is away must not give up either.
        stack.supervisor.restart("notifier")
        time.sleep(5)  # the relay and the notifier meet the outage
        assert not any(stack.mail.to(e) for e in emails)
        # What an operator sees: the events wait (CasemeshRelayLagging/Stalled).
        assert metric(stack.metrics["tickets-relay"], "casemesh_relay_lag_events") >= 5
    finally:
        kafka.start()
    wait_until(lambda: all(stack.mail.to(e) for e in emails), timeout=120)
    wait_until(lambda: metric(stack.metrics["tickets-relay"], "casemesh_relay_lag_events") == 0, 30)
    time.sleep(3)
    assert [len(stack.mail.to(e)) for e in emails] == [1] * 5

"""Two replicas of a writer service side by side (as two pods of it on
Kubernetes: the gRPC service and its relay each): exactly one relay
publishes; kill -9 of that one hands over to the other within seconds, and
every stored event still reaches the topic."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid

from casemesh import topics
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack, wait_serving
from tests.e2e.crash import assert_every_event_relayed
from tests.e2e.replicas import Replica, metric
from tests.support import Client, read_topic, wait_until

TOPIC = topics.TICKETS


def active(url: str) -> float:
    return metric(url, "casemesh_relay_active")


def test_one_relay_of_two_replicas_publishes_and_a_kill_hands_over_within_seconds(
    stack: Stack,
) -> None:
    sup = stack.supervisor
    server_b = Replica.start(stack, "tickets")
    relay_b = Replica.start(stack, "tickets-relay")
    relay_a_metrics = stack.metrics["tickets-relay"]
    stop = threading.Event()
    opened: list[str] = []
    try:
        wait_serving(server_b.grpc_addr)
        wait_until(lambda: "relay.standby" in relay_b.log(), timeout=30)
        # Exactly one of the two publishes, and says so.
        assert (active(relay_a_metrics), active(relay_b.metrics_url)) == (1.0, 0.0)

        def keep_opening() -> None:
            client = Client(stack.gateway, stack.secret, f"failover-{uuid.uuid4().hex[:6]}")
            n = 0
            while not stop.is_set():
                ticket = client.CreateTicket(
                    pb.CreateTicketRequest(
                        ticket=pb.Ticket(
                            category="other.general",
                            subject=f"failover {n}",
                            description="d",
                            locale="en",
                            contact=pb.Contact(email="f@example.com", channels=[pb.CHANNEL_EMAIL]),
                        ),
                        request_id=f"failover-{n}",
                    )
                )
                opened.append(ticket.name)
                n += 1
                time.sleep(0.05)

        writer = threading.Thread(target=keep_opening, daemon=True)
        writer.start()
        wait_until(lambda: len(opened) >= 10, timeout=30)
        sup.kill("tickets-relay", signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: active(relay_b.metrics_url) == 1.0, timeout=30, interval=0.2)
        handover = time.monotonic() - killed
        print(f"relay handover after kill -9: {handover:.1f} s")
        assert handover < 10, f"the standby took {handover:.1f} s to take over"
        count = len(opened)
        wait_until(lambda: len(opened) >= count + 10, timeout=30)
        stop.set()
        writer.join(timeout=20)

        # Every ticket opened before, during and after the handover is on the topic.
        want = {f"{name.split('/')[1]}:1" for name in opened}
        records = asyncio.run(read_topic(stack.infra.kafka.bootstrap, TOPIC, PARTITIONS, want, 60))
        assert want <= {h["ce_id"] for _, h in records}
        assert_every_event_relayed(stack, stack.tickets_dsn, "tickets_events", TOPIC)
    finally:
        stop.set()
        sup.restart("tickets-relay")  # stands by until the replica goes
        relay_b.cleanup()
        server_b.cleanup()
        log = sup.log_path("tickets-relay")
        wait_until(lambda: "relay.active" in log.read_text().rsplit("starting", 1)[-1], 30)

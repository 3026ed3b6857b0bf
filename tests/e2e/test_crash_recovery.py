"""kill -9 of the relay and of the notifier while tickets keep coming: after a
restart every stored event is on the topic (in order per ticket, with the
CloudEvents headers) and every requester got each message exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import psycopg

from casemesh import topics
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack
from tests.e2e.crash import assert_only_marked_repeats
from tests.support import Client, read_topic, settled, wait_until, wait_while_progressing

TOPIC = topics.TICKETS
REQUIRED_HEADERS = {
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_subject",
    "ce_time",
    "traceparent",
}


def stored_event_ids(stack: Stack) -> set[str]:
    with psycopg.connect(stack.tickets_dsn) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version FROM tickets_events"
        ).fetchall()
    return {f"{oid}:{version}" for oid, version in rows}


def test_kill_9_of_relay_and_notifier_loses_and_duplicates_nothing(stack: Stack) -> None:
    sup = stack.supervisor
    run = uuid.uuid4().hex[:6]
    clients = [Client(stack.gateway, stack.secret, f"crash-{run}-{i}") for i in range(4)]
    # Kill and restart points, by number of tickets opened so far.
    plan: dict[int, tuple[Callable[[str], None], tuple[str, ...]]] = {
        8: (sup.kill, ("tickets-relay",)),
        14: (sup.restart, ("tickets-relay",)),
        20: (sup.kill, ("notifier",)),
        27: (sup.restart, ("notifier",)),
        32: (sup.kill, ("tickets-relay", "notifier")),
        36: (sup.restart, ("tickets-relay", "notifier")),
    }
    agent = Client(stack.gateway, stack.secret, "agent-crash", ("agent",))
    contacts: list[tuple[str, str]] = []
    opened: list[str] = []
    asked: set[int] = set()
    for n in range(40):
        if n in plan:
            action, names = plan[n]
            for name in names:
                action(name)
        email = f"crash-{run}-{n}@example.com"
        phone = f"+8613{int(run, 16) % 1000:03d}{n:06d}"
        client = clients[n % len(clients)]
        created = client.CreateTicket(
            pb.CreateTicketRequest(
                ticket=pb.Ticket(
                    category="content.upload_failed",
                    subject=f"上传失败 {n}",
                    description="一直失败",
                    locale="zh-CN",
                    contact=pb.Contact(
                        email=email, phone=phone, channels=[pb.CHANNEL_EMAIL, pb.CHANNEL_SMS]
                    ),
                ),
                request_id=f"crash-{n}",
            )
        )
        contacts.append((email, phone))
        opened.append(created.name)
        # Older tickets move on too, so streams have several versions in flight.
        if n >= 3 and n % 2:
            agent.RequestInfo(pb.RequestInfoRequest(name=opened[n - 3], message="请补充截图"))
            asked.add(n - 3)
        time.sleep(0.05)
    assert sup.is_running("tickets-relay") and sup.is_running("notifier")

    # Every stored event is on the topic, with the CloudEvents headers, in order per ticket.
    want = stored_event_ids(stack)
    records = asyncio.run(
        read_topic(stack.infra.kafka.bootstrap, TOPIC, PARTITIONS, want, wait_s=90)
    )
    on_topic = {h["ce_id"] for _, h in records}
    assert want <= on_topic, f"{len(want - on_topic)} stored events never reached Kafka"
    for key, headers in records:
        assert headers.keys() >= REQUIRED_HEADERS, headers
        assert headers["ce_id"].startswith(f"{key}:")
        assert headers["ce_source"] == "casemesh/tickets"
        assert headers["ce_subject"] == f"tickets/{key}"
    versions: dict[str, list[int]] = defaultdict(list)
    for key, headers in records:
        version = int(headers["ce_id"].rsplit(":", 1)[1])
        if version not in versions[key]:
            versions[key].append(version)
    assert all(v == sorted(v) for v in versions.values()), "events of a ticket out of order"

    assert max(len(v) for v in versions.values()) >= 2
    # Every requester heard once of each step (received; info requested where
    # it was), on each channel.
    expected = [1 + (i in asked) for i in range(len(contacts))]

    def delivered() -> int:
        return sum(
            min(len(stack.mail.to(e)), count) + min(len(stack.sms.to(p)), count)
            for (e, p), count in zip(contacts, expected, strict=True)
        )

    wait_while_progressing(delivered, 2 * sum(expected))
    emails, phones = [e for e, _ in contacts], [p for _, p in contacts]
    # A send in flight at the kill is taken up again within seconds, not after its lease.
    wait_until(lambda: settled(stack.notifier_dsn, emails + phones), timeout=60)
    for (email, phone), count in zip(contacts, expected, strict=True):
        assert len(stack.mail.distinct_to(email)) == count, email
        assert len(stack.sms.distinct_to(phone)) == count, phone
    assert_only_marked_repeats(stack, emails=emails, phones=phones)
    with psycopg.connect(stack.notifier_dsn) as conn:
        unsent = conn.execute(
            "SELECT count(*) FROM notification_jobs WHERE recipient = ANY(%s) AND status <> 'sent'",
            (emails + phones,),
        ).fetchone()
    assert unsent == (0,)

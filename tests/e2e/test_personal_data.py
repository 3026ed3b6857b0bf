"""A ticket's personal data is sealed where it is kept for ever (the tickets
event store, the casemesh.tickets.v1 topic) and clear where people read it
(the ticket through the gateway, the e-mail the requester gets)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from casemesh import topics
from casemesh.platform.personal.sealing import CASE_PREFIX
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.support import Client, open_ticket, records_keyed, wait_until


async def records_of(bootstrap: str, case_id: str, topic: str = topics.TICKETS) -> list[bytes]:
    """The bytes of every record of the case on `topic` (the tickets topic
    unless told), as a consumer gets them: key, each header, value."""
    return [
        r.key + b"".join(k.encode() + v for k, v in r.headers) + (r.value or b"")
        for r in await records_keyed(bootstrap, topic, case_id)
    ]


def test_a_tickets_personal_data_is_sealed_at_rest_and_on_the_topic_yet_read_in_clear(
    stack: Stack,
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    mark = uuid.uuid4().hex[:10]
    subject = f"Cannot sign in, case {mark}"
    email = f"sealed.{mark}@example.com"
    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    alice = Client(stack.gateway, stack.secret, user)
    ticket = open_ticket(alice, subject, f"My phone {phone} no longer gets the code.", email, phone)
    ticket_id = ticket.name.split("/")[1]

    # The requester hears back: the notifier revealed the address and subject.
    mail = wait_until(lambda: stack.mail.to(email))[0]
    assert subject in mail["Subject"]
    assert email in mail["To"]
    # People read the ticket in the clear.
    got = alice.GetTicket(pb.GetTicketRequest(name=ticket.name))
    assert (got.subject, got.contact.email, got.contact.phone) == (subject, email, phone)
    listed = alice.ListTickets(pb.ListTicketsRequest()).tickets
    assert [t.subject for t in listed if t.name == ticket.name] == [subject]

    clear = [s.encode() for s in (mark, email, phone)]
    # On the topic: tokens, never the text.
    records = wait_until(
        lambda: asyncio.run(records_of(stack.infra.kafka.bootstrap, ticket_id)), timeout=60
    )
    # (A ticket's text is sealed under its own case key too: `pd2.` tokens.)
    assert all(CASE_PREFIX.encode() in r for r in records)
    assert not [c for c in clear for r in records if c in r]
    # In the event store: likewise.
    with psycopg.connect(stack.tickets_dsn) as conn:
        stored = [
            bytes(row[0])
            for row in conn.execute(
                "SELECT state FROM tickets_events WHERE originator_id = %s", (ticket_id,)
            )
        ]
    assert stored and all(CASE_PREFIX.encode() in s for s in stored)
    assert not [c for c in clear for s in stored if c in s]

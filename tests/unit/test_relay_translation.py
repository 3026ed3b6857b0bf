"""What the relay puts on the topic for a ticket's events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from casemesh.events.v1 import tickets_pb2 as ev
from casemesh_tickets.__main__ import status_lookup
from casemesh_tickets.events import Translator
from tests.unit.test_ticket_lifecycle import new_ticket


class Store:
    """Rebuilds a ticket at a version from its events, counting the reads."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.reads = 0

    def get(self, ticket_id: Any, version: int) -> Any:
        self.reads += 1
        ticket = None
        for e in self.events[:version]:
            ticket = e.mutate(ticket)
        return ticket


def journey() -> list[Any]:
    t = new_ticket()
    t.assign(actor="li", assignee="li")
    t.request_info(actor="li", message="?")
    t.add_comment(actor="alice", body="ok", by_requester=True, internal=False)
    t.solve(actor="li", resolution="done")
    t.rate(actor="alice", score=5, comment="")
    t.close(actor="alice")
    return list(t.collect_events())


EXPECTED = ["NEW", "OPEN", "PENDING", "OPEN", "SOLVED", "SOLVED", "CLOSED"]


def test_statuses_follow_the_stream_without_reading_the_store() -> None:
    events = journey()
    store = Store(events)
    status_of = status_lookup(SimpleNamespace(repository=store))  # type: ignore[arg-type]
    assert [status_of(e) for e in events] == EXPECTED
    assert store.reads == 0


def test_a_restarted_relay_reads_the_ticket_once_then_follows() -> None:
    events = journey()
    store = Store(events)
    status_of = status_lookup(SimpleNamespace(repository=store))  # type: ignore[arg-type]
    assert [status_of(e) for e in events[3:]] == EXPECTED[3:]
    assert store.reads == 1
    # A republished event (after a crash between ack and tracking) is answered too.
    assert status_of(events[4]) == "SOLVED"


def test_the_public_event_carries_its_id_type_and_header() -> None:
    events = journey()
    store = Store(events)
    translate = Translator(status_lookup(SimpleNamespace(repository=store)))  # type: ignore[arg-type]
    cloud = [translate(None, e) for e in events]  # type: ignore[arg-type]
    ticket_id = str(events[0].originator_id)
    assert [c.id for c in cloud] == [f"{ticket_id}:{v}" for v in range(1, 8)]
    assert cloud[2].type == "casemesh.tickets.InfoRequested.v1"
    solved = ev.TicketSolved.FromString(cloud[4].data)
    assert (solved.resolution, solved.header.status) == ("done", ev.TICKET_STATUS_SOLVED)
    created = ev.TicketCreated.FromString(cloud[0].data)
    assert created.contact.locale == "zh-CN"
    assert list(created.contact.channels) == [ev.CONTACT_CHANNEL_EMAIL]

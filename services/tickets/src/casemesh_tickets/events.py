"""Translation of stored ticket events into the public event messages of
`casemesh.tickets.v1` (proto/casemesh/events/v1/tickets.proto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from casemesh import topics
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.history import carried, header_basics
from casemesh.platform.relay import EventTranslator
from casemesh_tickets.domain import Ticket
from casemesh_tickets.views import PUBLIC_NAMES

TOPIC = topics.TICKETS
SOURCE = "casemesh/tickets"


def _status(status: str) -> int:
    return int(ev.TicketStatus.Value(f"TICKET_STATUS_{status}"))


def _attachments(attrs: dict[str, Any]) -> list[ev.EvidenceAttachment]:
    return [
        ev.EvidenceAttachment(name=e["name"], sha256=e["sha256"]) for e in attrs.get("evidence", [])
    ]


def public_message(domain_event: Any, status_after: str) -> Message:
    a = vars(domain_event)
    header = ev.TicketEventHeader(
        ticket_id=str(domain_event.originator_id),
        **header_basics(domain_event, creator="requester"),
        status=_status(status_after),  # type: ignore[arg-type]
    )
    match domain_event:
        case Ticket.Created():
            contact = a["contact"]
            return ev.TicketCreated(
                header=header,
                **carried(a, "requester", "category", "subject", "description", "priority"),
                contact=ev.ContactPreferences(
                    email=contact.get("email", ""),
                    phone=contact.get("phone", ""),
                    channels=[
                        ev.ContactChannel.Value(f"CONTACT_CHANNEL_{c}")
                        for c in contact.get("channels", [])
                    ],
                    locale=a["locale"],
                ),
                evidence=_attachments(a),
            )
        case Ticket.Assigned():
            return ev.TicketAssigned(header=header, **carried(a, "assignee", "priority"))
        case Ticket.CommentAdded():
            return ev.CommentAdded(
                header=header,
                author=a["actor"],
                **carried(a, "by_requester", "body", "internal"),
                evidence=_attachments(a),
            )
        case Ticket.InfoRequested():
            return ev.InfoRequested(header=header, message=a["message"])
        case Ticket.PutOnHold():
            return ev.TicketPutOnHold(header=header, reason=a["reason"])
        case Ticket.Solved():
            # None in events stored before the solve kept it: left unset.
            return ev.TicketSolved(
                header=header,
                resolution=a["resolution"],
                auto_close_time=to_timestamp(a["closes_at"]),
            )
        case Ticket.Reopened():
            return ev.TicketReopened(header=header, reason=a["reason"])
        case Ticket.Closed():
            return ev.TicketClosed(header=header)
        case Ticket.Cancelled():
            return ev.TicketCancelled(header=header, reason=a["reason"])
        case Ticket.Rated():
            return ev.TicketRated(header=header, score=a["score"], comment=a["comment"])
        case ExpiringCase.Expired():
            return ev.TicketExpired(header=header)
    raise ValueError(f"no public event for {type(domain_event).__name__}")


def Translator(status_of: Callable[[Any], str]) -> EventTranslator:
    """The relay's translation; `status_of(event)` is the status right after it."""
    return EventTranslator("tickets", "tickets", PUBLIC_NAMES, public_message, status_of)

"""Translation of stored ticket events into the public event messages of
`casemesh.tickets.v1` (proto/casemesh/events/v1/tickets.proto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from casemesh import topics
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.history import header_basics
from casemesh.platform.relay import EventTranslator
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
    kind = type(domain_event).__name__
    a = vars(domain_event)
    header = ev.TicketEventHeader(
        ticket_id=str(domain_event.originator_id),
        **header_basics(domain_event, creator="requester"),
        status=_status(status_after),  # type: ignore[arg-type]
    )
    match kind:
        case "Created":
            contact = a["contact"]
            return ev.TicketCreated(
                header=header,
                requester=a["requester"],
                category=a["category"],
                subject=a["subject"],
                description=a["description"],
                contact=ev.ContactPreferences(
                    email=contact.get("email", ""),
                    phone=contact.get("phone", ""),
                    channels=[
                        ev.ContactChannel.Value(f"CONTACT_CHANNEL_{c}")
                        for c in contact.get("channels", [])
                    ],
                    locale=a["locale"],
                ),
                priority=a["priority"],
                evidence=_attachments(a),
            )
        case "Assigned":
            return ev.TicketAssigned(header=header, assignee=a["assignee"], priority=a["priority"])
        case "CommentAdded":
            return ev.CommentAdded(
                header=header,
                author=a["actor"],
                by_requester=a["by_requester"],
                body=a["body"],
                internal=a["internal"],
                evidence=_attachments(a),
            )
        case "InfoRequested":
            return ev.InfoRequested(header=header, message=a["message"])
        case "PutOnHold":
            return ev.TicketPutOnHold(header=header, reason=a["reason"])
        case "Solved":
            return ev.TicketSolved(header=header, resolution=a["resolution"])
        case "Reopened":
            return ev.TicketReopened(header=header, reason=a["reason"])
        case "Closed":
            return ev.TicketClosed(header=header)
        case "Cancelled":
            return ev.TicketCancelled(header=header, reason=a["reason"])
        case "Rated":
            return ev.TicketRated(header=header, score=a["score"], comment=a["comment"])
    raise ValueError(f"no public event for {kind}")


def Translator(status_of: Callable[[Any], str]) -> EventTranslator:
    """The relay's translation; `status_of(event)` is the status right after it."""
    return EventTranslator(
        service="tickets",
        collection="tickets",
        public_names=PUBLIC_NAMES,
        render=public_message,
        after=status_of,
    )

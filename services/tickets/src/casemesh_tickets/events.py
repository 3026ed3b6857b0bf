"""Translation of stored ticket events into the public event messages of
`casemesh.tickets.v1` (proto/casemesh/events/v1/tickets.proto)."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from casemesh import topics
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.casetranslation import case_translator, header_basics
from casemesh.platform.fields import items_of
from casemesh_tickets.views import PUBLIC_NAMES

TOPIC = topics.TICKETS
SOURCE = "casemesh/tickets"


# The events whose public message carries just these attributes of the stored
# event, under the same names.
PLAIN_FIELDS: dict[str, tuple[str, ...]] = {
    "Assigned": ("assignee", "priority"),
    "InfoRequested": ("message",),
    "PutOnHold": ("reason",),
    "Solved": ("resolution",),
    "Reopened": ("reason",),
    "Closed": (),
    "Cancelled": ("reason",),
    "Rated": ("score", "comment"),
}


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
    if kind in PLAIN_FIELDS:
        message_class: type[Message] = getattr(ev, PUBLIC_NAMES[kind])
        return message_class(header=header, **items_of(a, *PLAIN_FIELDS[kind]))
    match kind:
        case "Created":
            contact = a["contact"]
            return ev.TicketCreated(
                header=header,
                **items_of(a, "requester", "category", "subject", "description", "priority"),
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
        case "CommentAdded":
            return ev.CommentAdded(
                header=header,
                author=a["actor"],
                **items_of(a, "by_requester", "body", "internal"),
                evidence=_attachments(a),
            )
    raise ValueError(f"no public event for {kind}")


# The relay's translation: `Translator(status_of)`, where `status_of(event)` is
# the status right after it.
Translator = case_translator("tickets", PUBLIC_NAMES, public_message)

"""Plain read views of tickets and their history, as the API returns them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.fields import fields_of
from casemesh.platform.history import EventEntry, entry_basics
from casemesh.platform.identity import Identity
from casemesh_tickets.domain import Status, Ticket, reads_notes

# What the requester wrote, under the same names on the ticket, its view, the
# API's messages and a new ticket's request.
REQUEST_TEXTS = ("category", "subject", "description", "locale")


@dataclass(frozen=True)
class TicketView:
    id: str
    requester: str
    category: str
    subject: str
    description: str
    locale: str
    contact: dict[str, Any]
    status: str
    priority: int
    assignee: str
    resolution: str
    rating: dict[str, Any] | None
    create_time: datetime
    update_time: datetime
    version: int
    evidence: list[dict[str, str]] = field(default_factory=list)
    # The version and update time its requester is shown: without the agents'
    # internal notes (`Ticket.shown_version`; rows indexed before: none).
    shown_version: int = 0
    shown_time: datetime | None = None

    @classmethod
    def of(cls, t: Ticket) -> TicketView:
        return cls(
            **fields_of(t, *REQUEST_TEXTS, "requester", "assignee", "resolution", "rating"),
            id=str(t.id),
            contact=dict(t.contact),
            status=Status(t.status).value,
            priority=int(t.priority),
            create_time=t.created_on,
            update_time=t.modified_on,
            version=t.version,
            evidence=list(t.evidence),
            shown_version=t.shown_version,
            shown_time=t.shown_on,
        )

    def seen_by(self, who: Identity) -> TicketView:
        """The view as `who` is shown it: to its requester (an agent too, on
        a ticket of their own), as if the internal notes were not there, so
        that neither its etag nor its update time tells that one was
        written, or when."""
        if reads_notes(who.subject, who.is_agent, self.requester):
            return self
        return replace(
            self,
            version=self.shown_version or self.version,
            update_time=self.shown_time or self.update_time,
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("create_time", "update_time", "shown_time"):
            d[name] = d[name] and d[name].isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TicketView:
        """The view an index row holds. Fields this release does not know are
        left out: a newer release's rows are listed, during its rollout, by
        the replicas still running this one."""
        times = {
            name: datetime.fromisoformat(d[name])
            for name in ("create_time", "update_time", "shown_time")
            if d.get(name)
        }
        known = {k: v for k, v in d.items() if k in _FIELDS}
        return cls(**{**known, **times})


_FIELDS = frozenset(f.name for f in fields(TicketView))


@dataclass(frozen=True)
class HistoryEntry(EventEntry):
    status: str
    text: str = ""
    internal: bool = False
    assignee: str = ""
    score: int = 0
    evidence: list[dict[str, str]] = field(default_factory=list)


# Stored event class → the name shown in history and used on the topic.
PUBLIC_NAMES: dict[type[Any], str] = {
    Ticket.Created: "TicketCreated",
    Ticket.Assigned: "TicketAssigned",
    Ticket.CommentAdded: "CommentAdded",
    Ticket.InfoRequested: "InfoRequested",
    Ticket.PutOnHold: "TicketPutOnHold",
    Ticket.Solved: "TicketSolved",
    Ticket.Reopened: "TicketReopened",
    Ticket.Closed: "TicketClosed",
    Ticket.Cancelled: "TicketCancelled",
    Ticket.Rated: "TicketRated",
    ExpiringCase.Expired: "TicketExpired",
}

TEXT_FIELD: dict[type[Any], str] = {
    Ticket.Created: "description",
    Ticket.CommentAdded: "body",
    Ticket.InfoRequested: "message",
    Ticket.PutOnHold: "reason",
    Ticket.Solved: "resolution",
    Ticket.Reopened: "reason",
    Ticket.Cancelled: "reason",
    Ticket.Rated: "comment",
}


def history_entry(domain_event: Any, after: Ticket) -> HistoryEntry:
    attrs = vars(domain_event)
    return HistoryEntry(
        **entry_basics(domain_event, PUBLIC_NAMES, creator="requester"),
        status=Status(after.status).value,
        text=str(attrs.get(TEXT_FIELD.get(type(domain_event), ""), "")),
        internal=bool(attrs.get("internal", False)),
        assignee=str(attrs.get("assignee", "")),
        score=int(attrs.get("score", 0)),
        evidence=list(attrs.get("evidence", [])),
    )

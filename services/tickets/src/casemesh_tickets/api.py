"""gRPC entry point of the tickets service: decode, call one application
method (in a worker thread: the event store is synchronous), encode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import grpc

from casemesh.platform.callers import the_ticket_named
from casemesh.platform.caseindex import Page
from casemesh.platform.errors import Violations
from casemesh.platform.fields import fields_of
from casemesh.platform.grpcutil import ApplicationServicer, enum_filter, enum_name, to_timestamp
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as validation
from casemesh.rules.tickets import CATEGORIES
from casemesh.v1 import evidence_pb2
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from casemesh_tickets.application import NewTicket, Tickets, TicketSearch
from casemesh_tickets.views import REQUEST_TEXTS, HistoryEntry, TicketView

Ctx: TypeAlias = grpc.aio.ServicerContext


def ticket_message(view: TicketView, who: Identity) -> pb.Ticket:
    """The ticket as `who` is shown it: its requester (an agent too, on a
    ticket of their own) without what the agents' internal notes changed
    (`TicketView.seen_by`)."""
    view = view.seen_by(who)
    contact = view.contact
    msg = pb.Ticket(
        **fields_of(view, *REQUEST_TEXTS, "assignee", "requester", "resolution"),
        name=f"tickets/{view.id}",
        contact=pb.Contact(
            email=contact.get("email", ""),
            phone=contact.get("phone", ""),
            channels=[pb.Channel.Value(f"CHANNEL_{c}") for c in contact.get("channels", [])],
        ),
        status=pb.TicketStatus.Value(f"TICKET_STATUS_{view.status}"),
        priority=view.priority,  # type: ignore[arg-type]
        create_time=to_timestamp(view.create_time),
        update_time=to_timestamp(view.update_time),
        etag=str(view.version),
        evidence=evidence_refs(view.evidence),
    )
    if view.rating:
        msg.rating.score = view.rating["score"]
        msg.rating.comment = view.rating["comment"]
        msg.rating.rate_time.FromDatetime(view.update_time)
    return msg


def history_message(e: HistoryEntry) -> pb.TicketEvent:
    return pb.TicketEvent(
        **fields_of(e, "sequence", "type", "actor", "text", "internal", "assignee", "score"),
        time=to_timestamp(e.time),
        status=pb.TicketStatus.Value(f"TICKET_STATUS_{e.status}"),
        evidence=evidence_refs(e.evidence),
    )


def evidence_refs(evidence: list[dict[str, str]]) -> list[evidence_pb2.EvidenceRef]:
    return [evidence_pb2.EvidenceRef(name=e["name"], sha256=e["sha256"]) for e in evidence]


def evidence_dicts(refs: Any) -> list[dict[str, str]]:
    return [{"name": r.name, "sha256": r.sha256} for r in refs]


def contact_dict(contact: pb.Contact) -> dict[str, Any]:
    return {
        "email": contact.email.strip(),
        "phone": validation.normal_phone(contact.phone),
        "channels": [
            enum_name(pb.Channel, c, "ticket.contact.channels", "CHANNEL_")
            for c in contact.channels
        ],
    }


def new_ticket(request: pb.CreateTicketRequest) -> NewTicket:
    t = request.ticket
    return NewTicket(
        **fields_of(t, *REQUEST_TEXTS),
        request_id=request.request_id,
        contact=contact_dict(t.contact),
        evidence=evidence_dicts(t.evidence),
    )


def _id(name: str) -> str:
    v = Violations()
    ticket_id = validation.ticket_id_from_name(v, name)
    v.raise_if_any()
    return ticket_id


class TicketServicer(ApplicationServicer, pb_grpc.TicketServiceServicer):
    def __init__(self, app: Tickets) -> None:
        self.app = app

    async def _ticket(self, fn: Callable[..., TicketView], context: Ctx, *args: Any) -> pb.Ticket:
        """The ticket `fn(caller, *args)` gives, as the caller is shown it."""
        who = self._who(context)
        return ticket_message(await self._call(fn, who, *args), who)

    async def CreateTicket(self, request: pb.CreateTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(self.app.create_ticket, context, new_ticket(request))

    async def GetTicket(self, request: pb.GetTicketRequest, context: Ctx) -> pb.Ticket:
        the_ticket_named(request.name)
        return await self._ticket(self.app.get_ticket, context, _id(request.name))

    async def ListTickets(
        self, request: pb.ListTicketsRequest, context: Ctx
    ) -> pb.ListTicketsResponse:
        who = self._who(context)
        page = await self._call(
            self.app.list_tickets,
            who,
            _statuses(request.statuses),
            request.page_size,
            request.page_token,
        )
        return _listed(page, who)

    async def SearchTickets(
        self, request: pb.SearchTicketsRequest, context: Ctx
    ) -> pb.ListTicketsResponse:
        search = TicketSearch(
            requester=request.requester.strip(),
            category=request.category.strip(),
            statuses=_statuses(request.statuses),
            assignee=request.assignee.strip(),
            text=request.text,
        )
        who = self._who(context)
        page = await self._call(
            self.app.search_tickets,
            who,
            search,
            request.page_size,
            request.page_token,
        )
        return _listed(page, who)

    async def AddComment(self, request: pb.AddCommentRequest, context: Ctx) -> pb.Ticket:
        the_ticket_named(request.name)
        return await self._ticket(
            self.app.add_comment,
            context,
            _id(request.name),
            request.body,
            request.internal,
            request.etag,
            evidence_dicts(request.evidence),
            request.request_id,
        )

    async def AssignTicket(self, request: pb.AssignTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.assign,
            context,
            _id(request.name),
            request.assignee,
            request.priority or None,
            request.etag,
            request.request_id,
        )

    async def RequestInfo(self, request: pb.RequestInfoRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.request_info,
            context,
            _id(request.name),
            request.message,
            request.etag,
            request.request_id,
        )

    async def HoldTicket(self, request: pb.HoldTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.put_on_hold,
            context,
            _id(request.name),
            request.reason,
            request.etag,
            request.request_id,
        )

    async def SolveTicket(self, request: pb.SolveTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.solve,
            context,
            _id(request.name),
            request.resolution,
            request.etag,
            request.request_id,
        )

    async def ReopenTicket(self, request: pb.ReopenTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.reopen,
            context,
            _id(request.name),
            request.reason,
            request.etag,
            request.request_id,
        )

    async def CloseTicket(self, request: pb.CloseTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.close_ticket,
            context,
            _id(request.name),
            request.etag,
            request.request_id,
        )

    async def CancelTicket(self, request: pb.CancelTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.cancel,
            context,
            _id(request.name),
            request.reason,
            request.etag,
            request.request_id,
        )

    async def RateTicket(self, request: pb.RateTicketRequest, context: Ctx) -> pb.Ticket:
        return await self._ticket(
            self.app.rate,
            context,
            _id(request.name),
            request.score,
            request.comment,
            request.request_id,
        )

    async def ListTicketEvents(
        self, request: pb.ListTicketEventsRequest, context: Ctx
    ) -> pb.ListTicketEventsResponse:
        page = await self._call(
            self.app.history,
            self._who(context),
            _id(request.name),
            request.page_size,
            request.page_token,
        )
        return pb.ListTicketEventsResponse(
            events=[history_message(e) for e in page.items], next_page_token=page.next_token
        )

    async def ListTicketCategories(
        self, request: pb.ListTicketCategoriesRequest, context: Ctx
    ) -> pb.ListTicketCategoriesResponse:
        return categories_message()


def categories_message() -> pb.ListTicketCategoriesResponse:
    return pb.ListTicketCategoriesResponse(
        categories=[
            pb.TicketCategory(
                id=c.id,
                labels=c.labels,
                default_priority=int(c.default_priority),  # type: ignore[arg-type]
            )
            for c in CATEGORIES
        ]
    )


def _statuses(values: Sequence[int]) -> list[str]:
    return enum_filter(pb.TicketStatus, values, "statuses", "TICKET_STATUS_")


def _listed(page: Page[TicketView], who: Identity) -> pb.ListTicketsResponse:
    return pb.ListTicketsResponse(
        tickets=[ticket_message(v, who) for v in page.items], next_page_token=page.next_token
    )

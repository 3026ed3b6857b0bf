"""The public TicketService: every call is authenticated, authorised,
validated and rate-limited here, then routed to the tickets service with the
verified identity, the caller's trace context and a deadline."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from casemesh.platform.errors import PermissionDenied, ResourceExhausted, Violations
from casemesh.platform.identity import Identity, TokenVerifier
from casemesh.platform.logging import get_logger
from casemesh.platform.telemetry import inject_metadata
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from casemesh_gateway import checks
from casemesh_gateway.ratelimit import RateLimiter

log = get_logger(__name__)

Ctx: TypeAlias = grpc.aio.ServicerContext

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Backend:
    def __init__(self, *, verifier: TokenVerifier, limiter: RateLimiter, timeout: float) -> None:
        self.verifier = verifier
        self.limiter = limiter
        self.timeout = timeout

    def identity(self, context: Ctx) -> Identity:
        metadata = dict(context.invocation_metadata() or ())
        auth = metadata.get("authorization")
        who = self.verifier.verify(auth if isinstance(auth, str) else None)
        wait = self.limiter.allow(who.subject)
        if wait:
            raise ResourceExhausted(f"too many requests; retry in {wait:.1f} s")
        return who

    async def forward(self, method: Any, request: Any, who: Identity, context: Ctx) -> Any:
        remaining = context.time_remaining()
        timeout = min(self.timeout, remaining) if remaining else self.timeout
        try:
            return await method(
                request, metadata=(*who.to_metadata(), *inject_metadata()), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                log.warning("backend.unavailable", code=code.name, details=err.details())
            # The service's status, with its google.rpc details, is the caller's answer.
            details = tuple(
                (k, v) for k, v in (err.trailing_metadata() or ()) if k == STATUS_DETAILS_KEY
            )
            await context.abort(code, err.details() or "", details)
            raise  # unreachable: abort raises


def route(method_name: str, *, agent_only: bool = False, check: checks.Check = checks.named) -> Any:
    async def handler(self: TicketGateway, request: Any, context: Ctx) -> Any:
        who = self.backend.identity(context)
        if agent_only and not who.is_agent:
            raise PermissionDenied(f"{method_name} needs the agent role")
        v = Violations()
        check(request, v)
        v.raise_if_any()
        return await self.backend.forward(getattr(self.stub, method_name), request, who, context)

    handler.__name__ = method_name
    return handler


class TicketGateway(pb_grpc.TicketServiceServicer):
    def __init__(self, backend: Backend, channel: grpc.aio.Channel) -> None:
        self.backend = backend
        self.stub = pb_grpc.TicketServiceStub(channel)

    CreateTicket = route("CreateTicket", check=checks.create_ticket)
    GetTicket = route("GetTicket", check=checks.name)
    ListTickets = route("ListTickets", check=checks.all_of(checks.page(100), checks.statuses))
    AddComment = route("AddComment", check=checks.all_of(checks.named, checks.text("body")))
    AssignTicket = route(
        "AssignTicket", agent_only=True, check=checks.all_of(checks.named, checks.assignee)
    )
    RequestInfo = route(
        "RequestInfo", agent_only=True, check=checks.all_of(checks.named, checks.text("message"))
    )
    HoldTicket = route(
        "HoldTicket",
        agent_only=True,
        check=checks.all_of(checks.named, checks.text("reason", required=False)),
    )
    SolveTicket = route(
        "SolveTicket",
        agent_only=True,
        check=checks.all_of(checks.named, checks.text("resolution")),
    )
    ReopenTicket = route(
        "ReopenTicket", check=checks.all_of(checks.named, checks.text("reason", required=False))
    )
    CloseTicket = route("CloseTicket")
    CancelTicket = route(
        "CancelTicket", check=checks.all_of(checks.named, checks.text("reason", required=False))
    )
    RateTicket = route(
        "RateTicket",
        check=checks.all_of(checks.name, checks.rating, checks.text("comment", required=False)),
    )
    ListTicketEvents = route("ListTicketEvents", check=checks.all_of(checks.name, checks.page(200)))
    ListTicketCategories = route("ListTicketCategories", check=lambda r, v: None)

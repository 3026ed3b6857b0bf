"""Who is behind a call a service serves: checked before its handler runs,
from the token the gateway signed for this service (see `identity`), and
handed to the handler. A call without a valid token, whatever headers it
carries, gets UNAUTHENTICATED before any handler sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

import grpc

from casemesh.platform.errors import PermissionDenied, Unauthenticated
from casemesh.platform.identity import InternalTokenVerifier, Vouched

# Inbound mail's key is believed for less than the gateway's: it speaks for a
# ticket's requester (as a user, never an agent or admin) only to add a reply
# and upload its attachments, and, as this reader, reads the ticket a reply is
# for, and nothing else. A broken-into inbound service cannot search, read,
# cancel, close or open anything in anyone's name.
# Each of its calls to tickets names the one ticket it acts on (the fact
# `ticket`, checked by the service against the request: `the_ticket_named`):
# a token of its, read off the wire, serves for that ticket alone. (Its key
# itself, stolen, signs for any ticket.)
INBOUND_READER = "inbound-mail"
INBOUND_READS = frozenset({"/casemesh.v1.TicketService/GetTicket"})
INBOUND_REPLIES = frozenset(
    {"/casemesh.v1.TicketService/AddComment", "/casemesh.v1.EvidenceService/UploadEvidence"}
)
INBOUND_ON_A_TICKET = INBOUND_READS | {"/casemesh.v1.TicketService/AddComment"}

# Each call runs in its own task, so what is set here stays with its call.
_VOUCHED: ContextVar[Vouched | None] = ContextVar("casemesh_vouched", default=None)


def vouched() -> Vouched:
    """What the gateway vouched for on the call being handled."""
    found = _VOUCHED.get()
    if found is None:
        raise Unauthenticated("the call carries no identity vouched for by the gateway")
    return found


@runtime_checkable
class BehindGateway(Protocol):
    """Settings of a service only the gateway calls (`InternalServiceSettings`),
    and, where it is given a key, the inbound mail service."""

    internal_verify_key: str
    inbound_verify_key: str


Check = Callable[[grpc.aio.ServicerContext], Vouched]


def _unary_response(behaviour: Any, check: Check) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _VOUCHED.set(check(context))
        return await behaviour(request, context)

    return wrapped


def _stream_response(behaviour: Any, check: Check) -> Any:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _VOUCHED.set(check(context))
        async for response in behaviour(request, context):
            yield response

    return wrapped


class VouchedCalls(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Every call but health checks and reflection must carry the gateway's
    token for one of `audiences` (the gRPC services this server serves)."""

    def __init__(self, verifier: InternalTokenVerifier) -> None:
        self._verifier = verifier

    @classmethod
    def of(cls, cfg: BehindGateway, audiences: Sequence[str]) -> VouchedCalls:
        return cls(
            InternalTokenVerifier(
                cfg.internal_verify_key, audiences, narrow_keys=cfg.inbound_verify_key
            )
        )

    def _check(self, context: grpc.aio.ServicerContext, method: str) -> Vouched:
        found = self._verifier.verify(context.invocation_metadata())
        if found.narrow and method in INBOUND_ON_A_TICKET and not found.facts.get("ticket"):
            # An inbound service of a release before tickets were named: its
            # mail is told to come back later (a deployment to finish).
            raise Unauthenticated(f"inbound mail's token for {method} names no ticket")
        if found.narrow and not _inbound_may(found, method):
            raise PermissionDenied(f"inbound mail's key does not vouch for {method}")
        return found

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith("/grpc."):
            return handler
        method = handler_call_details.method
        for kind, make, wrap in _KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return make(
                    wrap(behaviour, lambda context: self._check(context, method)),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


# Each kind of handler, how to make one, and how to wrap its behaviour.
_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, _unary_response),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, _unary_response),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, _stream_response),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, _stream_response),
)


def _inbound_may(found: Vouched, method: str) -> bool:
    """What a caller vouched for by inbound mail's key may do (see INBOUND_READER)."""
    who = found.identity
    if who.subject == INBOUND_READER:
        return who.roles == frozenset({"agent"}) and method in INBOUND_READS
    return who.roles == frozenset({"user"}) and method in INBOUND_REPLIES


def the_ticket_named(name: str) -> None:
    """Refuses a call vouched for by inbound mail's key that acts on another
    ticket than the one its token names (a token replayed, or a mistake of
    inbound's, reaches no other ticket)."""
    found = vouched()
    if found.narrow and found.facts.get("ticket") != name:
        raise PermissionDenied(f"inbound mail's token does not name {name}")

"""Who is behind a call a service serves: checked before its handler runs,
from the token the gateway signed for this service (see `identity`), and
handed to the handler. A call without a valid token, whatever headers it
carries, gets UNAUTHENTICATED before any handler sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

import grpc

from casemesh.platform.errors import Unauthenticated
from casemesh.platform.identity import InternalTokenVerifier, Vouched

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
        keys = f"{cfg.internal_verify_key}\n{cfg.inbound_verify_key}"
        return cls(InternalTokenVerifier(keys, audiences))

    def _check(self, context: grpc.aio.ServicerContext) -> Vouched:
        return self._verifier.verify(context.invocation_metadata())

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith("/grpc."):
            return handler
        for kind, make, wrap in _KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return make(
                    wrap(behaviour, self._check),
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

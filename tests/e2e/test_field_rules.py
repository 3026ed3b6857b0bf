"""The field rules written in the protos reach the client through the gateway:
the same bad CreateTicket gets the same google.rpc.BadRequest it always got, and
a request breaking any annotated rule is refused INVALID_ARGUMENT naming the
field, before any service sees it."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_status import rpc_status

from casemesh.platform.grpcutil import field_violations
from casemesh.platform.identity import mint_token
from tests.conftest import Stack
from tests.e2e.test_rejections import stored_events
from tests.field_rules import BAD_TICKET, BAD_TICKET_VIOLATIONS, CASES, PUBLIC


def refusal(stack: Stack, request: Message) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    """Sends a request to the method that takes it, as someone with every role
    (so no role check answers first); the status and the field violations."""
    method = next(
        m
        for module in PUBLIC
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
        if m.input_type.full_name == request.DESCRIPTOR.full_name
    )
    token = mint_token(stack.secret, f"rules-{uuid.uuid4().hex[:8]}", ("user", "agent", "admin"))
    with grpc.insecure_channel(stack.gateway) as channel:
        call = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=GetMessageClass(method.output_type).FromString,
        )
        try:
            call(request, metadata=[("authorization", f"Bearer {token}")], timeout=15)
        except grpc.RpcError as err:
            status = rpc_status.from_call(err)
            named = field_violations(status) if status else []
            return err.code(), named
    return grpc.StatusCode.OK, []


def test_the_same_bad_ticket_gets_the_same_field_violations(stack: Stack) -> None:
    before = stored_events(stack)
    code, named = refusal(stack, BAD_TICKET)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(named) == sorted(BAD_TICKET_VIOLATIONS)
    assert stored_events(stack) == before


def test_every_annotated_rule_reaches_the_client(stack: Stack) -> None:
    missed = []
    for request, path in CASES:
        code, named = refusal(stack, request)
        if code != grpc.StatusCode.INVALID_ARGUMENT or path not in [f for f, _ in named]:
            missed.append((type(request).__name__, path, code, named))
    assert missed == []

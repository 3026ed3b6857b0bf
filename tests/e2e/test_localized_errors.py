"""A front end shows a refused call's words to a person as they are sent, in the
language the caller reads (google.rpc.LocalizedMessage, from `accept-language`):
the gateway's own refusals, a service's refusals (the gateway passes the
language on), over gRPC and over Connect alike."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from casemesh.platform.grpcutil import STATUS_DETAILS_KEY
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.test_rejections import ticket
from tests.e2e.test_web_api import TICKETS, bearer, new_ticket
from tests.support import Client

CHINESE = "zh-CN,zh;q=0.9,en;q=0.8"


def said_over_grpc(err: Any) -> tuple[str, str]:
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())[STATUS_DETAILS_KEY])
    return said(list(status.details))


def said(details: list[Any]) -> tuple[str, str]:
    for detail in details:
        if detail.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR):
            message = error_details_pb2.LocalizedMessage()
            detail.Unpack(message)
            return message.locale, message.message
    raise AssertionError("no LocalizedMessage among the details")


@pytest.fixture()
def reader(stack: Stack) -> Any:
    client = Client(stack.gateway, stack.secret, "localized-mei")
    client.metadata.append(("accept-language", CHINESE))
    yield client
    client.close()


def test_the_gateways_and_the_services_refusals_are_said_in_the_callers_language(
    stack: Stack, reader: Client
) -> None:
    with pytest.raises(grpc.RpcError) as bad:  # refused by the gateway's checks
        reader.CreateTicket(pb.CreateTicketRequest(ticket=pb.Ticket(subject="")))
    assert said_over_grpc(bad.value) == ("zh-CN", "有内容需要修改，请检查后重试。")

    made = reader.CreateTicket(pb.CreateTicketRequest(ticket=ticket(), request_id="localized-1"))
    reader.CancelTicket(pb.CancelTicketRequest(name=made.name, reason="自己解决了"))
    with pytest.raises(grpc.RpcError) as final:  # refused by the tickets service
        reader.AddComment(pb.AddCommentRequest(name=made.name, body="还在吗"))
    assert final.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert said_over_grpc(final.value) == ("zh-CN", "这个工单已结束，请新建工单。")

    reader.metadata[-1] = ("accept-language", "en-GB,en;q=0.9")
    with pytest.raises(grpc.RpcError) as english:
        reader.AddComment(pb.AddCommentRequest(name=made.name, body="still there?"))
    assert said_over_grpc(english.value) == ("en", english.value.details())


def test_over_connect_the_browsers_accept_language_chooses_the_words(stack: Stack) -> None:
    answer = httpx.post(
        f"{stack.http}{TICKETS}/CreateTicket",
        json=new_ticket(subject=""),
        headers={**bearer(stack, "localized-web"), "Accept-Language": CHINESE},
        timeout=15,
    )
    assert answer.status_code == 400
    details = [
        _any(d["type"], d["value"])
        for d in answer.json()["details"]
        if d["type"].startswith("google")
    ]
    assert said(details) == ("zh-CN", "有内容需要修改，请检查后重试。")


def _any(type_name: str, value: str) -> any_pb2.Any:
    return any_pb2.Any(
        type_url=f"type.googleapis.com/{type_name}",
        value=base64.b64decode(value + "=" * (-len(value) % 4)),
    )

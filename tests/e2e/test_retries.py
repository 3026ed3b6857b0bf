"""A change sent again through the gateway under its request id, as a client
does when the first answer was lost: recorded once, answered the same."""

from __future__ import annotations

import uuid

import grpc
import pytest

from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.support import Client, error_info


def refused(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request)  # type: ignore[operator]
    return info.value


def test_a_comment_retried_under_its_request_id_is_added_once(stack: Stack) -> None:
    alice = Client(stack.gateway, stack.secret, f"user-{uuid.uuid4().hex[:8]}")
    ticket = alice.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject="收不到验证码",
                description="换了手机号以后收不到验证码。",
                locale="zh-CN",
                contact=pb.Contact(email="alice@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id=uuid.uuid4().hex,
        )
    )
    comment = pb.AddCommentRequest(
        name=ticket.name, body="新号码是 139****1111", etag=ticket.etag, request_id="comment-1"
    )
    first = alice.AddComment(comment)
    again = alice.AddComment(comment)  # the same etag: the retry is not taken as stale
    assert again == first

    events = alice.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [e.type for e in events] == ["TicketCreated", "CommentAdded"]

    other = pb.AddCommentRequest(name=ticket.name, body="另一条", request_id="comment-1")
    err = refused(alice.AddComment, other)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "request_id 'comment-1'" in (err.details() or "")
    assert error_info(err).reason == "REQUEST_ID_REUSED"

    malformed = pb.AddCommentRequest(name=ticket.name, body="x", request_id="no spaces")
    err = refused(alice.AddComment, malformed)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in (err.details() or "")


def test_a_solve_and_a_close_retried_under_their_request_ids_are_made_once(stack: Stack) -> None:
    alice = Client(stack.gateway, stack.secret, f"user-{uuid.uuid4().hex[:8]}")
    agent = Client(stack.gateway, stack.secret, "agent-li", ("agent",))
    ticket = alice.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject="忘记密码",
                description="邮箱也收不到重置邮件。",
                locale="zh-CN",
                contact=pb.Contact(email="alice@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id=uuid.uuid4().hex,
        )
    )
    solve = pb.SolveTicketRequest(
        name=ticket.name, resolution="已重置。", etag=ticket.etag, request_id="solve-1"
    )
    solved = agent.SolveTicket(solve)
    # Sent again as it was: not refused as stale, nor as solving a solved ticket.
    assert agent.SolveTicket(solve) == solved
    close = pb.CloseTicketRequest(name=ticket.name, etag=solved.etag, request_id="close-1")
    closed = alice.CloseTicket(close)
    assert alice.CloseTicket(close) == closed

    events = alice.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [e.type for e in events] == ["TicketCreated", "TicketSolved", "TicketClosed"]

    err = refused(agent.CancelTicket, pb.CancelTicketRequest(name=ticket.name, request_id="a b"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # the gateway's field rule
    err = refused(
        alice.ReopenTicket, pb.ReopenTicketRequest(name=ticket.name, request_id="close-1")
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

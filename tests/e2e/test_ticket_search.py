"""Agents find tickets by requester, category, status, assignee and words."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.support import Client


def open_ticket(user: Client, category: str, subject: str, description: str) -> pb.Ticket:
    ticket: pb.Ticket = user.CreateTicket(
        pb.CreateTicketRequest(
            request_id=uuid.uuid4().hex,
            ticket=pb.Ticket(
                category=category,
                subject=subject,
                description=description,
                locale="zh-CN",
                contact=pb.Contact(email="search@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
        )
    )
    return ticket


def names(found: pb.ListTicketsResponse) -> list[str]:
    return [t.name for t in found.tickets]


def test_an_agent_finds_tickets_by_each_filter_and_a_user_cannot_search(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    mei = Client(stack.gateway, stack.secret, f"mei-{run}")
    tao = Client(stack.gateway, stack.secret, f"tao-{run}")
    agent = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    try:
        login = open_ticket(mei, "account.login", f"换手机后无法登录 {run}", "收不到验证码")
        upload = open_ticket(
            mei, "content.upload_failed", f"上传失败 {run}", f"进度条卡在 99%_完成 {run}"
        )
        other = open_ticket(tao, "account.login", f"password reset {run}", "NO CODE ARRIVES")
        agent.AssignTicket(pb.AssignTicketRequest(name=other.name, etag=other.etag))

        def search(**filters: Any) -> list[str]:
            return names(agent.SearchTickets(pb.SearchTicketsRequest(page_size=100, **filters)))

        assert search(requester=f"mei-{run}") == [upload.name, login.name]  # newest first
        assert search(requester=f"mei-{run}", category="account.login") == [login.name]
        assert search(text=f"无法登录 {run}") == [login.name]
        assert search(text=f"RESET {run}") == [other.name]  # case-insensitive
        assert search(text=f"99%_完成 {run}") == [upload.name]  # % and _ are plain characters
        assert search(text=f"99%% {run}") == []
        assert search(text=f"{run} 无法登录") == [login.name]  # each word, in any order
        assert search(assignee=f"agent-{run}") == [other.name]
        assert other.name not in search(requester=f"tao-{run}", statuses=[pb.TICKET_STATUS_NEW])
        # Pages: one at a time, every ticket once.
        first = agent.SearchTickets(pb.SearchTicketsRequest(requester=f"mei-{run}", page_size=1))
        second = agent.SearchTickets(
            pb.SearchTicketsRequest(
                requester=f"mei-{run}", page_size=1, page_token=first.next_page_token
            )
        )
        assert names(first) + names(second) == [upload.name, login.name]

        with pytest.raises(grpc.RpcError) as refused:
            mei.SearchTickets(pb.SearchTicketsRequest(requester=f"tao-{run}"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as bad:
            agent.SearchTickets(pb.SearchTicketsRequest(category="no.such"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        for client in (mei, tao, agent):
            client.close()

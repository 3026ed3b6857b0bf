"""A ticket's whole journey through the gateway only, with mail and SMS going to
endpoints that are not Casemesh's own."""

from __future__ import annotations

import time
import uuid

from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.support import Client, plain_text, wait_until


def new_ticket(email: str, phone: str, locale: str = "zh-CN") -> pb.Ticket:
    return pb.Ticket(
        category="account.login",
        subject="手机号换了，登录不了",
        description="我换了手机号，收不到验证码，无法登录账号。",
        locale=locale,
        contact=pb.Contact(email=email, phone=phone, channels=[pb.CHANNEL_EMAIL, pb.CHANNEL_SMS]),
    )


def test_requester_hears_about_each_step_once_in_chinese(stack: Stack) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    email, phone = f"{user}@example.com", f"+86138{uuid.uuid4().int % 10**8:08d}"
    alice = Client(stack.gateway, stack.secret, user)
    agent = Client(stack.gateway, stack.secret, "agent-li", ("agent",))

    ticket = alice.CreateTicket(
        pb.CreateTicketRequest(ticket=new_ticket(email, phone), request_id=uuid.uuid4().hex)
    )
    assert ticket.status == pb.TICKET_STATUS_NEW
    assert ticket.requester == user
    assert ticket.priority == pb.PRIORITY_HIGH  # account.login is urgent for users
    wait_until(lambda: len(stack.mail.to(email)) == 1 and len(stack.sms.to(phone)) == 1)

    agent.RequestInfo(
        pb.RequestInfoRequest(name=ticket.name, message="请提供您注册时使用的旧手机号。")
    )
    wait_until(lambda: len(stack.mail.to(email)) == 2 and len(stack.sms.to(phone)) == 2)

    after_reply = alice.AddComment(
        pb.AddCommentRequest(name=ticket.name, body="旧号码是 138****0000")
    )
    assert after_reply.status == pb.TICKET_STATUS_OPEN

    solved = agent.SolveTicket(
        pb.SolveTicketRequest(
            name=ticket.name, resolution="已为您更换绑定手机号，请使用新号码登录。"
        )
    )
    assert solved.status == pb.TICKET_STATUS_SOLVED
    wait_until(lambda: len(stack.mail.to(email)) == 3 and len(stack.sms.to(phone)) == 3)
    time.sleep(2.0)  # anything sent twice would arrive by now

    mails = stack.mail.to(email)
    texts = stack.sms.to(phone)
    assert len(mails) == 3 and len(texts) == 3
    assert [
        "工单已受理" in mails[0]["Subject"],
        "需要您补充信息" in mails[1]["Subject"],
        "问题已解决" in mails[2]["Subject"],
    ] == [True, True, True]
    # Each e-mail: text and an HTML alternative.
    assert all(m.get_content_type() == "multipart/alternative" for m in mails)
    assert all(m.get_body(("html",)) is not None for m in mails)
    assert "请提供您注册时使用的旧手机号" in plain_text(mails[1])
    assert "已为您更换绑定手机号" in plain_text(mails[2])
    assert [t["template_id"] for t in texts] == [
        "ticket.received",
        "ticket.info_requested",
        "ticket.solved",
    ]
    assert all(t["text"].startswith("【Casemesh】") for t in texts)
    assert len({t["idempotency_key"] for t in texts}) == 3

    assert alice.GetTicket(pb.GetTicketRequest(name=ticket.name)).status == pb.TICKET_STATUS_SOLVED
    history = alice.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [(e.type, e.status) for e in history] == [
        ("TicketCreated", pb.TICKET_STATUS_NEW),
        ("InfoRequested", pb.TICKET_STATUS_PENDING),
        ("CommentAdded", pb.TICKET_STATUS_OPEN),
        ("TicketSolved", pb.TICKET_STATUS_SOLVED),
    ]
    assert [e.sequence for e in history] == [1, 2, 3, 4]


def test_english_ticket_with_email_only_gets_english_mail_and_no_sms(stack: Stack) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    email = f"{user}@example.com"
    bob = Client(stack.gateway, stack.secret, user)
    ticket = pb.Ticket(
        category="content.upload_failed",
        subject="Upload stuck at 99%",
        description="My video upload never finishes.",
        locale="en",
        contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
    )
    created = bob.CreateTicket(pb.CreateTicketRequest(ticket=ticket, request_id="upload-1"))
    mail = wait_until(lambda: stack.mail.to(email))[0]
    assert mail["Subject"].startswith("We received your ticket")
    assert "Upload stuck at 99%" in mail["Subject"]
    assert created.name.split("/")[1][:8].upper() in mail["Subject"]


def test_internal_notes_are_hidden_from_the_requester_and_not_sent(stack: Stack) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    email = f"{user}@example.com"
    carol = Client(stack.gateway, stack.secret, user)
    agent = Client(stack.gateway, stack.secret, "agent-wang", ("agent",))
    ticket = carol.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="ads.consulting",
                subject="广告怎么收费",
                description="想了解价格",
                locale="zh-CN",
                contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id="ads-1",
        )
    )
    agent.AddComment(pb.AddCommentRequest(name=ticket.name, body="VIP customer", internal=True))
    agent.AddComment(pb.AddCommentRequest(name=ticket.name, body="您好，报价单已发送。"))
    wait_until(lambda: len(stack.mail.to(email)) == 2)
    time.sleep(1.5)
    bodies = [plain_text(m) for m in stack.mail.to(email)]
    assert len(bodies) == 2
    assert not any("VIP customer" in b for b in bodies)
    assert "报价单已发送" in bodies[1]

    seen_by_user = carol.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    seen_by_agent = agent.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [e.text for e in seen_by_user if e.type == "CommentAdded"] == ["您好，报价单已发送。"]
    assert [e.internal for e in seen_by_agent if e.type == "CommentAdded"] == [True, False]


def test_a_solved_ticket_left_alone_closes_by_itself_once(stack: Stack) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    email = f"{user}@example.com"
    alice = Client(stack.gateway, stack.secret, user)
    agent = Client(stack.gateway, stack.secret, "agent-li", ("agent",))
    ticket = alice.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject="登录不了",
                description="收不到验证码",
                locale="en",
                contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id=uuid.uuid4().hex,
        )
    )
    agent.SolveTicket(pb.SolveTicketRequest(name=ticket.name, resolution="Fixed."))
    stack.advance_clock(95 * 3600)
    time.sleep(2)
    assert alice.GetTicket(pb.GetTicketRequest(name=ticket.name)).status == pb.TICKET_STATUS_SOLVED
    stack.advance_clock(2 * 3600)  # past the fourth day
    wait_until(
        lambda: (
            alice.GetTicket(pb.GetTicketRequest(name=ticket.name)).status == pb.TICKET_STATUS_CLOSED
        ),
        timeout=30,
    )
    history = alice.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    closed = [e for e in history if e.type == "TicketClosed"]
    assert len(closed) == 1 and closed[0].actor == "system"
    wait_until(lambda: any("closed" in m["Subject"].lower() for m in stack.mail.to(email)))
    time.sleep(2)
    assert sum("closed" in m["Subject"].lower() for m in stack.mail.to(email)) == 1

"""Replies by e-mail: a requester answers a ticket e-mail, through the inbound
SMTP endpoint, and the answer is a comment on the ticket (quoted history
stripped, the ticket back to OPEN, the attachment as evidence). A forged reply
address is refused at RCPT TO and counted; someone who is not the requester
is refused; the same message delivered twice is one comment."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from casemesh.platform.replies import reply_address
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import evidence_pb2_grpc as epb_grpc
from casemesh.v1 import tickets_pb2 as pb
from casemesh_devstack.stack import REPLY_DOMAIN, reply_token_secret
from casemesh_inbound.desk import ONLY_ATTACHMENTS
from tests.conftest import Stack
from tests.e2e.test_ticket_journey import new_ticket
from tests.support import Client, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
QUOTED = "> 请提供您注册时使用的旧手机号。"


def pending_ticket(stack: Stack) -> tuple[Client, pb.Ticket, str]:
    """A requester's ticket with an e-mail contact, an agent waiting on them."""
    user = f"mail-{uuid.uuid4().hex[:8]}"
    requester = Client(stack.gateway, stack.secret, user)
    agent = Client(stack.gateway, stack.secret, "agent-li", ("agent",))
    email = f"{user}@example.com"
    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    ticket = requester.CreateTicket(
        pb.CreateTicketRequest(ticket=new_ticket(email, phone), request_id=uuid.uuid4().hex)
    )
    pending = agent.RequestInfo(
        pb.RequestInfoRequest(name=ticket.name, message="请提供您注册时使用的旧手机号。")
    )
    assert pending.status == pb.TICKET_STATUS_PENDING
    return requester, ticket, email


def address_of(stack: Stack, ticket: pb.Ticket) -> str:
    ticket_id = ticket.name.removeprefix("tickets/")
    return reply_address(ticket_id, reply_token_secret(stack.secret), REPLY_DOMAIN)


def reply(sender: str, to: str, text: str, message_id: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Requester <{sender}>"
    msg["To"] = to
    msg["Subject"] = "Re: 需要您补充信息"
    msg["Message-ID"] = message_id or make_msgid(domain="mail.example.com")
    msg.set_content(text)
    return msg


def send(stack: Stack, msg: EmailMessage, to: str) -> None:
    with smtplib.SMTP(*stack.inbound, timeout=30) as smtp:
        smtp.send_message(msg, from_addr=str(msg["From"]), to_addrs=[to])


def refused(stack: Stack, reason: str) -> float:
    text = urllib3.request("GET", stack.metrics["inbound"], timeout=5).data.decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "casemesh_inbound_refused_total" and s.labels["reason"] == reason:
                return float(s.value)
    return 0.0


def comments(requester: Client, ticket: pb.Ticket) -> list[pb.TicketEvent]:
    events = requester.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    return [e for e in events if e.type == "CommentAdded" and e.actor == ticket.requester]


def test_a_reply_by_e_mail_is_a_comment_with_its_attachment_and_reopens_the_ticket(
    stack: Stack,
) -> None:
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    # The e-mail asking for information is answered by replying to it.
    asked = wait_until(
        lambda: [
            m for m in stack.mail.to(email) if m["X-Casemesh-Template"] == "ticket.info_requested"
        ]
    )
    assert {str(m["Reply-To"]) for m in asked} == {to}
    msg = reply(
        email,
        to,
        "旧号码是 139****0000，截图见附件。\n\n"
        "在 2026年12月3日周四 10:00，Casemesh <support@casemesh.local> 写道：\n"
        f"{QUOTED}\n",
    )
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="旧号码.png")
    send(stack, msg, to)

    seen = requester.GetTicket(pb.GetTicketRequest(name=ticket.name))
    assert seen.status == pb.TICKET_STATUS_OPEN
    [comment] = comments(requester, ticket)
    assert comment.text == "旧号码是 139****0000，截图见附件。"
    assert "写道" not in comment.text and QUOTED not in comment.text
    [attached] = comment.evidence
    evidence = epb_grpc.EvidenceServiceStub(requester._channel).GetEvidence(
        epb.GetEvidenceRequest(name=attached.name), metadata=requester.metadata, timeout=15
    )
    assert (evidence.media_type, evidence.owner, evidence.file_name) == (
        "image/png",
        ticket.requester,
        "旧号码.png",
    )

    # The sending server delivers the same message again: still one comment.
    send(stack, msg, to)
    assert len(comments(requester, ticket)) == 1


def test_a_forged_reply_address_is_refused_and_counted(stack: Stack) -> None:
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    local, _, domain = to.partition("@")
    forged = f"{local[:-4]}{'aaaa' if not local.endswith('aaaa') else 'bbbb'}@{domain}"
    before = refused(stack, "forged")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refusal:
        send(stack, reply(email, forged, "let me in"), forged)
    assert refusal.value.recipients[forged][0] == 550
    assert refused(stack, "forged") == before + 1
    # Another ticket's token on this ticket's id is no better.
    _, other, _ = pending_ticket(stack)
    mac = address_of(stack, other).partition("@")[0].rpartition(".")[2]
    borrowed = f"{local.rpartition('.')[0]}.{mac}@{domain}"
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(stack, reply(email, borrowed, "let me in"), borrowed)
    assert requester.GetTicket(pb.GetTicketRequest(name=ticket.name)).status == (
        pb.TICKET_STATUS_PENDING
    )
    assert comments(requester, ticket) == []


def test_only_the_requester_may_reply(stack: Stack) -> None:
    requester, ticket, _ = pending_ticket(stack)
    to = address_of(stack, ticket)
    before = refused(stack, "not_requester")
    with pytest.raises(smtplib.SMTPDataError) as refusal:
        send(stack, reply("someone-else@example.com", to, "I am the requester"), to)
    assert refusal.value.smtp_code == 550
    assert refused(stack, "not_requester") == before + 1
    assert requester.GetTicket(pb.GetTicketRequest(name=ticket.name)).status == (
        pb.TICKET_STATUS_PENDING
    )
    assert comments(requester, ticket) == []


def test_an_out_of_office_answer_is_taken_and_dropped_and_reopens_nothing(stack: Stack) -> None:
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    away = reply(email, to, "我正在休假，12月10日回来。")
    away["Auto-Submitted"] = "auto-replied"
    before = refused(stack, "automatic")
    send(stack, away, to)  # accepted: a bounce would only answer a robot
    assert refused(stack, "automatic") == before + 1
    assert requester.GetTicket(pb.GetTicketRequest(name=ticket.name)).status == (
        pb.TICKET_STATUS_PENDING
    )
    assert comments(requester, ticket) == []


def test_a_document_is_left_out_and_named_the_words_and_the_picture_are_kept(
    stack: Stack,
) -> None:
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    msg = reply(email, to, "截图和说明见附件。")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="screen.png")
    # A picture as many mail programs label one: by no type at all.
    msg.add_attachment(PNG, maintype="application", subtype="octet-stream", filename="旧.png")
    msg.add_attachment(
        b"PK\x03\x04" + bytes(64), maintype="application", subtype="zip", filename="notes.docx"
    )
    send(stack, msg, to)
    [comment] = comments(requester, ticket)
    assert comment.text.startswith("截图和说明见附件。")
    assert "notes.docx" in comment.text and "旧.png" not in comment.text
    # The same picture twice (the same bytes under two names) is one piece of
    # evidence, attached once.
    [picture] = comment.evidence
    assert picture.name.startswith("evidence/")


def test_a_stray_control_character_and_too_many_files_do_not_cost_the_reply(
    stack: Stack,
) -> None:
    """A form feed pasted from a document, and files past the 20 a comment
    takes, used to have the whole comment refused after the files were
    stored; now the character is left out and the extra files named."""
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    msg = reply(email, to, "第一页\f第二页")
    for n in range(22):
        msg.add_attachment(PNG + bytes([n]), maintype="image", subtype="png", filename=f"p{n}.png")
    send(stack, msg, to)
    [comment] = comments(requester, ticket)
    assert comment.text.startswith("第一页第二页")
    assert comment.text.endswith("(Not attached, more than 20 files: p20.png, p21.png)")
    assert len(comment.evidence) == 20


def test_a_reply_delivered_again_after_the_ticket_ended_is_taken_not_bounced(
    stack: Stack,
) -> None:
    """The first delivery's 250 was lost, and the requester cancelled the
    ticket before the sender's server tried again: the comment is there, so
    the second delivery is taken (not answered 'closed'), and adds nothing."""
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    msg = reply(email, to, "好了，谢谢。")
    send(stack, msg, to)
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="已解决"))
    before = refused(stack, "closed")
    send(stack, msg, to)  # the same message again
    assert refused(stack, "closed") == before
    assert [c.text for c in comments(requester, ticket)] == ["好了，谢谢。"]


def test_a_reply_to_a_cancelled_ticket_is_refused(
    stack: Stack,
) -> None:
    requester, ticket, email = pending_ticket(stack)
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="不需要了"))
    to = address_of(stack, ticket)
    late = reply(email, to, "其实还需要。")
    late.add_attachment(PNG, maintype="image", subtype="png", filename="late.png")
    before = refused(stack, "closed")
    with pytest.raises(smtplib.SMTPDataError) as refusal:
        send(stack, late, to)
    assert refusal.value.smtp_code == 550
    assert refused(stack, "closed") == before + 1
    assert comments(requester, ticket) == []


def test_a_reply_of_invisible_characters_and_a_picture_keeps_the_picture(
    stack: Stack,
) -> None:
    """A mail program's body of a zero-width space alone says nothing: the
    reply is the picture, not bounced for an empty comment."""
    requester, ticket, email = pending_ticket(stack)
    to = address_of(stack, ticket)
    msg = reply(email, to, "\u200b")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="screen.png")
    send(stack, msg, to)
    [comment] = comments(requester, ticket)
    assert comment.text == ONLY_ATTACHMENTS
    assert [e.name.startswith("evidence/") for e in comment.evidence] == [True]

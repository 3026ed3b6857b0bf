"""What a reply e-mail is made into: the requester's new text without the
history their mail client quoted (in English, Chinese and other languages),
their address, the Message-ID and the attachments, and the comment the desk
adds for it; and how much mail the SMTP server holds at once."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import policy
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from casemesh.platform.identity import InternalTokenSigner, new_signing_key
from casemesh.platform.replies import reply_address
from casemesh.platform.telemetry import configure_tracing
from casemesh.v1 import evidence_pb2, tickets_pb2
from casemesh_inbound import mail, smtp
from casemesh_inbound.desk import BODY_LIMIT, CUT, Refused, ReplyDesk, comment_body
from casemesh_inbound.mail import (
    HEADER_LINE_CHARS,
    HTML_CHARS,
    READ_CHARS,
    AutoReply,
    Unreadable,
    read_reply,
    strip_quoted,
)
from casemesh_inbound.settings import InboundSettings
from casemesh_inbound.smtp import ReplyHandler, sender_of, sessions
from tests.support import served_smtp

TICKET = str(uuid.uuid4())
SECRET = "s" * 32


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "Here is the old number: 139 0000 0000.\n\n"
            "On Thu, 3 Dec 2026 at 10:00, Casemesh <support@example.com> wrote:\n"
            "> Please tell us the old phone number.\n> Thanks\n",
            "Here is the old number: 139 0000 0000.",
        ),
        (
            "旧号码是 139****0000\n\n"
            "在 2026年12月3日周四 10:00，Casemesh <support@example.com> 写道：\n"
            "> 请提供注册时使用的旧手机号\n",
            "旧号码是 139****0000",
        ),
        (
            "Done.\n\n-----Original Message-----\nFrom: support\nSubject: Ticket\n\nAnswer\n",
            "Done.",
        ),
        ("好的\n\n-----原始邮件-----\n发件人: support\n请回答\n", "好的"),
        ("Yes, see below\n> quoted line\n> another\n", "Yes, see below"),
        ("Nothing quoted here.\nTwo lines.", "Nothing quoted here.\nTwo lines."),
        (  # Gmail's Chinese header
            "好的\n\nCasemesh <noreply@example.com> 于2024年1月1日周一 10:00写道：\n"
            "> 请提供旧手机号\n",
            "好的",
        ),
        (  # a dated header with the history below it unquoted (an HTML body's)
            "收到\n\n在 2024年1月1日 10:00，Casemesh 写道：\n请提供旧手机号\n",
            "收到",
        ),
        (  # neither date nor address, but the quote follows
            "Thanks\n\nOn Mon, Casemesh wrote:\n\n> Did it help?\n",
            "Thanks",
        ),
        (  # Gmail's plain text wraps a long Chinese header before its time
            "好的\n\nCasemesh Support Desk <noreply@example.com> 于2024年1月1日周一\n"
            "上午9:30写道：\n> 请提供旧手机号\n",
            "好的",
        ),
        # Other mail programs' headers over a history written without "> ":
        # each says a date and its time of day close after it, which no
        # sentence of the requester's need.
        (
            "Ja.\n\nAm Mo., 1. Jan. 2024 um 10:00 Uhr schrieb Casemesh <s@example.com>:\n"
            "Welches Gerät?\n",
            "Ja.",
        ),
        (
            "Sì.\n\nIl giorno lun 1 gen 2024 alle ore 10:00 Casemesh ha scritto:\nQuale?\n",
            "Sì.",
        ),
        ("はい。\n\n2024年1月1日(月) 10:00 Casemesh <s@example.com>:\nどの端末？\n", "はい。"),
        ("好的\n\n在 2021/6/7 下午9:40, Casemesh 写道:\n请提供旧手机号\n", "好的"),
        ("Yes.\n\nOn 1/1/2024 10:00 AM, Casemesh wrote:\nWhich device?\n", "Yes."),
        (
            "Yes.\n\nOn Mon, Jan 01, 2024 at 10:00:00AM +0000, Casemesh wrote:\nWhich device?\n",
            "Yes.",
        ),
        ("Ja.\n\nAm 01.01.2024 um 10:00 schrieb Casemesh:\nWelches Gerät?\n", "Ja."),
        (
            "Yes.\n\nFrom: Casemesh\nSent: Monday, January 1, 2024 10:00 AM\nTo: Alice\n"
            "Subject: Ticket\n\nWhich device?\n",
            "Yes.",
        ),
        (
            "好的\n\n发件人: Casemesh\n发送时间: 2024年1月1日 10:00\n收件人: Alice\n"
            "主题: 工单\n\n请提供旧手机号\n",
            "好的",
        ),
        # Gmail's French, Spanish, Dutch and Korean headers and Apple Mail's
        # Chinese one, over a quoted history and over one without "> " (an
        # HTML body's, where French sets no-break spaces), and as Gmail's
        # plain text wraps them when long (before the address).
        (
            "Oui.\n\nLe lun. 1 janv. 2024 à 10:00, Casemesh <noreply@example.com> a écrit :\n"
            "> Quel appareil ?\n",
            "Oui.",
        ),
        (
            "Oui.\n\nLe lun. 1 janv. 2024 à\u00a010:00, Casemesh <noreply@example.com> "
            "a écrit\u00a0:\nQuel appareil ?\n",
            "Oui.",
        ),
        (
            "Oui.\n\nLe lun. 1 janv. 2024 à 10:00, Casemesh Support Desk <\n"
            "noreply@example.com> a écrit :\n> Quel appareil ?\n",
            "Oui.",
        ),
        (
            "Sí.\n\nEl lun, 1 ene 2024 a las 10:00, Casemesh (<noreply@example.com>) "
            "escribió:\n> ¿Qué dispositivo?\n",
            "Sí.",
        ),
        (
            "Sí.\n\nEl lun, 1 ene 2024 a las 10:00, Casemesh (<noreply@example.com>) "
            "escribió:\n¿Qué dispositivo?\n",
            "Sí.",
        ),
        (
            "Sí.\n\nEl lun, 1 ene 2024 a las 10:00, Casemesh Support Desk (<\n"
            "noreply@example.com>) escribió:\n> ¿Qué dispositivo?\n",
            "Sí.",
        ),
        (
            "Ja.\n\nOp ma 1 jan 2024 om 10:00 schreef Casemesh <noreply@example.com>:\n"
            "> Welk apparaat?\n",
            "Ja.",
        ),
        (
            "Ja.\n\nOp ma 1 jan 2024 om 10:00 schreef Casemesh <noreply@example.com>:\n"
            "Welk apparaat?\n",
            "Ja.",
        ),
        (
            "Ja.\n\nOp ma 1 jan 2024 om 10:00 schreef Casemesh Support Desk <\n"
            "noreply@example.com>:\n> Welk apparaat?\n",
            "Ja.",
        ),
        (
            "Ja.\n\nOp ma 1 jan 2024 om 10:00 schreef Casemesh Support Desk\n"
            "<noreply@example.com>:\nWelk apparaat?\n",
            "Ja.",
        ),
        (
            "네.\n\n2024년 1월 1일 (월) 오전 10:00, Casemesh <noreply@example.com>님이 작성:\n"
            "> 어떤 기기인가요?\n",
            "네.",
        ),
        (
            "네.\n\n2024년 1월 1일 (월) 오전 10:00, Casemesh <noreply@example.com>님이 작성:\n"
            "어떤 기기인가요?\n",
            "네.",
        ),
        (
            "네.\n\n2024년 1월 1일 (월) 오전 10:00, Casemesh <noreply@example.com>님이 "
            "작성하였습니다:\n> 어떤 기기인가요?\n",
            "네.",
        ),
        (
            "네.\n\n2024년 1월 1일 (월) 오전 10:00, Casemesh Support Desk <\n"
            "noreply@example.com>님이 작성:\n> 어떤 기기인가요?\n",
            "네.",
        ),
        (
            "好的\n\n2024年1月1日 10:00，Casemesh <noreply@example.com> 写道：\n> 请提供旧手机号\n",
            "好的",
        ),
        (
            "好的\n\n2024年1月1日 10:00，Casemesh <noreply@example.com> 写道：\n请提供旧手机号\n",
            "好的",
        ),
        # Gmail's plain text wrapped after the address, the header's tail alone.
        (
            "Oui.\n\nLe lun. 1 janv. 2024 à 10:00, Casemesh Support Desk <noreply@example.com>\n"
            "a écrit :\nQuel appareil ?\n",
            "Oui.",
        ),
        (
            "Sí.\n\nEl lun, 1 ene 2024 a las 10:00, Casemesh Support Desk (<noreply@example.com>)\n"
            "escribió:\n¿Qué dispositivo?\n",
            "Sí.",
        ),
        (
            "네.\n\n2024년 1월 1일 (월) 오전 10:00, Casemesh Support Desk "
            "<noreply@example.com>님이\n작성:\n어떤 기기인가요?\n",
            "네.",
        ),
        # Other mail programs write these shapes with no address, the date in
        # digits, over a history without "> " (an HTML body's).
        ("Oui.\n\nLe 01/01/2024 à 10:00, Casemesh Support a écrit :\nQuel appareil ?\n", "Oui."),
        (
            "Oui.\n\nLe 01/01/2024 à\u00a010:00, Casemesh Support a écrit\u00a0:\n"
            "Quel appareil ?\n",
            "Oui.",
        ),
        ("Sí.\n\nEl 1/1/24 a las 10:00, Casemesh Support escribió:\n¿Qué dispositivo?\n", "Sí."),
        ("Ja.\n\nOp 1-1-2024 om 10:00 schreef Casemesh Support:\nWelk apparaat?\n", "Ja."),
        ("네.\n\n2024. 1. 1. 오전 10:00, Casemesh님이 작성:\n어떤 기기인가요?\n", "네."),
    ],
)
def test_the_quoted_history_is_stripped(text: str, kept: str) -> None:
    assert strip_quoted(text) == kept


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "Hi,\n\nOn Mon, 1 Jan 2024 at 10:00, Casemesh <s@example.com> wrote:\n"
            "> What is your old phone?\n139 0000 0000\n> Which device?\niPhone 12\n",
            "Hi,\n\n139 0000 0000\n\niPhone 12",
        ),
        (
            "On Mon, 1 Jan 2024 at 10:00, Casemesh <s@example.com> wrote:\n"
            "> What is your old phone?\n\n139 0000 0000\n",
            "139 0000 0000",
        ),
        (
            "在 2026年12月3日周四 10:00，Casemesh <support@example.com> 写道：\n"
            "> 请提供注册时使用的旧手机号\n\n旧号码是 139****0000\n",
            "旧号码是 139****0000",
        ),
        (  # the requester's signature below their answer is theirs
            "On Mon, 1 Jan 2024 at 10:00, Casemesh <s@example.com> wrote:\n"
            "> Which device?\n\niPhone 12,\nbought in 2021.\n\n-- \nAlice\n",
            "iPhone 12,\nbought in 2021.\n\n--\nAlice",
        ),
        (  # lines below a further header are older history
            "Yes.\n\nOn Mon, 1 Jan 2024 at 10:00, Casemesh <s@example.com> wrote:\n"
            "> Did it help?\n\nOn Sun, 31 Dec 2023 at 09:00, Alice <a@example.com> wrote:\n"
            "> Which device?\niPhone 12\n",
            "Yes.",
        ),
        # A sentence of a header's shape, naming no date or address and with
        # no quote below, is the requester's, and so is what follows it.
        (
            "你好\n在视频简介里我写道：\n这是我原创的音乐，请勿搬运\n然后视频就被下架了，请帮我申诉",
            "你好\n在视频简介里我写道：\n这是我原创的音乐，请勿搬运\n然后视频就被下架了，请帮我申诉",
        ),
        (
            "On Monday my brother wrote:\nhe said the account was hacked\nPlease help\n",
            "On Monday my brother wrote:\nhe said the account was hacked\nPlease help",
        ),
        (
            "On Mon, 1 Jan 2024 at 10:00, Casemesh <s@example.com> wrote:\n"
            "> Which device?\nOn Monday my brother wrote:\nhe had an iPhone 12\n",
            "On Monday my brother wrote:\nhe had an iPhone 12",
        ),
        # A date is no time of day: the sentence is still the requester's.
        (
            "On 3 March my brother wrote:\nhe said the account was hacked\nPlease help\n",
            "On 3 March my brother wrote:\nhe said the account was hacked\nPlease help",
        ),
        (
            "你好\n在2023年的视频简介里我写道：\n这是我原创的音乐，请勿搬运\n请帮我申诉",
            "你好\n在2023年的视频简介里我写道：\n这是我原创的音乐，请勿搬运\n请帮我申诉",
        ),
        # A 于 with a year after it is no Gmail header, which has a full date.
        (
            "你好\n由于2023年的版权纠纷，对方在邮件里写道：\n视频是他的\n请帮我申诉",
            "你好\n由于2023年的版权纠纷，对方在邮件里写道：\n视频是他的\n请帮我申诉",
        ),
        (
            "关于这个视频，我于2023年在简介里写道：\n这是我原创的音乐\n请帮我申诉",
            "关于这个视频，我于2023年在简介里写道：\n这是我原创的音乐\n请帮我申诉",
        ),
        (  # the other party's words quoted below it do not make it one
            "你好\n由于2023年的版权纠纷，对方在邮件里写道：\n> 视频是他的\n请帮我申诉",
            "你好\n由于2023年的版权纠纷，对方在邮件里写道：\n> 视频是他的\n请帮我申诉",
        ),
        # Sentences of the shape of Gmail's and Apple Mail's other headers,
        # saying no time or address.
        (
            "Bonjour\nLe 3 mars mon frère a écrit :\nle compte a été piraté\nMerci",
            "Bonjour\nLe 3 mars mon frère a écrit :\nle compte a été piraté\nMerci",
        ),
        (
            "Hola\nEl lunes mi hermano escribió:\nque la cuenta fue hackeada\nGracias",
            "Hola\nEl lunes mi hermano escribió:\nque la cuenta fue hackeada\nGracias",
        ),
        (
            "Hallo\nOp maandag schreef mijn broer:\ndat het account gehackt is\nBedankt",
            "Hallo\nOp maandag schreef mijn broer:\ndat het account gehackt is\nBedankt",
        ),
        (
            "안녕하세요\n2023년 5월 1일 상담원님이 작성하였습니다:\n해킹이라고 합니다\n도와주세요",
            "안녕하세요\n2023년 5월 1일 상담원님이 작성하였습니다:\n해킹이라고 합니다\n도와주세요",
        ),
        (
            "你好\n2023年5月1日我在视频简介里写道：\n这是我原创的音乐\n请帮我申诉",
            "你好\n2023年5月1日我在视频简介里写道：\n这是我原创的音乐\n请帮我申诉",
        ),
        # A time of day without a date is no header's, whatever the shape or
        # language; nor is a line of Gmail's or Apple Mail's Chinese shapes
        # without the address they always name.
        (
            "On Monday at 10:30 support wrote:\nthe video was refused\nPlease help",
            "On Monday at 10:30 support wrote:\nthe video was refused\nPlease help",
        ),
        (
            "Am Montag um 10:30 schrieb mir der Support:\ndas Video sei abgelehnt\nDanke",
            "Am Montag um 10:30 schrieb mir der Support:\ndas Video sei abgelehnt\nDanke",
        ),
        (
            "你好\n在周一10:30，客服写道：\n视频被拒绝了\n请帮我申诉",
            "你好\n在周一10:30，客服写道：\n视频被拒绝了\n请帮我申诉",
        ),
        (
            "El lunes a las 10:30 el soporte me escribió:\nque el vídeo fue rechazado\nGracias",
            "El lunes a las 10:30 el soporte me escribió:\nque el vídeo fue rechazado\nGracias",
        ),
        (
            "Op 3 maart om 10:30 schreef ik jullie dit:\ndat de video geweigerd is\nBedankt",
            "Op 3 maart om 10:30 schreef ik jullie dit:\ndat de video geweigerd is\nBedankt",
        ),
        (
            "2024年3月3日 10:30，你们的客服写道：\n视频被拒绝了\n请帮我申诉",
            "2024年3月3日 10:30，你们的客服写道：\n视频被拒绝了\n请帮我申诉",
        ),
        (
            "关于这个视频，我于2024年3月3日 10:30在简介里写道：\n这是我原创的音乐\n请帮我申诉",
            "关于这个视频，我于2024年3月3日 10:30在简介里写道：\n这是我原创的音乐\n请帮我申诉",
        ),
        # A date in digits makes no Chinese line of Apple Mail's shape a header.
        (
            "你好\n2024/3/3 10:30，你们的客服写道：\n视频被拒绝了\n请帮我申诉",
            "你好\n2024/3/3 10:30，你们的客服写道：\n视频被拒绝了\n请帮我申诉",
        ),
        # A date in digits without a time is no header either.
        (
            "안녕하세요\n2023. 5. 1. 상담원님이 작성하였습니다:\n해킹이라고 합니다\n도와주세요",
            "안녕하세요\n2023. 5. 1. 상담원님이 작성하였습니다:\n해킹이라고 합니다\n도와주세요",
        ),
        # Plain text is wrapped at about 72 characters: a sentence running
        # over two lines is no header, however the two read together; only
        # Gmail's wrapped headers are (broken before the time or the address).
        (
            "Bonjour,\nLe 3 mars à 10:30 j'ai reçu un message où\nvotre équipe a écrit :\n"
            "vidéo refusée. Pourquoi ? …",
            "Bonjour,\nLe 3 mars à 10:30 j'ai reçu un message où\nvotre équipe a écrit :\n"
            "vidéo refusée. Pourquoi ? …",
        ),
        (
            "你好\n在3月3日10:30我收到了你们的邮件，\n客服写道：\n视频被拒绝了…",
            "你好\n在3月3日10:30我收到了你们的邮件，\n客服写道：\n视频被拒绝了…",
        ),
        (
            "Yes.\n\nOn Mon, 1 Jan 2024 at 10:00, Casemesh <s@example.com> wrote:\n"
            "> Did you upload it?\n在10:30我又试了一次，\n系统还是写道：\n上传失败。\n",
            "Yes.\n\n在10:30我又试了一次，\n系统还是写道：\n上传失败。",
        ),
    ],
)
def test_what_the_requester_wrote_into_or_below_the_quote_is_kept(text: str, kept: str) -> None:
    """Answers written under each quoted question, and a reply written below
    the quote, are the requester's words: taken, in their order, not cut
    with the history (which told them "added" and kept none of it, or
    bounced the reply as having no text)."""
    assert strip_quoted(text) == kept


def test_a_reply_of_one_endless_line_is_read_as_far_as_a_comment_could_need() -> None:
    """Quoted-printable wrapped without a break gives one line of the whole
    text: it is read whole as the reply (no header is that long), up to twice
    a comment's limit, and not searched for a history line by line (which
    took minutes for a few hundred kilobytes and held the server)."""
    line = "On the day it happened " + "a" * 30_000 + " somebody wrote:"
    kept = strip_quoted(line + "\n\nOn Mon, 1 Dec 2026, Casemesh wrote:\n> Earlier\n")
    assert kept == line[:READ_CHARS]


def test_the_history_is_looked_for_in_no_line_longer_than_a_header_may_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parser's header patterns take time growing with the square of a
    line's length: it is never given a long line (which no header is), and
    the long lines come back as they were."""
    given: list[str] = []
    read = mail._PARSER.read

    def spied(text: str) -> object:
        given.append(text)
        parsed: object = read(text=text)
        return parsed

    monkeypatch.setattr(mail._PARSER, "read", lambda text: spied(text))
    long = "On the day it happened " + "a" * 5_000 + " somebody wrote:"
    kept = strip_quoted(f"Short.\n{long}\n\nOn Mon, 1 Dec 2026, Casemesh wrote:\n> Earlier\n")
    assert kept == f"Short.\n{long}"
    assert max(len(line) for line in given[0].split("\n")) <= HEADER_LINE_CHARS


def test_a_reply_gives_its_sender_message_id_text_and_attachments() -> None:
    msg = EmailMessage()
    msg["From"] = "Alice <Alice@Example.com>"
    msg["To"] = reply_address(TICKET, SECRET, "reply.example.com")
    msg["Message-ID"] = "<abc@mail.example.com>"
    msg.set_content("It works now.\n\nOn Mon, Casemesh wrote:\n> Did it help?\n")
    msg.add_alternative("<p>It works <b>now</b>.</p><blockquote>Did it help?</blockquote>", "html")
    png = b"\x89PNG\r\n\x1a\n" + bytes(16)
    msg.add_attachment(png, maintype="image", subtype="png", filename="screen.png")
    reply = read_reply(msg.as_bytes())
    assert reply.sender == "alice@example.com"
    assert reply.message_id == "<abc@mail.example.com>"
    assert reply.text == "It works now."
    assert [(a.file_name, a.media_type, a.data) for a in reply.attachments] == [
        ("screen.png", "image/png", png)
    ]


def test_a_message_forwarded_as_a_file_is_an_attachment_not_dropped_unsaid() -> None:
    """It is no evidence (the evidence service refuses its type, and the
    comment names it among the files not attached), but it is not lost
    without a word."""
    forwarded = EmailMessage()
    forwarded["From"] = "claims@example.org"
    forwarded["Subject"] = "Notice"
    forwarded.set_content("The notice itself")
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["Message-ID"] = "<fwd@mail.example.com>"
    msg.set_content("See the notice attached.")
    msg.add_attachment(forwarded, filename="notice.eml")
    reply = read_reply(msg.as_bytes())
    assert reply.text == "See the notice attached."
    [attachment] = reply.attachments
    assert (attachment.file_name, attachment.media_type) == ("notice.eml", "message/rfc822")
    assert b"The notice itself" in attachment.data
    assert attachment.data.startswith(b"From: claims@example.org")  # the message itself


@pytest.mark.parametrize(
    "froms",
    [
        # Added above a message the provider signed for its own user: the
        # authentication results speak of the signer's, the first is read.
        ["victim@example.com", "attacker@example.com"],
        ["victim@example.com, attacker@example.com"],
    ],
)
def test_a_message_from_more_than_one_address_is_unreadable(froms: list[str]) -> None:
    raw = b"".join(f"From: {f}\r\n".encode() for f in froms) + (
        b"Message-ID: <two@mail.example.com>\r\n\r\nI am the requester.\r\n"
    )
    with pytest.raises(Unreadable, match="From"):
        read_reply(raw)


@pytest.mark.parametrize(
    "given",
    [
        # Servers checking the sender read the address in angle brackets.
        "victim@qq.com <attacker@qq.com>",
        "<victim@qq.com> attacker@qq.com",
        # An encoded word is a display name, never an address or part of one.
        "=?utf-8?q?victim=40qq.com?=",
        "=?utf-8?q?victim?=@qq.com",
        "victim@=?utf-8?q?qq.com?=",
        "Victim <victim@qq.com",
        # A malformed display name beside more than one address.
        '"=?gb2312?B?1cXI/Q==?=" <victim@qq.com> <attacker@qq.com>',
        "=?gb2312?B?1cXI/Q==?=<victim@qq.com>attacker@qq.com",
    ],
)
def test_a_from_header_read_only_by_guessing_is_unreadable(given: str) -> None:
    """The standard library guesses an address out of a header the
    standard does not allow; the server in front, checking the sender,
    may read another there: what it vouched for need not be the guess."""
    raw = f"From: {given}\r\nMessage-ID: <g@qq.com>\r\n\r\nclose my ticket\r\n".encode()
    with pytest.raises(Unreadable, match="From"):
        read_reply(raw)


@pytest.mark.parametrize(
    ("given", "sender"),
    [
        ("a@qq.com", "a@qq.com"),
        ('"张三" <A@qq.com>', "a@qq.com"),
        ("=?utf-8?b?5byg5LiJ?= <a@qq.com>", "a@qq.com"),
        ('"Mueller, Hans" <hans@example.com>', "hans@example.com"),
        ("=?utf-8?q?M=C3=BCller=2C_Hans?= <hans@example.com>", "hans@example.com"),
        ("J. Smith <j@example.com>", "j@example.com"),  # obsolete, and common
        ("alice@example.com (Alice)", "alice@example.com"),
        # A Chinese name as Outlook and Foxmail write it: an encoded word in
        # quotes, or with no space before the address.
        ('"=?gb2312?B?1cXI/Q==?=" <z@qq.com>', "z@qq.com"),
        ("=?gb2312?B?1cXI/Q==?=<z@qq.com>", "z@qq.com"),
        ("=?gb2312?B?1cXI/Q==?=\r\n <Z@qq.com> (Zhang)", "z@qq.com"),
    ],
)
def test_a_from_header_as_mail_programs_write_it_gives_its_address(given: str, sender: str) -> None:
    raw = f"From: {given}\r\nMessage-ID: <g@qq.com>\r\n\r\nhello\r\n".encode()
    assert read_reply(raw).sender == sender


def test_an_html_only_reply_is_read_as_text() -> None:
    msg = EmailMessage()
    msg["From"] = "bob@example.com"
    msg["Message-ID"] = "<x@y>"
    msg.set_content("<div>Thanks<br>Bob</div><style>p{}</style>", subtype="html")
    assert read_reply(msg.as_bytes()).text == "Thanks\nBob"


def plain(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "carol@example.com"
    msg["Message-ID"] = "<m@example.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("I am out of the office until Monday.")
    return msg


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Auto_Submitted": "auto-generated"},
        {"Precedence": "bulk"},
        {"X_Autoreply": "yes"},
    ],
)
def test_a_message_a_program_sent_is_never_a_reply(headers: dict[str, str]) -> None:
    with pytest.raises(AutoReply):
        read_reply(plain(**headers).as_bytes())


@pytest.mark.parametrize("said", ["no", "No", "no (written by a person)"])
def test_a_person_saying_auto_submitted_no_is_read(said: str) -> None:
    """RFC 3834 lets the value carry a comment: "no" is its first word."""
    assert read_reply(plain(Auto_Submitted=said).as_bytes()).text.startswith("I am out")


def test_a_reply_written_in_outlook_asking_not_to_be_auto_answered_is_read() -> None:
    """Outlook and Exchange mark mail people write with
    X-Auto-Response-Suppress: it is a reply, not an automatic message."""
    reply = read_reply(plain(X_Auto_Response_Suppress="All").as_bytes())
    assert reply.text.startswith("I am out")


@pytest.mark.parametrize(
    "head",
    [
        b"From: x@example.com\r\nMessage-ID: <>\r\n",
        b"From: x@example.com\r\nMessage-ID: <a@[b>\r\n",
        b"From: <\r\nMessage-ID: <m@example.com>\r\n",
    ],
)
def test_headers_the_parser_trips_on_are_unreadable_not_a_failure_to_retry(head: bytes) -> None:
    """A sender told 4xx tries again for days; one told 5xx gives up."""
    with pytest.raises(Unreadable):
        read_reply(head + b"\r\nhi\r\n")


def test_a_signatures_inline_logo_is_not_evidence() -> None:
    # multipart/related: the HTML and the logo it shows by Content-ID (as Outlook writes)
    logo = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16))
    raw = (
        b"From: erin@example.com\r\nMessage-ID: <s@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="r"\r\n\r\n'
        b'--r\r\nContent-Type: text/html; charset="utf-8"\r\n\r\n'
        b'<p>Thanks</p><img src="cid:logo@x">\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
        b"Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + logo
        + b"\r\n--r--\r\n"
    )
    reply = read_reply(raw)
    assert (reply.text, reply.attachments) == ("Thanks", [])


def test_a_screenshot_pasted_into_the_text_is_evidence() -> None:
    """Mail clients send a pasted picture as an inline part the HTML shows
    by Content-ID, like a logo, but it is what the requester sends us."""
    shot = b"\x89PNG\r\n\x1a\n" + bytes(100 * 1024)
    raw = (
        b"From: erin@example.com\r\nMessage-ID: <p@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="r"\r\n\r\n'
        b'--r\r\nContent-Type: text/html; charset="utf-8"\r\n\r\n'
        b'<p>Here is the error:</p><img src="cid:shot@x">\r\n'
        b'--r\r\nContent-Type: image/png; name="Screenshot 2026.png"\r\n'
        b"Content-ID: <shot@x>\r\nContent-Disposition: inline\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(shot) + b"\r\n--r--\r\n"
    )
    reply = read_reply(raw)
    assert [(a.file_name, a.media_type, a.data) for a in reply.attachments] == [
        ("Screenshot 2026.png", "image/png", shot)
    ]


def test_a_screenshot_pasted_into_a_rich_text_reply_is_evidence() -> None:
    """Thunderbird and Apple Mail put the HTML and its pictures in a
    multipart/related inside the multipart/alternative: the picture is read
    there too, and the HTML beside the plain text is no attachment."""
    shot = b"\x89PNG\r\n\x1a\n" + bytes(40 * 1024)
    related = (
        b'Content-Type: multipart/related; boundary="r"\r\n\r\n'
        b'--r\r\nContent-Type: text/html; charset="utf-8"\r\n\r\n'
        b'<p>See the error:</p><img src="cid:shot@x">\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <shot@x>\r\n"
        b"Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(shot)
        + b"\r\n--r--\r\n"
    )
    alternative = (
        b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n'
        b'--a\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\nSee the error:\r\n'
        b"--a\r\n" + related + b"\r\n--a--\r\n"
    )
    head = b"From: erin@example.com\r\nMessage-ID: <t@example.com>\r\nMIME-Version: 1.0\r\n"
    mixed = (
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b"--m\r\n" + alternative + b"\r\n--m--\r\n"
    )
    for shape in (alternative, mixed):
        reply = read_reply(head + shape)
        assert reply.text == "See the error:"
        assert [(a.media_type, a.data) for a in reply.attachments] == [("image/png", shot)]


def test_the_bodys_other_renderings_are_no_attachments_but_text_after_a_picture_is() -> None:
    """Apple Watch and calendar renderings beside the text are the same
    message, not files; Apple Mail's text after a pasted picture (an inline
    text part after it, outside any alternative) is more of the reply's text."""
    alternatives = (
        b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n'
        b'--a\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\nSee below\r\n'
        b'--a\r\nContent-Type: text/watch-html; charset="utf-8"\r\n\r\n<b>See below</b>\r\n'
        b"--a\r\nContent-Type: text/calendar; method=REPLY\r\n\r\nBEGIN:VCALENDAR\r\n"
        b'--a\r\nContent-Type: text/html; charset="utf-8"\r\n\r\n<p>See below</p>\r\n'
        b"--a--\r\n"
    )
    head = b"From: erin@example.com\r\nMessage-ID: <w@example.com>\r\nMIME-Version: 1.0\r\n"
    reply = read_reply(head + alternatives)
    assert (reply.text, reply.attachments) == ("See below", [])

    shot = b"\x89PNG\r\n\x1a\n" + bytes(40 * 1024)
    mixed = (
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b'--m\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\nHere it is:\r\n'
        b"--m\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(shot) + b"\r\n"
        b'--m\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Disposition: inline\r\n'
        b"\r\nand it happens every time.\r\n--m--\r\n"
    )
    reply = read_reply(head + mixed)
    assert reply.text == "Here it is:\n\nand it happens every time."
    assert [(a.media_type, a.data) for a in reply.attachments] == [("image/png", shot)]


def test_text_in_an_unknown_character_set_is_unreadable() -> None:
    raw = (
        b"From: dan@example.com\r\nMessage-ID: <q@example.com>\r\n"
        b"Content-Type: text/plain; charset=x-bogus\r\n\r\nhello\r\n"
    )
    with pytest.raises(Unreadable):
        read_reply(raw)


def test_parts_nested_a_thousand_deep_are_unreadable_not_a_failure_to_retry() -> None:
    """A sender told 4xx tries again for days; one told 5xx gives up."""
    boundaries = [f"b{n}" for n in range(1000)]
    head = "".join(f'Content-Type: multipart/mixed; boundary="{b}"\n\n--{b}\n' for b in boundaries)
    tail = "".join(f"--{b}--\n" for b in reversed(boundaries))
    raw = (
        "From: alice@example.com\nMessage-ID: <deep@x>\nMIME-Version: 1.0\n"
        + head
        + "Content-Type: text/plain\n\nhi\n"
        + tail
    ).encode()
    with pytest.raises(Unreadable, match="nest too deeply"):
        read_reply(raw)


def test_an_attachments_name_is_kept_printable_for_the_comment_that_names_it() -> None:
    """A control character in a name would have the whole comment refused;
    a direction override would disguise the name to the agent reading it."""
    names = ["a%0Cb.png", "invoice%E2%80%AEgnp.exe", "C%3A%5Ctmp%5C%07"]
    parts = "".join(
        "--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
        f"Content-Disposition: attachment; filename*=utf-8''{name}\n\niVBORw0KGgo=\n"
        for name in names
    )
    raw = (
        "From: alice@example.com\nMessage-ID: <names@x>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nsee attached\n" + parts + "--b--\n"
    ).encode()
    found = [a.file_name for a in read_reply(raw).attachments]
    assert found == ["ab.png", "invoicegnp.exe", "attachment"]


def html_reply(html: str) -> bytes:
    return (
        b"From: erin@example.com\r\nMessage-ID: <h@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(html.encode())
    )


def test_an_html_body_of_megabytes_is_read_from_its_beginning_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The text is read from the body's first `HTML_CHARS`, room for far
    more text than a comment keeps: a body of megabytes holds a reader
    (two serve the whole server) no longer than that."""
    fed: list[int] = []
    feed = mail._Text.feed

    def counted(parser: mail._Text, data: str) -> None:
        fed.append(len(data))
        feed(parser, data)

    monkeypatch.setattr(mail._Text, "feed", counted)
    html = "<p>Thanks, it works now.</p>" + "<!" * 600_000
    assert read_reply(html_reply(html)).text == "Thanks, it works now."
    assert max(fed) <= HTML_CHARS < len(html)


@pytest.mark.parametrize(
    ("markup", "scan"),
    [("<a ", "parse_starttag"), ("<!", "parse_html_declaration"), ("<!-- x>", "parse_comment")],
)
def test_markup_left_open_at_the_end_is_looked_through_once(
    monkeypatch: pytest.MonkeyPatch, markup: str, scan: str
) -> None:
    """Python 3.11's parser, asked to finish markup never closed, looks
    through the rest again from each `<` in it to its end (minutes for a
    hundred kilobytes of `<a `): the markup shows nothing, as in a browser,
    and is looked through once."""
    unfinished: list[int] = []
    original = getattr(mail._Text, scan)

    def counted(parser: mail._Text, i: int) -> int:
        end: int = original(parser, i)
        if end < 0:  # looked through to the end and found no close
            unfinished.append(i)
        return end

    monkeypatch.setattr(mail._Text, scan, counted)
    html = "<p>Thanks</p>" + markup * 3_000
    assert mail.html_text(html) == "Thanks"
    assert len(unfinished) == 1


def test_html_the_parser_gives_up_on_is_unreadable_not_a_failure_to_retry() -> None:
    """A sender told 4xx tries again for days; one told 5xx gives up."""
    with pytest.raises(Unreadable, match="HTML"):
        read_reply(html_reply("<p>Hi</p><![ if mso]>"))


REQUESTER = "user-alice"


class Tickets:
    """The tickets service as the desk sees it: one ticket of alice's,
    waiting on her; a comment under a request id it took already with
    another body is ALREADY_EXISTS, as the service answers."""

    def __init__(self) -> None:
        self.ticket = tickets_pb2.Ticket(
            name=f"tickets/{TICKET}",
            requester=REQUESTER,
            status=tickets_pb2.TICKET_STATUS_PENDING,
            contact=tickets_pb2.Contact(email="alice@example.com"),
        )
        self.comments: dict[str, tickets_pb2.AddCommentRequest] = {}

    async def GetTicket(self, request: object, **_: object) -> tickets_pb2.Ticket:
        return self.ticket

    async def AddComment(
        self, request: tickets_pb2.AddCommentRequest, **_: object
    ) -> tickets_pb2.Ticket:
        taken = self.comments.setdefault(request.request_id, request)
        if taken != request:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.ALREADY_EXISTS,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details=f"request_id {request.request_id!r} was already used for a different"
                " change to this ticket",
            )
        self.ticket.status = tickets_pb2.TICKET_STATUS_OPEN
        return self.ticket


class Evidence:
    """The evidence service: takes pictures, refuses any other kind of file."""

    async def UploadEvidence(
        self, requests: AsyncIterator[evidence_pb2.UploadEvidenceRequest], **_: object
    ) -> SimpleNamespace:
        name = ""
        async for part in requests:
            name = name or part.metadata.file_name
        if not name.endswith(".png") or name.startswith("huge"):
            # As the service words it: the field, then why.
            why = "image evidence may be at most 20 MiB" if name.endswith(".png") else ""
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details=f"chunk: {why or 'not an image, video or PDF'}",
            )
        return SimpleNamespace(name=f"evidence/{name}", sha256="0" * 64)


def desk_for(tickets: Tickets, evidence: Evidence | None = None) -> ReplyDesk:
    return ReplyDesk(
        signer=InternalTokenSigner(new_signing_key()),
        tickets=tickets,
        evidence=evidence or Evidence(),
        secrets=[SECRET],
        domain="reply.example.com",
        timeout=1.0,
    )


def from_alice(text: str, *files: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["Message-ID"] = "<again@mail.example.com>"
    msg.set_content(text)
    for name in files:
        msg.add_attachment(b"MZ" + bytes(64), "application", "octet-stream", filename=name)
    return msg.as_bytes()


async def test_a_reply_delivered_again_and_read_differently_is_taken_not_bounced() -> None:
    """The first delivery was added but its answer lost; the sender's
    server tries again after the desk began reading mail differently. The
    ticket holds a change under this Message-ID's request id already: the
    second delivery is answered as added, and the ticket keeps one comment."""
    tickets = Tickets()
    desk = desk_for(tickets)
    await desk.add_reply(TICKET, from_alice("My old number is 139 0000 0000."))
    status = await desk.add_reply(TICKET, from_alice("My old number is 139 0000 0000!"))
    assert status == "TICKET_STATUS_OPEN"
    [comment] = tickets.comments.values()
    assert comment.body == "My old number is 139 0000 0000."


async def test_a_reply_quoting_the_requesters_own_words_is_taken_whole() -> None:
    """ "在视频简介里我写道：" is no mail program's header (no date, no
    address, nothing quoted below it): the agent reads the whole appeal,
    not only "你好" under a mail server's "added"."""
    tickets = Tickets()
    text = "你好\n在视频简介里我写道：\n这是我原创的音乐，请勿搬运\n然后视频就被下架了，请帮我申诉"
    assert await desk_for(tickets).add_reply(TICKET, from_alice(text)) == "TICKET_STATUS_OPEN"
    [comment] = tickets.comments.values()
    assert "下架" in comment.body
    assert comment.body == text


async def test_a_long_reply_is_cut_before_the_note_on_files_not_attached() -> None:
    """The agent learns a file was left out however long the text was."""
    tickets = Tickets()
    await desk_for(tickets).add_reply(TICKET, from_alice("word " * 3_000, "setup.exe"))
    [comment] = tickets.comments.values()
    assert len(comment.body) <= BODY_LIMIT
    assert comment.body.endswith(CUT + "\n\n(Not attached, not an image, video or PDF: setup.exe)")


async def test_files_left_out_are_noted_with_why_each_was_refused() -> None:
    """A picture too large is not "not an image": the agent, and the sender
    whose reply had nothing else, learn what was wrong with each file."""
    tickets = Tickets()
    await desk_for(tickets).add_reply(TICKET, from_alice("See both.", "setup.exe", "huge.png"))
    [comment] = tickets.comments.values()
    assert comment.body == (
        "See both."
        "\n\n(Not attached, not an image, video or PDF: setup.exe)"
        "\n\n(Not attached, image evidence may be at most 20 MiB: huge.png)"
    )
    with pytest.raises(Refused) as refused:
        await desk_for(Tickets()).add_reply(TICKET, from_alice("", "huge.png"))
    assert str(refused.value) == (
        "550 5.7.0 not attached, image evidence may be at most 20 MiB: huge.png"
    )


async def test_a_reply_of_only_files_not_taken_is_refused_naming_them() -> None:
    """A reply with no text whose one file the evidence service refused:
    the sender learns which file and what is taken, not that they sent
    nothing; the refusal is counted as the evidence service's."""
    tickets = Tickets()
    with pytest.raises(Refused) as refused:
        await desk_for(tickets).add_reply(TICKET, from_alice("", "report.doc"))
    assert refused.value.reason == "evidence"
    assert str(refused.value) == "550 5.7.0 not attached, not an image, video or PDF: report.doc"
    assert not tickets.comments
    # Many, with long names: the reply line stays within SMTP's 512 octets.
    names = [f"{n}-{'x' * 250}.doc" for n in range(10)]
    with pytest.raises(Refused) as many:
        await desk_for(tickets).add_reply(TICKET, from_alice("", *names))
    said = str(many.value)
    assert len(said) < 510 and said.endswith(" and 7 more") and "0-xxx" in said


async def test_a_reply_taken_is_one_trace_across_the_calls_it_makes() -> None:
    """An operator follows one e-mail reply in one trace: the ticket read,
    each upload and the comment carry the same trace context."""
    configure_tracing("unit")
    traces: list[str] = []

    class Traced(Tickets):
        async def GetTicket(self, request: object, **kw: Any) -> tickets_pb2.Ticket:
            traces.append(dict(kw["metadata"])["traceparent"].split("-")[1])
            return await super().GetTicket(request)

        async def AddComment(
            self, request: tickets_pb2.AddCommentRequest, **kw: Any
        ) -> tickets_pb2.Ticket:
            traces.append(dict(kw["metadata"])["traceparent"].split("-")[1])
            return await super().AddComment(request)

    tickets = Traced()
    handler = ReplyHandler(desk_for(tickets), [])
    raw = from_alice("It works now, thanks.")
    envelope = SimpleNamespace(
        rcpt_tos=[reply_address(TICKET, SECRET, "reply.example.com")],
        mail_from="alice@example.com",
        original_content=raw,
        content=raw,
    )
    answer = await handler.handle_DATA(None, None, envelope)
    assert answer.startswith("250 2.0.0"), answer
    assert len(traces) == 2 and traces[0] == traces[1]
    assert tickets.comments


def test_notes_on_hundreds_of_files_leave_the_text_room() -> None:
    notes = "\n\n(Not attached, more than 20 files: " + ", ".join(["f" * 200] * 300) + ")"
    body = comment_body("Here are the files.", notes)
    assert len(body) <= BODY_LIMIT
    assert body.startswith("Here are the files.\n\n(Not attached, more than 20 files: fff")
    assert body.endswith("…)")


def test_chinese_labelled_gb2312_and_written_in_gbk_is_read_whole() -> None:
    """Chinese mail programs label GBK text (and file names) gb2312: read as
    labelled, 镕, 喆 and 堃 would reach the agent as U+FFFD."""
    words = "朱镕基 喆 堃 你好"
    name = base64.b64encode("镕.png".encode("gbk")).decode()
    raw = (
        b"From: lin@example.com\r\nMessage-ID: <gbk@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=gb2312\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(words.encode("gbk"))
        + b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        + f'Content-Disposition: attachment; filename="=?gb2312?B?{name}?="\r\n\r\n'.encode()
        + b"iVBORw0KGgo=\r\n--b--\r\n"
    )
    reply = read_reply(raw)
    assert reply.text == words
    assert [a.file_name for a in reply.attachments] == ["镕.png"]


@pytest.mark.parametrize(
    ("given", "sender"),
    [
        ("user@bücher.de", "User <user@xn--bcher-kva.de>"),
        ("user@xn--bcher-kva.de", "user@bücher.de"),
        ("a@例子.中国", "a@例子.中国"),
    ],
)
async def test_a_requester_whose_address_has_a_unicode_domain_may_reply(
    given: str, sender: str
) -> None:
    """Her contact was taken with its domain in Unicode; her reply comes with
    it in ASCII form, or in UTF-8 (SMTPUTF8): the same mailbox either way."""
    tickets = Tickets()
    tickets.ticket.contact.email = given
    raw = (
        f"From: {sender}\r\nMessage-ID: <idn@example.com>\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\nStill broken.\r\n'
    ).encode()
    assert await desk_for(tickets).add_reply(TICKET, raw) == "TICKET_STATUS_OPEN"
    [comment] = tickets.comments.values()
    assert comment.body == "Still broken."


@pytest.mark.parametrize(
    ("given", "sender"),
    [
        ("user@strasse.de", "user@straße.de"),  # another domain under IDNA 2008
        ("user@straße.de", "user@strasse.de"),
        ("kim@example.com", "\u212aim@example.com"),  # a Kelvin sign is no K
        ("user@bücher.de", "other@xn--bcher-kva.de"),
        ("a\ufffd@example.com", "a\udcff@example.com"),  # bytes no UTF-8 are nobody's
    ],
)
def test_another_mailbox_is_never_taken_for_the_requesters(given: str, sender: str) -> None:
    assert not mail.same_mailbox(given, sender)


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ("attachment; filename*=gb2312''%E9%46.png", "镕.png"),
        ('attachment; filename="=?gb2312*zh?B?6UYucG5n?="', "镕.png"),
        ('attachment; filename="report=?gbk?v2.png"', "report=?gbk?v2.png"),  # no label
    ],
)
def test_a_files_name_is_read_in_the_wider_set_only_where_its_label_stands(
    disposition: str, name: str
) -> None:
    raw = (
        "From: lin@example.com\r\nMessage-ID: <n@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
        "--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: {disposition}\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    ).encode()
    assert [a.file_name for a in read_reply(raw).attachments] == [name]


class HeldVideos(Evidence):
    """The evidence service taking any file, the first video's upload held
    until `done` is set (a phone video on a slow link)."""

    def __init__(self) -> None:
        self.uploading = asyncio.Event()
        self.done = asyncio.Event()

    async def UploadEvidence(
        self, requests: AsyncIterator[evidence_pb2.UploadEvidenceRequest], **_: object
    ) -> SimpleNamespace:
        name = ""
        async for part in requests:
            name = name or part.metadata.file_name
        if name.endswith(".mp4") and not self.uploading.is_set():
            self.uploading.set()
            await self.done.wait()
        return SimpleNamespace(name=f"evidence/{uuid.uuid4()}", sha256="0" * 64)


# The largest message taken, and the budget: one video reply and a short one
# at once, not two video replies.
MOST = 64 * 1024
BUDGET = 96 * 1024


def reply_of(message_id: str, text: str, video: int = 0) -> bytes:
    """Alice's reply, with a video of `video` bytes, as a mail server sends it."""
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["Message-ID"] = f"<{message_id}@mail.example.com>"
    msg.set_content(text)
    if video:
        msg.add_attachment(bytes(video), "video", "mp4", filename="VID_0001.mp4")
    return msg.as_bytes(policy=policy.SMTP)


@asynccontextmanager
async def reply_server(
    tickets: Tickets, evidence: Evidence, relays: str, budget: int = BUDGET
) -> AsyncIterator[int]:
    """The service's SMTP server on a free port, with its budget (`BUDGET`)."""
    cfg = InboundSettings(
        reply_token_secret=SECRET,
        internal_signing_key=new_signing_key(),
        reply_domain="reply.example.com",
        max_message_bytes=MOST,
        message_budget_bytes=budget,
        trusted_relays=relays,
        trusted_authserv_id="",
    )
    handler = ReplyHandler(desk_for(tickets, evidence), cfg.relay_networks())
    async with served_smtp(sessions(handler, cfg)) as port:
        yield port


def relay(port: int, raw: bytes, *, size: int | None = None, source: str = "127.0.0.1") -> None:
    """Sends `raw` to the ticket's reply address as a mail server at `source`
    does (declaring its size, or `size`); raises the server's answer if not 250."""
    to = reply_address(TICKET, SECRET, "reply.example.com")
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as smtp:
        if size is None:
            smtp.sendmail("alice@example.com", [to], raw)
            return
        smtp.ehlo("mx.example.com")
        smtp.mail("alice@example.com", [f"SIZE={size}"])
        smtp.rcpt(to)
        code, text = smtp.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, text)


def data_asked(port: int, source: str) -> tuple[smtplib.SMTP, tuple[int, bytes]]:
    """A mail server at `source` starting to send a reply to the ticket: its
    connection, left once DATA is answered, and that answer."""
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
    smtp.ehlo("mx.example.com")
    smtp.mail("alice@example.com")
    smtp.rcpt(reply_address(TICKET, SECRET, "reply.example.com"))
    return smtp, smtp.docmd("DATA")


def data_sent(smtp: smtplib.SMTP, raw: bytes) -> int:
    """Sends the rest of a message begun with `data_asked` (`raw` ends its
    lines with CRLF, none starting with a dot): the code of the answer."""
    smtp.send(raw + b".\r\n")
    code, _ = smtp.getreply()
    smtp.quit()
    return code


def deferred() -> float:
    return REGISTRY.get_sample_value("casemesh_inbound_deferred_total") or 0.0


async def test_a_reply_arriving_while_the_budget_is_taken_is_put_off_and_lands_on_retry() -> None:
    """Two requesters reply with a phone video at the same moment: the
    server holds one while it is added, and answers the other 451 4.3.1
    before its data is sent; the sending server keeps it and tries again,
    and that try is added once the first has been. A short reply still gets
    in beside a video: the budget counts bytes (each as the mail server in
    front declares it), not messages. No reply is lost."""
    tickets, evidence = Tickets(), HeldVideos()
    before = deferred()
    async with reply_server(tickets, evidence, relays="127.0.0.1/32") as port:
        first = asyncio.create_task(
            asyncio.to_thread(relay, port, reply_of("first", "My video.", video=40_000))
        )
        await asyncio.wait_for(evidence.uploading.wait(), 30)
        await asyncio.to_thread(relay, port, reply_of("short", "Sent you a video."))
        second = reply_of("second", "Mine too.", video=40_000)
        with pytest.raises(smtplib.SMTPDataError) as put_off:
            await asyncio.to_thread(relay, port, second)
        assert put_off.value.args == (
            451,
            b"4.3.1 too much mail is being taken now; try again later",
        )
        assert deferred() == before + 1
        assert len(tickets.comments) == 1  # the short one, beside the video

        evidence.done.set()
        await first
        await asyncio.to_thread(relay, port, second)  # the sending server's retry
    bodies = sorted(c.body for c in tickets.comments.values())
    assert bodies == ["Mine too.", "My video.", "Sent you a video."]


async def test_a_size_declared_by_anyone_but_the_trusted_mail_server_is_not_believed() -> None:
    """Without a trusted mail server in front, anyone with a reply address
    connects: one declaring a byte (SIZE=1) and sending a video is held as
    the largest message may be, so nobody makes the server hold more than
    its budget by declaring less than they send."""
    tickets, evidence = Tickets(), HeldVideos()
    async with reply_server(tickets, evidence, relays="") as port:
        video = reply_of("small-said", "My video.", video=40_000)
        first = asyncio.create_task(asyncio.to_thread(relay, port, video, size=1))
        await asyncio.wait_for(evidence.uploading.wait(), 30)
        with pytest.raises(smtplib.SMTPDataError) as put_off:
            await asyncio.to_thread(relay, port, reply_of("other", "Mine too.", video=40_000))
        assert put_off.value.smtp_code == 451
        evidence.done.set()
        await first
    assert [c.body for c in tickets.comments.values()] == ["My video."]


async def test_a_sender_holding_room_for_one_reply_keeps_nobody_else_out() -> None:
    """Without a trusted mail server in front, anyone with a reply address
    connects, and each message takes room for the largest at DATA: one
    sender asking twice and then sending nothing (or a byte now and then)
    would hold the whole budget, and every other reply would be put off for
    as long as it kept that up. A sender has room for one message at a time:
    its second is put off as a full budget's is, while a reply from another
    sender gets in; once its first is answered, it sends again."""
    tickets = Tickets()
    before = deferred()
    async with reply_server(tickets, Evidence(), relays="", budget=2 * MOST) as port:
        slow, answer = await asyncio.to_thread(data_asked, port, "127.0.0.1")
        assert answer[0] == 354
        second, answer = await asyncio.to_thread(data_asked, port, "127.0.0.1")
        assert answer == (451, b"4.3.1 too much mail is being taken now; try again later")
        assert deferred() == before + 1
        await asyncio.to_thread(second.quit)

        other = reply_of("other", "From another mail server.")
        await asyncio.to_thread(relay, port, other, source="127.0.0.2")
        assert await asyncio.to_thread(data_sent, slow, reply_of("slow", "At last.")) == 250
        await asyncio.to_thread(relay, port, reply_of("again", "And again."))
    bodies = sorted(c.body for c in tickets.comments.values())
    assert bodies == ["And again.", "At last.", "From another mail server."]


async def test_a_sender_that_asks_for_data_and_sends_nothing_loses_its_room_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a load balancer that hides senders' addresses, everyone
    arriving through one node is one sender: one connection asking for DATA
    and then sending nothing kept all their replies out with 451 for the
    five minutes aiosmtpd waits, again on each new connection. Its data not
    come by the deadline, it is told to try again (421 4.4.2) and cut off,
    and the room it held (here all there is) goes to the next reply."""
    tickets = Tickets()
    async with reply_server(tickets, Evidence(), relays="", budget=MOST) as port:
        monkeypatch.setattr(smtp, "DATA_FLOOR_SECONDS", 0.2)
        monkeypatch.setattr(smtp, "DATA_RATE", 1 << 40)
        idle, answer = await asyncio.to_thread(data_asked, port, "127.0.0.1")
        assert answer[0] == 354
        monkeypatch.undo()  # later messages have the deadline they would

        assert await asyncio.to_thread(idle.getreply) == (
            421,
            b"4.4.2 the message took too long to arrive; try again later",
        )
        with pytest.raises(smtplib.SMTPServerDisconnected):
            await asyncio.to_thread(idle.getreply)
        other = reply_of("other", "From another mail server.")
        await asyncio.to_thread(relay, port, other, source="127.0.0.2")
        # The same sender's next reply, sent as mail servers send, is taken.
        await asyncio.to_thread(relay, port, reply_of("again", "At last."))
    bodies = sorted(c.body for c in tickets.comments.values())
    assert bodies == ["At last.", "From another mail server."]


def test_the_data_deadline_grows_with_the_size_counted_from_a_floor() -> None:
    """The largest message (what each counts as without trusted relays) has
    100 s at 256 KiB/s; a small one declared by the trusted mail server the
    floor's minute."""
    assert smtp.data_deadline(25 * 1024 * 1024) == 100.0
    assert smtp.data_deadline(10_000) == 60.0


def test_a_sender_on_ipv6_is_its_network_not_each_of_its_addresses() -> None:
    """A site is given a whole IPv6 /64 and may connect from any address in
    it: counted per address, it could hold room for as many messages as it
    liked. An IPv4 sender seen through an IPv6 socket is itself."""
    assert sender_of(("2001:db8:0:1::25", 41000, 0, 0)) == sender_of(("2001:db8:0:1:a::9", 41001))
    assert sender_of(("2001:db8:0:1::25", 41000)) != sender_of(("2001:db8:0:2::25", 41000))
    assert sender_of(("::ffff:192.0.2.25", 41000, 0, 0)) == sender_of(("192.0.2.25", 41000))
    assert sender_of(("192.0.2.25", 41000)) != sender_of(("192.0.2.26", 41000))


def test_a_budget_smaller_than_the_largest_message_stops_the_service_at_start() -> None:
    """Such a message would be put off at every try, for days, then bounced."""
    with pytest.raises(ValidationError, match="CASEMESH_MESSAGE_BUDGET_BYTES"):
        InboundSettings(
            reply_token_secret=SECRET,
            internal_signing_key=new_signing_key(),
            max_message_bytes=MOST,
            message_budget_bytes=MOST - 1,
        )

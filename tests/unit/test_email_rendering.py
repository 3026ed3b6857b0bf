"""The e-mail a person receives is the same whether the notifier writes its
bytes itself (`mime.render`) or through the `email` library: the same
headers once decoded, the same bytes after them (a text part and its HTML
alternative). Its subject reads as it was typed, whatever was typed, and
the e-mails of one case read as one conversation."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import httpx
import pytest

from casemesh.events.v1 import tickets_pb2
from casemesh_notifier.channels import HttpEmailChannel, Outgoing, SmtpChannel
from casemesh_notifier.labels import LOCALES, local_time, reader_zone
from casemesh_notifier.mime import SMTP_POLICY, Sender, ascii_domain, render
from casemesh_notifier.rendering import (
    Email,
    email_values,
    names,
    render_email,
    render_sms,
    sms_values,
)
from casemesh_notifier.samples import samples
from casemesh_notifier.steps import ticket_step

SENDER = "Casemesh Support <support@casemesh.local>"
ZONE = ZoneInfo("Asia/Shanghai")
TEXTS = [
    "",
    "请补充截图。",
    "A short line.\n.a line starting with a dot\n.",
    "上传到 99% 时失败，" * 30,
    "\n".join(["A long English paragraph that goes well past seventy-eight characters."] * 12),
]
# And a Date, which is the time of writing.
HEADERS = (
    "From",
    "To",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "X-Casemesh-Template",
)
TICKET = "7d1f6c2a-3e4b-4c5d-8e9f-0a1b2c3d4e5f"


def emails(text: str) -> dict[tuple[str, str], Email]:
    """Every template's e-mail in both locales, with `text` for all that
    people wrote in the samples but the subject (their own words when empty)."""
    found = {}
    for own, sample in zip(samples(), samples(lambda own: text or own), strict=True):
        for locale in LOCALES:
            if sample.step.template in EMAIL_TEMPLATES:
                values = email_values(sample.step, "T-1234", own.subject[locale])
                email = render_email(sample.step.template, locale, ZONE, values)
                found[(sample.step.template, locale)] = email
    return found


EMAIL_TEMPLATES = sorted(set(names()) - {"verification.code"})  # the code goes by SMS only
BY_TEXT = {text: emails(text) for text in TEXTS}


def outgoing(template: str, locale: str, text: str) -> Outgoing:
    email = BY_TEXT[text][(template, locale)]
    return Outgoing(
        job_id="0b9c5e0e-6a51-4f55-9a4b-4e0f1f9d2c11",
        recipient="alice@example.com",
        subject=email.subject,
        body=email.text,
        template=template,
        params={},
        html=email.html,
        case_name=f"tickets/{TICKET}",
    )


def written(m: Outgoing) -> bytes | None:
    """`m` as the notifier writes it itself."""
    fields = (m.body, m.template, m.html, m.reply_to, m.case_name)
    return render(Sender(SENDER), m.job_id, m.recipient, m.subject, *fields)


def by_the_library(m: Outgoing) -> bytes:
    """`m` as the `email` library writes it."""
    channel = SmtpChannel(host="relay.invalid", port=25, sender=SENDER)
    return channel._message(m).as_bytes(policy=SMTP_POLICY)


# A solved ticket's time to close (Shanghai: 6 March, 17:30), and how each
# language tells it: in the e-mail, in the SMS, and, for a ticket solved
# before its events said when, without a date; then what to do after it.
CLOSES_AT = datetime(2026, 3, 6, 9, 30, tzinfo=UTC)
CLOSES_BY_ITSELF = {
    "en": {
        "email": "until 6 March 2026, 17:30 (China Standard Time), when the ticket closes",
        "sms": "before it closes by itself on 6 Mar 17:30.",
        "email unknown": "until the ticket closes by itself after a while",
        "sms unknown": "before it closes by itself.",
        "then": "open a new ticket",
    },
    "zh-CN": {
        "email": "工单将于 2026年3月6日 17:30（中国标准时间）自动关闭",
        "sms": "请于3月6日17:30前在“我的工单”回复，届时自动关闭。",
        "email unknown": "工单过一段时间会自动关闭",
        "sms unknown": "请在工单自动关闭前于“我的工单”回复。",
        "then": "新工单",
    },
}


def solved(closes_at: datetime | None) -> tickets_pb2.TicketSolved:
    message = tickets_pb2.TicketSolved(resolution="Reset the password.")
    if closes_at is not None:
        message.auto_close_time.FromDatetime(closes_at)
    return message


@pytest.mark.parametrize("known", [True, False], ids=["date known", "solved before it was kept"])
@pytest.mark.parametrize("locale", LOCALES)
def test_a_solved_ticket_is_reopened_by_a_reply_only_until_it_closes_by_itself(
    locale: str, known: bool
) -> None:
    """Once a solved ticket has closed by itself, a reply is refused
    (TICKET_FINAL): the message that invites one says until when, rather
    than promise it reopens the ticket whenever; a ticket solved before
    its event carried the time hears that it closes after a while."""
    step = ticket_step(solved(CLOSES_AT if known else None), "OPEN")
    assert step is not None
    email = render_email(step.template, locale, ZONE, email_values(step, "T-1234", "Login"))
    sms = render_sms(step.template, locale, ZONE, sms_values(step, "T-1234", True))
    said = CLOSES_BY_ITSELF[locale]
    suffix = "" if known else " unknown"
    assert said["email" + suffix] in email.text and said["then"] in email.text
    assert said["sms" + suffix] in sms


@pytest.mark.parametrize("key", [(t, loc) for t in EMAIL_TEMPLATES for loc in LOCALES])
def test_every_template_reads_the_same_as_the_librarys_message(key: tuple[str, str]) -> None:
    channel = SmtpChannel(host="relay.invalid", port=25, sender=SENDER)
    for text in TEXTS:
        m = outgoing(*key, text)
        ours = written(m)
        theirs = channel._message(m).as_bytes(policy=SMTP_POLICY)
        assert ours is not None
        a = message_from_bytes(ours, policy=policy.default)
        b = message_from_bytes(theirs, policy=policy.default)
        assert a.keys() == b.keys()
        assert [str(a[h]) for h in HEADERS] == [str(b[h]) for h in HEADERS]
        assert a.get_content_type() == "multipart/alternative"
        for kind in ("plain", "html"):
            ours_part, theirs_part = a.get_body((kind,)), b.get_body((kind,))
            assert ours_part is not None and theirs_part is not None
            assert ours_part.get_content() == theirs_part.get_content()
        assert ours.split(b"\r\n\r\n", 1)[1] == theirs.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("key", [(t, loc) for t in EMAIL_TEMPLATES for loc in LOCALES])
def test_a_long_chinese_subject_keeps_every_header_line_within_78_characters(
    key: tuple[str, str],
) -> None:
    """RFC 5322's 78 characters a line, the Subject's first too (after
    "Subject: "), at every length of a person's subject. Decoded, the
    Subject reads as written (the library's own folding of some such
    subjects reads with a space more), the other headers as the library's
    message's do. The text alone: an HTML alternative's boundary, one token,
    makes its Content-Type line longer, in the library's message too."""
    channel = SmtpChannel(host="relay.invalid", port=25, sender=SENDER)
    m = replace(outgoing(*key, TEXTS[0]), html="")
    said = "换了手机号无法登录，验证码一直收不到，申诉也没有回音" * 2
    for n in range(1, len(said) + 1):
        subject = f"{m.subject} {said[:n]}"
        ours = written(replace(m, subject=subject))
        assert ours is not None
        head = ours.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 78, head
        a = message_from_bytes(ours, policy=policy.default)
        assert str(a["Subject"]) == subject
    theirs = channel._message(replace(m, subject=subject)).as_bytes(policy=SMTP_POLICY)
    b = message_from_bytes(theirs, policy=policy.default)
    others = [h for h in HEADERS if h != "Subject"]
    assert [str(a[h]) for h in others] == [str(b[h]) for h in others]


def test_an_international_domain_is_written_in_its_ascii_form() -> None:
    """The same mailbox, as a relay without SMTPUTF8 takes it (UTS #46,
    non-transitional: `faß.de` is not `fass.de`); the message to it is
    written as the library writes it. A mailbox name that is not ASCII
    stays as it is: only a relay with SMTPUTF8 takes it."""
    assert ascii_domain("li@例子.中国") == "li@xn--fsqu00a.xn--fiqs8s"
    assert ascii_domain("Li@Bücher.Example") == "Li@xn--bcher-kva.example"
    assert ascii_domain("wu@faß.de") == "wu@xn--fa-hia.de"
    assert ascii_domain("用户@例子.中国") == "用户@xn--fsqu00a.xn--fiqs8s"
    assert ascii_domain("alice@Example.com") == "alice@Example.com"
    channel = SmtpChannel(host="relay.invalid", port=25, sender=SENDER)
    to = ascii_domain("li@例子.中国")
    m = replace(outgoing(EMAIL_TEMPLATES[0], "zh-CN", TEXTS[0]), recipient=to)
    ours = written(m)
    assert ours is not None and b"\r\nTo: li@xn--fsqu00a.xn--fiqs8s\r\n" in ours
    a = message_from_bytes(ours, policy=policy.default)
    b = message_from_bytes(channel._message(m).as_bytes(policy=SMTP_POLICY), policy=policy.default)
    assert [str(a[h]) for h in HEADERS] == [str(b[h]) for h in HEADERS]


def test_what_it_does_not_write_is_left_to_the_library() -> None:
    plain = Sender(SENDER)
    m = outgoing("ticket.received", "en", "")
    assert (
        render(plain, m.job_id, "Alice <alice@example.com>", m.subject, m.body, m.template) is None
    )
    assert render(plain, m.job_id, "用户@例子.中国", m.subject, m.body, m.template) is None
    assert render(plain, m.job_id, m.recipient, "", m.body, m.template) is None
    assert render(plain, m.job_id, m.recipient, "x" * 80, m.body, m.template) is None
    assert (
        render(Sender("支持 <支持@例子.中国>"), m.job_id, m.recipient, m.subject, m.body, "t")
        is None
    )


def test_a_ticket_e_mails_reply_address_is_written_as_the_library_writes_it() -> None:
    channel = SmtpChannel(host="relay.invalid", port=25, sender=SENDER)
    to = "reply+0b9c5e0e6a514f559a4b4e0f1f9d2c11.abcdefghijklmnopqrstuvwx@reply.example.com"
    m = replace(outgoing(EMAIL_TEMPLATES[0], "zh-CN", TEXTS[0]), reply_to=to)
    ours = written(m)
    assert ours is not None
    a = message_from_bytes(ours, policy=policy.default)
    b = message_from_bytes(channel._message(m).as_bytes(policy=SMTP_POLICY), policy=policy.default)
    assert a.keys() == b.keys() and str(a["Reply-To"]) == str(b["Reply-To"]) == to


def encoded_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# Subjects a person may type that hold what reads as an RFC 2047 encoded
# word: decoded, a line break, a Bcc and a body of the typist's choosing.
LOOKS_ENCODED = [
    "Login fails " + encoded_word("Hi\r\nBcc: victim@evil.example"),
    "Login fails " + encoded_word("Hi\r\nBcc: victim@evil.example\r\n\r\nPay here"),
    "登录失败 =?utf-8?q?Hi=0D=0ABcc:_victim@evil.example?= 请处理",
    # Long enough that the library would fold it over several lines.
    "Uploads keep failing at 99 percent " * 3 + encoded_word("X-Priority: 1"),
]


def ticket_received(typed: str) -> Outgoing:
    """The receipt of a ticket whose requester typed `typed` as its subject."""
    sample = next(s for s in samples() if s.step.template == "ticket.received")
    values = email_values(sample.step, "T-1234", typed)
    email = render_email("ticket.received", "en", ZONE, values)
    return replace(outgoing("ticket.received", "en", ""), subject=email.subject, body=email.text)


@pytest.mark.parametrize("typed", LOOKS_ENCODED)
def test_a_subject_that_looks_encoded_reads_as_typed_and_adds_no_header(typed: str) -> None:
    """Whichever writes the e-mail, the reader sees the subject as it was
    typed, within the line limit, and the message has the headers and the
    body it has for any subject."""
    plain = message_from_bytes(by_the_library(ticket_received("Login fails")))
    m = ticket_received(typed)
    assert typed in m.subject
    for raw in (written(m), by_the_library(m)):
        assert raw is not None
        # (But the multipart boundary's line: one token, longer in any e-mail.)
        lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert max(len(line) for line in lines if b"boundary=" not in line) <= 78, lines
        got = message_from_bytes(raw, policy=policy.default)
        assert got.keys() == plain.keys()
        assert str(got["Subject"]) == m.subject
        text = got.get_body(("plain",))
        assert text is not None and text.get_content().splitlines() == m.body.splitlines()


async def test_every_e_mail_of_a_case_names_the_same_thread() -> None:
    """In-Reply-To and References name one root for all a case's e-mails,
    however they are written or sent, so mail clients show them together;
    another case's have another. The root is no message's own id, and
    tells nothing of the case."""
    received = outgoing("ticket.received", "en", "")
    solved = replace(
        outgoing("ticket.solved", "en", ""), job_id="3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d"
    )
    other = replace(received, case_name="tickets/2f3e4d5c-6b7a-4988-8776-655443322110")
    threads = set()
    for m in (received, solved, other):
        for raw in (written(m), by_the_library(m)):
            assert raw is not None
            got = message_from_bytes(raw, policy=policy.default)
            names = [str(got[h]) for h in ("In-Reply-To", "References") if h in got]
            assert len(names) == 2 and names[0] == names[1] != str(got["Message-ID"]), names
            threads.add((m.case_name, names[0]))
    assert len(threads) == 2 and len(dict(threads)) == 2
    root = dict(threads)[received.case_name]
    assert root.startswith("<") and root.endswith("@casemesh>")
    assert TICKET not in root and "ticket" not in root

    received_by_provider: list[dict[str, object]] = []

    def provider(request: httpx.Request) -> httpx.Response:
        received_by_provider.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "m1"})

    channel = HttpEmailChannel(
        url="https://mail.example/v1/send",
        sender=SENDER,
        transport=httpx.MockTransport(provider),
    )
    try:
        await channel.send(solved)
    finally:
        await channel.aclose()
    [body] = received_by_provider
    assert body["headers"] == {
        "Message-ID": f"<{solved.job_id}@casemesh>",
        "In-Reply-To": root,
        "References": root,
    }


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        ("+8613800138000", "Asia/Shanghai"),
        ("+447911123456", "Europe/London"),  # four zones, one time: the first
        ("+14155552671", "America/Los_Angeles"),
        ("+85291234567", "Asia/Hong_Kong"),
        # A country whose mobiles span zones of different times, and none at all.
        ("+61412345678", "Asia/Shanghai"),
        ("", "Asia/Shanghai"),
    ],
)
def test_a_readers_dates_are_in_the_zone_their_phone_number_tells(phone: str, zone: str) -> None:
    # (The UK's numbers name four zones that keep one time: any of them will do.)
    for at in (datetime(2026, 3, 2, 4, 0, tzinfo=UTC), datetime(2026, 7, 2, 4, 0, tzinfo=UTC)):
        told = reader_zone(phone, at, ZONE)
        assert told.utcoffset(at) == ZoneInfo(zone).utcoffset(at), (phone, told)


def test_a_due_time_reads_in_the_readers_zone() -> None:
    due = datetime(2026, 3, 2, 1, 40, tzinfo=UTC)
    london = reader_zone("+447911123456", due, ZONE)
    written = local_time(due, "en", london, "short")
    assert written == local_time(due, "en", ZoneInfo("Europe/London"), "short")
    assert written != local_time(due, "en", ZONE, "short")

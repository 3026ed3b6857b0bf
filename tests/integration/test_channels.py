"""The HTTP delivery adapters against a provider on loopback: what the
provider receives, which answers are retried, and that a job sent again
(after a crash mid-send) reaches the person once through a provider that
honours the idempotency key."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from casemesh_devstack.ports import free_port
from casemesh_notifier.channels import (
    DeliveryError,
    HttpEmailChannel,
    HttpSmsChannel,
    Outgoing,
    SmtpChannel,
)
from casemesh_notifier.settings import NotifierSettings
from tests.support import MailEndpoint, personal_settings


class Provider:
    """Delivers each idempotency key once, as real e-mail and SMS APIs do;
    answers with `status` while it is set."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.delivered: dict[str, dict[str, Any]] = {}
        self.status = 200
        self.headers: dict[str, str] = {}  # sent with an answer that is not 200
        self.answer: Any = None  # the JSON a 200 answers with, if not {"id": ...}
        self.echo = False  # an answer that is not 200 quotes the request, as some do
        self.said = b""  # what an answer that is not 200 says, if it does not quote
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                provider.received.append((body, dict(self.headers)))
                if provider.status != 200:
                    quoted = b'{"error": "invalid request", "request": %s}' % raw
                    said = quoted if provider.echo else provider.said
                    self.send_response(provider.status)
                    for name, value in provider.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(said)))
                    self.end_headers()
                    self.wfile.write(said)
                    return
                key = self.headers.get("Idempotency-Key", "")
                provider.delivered.setdefault(key, body)
                answer = {"id": f"msg-{key}"} if provider.answer is None else provider.answer
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1/mail"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture()
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.stop()


MESSAGE = Outgoing(
    job_id="0b9c5e0e-6a51-4f55-9a4b-4e0f1f9d2c11",
    recipient="alice@example.com",
    subject="【工单已受理】\n换了手机号无法登录",
    body="您好，我们已收到您的工单。",
    template="ticket.received",
    params={},
    html="<!DOCTYPE html>\n<html><body><p>您好，我们已收到您的工单。</p></body></html>\n",
)


async def test_an_email_sent_again_after_a_crash_reaches_the_person_once(
    provider: Provider,
) -> None:
    channel = HttpEmailChannel(url=provider.url, sender="Casemesh <support@casemesh.local>")
    try:
        first = await channel.send(MESSAGE)
        again = await channel.send(MESSAGE)  # the same job, taken up after a kill
    finally:
        await channel.aclose()
    assert first == again == f"msg-{MESSAGE.job_id}"
    assert len(provider.received) == 2
    assert list(provider.delivered) == [MESSAGE.job_id]
    body, headers = provider.received[0]
    assert headers["Idempotency-Key"] == MESSAGE.job_id
    assert body["to"] == "alice@example.com"
    assert body["subject"] == "【工单已受理】 换了手机号无法登录"  # one line
    assert body["text"] == MESSAGE.body
    assert body["html"] == MESSAGE.html
    assert body["headers"]["Message-ID"] == f"<{MESSAGE.job_id}@casemesh>"


async def refusal(channel: HttpEmailChannel | HttpSmsChannel) -> DeliveryError:
    """How the channel fails to send MESSAGE (it must fail)."""
    try:
        with pytest.raises(DeliveryError) as failure:
            await channel.send(MESSAGE)
    finally:
        await channel.aclose()
    return failure.value


@pytest.mark.parametrize(
    ("status", "permanent", "away", "maybe_sent"),
    [
        (503, False, True, False),
        (502, False, False, True),
        (504, False, False, True),
        (429, False, True, False),
        (500, False, False, True),
        (408, False, False, False),
        (409, False, False, True),
        (425, False, False, False),
        (400, True, False, False),
        (404, False, False, False),  # no such API: the URL set, most likely
        (410, False, False, False),
        (422, True, False, False),
    ],
)
async def test_a_providers_refusal_says_whether_to_retry(
    provider: Provider, status: int, permanent: bool, away: bool, maybe_sent: bool
) -> None:
    """A provider throttling us or unavailable (429, 503) is away, as an
    unreachable one is: the try spends no attempt, so an outage of hours
    parks nothing. A 502 or 504 counts, as any other 5xx does. An answer
    after which the message may have gone all the same (the idempotency
    key in use by a first try whose answer was lost, 409; a provider or its
    proxy failing mid-request, 500, 502, 504) is retried as a possible
    repeat, never parked as a refusal."""
    provider.status = status
    failure = await refusal(HttpEmailChannel(url=provider.url, sender="support@casemesh.local"))
    assert failure.permanent is permanent
    assert failure.unreachable is away
    assert failure.maybe_sent is maybe_sent
    assert provider.delivered == {}


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("120", 120.0), ("999999", 6 * 3600.0), ("soon", None), ("²", None)],
)
async def test_a_provider_saying_when_to_come_back_is_heard(
    provider: Provider, retry_after: str, wait: float | None
) -> None:
    provider.status, provider.headers = 429, {"Retry-After": retry_after}
    failure = await refusal(HttpSmsChannel(url=provider.url))
    assert not failure.permanent and failure.retry_after == wait


@pytest.mark.parametrize("status", [308, 401, 402, 403])
async def test_a_redirect_or_a_refused_key_is_no_delivery_and_waits_for_the_operator(
    provider: Provider, status: int
) -> None:
    """A provider moved, our key refused or our account out of credit (402)
    is the operator's to mend: the job waits, and is not parked with its
    one-time code."""
    provider.status, provider.headers = status, {"Location": "https://sms.example/v2"}
    failure = await refusal(HttpSmsChannel(url=provider.url))
    assert failure.unreachable and not failure.permanent
    assert str(status) in str(failure) and provider.delivered == {}


@pytest.mark.parametrize("answer", [[{"id": "m1"}], "queued", 7, False])
async def test_a_taken_message_is_a_delivery_whatever_the_body_says(
    provider: Provider, answer: Any
) -> None:
    provider.answer = answer
    channel = HttpSmsChannel(url=provider.url)
    try:
        sent = await channel.send(MESSAGE)
    finally:
        await channel.aclose()
    assert isinstance(sent, str) and list(provider.delivered) == [MESSAGE.job_id]


def test_the_notifier_needs_a_way_to_send_email() -> None:
    with pytest.raises(ValidationError, match="CASEMESH_EMAIL_API_URL"):
        NotifierSettings(
            **personal_settings(), database_url="postgresql://u@h/db", sms_url="http://sms.local"
        )
    with pytest.raises(ValidationError, match="http"):
        NotifierSettings(
            **personal_settings(),
            database_url="postgresql://u@h/db",
            sms_url="http://s",
            email_api_url="mail.local",
        )
    api = NotifierSettings(
        **personal_settings(),
        database_url="postgresql://u@h/db",
        sms_url="http://s",
        email_api_url="https://mail.local",
    )
    assert api.smtp_host == ""


class Relay:
    """An SMTP relay on loopback counting the sessions it was opened; with
    `pipelining`, it offers PIPELINING (RFC 2920), as common relays do;
    without `smtputf8`, no SMTPUTF8 (RFC 6531), as many do not."""

    def __init__(self, *, pipelining: bool = False, smtputf8: bool = True) -> None:
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.refused: set[str] = set()  # recipients it answers `refusal` for
        self.refusal = "550 5.1.1 no such mailbox"
        self.sender_refusal = ""  # the answer to MAIL FROM, if not 250
        self.recipients: list[str] = []  # each RCPT TO it took (the envelope's)
        self.sessions = 0
        self.messages: list[Any] = []
        self.address = ("127.0.0.1", free_port())
        self.mail = self._open()

    def _open(self) -> MailEndpoint:
        mail = MailEndpoint(self.address[1])
        mail.messages = self.messages
        relay = self

        class Counting(type(mail._controller.handler)):  # type: ignore[misc]
            async def handle_EHLO(
                self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
            ) -> Any:
                relay.sessions += 1
                session.host_name = hostname
                if not relay.smtputf8:
                    responses = [r for r in responses if r[4:] != "SMTPUTF8"]
                if relay.pipelining:
                    return [*responses[:-1], "250-PIPELINING", responses[-1]]
                return responses

            async def handle_MAIL(
                self, server: Any, session: Any, envelope: Any, address: str, options: Any
            ) -> str:
                if relay.sender_refusal:
                    return relay.sender_refusal
                envelope.mail_from = address
                return "250 OK"

            async def handle_RCPT(
                self, server: Any, session: Any, envelope: Any, address: str, options: Any
            ) -> str:
                if address in relay.refused:
                    return relay.refusal
                relay.recipients.append(address)
                envelope.rcpt_tos.append(address)
                return "250 OK"

        mail._controller.handler = Counting()
        mail.start()
        return mail

    def restart(self) -> None:
        """Stops and starts again: every open session is cut."""
        self.mail.stop()
        self.mail = self._open()


@pytest.fixture()
def relay() -> Iterator[Relay]:
    r = Relay()
    yield r
    r.mail.stop()


@pytest.fixture()
def pipelining_relay() -> Iterator[Relay]:
    r = Relay(pipelining=True)
    yield r
    r.mail.stop()


def smtp_to(relay: Relay, *, timeout: float = 5, data_timeout: float = 120) -> SmtpChannel:
    host, port = relay.address
    return SmtpChannel(
        host=host,
        port=port,
        sender="support@casemesh.local",
        timeout=timeout,
        data_timeout=data_timeout,
    )


def numbered(n: int) -> Outgoing:
    return replace(MESSAGE, job_id=f"{MESSAGE.job_id[:-4]}{n:04d}", recipient=f"u{n}@example.com")


async def test_smtp_sends_one_message_after_another_over_one_session(relay: Relay) -> None:
    channel = smtp_to(relay)
    try:
        for n in range(20):
            await channel.send(numbered(n))
    finally:
        await channel.aclose()
    got = [m["Message-ID"] for m in relay.messages]
    assert got == [f"<{numbered(n).job_id}@casemesh>" for n in range(20)]
    assert relay.sessions == 1


async def test_a_session_the_relay_dropped_while_idle_is_replaced_and_nothing_is_lost(
    relay: Relay,
) -> None:
    channel = smtp_to(relay)
    channel.CHECK_S = 0.0  # every reuse asks first
    try:
        await channel.send(numbered(1))
        # The relay restarts: the idle session is cut.
        relay.restart()
        await channel.send(numbered(2))
    finally:
        await channel.aclose()
    assert [m["To"] for m in relay.messages] == ["u1@example.com", "u2@example.com"]
    assert relay.sessions == 2


def answering_after(relay: Relay, seconds: float) -> None:
    """The relay keeps each message, then takes `seconds` to answer for it."""
    keep = relay.mail._controller.handler.handle_DATA

    class Slow(type(relay.mail._controller.handler)):  # type: ignore[misc]
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer: str = await keep(server, session, envelope)
            await asyncio.sleep(seconds)
            return answer

    relay.mail._controller.handler = Slow()


async def send_each(channel: SmtpChannel, messages: list[Outgoing]) -> None:
    try:
        for message in messages:
            await channel.send(message)
    finally:
        await channel.aclose()


async def test_a_relay_slower_than_a_step_but_within_the_data_timeout_delivers_once(
    relay: Relay,
) -> None:
    answering_after(relay, 2.5)
    # The second message shows the session still works at step pace. (A step
    # timeout of a second and more: a busy machine may take that to connect.)
    await send_each(smtp_to(relay, timeout=1.2, data_timeout=10), [numbered(1), numbered(2)])
    assert [m["To"] for m in relay.messages] == ["u1@example.com", "u2@example.com"]


async def test_a_message_the_relay_never_answered_for_is_retried_as_a_possible_repeat(
    relay: Relay,
) -> None:
    answering_after(relay, 3.0)
    with pytest.raises(DeliveryError) as lost:
        await send_each(smtp_to(relay, timeout=5, data_timeout=0.5), [numbered(1)])
    assert lost.value.maybe_sent and not lost.value.permanent
    assert [m["To"] for m in relay.messages] == ["u1@example.com"]  # it did arrive

    # Nobody at the address: certainly not sent.
    channel = SmtpChannel(host="127.0.0.1", port=free_port(), sender="support@casemesh.local")
    with pytest.raises(DeliveryError) as refused:
        await channel.send(numbered(2))
    assert refused.value.unreachable
    assert not refused.value.maybe_sent and not refused.value.permanent


async def test_messages_go_out_in_order_over_one_session_to_a_pipelining_relay(
    pipelining_relay: Relay,
) -> None:
    channel = smtp_to(pipelining_relay)
    batch = [numbered(n) for n in range(21)]
    try:
        results = [await channel.send(m) for m in batch]
    finally:
        await channel.aclose()
    assert results == [f"<{m.job_id}@casemesh>" for m in batch]
    got = [(m["Message-ID"], m["To"], m["Subject"]) for m in pipelining_relay.messages]
    assert got == [
        (
            f"<{numbered(n).job_id}@casemesh>",
            f"u{n}@example.com",
            "【工单已受理】 换了手机号无法登录",
        )
        for n in range(21)
    ]
    # A text part and its HTML alternative.
    first = pipelining_relay.messages[0]
    assert first.get_content_type() == "multipart/alternative"
    text, html = first.get_body(("plain",)), first.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().splitlines() == MESSAGE.body.splitlines()
    assert html.get_content().splitlines() == MESSAGE.html.splitlines()
    assert pipelining_relay.sessions == 1


@pytest.mark.parametrize(
    ("pipelining", "refusal"),
    [
        (False, "550 5.1.1 no such mailbox"),
        (True, "550 5.1.1 no such mailbox"),
        (False, "450 4.2.0 greylisted, try again later"),
        (True, "452 4.2.2 mailbox full"),
        (False, "421 4.7.0 too many connections, closing"),
        (False, "554 5.7.1 relay access denied"),
        (True, "550 5.7.1 relaying denied"),
    ],
)
async def test_a_refused_recipient_fails_alone_and_the_session_goes_on(
    pipelining: bool, refusal: str
) -> None:
    """Refused for good (5xx), the message is not retried; asked to come
    back (4xx: greylisting, a full mailbox), it is; a relay closing (421)
    is away, whatever the message. A policy refusal (5.7.x: "relaying
    denied", or the recipient's rules) is retried, not parked at once: a
    relay refusing everyone is then seen as away (`delivery.AWAY_AFTER`)."""
    relay = Relay(pipelining=pipelining)
    relay.refused.add("u2@example.com")
    relay.refusal = refusal
    channel = smtp_to(relay)
    try:
        first = await channel.send(numbered(1))
        with pytest.raises(DeliveryError) as refused:
            await channel.send(numbered(2))
        third = await channel.send(numbered(3))
    finally:
        await channel.aclose()
        relay.mail.stop()
    assert first == f"<{numbered(1).job_id}@casemesh>"
    assert third == f"<{numbered(3).job_id}@casemesh>"
    policy = " 5.7." in refusal
    assert refused.value.permanent is (refusal.startswith("5") and not policy)
    assert not refused.value.maybe_sent
    assert refused.value.unreachable is refusal.startswith("421")
    assert [m["To"] for m in relay.messages] == ["u1@example.com", "u3@example.com"]


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize(
    ("answer", "whose"),
    [
        ("530 5.7.0 Must issue a STARTTLS command first", "operator"),
        ("553 5.7.1 sender address rejected", "operator"),
        ("552 5.3.4 message size exceeds fixed limit", "message"),
        ("451 4.3.0 try again later", "later"),
        ("421 4.3.2 shutting down", "operator"),
    ],
)
async def test_a_refusal_at_mail_from_is_the_operators_the_messages_or_for_later(
    pipelining: bool, answer: str, whose: str
) -> None:
    """Our sender refused (STARTTLS, a login, our address) is the operator's
    to mend; a message too large is that message's, for good; a 4xx, later."""
    relay = Relay(pipelining=pipelining)
    relay.sender_refusal = answer
    channel = smtp_to(relay)
    try:
        with pytest.raises(DeliveryError) as refused:
            await channel.send(numbered(1))
    finally:
        await channel.aclose()
        relay.mail.stop()
    assert (refused.value.unreachable, refused.value.permanent) == {
        "operator": (True, False),
        "message": (False, True),
        "later": (False, False),
    }[whose]
    assert relay.messages == []


async def test_a_relay_that_turns_us_away_at_the_greeting_is_no_refusal_of_the_message() -> None:
    # A 554 greeting (or a refused login) is no answer about the message: the
    # job retries with backoff, not parked at once as if its recipient were refused.
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 not today\r\n")
        await writer.drain()
        writer.close()

    await assert_turned_away(refuse)


async def assert_turned_away(relay: Any) -> None:
    """A message sent to the `relay` (a stream handler) is refused as one it
    never took: the relay unreachable, nothing sent, nothing permanent."""
    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = SmtpChannel(host="127.0.0.1", port=port, sender="support@casemesh.local")
    try:
        with pytest.raises(DeliveryError) as refused:
            await channel.send(numbered(1))
    finally:
        await channel.aclose()
        server.close()
        await server.wait_closed()
    assert refused.value.unreachable
    assert not refused.value.permanent and not refused.value.maybe_sent


async def test_a_relay_that_turns_us_away_at_ehlo_and_helo_is_no_refusal_of_the_message() -> None:
    # Greeted, then refused at EHLO and at HELO: turned away as at the
    # greeting, whatever the message; the job waits for the operator rather
    # than every e-mail being parked at its first try.
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.example ESMTP\r\n")
        while (await reader.readline())[:4].upper() in (b"EHLO", b"HELO"):
            writer.write(b"554 5.7.1 not from your address\r\n")
            await writer.drain()
        writer.write(b"221 2.0.0 bye\r\n")
        await writer.drain()
        writer.close()

    await assert_turned_away(refuse)


@pytest.mark.parametrize("pipelining", [False, True])
async def test_an_international_domain_reaches_a_relay_without_smtputf8(pipelining: bool) -> None:
    """Li's address is in Chinese (`li@例子.中国`); the relay offers no
    SMTPUTF8. Her mail goes to the same mailbox under the domain's ASCII
    form, in the envelope and in To:. A mailbox name in Chinese cannot go
    through such a relay: that message is refused for good (parked, to be
    replayed through a relay that takes it), not taken for the relay away,
    and the next one goes out."""
    relay = Relay(pipelining=pipelining, smtputf8=False)
    channel = smtp_to(relay)
    try:
        await channel.send(replace(numbered(1), recipient="li@例子.中国"))
        with pytest.raises(DeliveryError) as refused:
            await channel.send(replace(numbered(2), recipient="用户@例子.中国"))
        await channel.send(numbered(3))
    finally:
        await channel.aclose()
        relay.mail.stop()
    assert relay.recipients == ["li@xn--fsqu00a.xn--fiqs8s", "u3@example.com"]
    assert [m["To"] for m in relay.messages] == ["li@xn--fsqu00a.xn--fiqs8s", "u3@example.com"]
    assert refused.value.permanent
    assert not refused.value.unreachable and not refused.value.maybe_sent

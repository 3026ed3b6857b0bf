"""What the notifier's HTTP adapters ask the providers to send: a ticket
e-mail through the API can be answered, as one over SMTP can, and a message
given a new address goes under an idempotency key of its own; what is
kept of a provider's answer; and that a relay hanging the SMTP adapter's
sends holds up nothing else of the notifier's."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx

from casemesh.platform.replies import reply_address
from casemesh_notifier.channels import (
    DeliveryError,
    HttpEmailChannel,
    HttpSmsChannel,
    Outgoing,
    SmtpChannel,
)
from casemesh_notifier.delivery import Job, kept_error

TICKET = "0b6f3c2e-8d4a-4f1b-9c7e-5a2d1e3f4b6c"
MESSAGE = Outgoing(
    job_id="5f0e6c1a-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
    recipient="alice@example.com",
    subject="【工单已受理】 换了手机号无法登录",
    body="您好，我们已收到您的工单。直接回复此邮件即可补充信息。",
    template="ticket.received",
    params={},
)


async def sent_through_the_api(message: Outgoing) -> dict[str, Any]:
    """The JSON body the provider received for `message`."""
    received: list[dict[str, Any]] = []

    def provider(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "m1"})

    channel = HttpEmailChannel(
        url="https://mail.example/v1/send",
        sender="Casemesh Support <support@casemesh.local>",
        transport=httpx.MockTransport(provider),
    )
    try:
        assert await channel.send(message) == "m1"
    finally:
        await channel.aclose()
    [body] = received
    return body


async def test_a_ticket_e_mail_sent_through_the_api_carries_its_reply_address() -> None:
    to = reply_address(TICKET, "s" * 32, "reply.casemesh.local")
    body = await sent_through_the_api(replace(MESSAGE, reply_to=to))
    assert body["headers"] == {"Message-ID": f"<{MESSAGE.job_id}@casemesh>", "Reply-To": to}
    assert body["from"] == "Casemesh Support <support@casemesh.local>"


async def test_an_e_mail_that_takes_no_reply_sets_no_reply_address() -> None:
    body = await sent_through_the_api(MESSAGE)
    assert body["headers"] == {"Message-ID": f"<{MESSAGE.job_id}@casemesh>"}
    assert "reply_to" not in json.dumps(body).lower().replace("-", "_")


async def idempotency_keys(message: Outgoing) -> list[str]:
    """The Idempotency-Key the e-mail provider, then the SMS provider,
    received for `message`."""
    keys: list[str] = []

    def provider(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        return httpx.Response(200, json={"id": "m1"})

    transport = httpx.MockTransport(provider)
    for channel in (
        HttpEmailChannel(url="https://mail.example/v1/send", sender="s@x", transport=transport),
        HttpSmsChannel(url="https://sms.example/v1/messages", transport=transport),
    ):
        try:
            await channel.send(message)
        finally:
            await channel.aclose()
    return keys


async def test_a_message_goes_under_its_job_id_until_it_is_given_a_new_address() -> None:
    assert await idempotency_keys(MESSAGE) == [MESSAGE.job_id] * 2
    moved = replace(MESSAGE, recipient="alice@example.org", readdressed=2)
    assert await idempotency_keys(moved) == [f"{MESSAGE.job_id}.2"] * 2
    # The e-mail is still the job's one message.
    body = await sent_through_the_api(moved)
    assert body["headers"] == {"Message-ID": f"<{MESSAGE.job_id}@casemesh>"}


def test_a_refusal_in_utf_16_is_kept_readable_and_without_control_characters() -> None:
    """A provider answering in UTF-16 (read as UTF-8: a NUL after every
    letter) or with binary bytes: what is kept is its words, with no
    character a text column refuses; lines and tabs stay."""
    job = Job(
        id=MESSAGE.job_id,
        cause_event_id="tickets/1:1",
        case_name="tickets/1",
        channel="SMS",
        recipient="+8613800138000",
        template="ticket.received",
        subject="",
        body="",
        html="",
        params={},
        attempts=1,
    )
    answer = "invalid number\n\tsee docs".encode("utf-16-le") + b"\x1b[0m\r"
    refusal = DeliveryError(
        "SMS provider refused: HTTP 400",
        permanent=True,
        detail=answer.decode("utf-8", "replace"),
    )
    kept = kept_error(job, refusal)
    assert kept == "SMS provider refused: HTTP 400: invalid number\n\tsee docs[0m"


# The threads asyncio lends every `to_thread` of a process, here two: the
# planner's key look-ups, the outbox's lock check and an erasure's
# forgetting of keys all wait for one.
SHARED_THREADS = 2


async def hung_relay_leaves_the_shared_threads_free() -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=SHARED_THREADS))
    # A relay that takes connections and never greets: each send hangs on
    # it for its step timeout, far longer than this test waits.
    connected: list[asyncio.StreamWriter] = []
    enough = asyncio.Event()
    released = asyncio.Event()

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.append(writer)
        if len(connected) >= SHARED_THREADS:
            enough.set()
        await released.wait()
        writer.close()

    relay = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = relay.sockets[0].getsockname()[1]
    sends = 2 * SHARED_THREADS
    channel = SmtpChannel(
        host="127.0.0.1", port=port, sender="s@casemesh.local", timeout=60, workers=sends
    )
    hanging = [asyncio.create_task(channel.send(MESSAGE)) for _ in range(sends)]
    try:
        await asyncio.wait_for(enough.wait(), 30)
        # What the planner does next (a key look-up in a thread) is not
        # queued behind the relay.
        await asyncio.wait_for(asyncio.to_thread(lambda: None), 10)
    finally:
        released.set()
        relay.close()
        await relay.wait_closed()
        failed = await asyncio.gather(*hanging, return_exceptions=True)
        await channel.aclose()
    # The relay said nothing: no message went, and the channel is away.
    assert all(isinstance(f, DeliveryError) and f.unreachable for f in failed)


def test_a_hung_smtp_relay_stalls_no_other_work_of_the_notifier() -> None:
    """A relay that takes connections and answers nothing holds as many
    sends as the notifier makes at once; they hang in the SMTP channel's
    own threads, and the work that lends threads from asyncio carries on.
    (In a loop of its own: it sets that loop's shared threads.)"""
    asyncio.run(hung_relay_leaves_the_shared_threads_free())

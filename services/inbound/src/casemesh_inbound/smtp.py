"""The SMTP face of the reply desk (aiosmtpd): a recipient is checked at RCPT
TO, so a forged or unknown reply address is refused before any data is sent;
the message is checked and added at DATA. Every refusal is counted by reason
(`casemesh_inbound_refused_total`).

The messages held at once, from their data to their answer, are bounded in
bytes (`MessageBudget`): a message arriving when there is no room is answered
451 4.3.1 before any of it is sent, and its sender tries again later, so
replies arriving together never run the service out of memory. Without a
trusted mail server in front, each sender has room for one message at a time,
so nobody holding a reply address keeps the room from everyone else; and a
message whose data does not arrive in time (`data_deadline`) is answered 421
4.4.2, its connection closed and its room given back, so a sender that asks
for DATA and sends nothing holds it for a bounded time."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from aiosmtpd.smtp import SMTP
from opentelemetry import trace

from casemesh.platform.logging import get_logger
from casemesh.platform.telemetry import tracer
from casemesh_inbound.desk import Refused, ReplyDesk
from casemesh_inbound.metrics import ACCEPTED, DEFERRED, REFUSED
from casemesh_inbound.settings import InboundSettings

log = get_logger(__name__)

# The answer to DATA when the budget has no room for the message: temporary
# (RFC 3463 4.3.1, mail system full), so the sending server keeps it and tries
# again later.
NO_ROOM = "451 4.3.1 too much mail is being taken now; try again later"

# How fast a message's data must arrive once DATA is answered 354: at this
# rate for the bytes it is counted at, and in no less than the floor. Mail
# servers send from data centres at many megabits a second; 256 KiB/s (about
# 2 Mbit/s) leaves room for a slow or far link, and gives the largest message
# (25 MiB, what every message counts as without trusted relays) 100 s, a
# third of the 300 s aiosmtpd otherwise allows it. The floor covers the
# round trips of a small one. Cut off, the sender is told to try again
# (421 4.4.2, RFC 3463: the connection too poor to finish); one that never
# manages the rate bounces after days, so it is kept well below any mail
# server's.
DATA_RATE = 256 * 1024
DATA_FLOOR_SECONDS = 60.0
TOO_SLOW = "421 4.4.2 the message took too long to arrive; try again later"


def data_deadline(size: int) -> float:
    """Seconds a message counted at `size` bytes has for its data."""
    return max(DATA_FLOOR_SECONDS, size / DATA_RATE)


class MessageBudget:
    """The bytes of messages the service holds at once. A message is held
    whole from its data to its answer: aiosmtpd reads all of it into memory
    before the handler sees it, and keeps it until the answer is sent; its
    attachments, decoded, are held beside it while they are uploaded.

    Room taken for a sender (`sender_of`) is one message's at a time: a
    sender whose sizes are not believed takes room for the largest message at
    each DATA and may then send nothing for as long as aiosmtpd waits (300 s,
    then again on a new connection), so two of its connections would keep
    every other reply out."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0
        self._senders: set[str] = set()

    def take(self, size: int, sender: str | None = None) -> bool:
        """Holds `size` bytes if there is room for them and, for a `sender`,
        if it holds none already."""
        if self.held + size > self.total or (sender is not None and sender in self._senders):
            return False
        self.held += size
        if sender is not None:
            self._senders.add(sender)
        return True

    def give_back(self, size: int, sender: str | None = None) -> None:
        self.held -= size
        if sender is not None:
            self._senders.discard(sender)


def _address_of(peer: Any) -> IPv4Address | IPv6Address | None:
    """The address a connection comes from (an IPv4 one as itself when the
    socket shows it mapped into IPv6); None if it is none."""
    try:
        address = ip_address(peer[0])
    except (TypeError, ValueError, IndexError):
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def sender_of(peer: Any) -> str:
    """Who a connection is from, as far as room for mail goes: its IPv4
    address, or its IPv6 /64 (one site's network, whose every address the
    site may use)."""
    address = _address_of(peer)
    if address is None:
        return repr(peer)
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return str(address)


class ReplyHandler:
    """aiosmtpd's handler: one ticket per message (a second recipient is
    refused for now, so each reply is one comment)."""

    def __init__(
        self, desk: ReplyDesk, relays: Sequence[IPv4Network | IPv6Network] | None = None
    ) -> None:
        self.desk = desk
        # The networks mail is taken from (the trusted mail server's); None: any.
        self.relays = relays
        # Messages received and not yet answered; `_answered` is set when none is.
        self._taking = 0
        self._answered = asyncio.Event()
        self._answered.set()

    async def answered(self) -> None:
        """Returns once every message received so far has its answer (the
        service stopping waits for this, so no sender is cut off mid-reply
        and made to send again what may have been added)."""
        await self._answered.wait()

    def _from_relay(self, session: Any) -> bool:
        if self.relays is None:
            return True
        peer = _address_of(session.peer)
        return peer is not None and any(peer in network for network in self.relays)

    def _refuse(self, refused: Refused, **context: Any) -> str:
        if refused.reason:
            REFUSED.labels(refused.reason).inc()
        log.info("inbound.refused", code=refused.code, reason=refused.reason, **context)
        return str(refused)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if not self._from_relay(session):
            return self._refuse(
                Refused(
                    550,
                    "untrusted_relay",
                    "5.7.1 this server takes mail only from the reply domain's mail server",
                ),
                peer=str(session.peer[0]) if session.peer else "",
            )
        if envelope.rcpt_tos:
            return "452 4.5.3 one reply address per message"
        try:
            self.desk.ticket_for(address)
        except Refused as refused:
            return self._refuse(refused)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._taking += 1
        self._answered.clear()
        try:
            # One trace for the reply: the calls it makes (the ticket, each
            # attachment's upload, the comment) and its log lines.
            with tracer("casemesh.inbound").start_as_current_span(
                "inbound reply", kind=trace.SpanKind.SERVER
            ):
                return await self._take(envelope)
        finally:
            # aiosmtpd writes the answer returned here to the socket before
            # this task next waits: before anyone waiting on `_answered` runs.
            self._taking -= 1
            if not self._taking:
                self._answered.set()

    async def _take(self, envelope: Any) -> str:
        """The SMTP answer to a message: added to its ticket, or why not."""
        raw = envelope.original_content or envelope.content
        if not envelope.rcpt_tos or not isinstance(raw, bytes):
            return "554 5.5.1 no valid recipients"
        if not envelope.mail_from or envelope.mail_from == "<>":
            # A bounce (null sender, RFC 5321): never a comment, never answered.
            return self._refuse(Refused(250, "automatic", "2.0.0 a bounce; not added"))
        try:
            ticket_id = self.desk.ticket_for(envelope.rcpt_tos[0])
            status = await self.desk.add_reply(ticket_id, raw)
        except Refused as refused:
            return self._refuse(refused, ticket=envelope.rcpt_tos[0].partition(".")[0])
        except Exception:
            # Ours to fix, not the sender's: it tries again later.
            log.exception("inbound.failed", ticket=envelope.rcpt_tos[0].partition(".")[0])
            return "451 4.3.0 the reply cannot be taken now; try again later"
        ACCEPTED.inc()
        log.info("inbound.comment_added", ticket=ticket_id, status=status)
        return "250 2.0.0 added to the ticket"


class ReplySession(SMTP):
    """An SMTP session whose messages are taken within the budget: room is
    made for a message when DATA is asked for (aiosmtpd has no hook between
    DATA and its 354) and given back once the message is answered, its
    sender goes away, or its data is too slow to arrive. Sizes not believed,
    a sender already holding room for a message is put off like one finding
    no room."""

    def __init__(
        self, handler: object, *, budget: MessageBudget, sizes_believed: bool, **options: Any
    ) -> None:
        super().__init__(handler, **options)
        self.budget = budget
        # Whether a size the sender declares (MAIL FROM … SIZE=, RFC 1870) is
        # believed: only when mail comes from the trusted mail server alone,
        # whose estimate is the size of the message it holds. Anyone else
        # could declare a byte and send the largest message.
        self.sizes_believed = sizes_believed

    async def smtp_DATA(self, arg: str) -> None:
        if self.envelope is None or not self.envelope.rcpt_tos or arg:
            await super().smtp_DATA(arg)  # refused as out of turn, or malformed
            return
        size = self._most_expected()
        sender = self._sender()
        if not self.budget.take(size, sender):
            DEFERRED.inc()
            log.info("inbound.deferred", size=size, held=self.budget.held, sender=sender)
            await self.push(NO_ROOM)
            return
        deadline = asyncio.get_running_loop().call_later(
            data_deadline(size), self._too_slow, self.envelope, asyncio.current_task()
        )
        try:
            await super().smtp_DATA(arg)
        finally:
            deadline.cancel()
            self.budget.give_back(size, sender)

    def _too_slow(self, envelope: Any, taking: asyncio.Task[Any] | None) -> None:
        """Ends a session whose message has not all arrived by its deadline:
        the sender is told to try again and the connection closed, and the
        DATA being read is cancelled where it waits (as aiosmtpd does when
        the connection drops), so its room is given back now, not once a
        sender that reads no answer lets the close finish. A message whose
        data has arrived (aiosmtpd sets its content just before the handler
        is called) is being added: it is left to be answered."""
        if envelope.original_content is not None or self.transport is None:
            return
        log.info("inbound.too_slow", sender=self._sender(), held=self.budget.held)
        self._writer.write(TOO_SLOW.encode() + b"\r\n")
        self.transport.close()
        if taking is not None:
            taking.cancel()

    def _sender(self) -> str | None:
        """Whom this message's room is held for, one message at a time; None
        when sizes are believed: the trusted mail server sends everyone's mail
        from its few addresses, each message's room as large as it is."""
        if self.sizes_believed or self.session is None:
            return None
        return sender_of(self.session.peer)

    def _most_expected(self) -> int:
        """The bytes this message may come to: its declared size when
        believed, else the largest message taken."""
        most = self.data_size_limit or 0
        if self.sizes_believed and self.envelope is not None:
            for option in self.envelope.mail_options:
                name, _, value = option.partition("=")
                if name == "SIZE" and value.isdigit():
                    return min(int(value), most)
        return most


def sessions(handler: object, cfg: InboundSettings) -> Callable[[], SMTP]:
    """Makes the SMTP session of each connection: the handler, the size limit,
    the budget all sessions share, and STARTTLS offered when a certificate is
    set (its files are read now, so a bad one stops the service at start)."""
    tls: ssl.SSLContext | None = None
    if cfg.tls_cert_file:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    budget = MessageBudget(cfg.message_budget_bytes)
    # With trusted relays, nobody else gets past RCPT TO to DATA.
    sizes_believed = cfg.relay_networks() is not None
    return lambda: ReplySession(
        handler,
        budget=budget,
        sizes_believed=sizes_believed,
        data_size_limit=cfg.max_message_bytes,
        hostname=cfg.reply_domain,
        ident="casemesh inbound",
        tls_context=tls,
    )

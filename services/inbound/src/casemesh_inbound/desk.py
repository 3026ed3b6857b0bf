"""The reply desk: a requester's e-mail reply made into a comment on their
ticket, through the tickets and evidence services, as the requester.

The address names the ticket (`casemesh.platform.replies`); only the ticket's
requester may reply (From must be the ticket's contact e-mail); each
attachment is uploaded as their evidence and attached to the comment; the
Message-ID keys the comment, so a message delivered twice is added once (and
taken, not bounced, when it is read differently the second time).
What cannot be done is `Refused`, with the SMTP reply to give and a reason
for the metric; a backend that cannot be reached is a temporary failure
(451), so the sending server tries again later.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from casemesh.platform.callers import INBOUND_READER
from casemesh.platform.identity import Identity, InternalTokenSigner
from casemesh.platform.replies import UnknownReplyAddress, ticket_of
from casemesh.platform.telemetry import inject_metadata
from casemesh.rules import tickets as rules
from casemesh.v1 import evidence_pb2, tickets_pb2
from casemesh_inbound.authres import vouched_for
from casemesh_inbound.mail import AutoReply, Unreadable, read_reply, same_mailbox

TICKETS = tickets_pb2.DESCRIPTOR.services_by_name["TicketService"].full_name
EVIDENCE = evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name
# Who reads a ticket to learn its requester and contact: the desk itself, as
# an agent may (it never writes as one).
READER = Identity(INBOUND_READER, frozenset({"agent"}))
# The evidence service takes uploads in chunks of at most 1 MiB.
CHUNK = 1024 * 1024
# What a comment says when the reply had attachments and no text.
ONLY_ATTACHMENTS = "(attachments sent by e-mail)"
# Answers of a backend that mean "try again later", not "never".
TEMPORARY = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        # a key or version the services do not take yet: a deployment to fix,
        # not a reply to bounce for good
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.CANCELLED,
    }
)
# The longest comment the tickets service takes; a longer reply is cut, saying so.
BODY_LIMIT = rules.LIMITS["body"]
CUT = "\n\n(The e-mail was longer; the rest is not shown.)"
# The most of a comment the notes on files not attached take (the names of
# hundreds of files would leave no room for the text).
NOTES_LIMIT = BODY_LIMIT // 2
# Replies parsed at once, beside the server: one. A large one holds about eight
# times its size while it is parsed (the parser's lines, the text, the decoded
# parts), and parsing is Python holding the GIL: a second at once would be no
# sooner done, only more memory.
READERS = 1


@dataclass
class Refused(Exception):
    """The SMTP reply `code` `text`; `reason` labels the refusal metric (none
    for a temporary failure, which is not a refusal)."""

    code: int
    reason: str
    text: str

    def __str__(self) -> str:
        # SMTP replies are ASCII (no SMTPUTF8): a file name in Chinese is not echoed as is.
        return f"{self.code} {self.text}".encode("ascii", "replace").decode()


def request_id_of(message_id: str) -> str:
    """The comment's request id: the Message-ID's digest (a Message-ID has
    characters a request id may not)."""
    return "mail-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]


@dataclass(kw_only=True)
class ReplyDesk:
    signer: InternalTokenSigner
    tickets: Any  # TicketServiceStub
    evidence: Any  # EvidenceServiceStub
    secrets: list[str]
    domain: str
    timeout: float
    # The authserv-id whose Authentication-Results must vouch for a reply's
    # sender ("": the From address is taken as it is; `authres`).
    authserv_id: str = ""
    _domain_suffix: str = field(init=False)
    _reading: asyncio.Semaphore = field(
        init=False, default_factory=lambda: asyncio.Semaphore(READERS)
    )

    def __post_init__(self) -> None:
        self._domain_suffix = "@" + self.domain.lower()

    def ticket_for(self, address: str) -> str:
        """The ticket an envelope recipient names; `Refused` (550) otherwise."""
        if not address.lower().endswith(self._domain_suffix):
            raise Refused(550, "domain", "5.1.2 this server takes only replies to ticket e-mails")
        try:
            return ticket_of(address, self.secrets)
        except UnknownReplyAddress as exc:
            raise Refused(550, exc.reason, "5.1.1 no such reply address") from None

    async def add_reply(self, ticket_id: str, raw: bytes) -> str:
        """Adds the reply in `raw` to the ticket; returns the ticket's status."""
        try:
            async with self._reading:
                reply = await asyncio.to_thread(read_reply, raw)
        except Unreadable as exc:
            raise Refused(550, "unreadable", f"5.6.0 {exc}") from None
        except AutoReply:
            # Taken (250) so that no bounce answers it, and dropped.
            raise Refused(250, "automatic", "2.0.0 an automatic message; not added") from None
        if self.authserv_id and not vouched_for(
            reply.authentication, self.authserv_id, reply.sender
        ):
            raise Refused(
                550,
                "unauthenticated",
                "5.7.26 the sender's domain does not vouch for this message (DMARC, DKIM, SPF)",
            )
        named = f"tickets/{ticket_id}"
        ticket = await self._call(
            self.tickets.GetTicket,
            tickets_pb2.GetTicketRequest(name=named),
            READER,
            TICKETS,
            ticket=named,
        )
        if not ticket.contact.email or not same_mailbox(ticket.contact.email, reply.sender):
            raise Refused(550, "not_requester", "5.7.1 only the ticket's requester may reply")
        requester = Identity(ticket.requester, frozenset({"user"}))
        if ticket.status in (tickets_pb2.TICKET_STATUS_CLOSED, tickets_pb2.TICKET_STATUS_CANCELLED):
            # Refused before any attachment is stored for a comment that cannot
            # be, unless it was added before the ticket ended: this message
            # delivered again, the first answer having been lost.
            if await self._added_before(ticket, requester, reply.message_id):
                return str(tickets_pb2.TicketStatus.Name(ticket.status))
            raise Refused(550, "closed", "5.7.0 the ticket is closed; open a new ticket instead")
        # What the comment would be refused for is left out before anything is
        # stored: a stray control character (a form feed pasted from a
        # document), and files past the most a comment takes.
        text = rules.said(rules.without_controls(reply.text))  # zero-width spaces say nothing
        most = rules.MAX_EVIDENCE
        kept, extra = reply.attachments[:most], reply.attachments[most:]
        refs: list[evidence_pb2.EvidenceRef] = []
        # The files the evidence service refused, by why (its kind, its size).
        skipped: dict[str, list[str]] = {}
        for attachment in kept:
            ref = await self._upload(requester, attachment)
            if isinstance(ref, str):
                skipped.setdefault(ref, []).append(attachment.file_name)
            elif all(r.name != ref.name for r in refs):  # the same file twice: attached once
                refs.append(ref)
        if not text and not refs and skipped:
            # The sender is told which files and why (within an SMTP reply
            # line's 512 octets), and what is taken instead.
            left_out = [*(n for names in skipped.values() for n in names)]
            left_out += [a.file_name for a in extra]
            names = ", ".join(name[:60] for name in left_out[:3])
            if len(left_out) > 3:
                names += f" and {len(left_out) - 3} more"
            why = "; ".join(reason[:100] for reason in list(skipped)[:2])
            raise Refused(550, "evidence", f"5.7.0 not attached, {why}: {names}")
        if not text and not refs:
            raise Refused(550, "unreadable", "5.6.0 the reply has no text and no attachment")
        notes = ""
        for reason, files in skipped.items():
            notes += f"\n\n(Not attached, {reason}: " + ", ".join(files) + ")"
        if extra:
            names = ", ".join(a.file_name for a in extra)
            notes += f"\n\n(Not attached, more than {most} files: {names})"
        request = tickets_pb2.AddCommentRequest(
            name=ticket.name,
            body=comment_body(text or ONLY_ATTACHMENTS, notes),
            evidence=refs,
            request_id=request_id_of(reply.message_id),
        )
        return str(tickets_pb2.TicketStatus.Name(await self._comment(ticket, requester, request)))

    async def _comment(
        self,
        ticket: tickets_pb2.Ticket,
        requester: Identity,
        request: tickets_pb2.AddCommentRequest,
    ) -> tickets_pb2.TicketStatus.ValueType:
        """Adds the comment; returns the ticket's status. ALREADY_EXISTS is
        the ticket holding another change under this message's request id
        (its Message-ID's digest; ids are the ticket's own): this message,
        added on a delivery whose answer was lost and read differently now
        that a limit or the reading of mail changed. It is taken as added,
        not bounced for its own first delivery."""
        try:
            commented = await self.tickets.AddComment(
                request,
                metadata=self._metadata(requester, TICKETS, ticket=ticket.name),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() is grpc.StatusCode.ALREADY_EXISTS:
                return ticket.status
            raise refusal(err, TICKETS, "") from None
        status: tickets_pb2.TicketStatus.ValueType = commented.status
        return status

    async def _upload(self, requester: Identity, attachment: Any) -> evidence_pb2.EvidenceRef | str:
        """The attachment as the requester's evidence; why not, when the
        evidence service refuses its kind or size (the comment then says so)."""

        async def parts() -> AsyncIterator[evidence_pb2.UploadEvidenceRequest]:
            # No declared type: a mail program's label for a part is its own
            # guess (often `application/octet-stream`), not the person's
            # claim, and the evidence service reads the type from the bytes.
            yield evidence_pb2.UploadEvidenceRequest(
                metadata=evidence_pb2.EvidenceMetadata(file_name=attachment.file_name)
            )
            for at in range(0, len(attachment.data), CHUNK):
                yield evidence_pb2.UploadEvidenceRequest(chunk=attachment.data[at : at + CHUNK])

        try:
            uploaded = await self.evidence.UploadEvidence(
                parts(), metadata=self._metadata(requester, EVIDENCE), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as err:
            refused = refusal(err, EVIDENCE, attachment.file_name)
            if refused.reason != "evidence":
                raise refused from None
            return why_refused(err.details() or "")
        return evidence_pb2.EvidenceRef(name=uploaded.name, sha256=uploaded.sha256)

    async def _added_before(
        self, ticket: tickets_pb2.Ticket, requester: Identity, message_id: str
    ) -> bool:
        """Whether the ended ticket took a comment under this message's
        request id. Asked as a comment under that id: the ticket answers for
        a change it recorded under it (ALREADY_EXISTS, this one not being
        the same) and refuses anything else as ended; an ended ticket takes
        no new comment, so the question adds none."""
        asked = tickets_pb2.AddCommentRequest(
            name=ticket.name, body=ONLY_ATTACHMENTS, request_id=request_id_of(message_id)
        )
        try:
            await self.tickets.AddComment(
                asked,
                metadata=self._metadata(requester, TICKETS, ticket=ticket.name),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() is grpc.StatusCode.ALREADY_EXISTS:
                return True
            if err.code() is grpc.StatusCode.FAILED_PRECONDITION:
                return False
            raise refusal(err, TICKETS, "") from None
        return True  # the very comment it took then

    def _metadata(
        self, who: Identity, audience: str, *, ticket: str = ""
    ) -> tuple[tuple[str, str], ...]:
        """A call's metadata: `who`'s token for `audience` (naming the
        `ticket` it acts on: tickets takes no call of this key without), and
        the trace."""
        facts = {"ticket": ticket} if ticket else None
        return (*self.signer.metadata(who, audience, facts), *inject_metadata())

    async def _call(
        self,
        method: Any,
        request: Any,
        who: Identity,
        audience: str,
        *,
        ticket: str = "",
    ) -> Any:
        try:
            return await method(
                request,
                metadata=self._metadata(who, audience, ticket=ticket),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise refusal(err, audience, "") from None


def comment_body(text: str, notes: str) -> str:
    """The comment for a reply's `text` and the `notes` on files not
    attached, within the comment's limit: a text too long is cut, saying so,
    and the notes follow it, so the agent always learns of the files left
    out (the notes themselves cut at `NOTES_LIMIT`)."""
    if len(notes) > NOTES_LIMIT:
        notes = notes[: NOTES_LIMIT - len("…)")] + "…)"
    room = BODY_LIMIT - len(notes)
    if len(text) > room:
        text = text[: room - len(CUT)] + CUT
    return text + notes


def why_refused(detail: str) -> str:
    """Why the evidence service refused a file, without the request field
    it named ("chunk: image evidence may be at most 20 MiB")."""
    why = _NAMED_FIELD.sub("", detail, count=1).strip()
    return why or "refused as evidence"


_NAMED_FIELD = re.compile(r"^[a-z_.\[\]0-9]+: ")


def refusal(err: grpc.aio.AioRpcError, audience: str, what: str) -> Refused:
    """The SMTP answer for a backend's error."""
    code, detail = err.code(), err.details() or ""
    if code in TEMPORARY:
        return Refused(451, "", "4.3.0 the ticket cannot be updated now; try again later")
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
        return Refused(550, "unknown_ticket", "5.1.1 no such ticket")
    if audience == EVIDENCE:
        return Refused(550, "evidence", f"5.7.0 attachment {what!r} refused: {detail}")
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return Refused(550, "closed", f"5.7.0 {detail}")
    return Refused(550, "unreadable", f"5.6.0 {detail}")

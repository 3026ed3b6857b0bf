"""Delivery adapters: e-mail over SMTP or a provider's HTTP API, and SMS over
a provider's HTTP API.

Each adapter sends one job and says whether a failure is worth retrying. The
HTTP providers receive the job's idempotency key (`Outgoing.idempotency_key`:
its id, until the job is given a new address) as `Idempotency-Key`; e-mail
carries the job id in the Message-ID.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import re
import smtplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

import httpx

from casemesh_notifier import mime

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


@dataclass(frozen=True)
class Outgoing:
    job_id: str
    recipient: str
    subject: str
    body: str
    template: str
    params: dict[str, str]
    # The e-mail's HTML alternative ("" for none, and for SMS).
    html: str = ""
    # Where a reply goes ("" for none): the ticket's reply address.
    reply_to: str = ""
    # How many times the job was given a new address since it was planned
    # (its party's contact corrected, a phone number changed).
    readdressed: int = 0
    # The case it tells of (`tickets/…`): an e-mail joins that case's thread.
    case_name: str = ""

    @property
    def idempotency_key(self) -> str:
        """The key a provider's API delivers one message per: the job id, and
        once the job was given a new address, the id and how many times
        (`<id>.2`). A try to the old address whose answer was lost may be
        kept by the provider under the old key: the new address's send,
        under the same key, would be answered from it and never go out."""
        return f"{self.job_id}.{self.readdressed}" if self.readdressed else self.job_id


class DeliveryError(Exception):
    """A send that failed. `maybe_sent`: the message may have gone out all the
    same (the relay took it and its answer was lost), so a retry is a possible
    repeat. `unreachable`: the relay or provider is away or turns us away
    (not the message), so the messages after it would fail alike, and the
    job waits for an operator's fix rather than being parked.
    `retry_after`: seconds the provider asked us to wait, if it did.
    `detail`: what the relay or provider said, in its own words (an answer's
    text, a response body), kept apart from ours because it may echo the
    message, a one-time code too: the sender decides what of it is kept
    (`delivery.kept_error`)."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        maybe_sent: bool = False,
        unreachable: bool = False,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.maybe_sent = maybe_sent
        self.unreachable = unreachable
        self.retry_after = retry_after
        self.detail = detail


class Channel(Protocol):
    """Sends one message at a time."""

    async def send(self, message: Outgoing) -> str:
        """Delivers the message; returns the provider's message id (may be empty)."""
        ...


class SmtpChannel:
    """Sends over SMTP, keeping idle sessions open for the next message (a
    connection and greeting per message cost more than the message itself).
    Messages sent one after another reuse one session; a relay that offers
    PIPELINING (RFC 2920) takes each message's envelope and DATA in one round
    trip. Messages are written by `mime.render` where it
    can, else by the `email` library.
    A session idle longer than IDLE_S is closed rather than reused (relays drop
    quiet clients); one idle longer than CHECK_S is asked NOOP first and
    replaced if the relay has closed it, so no message is resent on a new
    session after it may have gone out on the old one.

    Each step waits `timeout`, except the relay's answer to a whole message,
    which may take minutes (RFC 5321 4.5.3.2): `data_timeout`. A message whose
    answer never came may have been delivered (`DeliveryError.maybe_sent`).

    The standard library's client in a worker thread, not aiosmtplib: sessions
    are kept and pipelined here already, and `_Session` works on the client's
    low-level steps to tell a message the relay may have taken (DATA sent, the
    answer lost) from one it never saw. The threads are the channel's own,
    `workers` of them at most (started as sends need them: the default
    covers the largest send concurrency, 32), not asyncio's shared ones: a relay that
    hangs holds its sends for up to `data_timeout` each, and in the shared
    pool they would stall the planner's key look-ups and the outbox with
    them."""

    IDLE_S = 20.0
    CHECK_S = 1.0

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 10.0,
        data_timeout: float = 120.0,
        workers: int = 32,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._starttls, self._username, self._password = starttls, username, password
        self._timeout, self._data_timeout = timeout, data_timeout
        self._idle: queue.SimpleQueue[tuple[_Session, float]] = queue.SimpleQueue()
        self._from = mime.Sender(sender)
        # Threads start as sends need them: an idle channel holds none.
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smtp")

    def _message(self, m: Outgoing) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = m.recipient
        if m.reply_to:
            msg["Reply-To"] = m.reply_to
        # Header values are one line, whatever a stored subject holds. Only
        # what `mime.written_subject` leaves alone (empty, or plain ASCII too
        # long to write as it is) goes to the library: given "=?utf-8?b?…?=" it decodes
        # it as an encoded word (and some releases write the line breaks it
        # held out raw: a header or a body of the typist's choosing). Anything
        # else goes as `mime.written_subject` writes it, folded within the
        # line limit already, which the library then writes out unparsed.
        subject = " ".join(m.subject.split())
        written = mime.written_subject(subject)
        if written is None:
            msg["Subject"] = subject
        else:
            msg.set_raw("Subject", written.decode())
        msg["Date"] = formatdate(localtime=False)
        # Deterministic: a resend after a crash is recognisably the same message.
        # A job given a new address keeps it: no mailbox it reaches anew has
        # seen it, and one that has (the old address an alias of the new)
        # may keep a single copy.
        msg["Message-ID"] = f"<{m.job_id}@casemesh>"
        for name, value in mime.thread_headers(m.case_name).items():
            msg[name] = value
        msg["X-Casemesh-Template"] = m.template
        msg.set_content(m.body, charset="utf-8")
        if m.html:
            msg.add_alternative(m.html, subtype="html", charset="utf-8")
            mark = mime.boundary(m.job_id, m.body, m.html)
            if mark is not None:
                msg.set_boundary(mark)
        return msg

    def _connect(self) -> _Session:
        smtp = _Session(self._host, self._port, timeout=self._timeout)
        smtp.data_timeout = self._data_timeout
        try:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username:
                smtp.login(self._username, self._password)
            # EHLO (or HELO) now, not inside the first message's send: a relay
            # refusing both (554) turns us away as a refused greeting does,
            # and is no refusal of that message (`_send_one`).
            smtp.ehlo_or_helo_if_needed()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _session(self) -> _Session:
        """An open session: an idle one still answering, else a new one."""
        while True:
            try:
                smtp, idle_since = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            idle = time.monotonic() - idle_since
            if idle < self.CHECK_S:
                return smtp
            if idle >= self.IDLE_S:
                _quit(smtp)
                continue
            try:
                if smtp.noop()[0] == 250:
                    return smtp
            except (OSError, smtplib.SMTPException):
                pass
            smtp.close()  # no QUIT: the relay is not answering on it

    def _send_one(self, m: Outgoing) -> str:
        # An international domain in its ASCII form, which every relay takes
        # (envelope and To: alike); a mailbox name that is not ASCII still
        # needs a relay offering SMTPUTF8.
        recipient = mime.ascii_domain(m.recipient)
        if recipient != m.recipient:
            m = replace(m, recipient=recipient)
        payload = mime.render(
            self._from,
            m.job_id,
            m.recipient,
            m.subject,
            m.body,
            m.template,
            m.html,
            m.reply_to,
            m.case_name,
        )
        msg = self._message(m) if payload is None else None
        try:
            smtp = self._session()
        except (OSError, smtplib.SMTPException) as exc:
            # No session: the relay is away, refuses us (a 554 greeting), or
            # takes not our login (535). No message was offered, and none
            # after it would fare better; an operator's fix, not the
            # recipient's fault, so nothing is parked for it.
            raise DeliveryError(
                "SMTP unavailable", permanent=False, unreachable=True, detail=repr(exc)
            ) from exc
        try:
            try:
                if msg is not None:
                    smtp.send_message(msg)
                else:
                    smtp.deliver(self._from.address, m.recipient, payload or b"")
            except BaseException:
                smtp.close()
                raise
            finally:
                smtp.end_message(self._timeout)
        except smtplib.SMTPRecipientsRefused as exc:
            # 5xx: the mailbox is refused for good; 4xx (greylisting, a full
            # mailbox, 421 the relay closing): ask again later. A 5.7.x (a
            # policy: "relaying denied", or the recipient's own rules) may be
            # the relay refusing us, not the mailbox: retried, it spends its
            # budget and parks as a 4xx does, unless refusals of several
            # recipients in a row show the relay refusing everyone
            # (`delivery.AWAY_AFTER`), when it waits for the operator.
            codes = sorted({code for code, _ in exc.recipients.values()})
            policy = all(_relay_policy(answer) for _, answer in exc.recipients.values())
            permanent = all(500 <= code < 600 for code in codes) and not policy
            raise DeliveryError(
                f"recipient refused (SMTP {codes})",
                permanent=permanent,
                unreachable=codes == [RELAY_CLOSING],
                detail="; ".join(_text(answer) for _, answer in exc.recipients.values()),
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise _sender_refused(exc) from exc
        except smtplib.SMTPNotSupportedError as exc:
            # An address in UTF-8 and a relay without SMTPUTF8 (nothing was
            # offered it): the recipient's mailbox name cannot go through this
            # relay however often it is tried, so the job is parked (and
            # replayable once a relay takes it). Our own address in UTF-8
            # would stop every message alike: the operator's to mend.
            ours = m.recipient.isascii()
            raise DeliveryError(
                "SMTP relay takes no address in UTF-8 (no SMTPUTF8)",
                permanent=not ours,
                unreachable=ours,
                detail=str(exc),
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.smtp_code}",
                permanent=500 <= exc.smtp_code < 600,
                unreachable=exc.smtp_code == RELAY_CLOSING,
                detail=_text(exc.smtp_error),
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            if smtp.answer_lost:
                raise DeliveryError(
                    "SMTP: no answer to the message",
                    permanent=False,
                    maybe_sent=True,
                    detail=repr(exc),
                ) from exc
            raise DeliveryError("SMTP unavailable", permanent=False, detail=repr(exc)) from exc
        self._idle.put((smtp, time.monotonic()))
        return f"<{m.job_id}@casemesh>"

    async def send(self, message: Outgoing) -> str:
        """Sends the message over an open session, in one of the channel's
        threads, with the caller's context (its trace), as `asyncio.to_thread`
        would."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, context.run, self._send_one, message)

    async def aclose(self) -> None:
        """Says goodbye on the idle sessions, in asyncio's threads (the
        channel's own may all be held by sends hanging on the relay), and
        lets the channel's threads go. A send still hanging ends at its
        timeout; the interpreter waits for it on its way out."""
        while True:
            try:
                smtp, _ = self._idle.get_nowait()
            except queue.Empty:
                break
            await asyncio.to_thread(_quit, smtp)
        self._threads.shutdown(wait=False)


# "Service not available, closing transmission channel": the relay is going
# away or shedding load, whatever the message; it spends no attempt.
RELAY_CLOSING = 421


def _sender_refused(exc: smtplib.SMTPSenderRefused) -> DeliveryError:
    """MAIL FROM refused. The message too large (552, 5.3.4: smtplib
    announces its SIZE there) is the message's fault, for good; a 4xx is
    "later"; any other refusal (STARTTLS or a login wanted, our address
    not taken) is the operator's to mend, as a refused login is."""
    said = f"SMTP {exc.smtp_code} at MAIL FROM"
    answer = _text(exc.smtp_error)
    if exc.smtp_code == 552 or "5.3.4" in answer:
        return DeliveryError(said, permanent=True, detail=answer)
    if exc.smtp_code == RELAY_CLOSING:
        return DeliveryError(said, permanent=False, unreachable=True, detail=answer)
    if 400 <= exc.smtp_code < 500:
        return DeliveryError(said, permanent=False, detail=answer)
    return DeliveryError(said, permanent=False, unreachable=True, detail=answer)


def _text(answer: bytes | str) -> str:
    """An SMTP answer's text, as the relay wrote it."""
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer


# A recipient refused with an enhanced status code (RFC 3463) of class 5.7
# (security or policy): "relaying denied" (the relay's configuration or ours,
# every message alike) or the recipient domain's own rules. Not parked on its
# first try, so that a relay set up wrong parks nothing. (At DATA a 5.7 may
# be the message's own, a content filter's: it is refused for good there.)
_POLICY = re.compile(r"\s*5\.7\.\d{1,3}\b")


def _relay_policy(answer: bytes | str) -> bool:
    return _POLICY.match(_text(answer)) is not None


_LEADING_DOT = re.compile(rb"(?m)^\.")


class _Session(smtplib.SMTP):
    """An SMTP session that knows whether a failure came while the relay was
    taking a message (DATA sent: it may have been delivered) or before."""

    data_timeout = 120.0
    answer_lost = False
    _in_data = False

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        self._in_data = True
        if self.sock is not None:
            self.sock.settimeout(self.data_timeout)
        reply = super().data(msg)
        self._in_data = False
        return reply

    def deliver(self, sender: str, recipient: str, payload: bytes) -> None:
        """Sends one message (CRLF lines) to one plain ASCII recipient, as
        `sendmail` would; with PIPELINING, MAIL, RCPT and DATA go together.
        After a refusal the caller closes the session."""
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("pipelining"):
            self.sendmail(sender, [recipient], payload)
            return
        self.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
        mail, rcpt, data = self.getreply(), self.getreply(), self.getreply()
        if mail[0] != 250:
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
        if rcpt[0] not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
        if data[0] != 354:
            raise smtplib.SMTPDataError(*data)
        self._in_data = True
        if self.sock is not None:
            self.sock.settimeout(self.data_timeout)
        self.send(_LEADING_DOT.sub(b"..", payload) + b".\r\n")
        code, answer = self.getreply()
        self._in_data = False
        if code != 250:
            raise smtplib.SMTPDataError(code, answer)

    def end_message(self, timeout: float) -> None:
        """After a message, failed or not: whether its answer was lost, and the
        step timeout back for the next one."""
        self.answer_lost, self._in_data = self._in_data, False
        if self.sock is not None:
            self.sock.settimeout(timeout)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


# Answers that say "not now" rather than "never": a timeout of the request,
# a conflict (409: the idempotency key is in use, by a first try whose answer
# was lost and that the provider is still handling), too early, too many.
RETRY_LATER = frozenset({408, 409, 425, 429})
# Answers after which the message may have gone all the same, so the retry is
# marked a possible repeat (it still goes: the idempotency key keeps an honest
# provider from sending twice): the idempotency key's first try still under
# way (409), the provider failing mid-request (500), a proxy in front of it
# losing its answer (502, 504).
MAYBE_SENT = frozenset({409, 500, 502, 504})
# Answers that say the provider, not the message, is in trouble: throttled
# (429) or unavailable (503). Like a refused connection they spend no
# attempt: an outage of hours would otherwise park every job queued in it,
# for an operator to replay. A 502 or 504 still counts: the request may have
# reached the provider (a resend could repeat it), and one message a proxy
# keeps failing on must park in the end; 502s to every message, though, show
# the provider away once several recipients had them (`delivery.AWAY_AFTER`).
PROVIDER_AWAY = frozenset({429, 503})
# The longest wait a provider's Retry-After is taken for.
RETRY_AFTER_MAX_S = 6 * 3600.0


def retry_after(value: str) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP
    date), at most RETRY_AFTER_MAX_S; None when absent or unreadable."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), RETRY_AFTER_MAX_S)


class HttpProvider:
    """A provider's HTTP API: a JSON POST per message with the job's
    idempotency key (`Outgoing.idempotency_key`) as `Idempotency-Key`, so a
    provider that honours it delivers a resent job (a send in flight at a
    crash, taken up again) once, and a job given a new address since to the
    new one. 408, 409, 425, 429 and 5xx are worth retrying (after the
    Retry-After asked for), 429 and 503 without spending an attempt
    (`PROVIDER_AWAY`), 409, 500, 502 and 504 as possible repeats
    (`MAYBE_SENT`); 404, 405 and 410 (most likely the URL set) are retried
    too; 401, 403 and 407 (our key), 402 (our account out of credit) and a
    redirect wait for the operator; any other 4xx is the message's and not
    retried; only a 2xx is a delivery."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        api_key: str = "",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._url = url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers, transport=transport)

    async def post(self, payload: dict[str, object], idempotency_key: str) -> str:
        """POSTs `payload`; returns the provider's message id (may be empty)."""
        try:
            response = await self._client.post(
                self._url, json=payload, headers={"Idempotency-Key": idempotency_key}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise DeliveryError(
                f"{self._name} unreachable", permanent=False, unreachable=True, detail=repr(exc)
            ) from exc
        except httpx.HTTPError as exc:
            # The request went out and its answer was lost: a provider that
            # ignores the idempotency key may have sent the message.
            raise DeliveryError(
                f"{self._name}: no answer", permanent=False, maybe_sent=True, detail=repr(exc)
            ) from exc
        status = response.status_code
        if status in RETRY_LATER or status >= 500:
            raise DeliveryError(
                f"{self._name} HTTP {status}",
                permanent=False,
                maybe_sent=status in MAYBE_SENT,
                unreachable=status in PROVIDER_AWAY,
                retry_after=retry_after(response.headers.get("retry-after", "")),
            )
        if status in (401, 403, 407):
            # Our API key is refused, or lacks a right (a suspended account):
            # the operator's to mend, as a refused SMTP login is; every message
            # after this one would fare alike.
            raise DeliveryError(
                f"{self._name} refused our credentials: HTTP {status}",
                permanent=False,
                unreachable=True,
            )
        if status == 402:
            # Our account is out of credit (or its plan lapsed): the operator
            # tops it up, and every message after this one would fare alike
            # until then. Parked, each would wait for a replay, and a
            # one-time code parks erased; waiting, they go once it is paid.
            raise DeliveryError(
                f"{self._name} refused our account (HTTP 402): check its credit",
                permanent=False,
                unreachable=True,
                detail=response.text[:200],
            )
        if status in (404, 405, 410):
            # No such endpoint, or not for a POST: most likely the URL set is
            # wrong (the provider moved its API), not the message. Retried
            # rather than parked at once: a run of them to several recipients
            # shows the channel away (`delivery.AWAY_AFTER`), and the jobs wait
            # for the operator; one message's own 404 parks once its budget
            # is spent.
            raise DeliveryError(
                f"{self._name} has no such API (HTTP {status}): check its URL",
                permanent=False,
            )
        if status >= 400:
            raise DeliveryError(
                f"{self._name} refused: HTTP {status}", permanent=True, detail=response.text[:200]
            )
        if not 200 <= status < 300:
            # A redirect (the provider moved) is not followed: the message
            # would go where no one configured. Nothing was sent; the URL is
            # the operator's to fix, so the job waits rather than being parked.
            where = response.headers.get("location", "")[:200]
            raise DeliveryError(
                f"{self._name} answered HTTP {status} {where!r}: set its URL",
                permanent=False,
                unreachable=True,
            )
        # Taken: whatever the body says, the message is the provider's now.
        try:
            answer = response.json()
        except ValueError:
            return ""
        return str(answer.get("id", "")) if isinstance(answer, dict) else ""

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpSmsChannel(HttpProvider):
    """An SMS provider that takes recipient, template id, parameters and the
    rendered text."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str = "",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            name="SMS provider", url=url, api_key=api_key, timeout=timeout, transport=transport
        )

    async def send(self, message: Outgoing) -> str:
        return await self.post(
            {
                "to": message.recipient,
                "template_id": message.template,
                "params": message.params,
                "text": message.body,
            },
            message.idempotency_key,
        )


class HttpEmailChannel(HttpProvider):
    """An e-mail provider's HTTP API, for operators who need a resent job
    delivered once: unlike SMTP, the API honours the idempotency key.

    The provider receives `from`, `to`, `subject` (one line), `text`, `html`
    (when there is one), `template_id` and `headers`, the message headers it
    is to set as given: the Message-ID, In-Reply-To and References (the
    case's thread), and on a ticket e-mail the Reply-To (the ticket's reply
    address), so that the requester's answer reaches the ticket as it does
    over SMTP. The subject goes as text: writing it into the header, encoded
    as its characters need, is the provider's part."""

    def __init__(
        self,
        *,
        url: str,
        sender: str,
        api_key: str = "",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            name="e-mail provider", url=url, api_key=api_key, timeout=timeout, transport=transport
        )
        self._sender = sender

    async def send(self, message: Outgoing) -> str:
        # The job's, wherever it goes, as over SMTP.
        headers = {
            "Message-ID": f"<{message.job_id}@casemesh>",
            **mime.thread_headers(message.case_name),
        }
        if message.reply_to:
            headers["Reply-To"] = message.reply_to
        return await self.post(
            {
                "from": self._sender,
                "to": message.recipient,
                # One line, as in the SMTP adapter.
                "subject": " ".join(message.subject.split()),
                "text": message.body,
                **({"html": message.html} if message.html else {}),
                "template_id": message.template,
                "headers": headers,
            },
            message.idempotency_key,
        )

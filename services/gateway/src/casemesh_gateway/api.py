"""The public casemesh.v1 services: every call is authenticated, authorised,
validated and rate-limited here, then routed to the internal service with a
token vouching for the caller's identity (signed for that service alone), the
caller's trace context and a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeAlias

import grpc
from google.rpc import status_pb2

from casemesh.platform.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Violations,
    own_case,
)
from casemesh.platform.grpcutil import (
    STATUS_DETAILS_KEY,
    bounded,
    caller_locale,
    field_violations,
    sent_details,
)
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    TokenVerifier,
    subject_fault,
)
from casemesh.platform.localized import localized, plain_words
from casemesh.platform.logging import get_logger
from casemesh.platform.telemetry import inject_metadata
from casemesh.rules import tickets as rules
from casemesh.v1 import (
    appeals_pb2,
    appeals_pb2_grpc,
    casequeue_pb2,
    casequeue_pb2_grpc,
    evidence_pb2,
    evidence_pb2_grpc,
    helpcenter_pb2,
    helpcenter_pb2_grpc,
    notifications_pb2,
    notifications_pb2_grpc,
    privacy_pb2,
    privacy_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
    tickets_pb2,
)
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from casemesh_gateway import checks, export, fieldrules
from casemesh_gateway.ratelimit import RateLimiter

log = get_logger(__name__)

Ctx: TypeAlias = grpc.aio.ServicerContext

# The deadline for appealing a report decision ("" when the case has no
# decision to appeal), vouched for by the gateway like the caller's identity.
APPEALABLE_UNTIL = "appealable_until"
# Where that decision applies (its territorial scope's country codes, joined
# by commas): the appeal runs under the law of that scope.
APPEALED_SCOPE = "appealed_scope"
# The case those two were read from (`report-cases/{id}`): the appeals service
# takes them only for an appeal of that case.
APPEAL_OF = "appeal_of"
# Until when a WatchQueue may go on (ISO 8601): when the agent's sign-in stops
# being taken. The queue service ends the watch then, whoever opened it.
WATCH_UNTIL = "watch_until"
# The longest a WatchQueue goes on, however far off the sign-in's expiry: a
# token may say it expires past the year 9999 (no datetime) or 2262 (no gRPC
# deadline), and the watch would fail at once.
WATCH_LONGEST_S = 30 * 24 * 3600.0
REPORT_CASES = "report-cases/"
# A backend's answers with these codes and no details of its own are not
# its words but its transport's or a crash's: told in plain words instead.
UNSPOKEN = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _service(module: Any, name: str) -> str:
    full_name: str = module.DESCRIPTOR.services_by_name[name].full_name
    return full_name


# The audience of the tokens for each internal service: the gRPC service it serves.
TICKETS = _service(tickets_pb2, "TicketService")
EVIDENCE = _service(evidence_pb2, "EvidenceService")
APPEALS = _service(appeals_pb2, "AppealService")
REPORTS = _service(reports_pb2, "ReportService")
CASEQUEUE = _service(casequeue_pb2, "CaseQueueService")
HELPCENTER = _service(helpcenter_pb2, "HelpCenterService")
PRIVACY = _service(privacy_pb2, "PrivacyService")
NOTIFIER = _service(notifications_pb2, "NotificationService")


@dataclass(kw_only=True, eq=False)
class Backend:
    verifier: TokenVerifier
    signer: InternalTokenSigner
    limiter: RateLimiter
    # Agents' own bucket (they make many calls per case); the users' when unset.
    agent_limiter: RateLimiter | None = None
    timeout: float
    # The EvidenceServiceStub and the ReportServiceStub, set once their channels are open.
    evidence: Any = None
    reports: Any = None

    def identity_still(self, context: Ctx) -> Identity:
        """The caller's token checked again (no rate limit: a long call's own
        check), as its key may have been withdrawn since the call began."""
        return self.verifier.verify(_authorization(context))

    def token_expiry(self, context: Ctx) -> float | None:
        """When the caller's token, checked by `identity`, expires."""
        auth = _authorization(context)
        return None if auth is None else self.verifier.expiry(auth)

    def identity(self, context: Ctx) -> Identity:
        who = self.identity_still(context)
        limiter = self.agent_limiter if who.is_agent and self.agent_limiter else self.limiter
        wait = limiter.allow(who.subject)
        if wait:
            raise ResourceExhausted(
                f"too many requests; retry in {wait:.1f} s", reason="RATE_LIMITED", retry_after=wait
            )
        return who

    def vouch(
        self,
        who: Identity,
        audience: str,
        facts: dict[str, str] | None = None,
        context: Ctx | None = None,
    ) -> tuple[tuple[str, str], ...]:
        """Metadata for a call to the service `audience` on behalf of `who`:
        the signed token, the caller's trace context and (given the caller's
        `context`) the language the caller reads, for the service's refusals."""
        language = (("accept-language", caller_locale(context)),) if context else ()
        return (*self.signer.metadata(who, audience, facts), *inject_metadata(), *language)

    def _timeout(self, context: Ctx, limit: float | None = None) -> float:
        limit = limit or self.timeout
        remaining = context.time_remaining()
        return limit if remaining is None else max(0.0, min(limit, remaining))

    async def forward(
        self,
        method: Any,
        request: Any,
        who: Identity,
        context: Ctx,
        *,
        audience: str,
        deadline_s: float | None = None,
        facts: dict[str, str] | None = None,
    ) -> Any:
        try:
            return await method(
                request,
                metadata=self.vouch(who, audience, facts, context),
                timeout=self._timeout(context, deadline_s),
            )
        except grpc.aio.AioRpcError as err:
            await self._fail(err, context)

    async def forward_stream(
        self,
        method: Any,
        request: Any,
        who: Identity,
        context: Ctx,
        *,
        audience: str,
        deadline_s: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """A server-streaming call's answers. Closed before its end (its
        caller went away), it cancels the call: the service stops reading
        and lets go of what it holds open (a file), rather than go on until
        the call's deadline, hours later for a large file."""
        metadata = self.vouch(who, audience, context=context)
        call = method(request, metadata=metadata, timeout=self._timeout(context, deadline_s))
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            await self._fail(err, context)
        finally:
            call.cancel()

    async def forward_client_stream(
        self,
        method: Any,
        requests: AsyncIterator[Any],
        who: Identity,
        context: Ctx,
        *,
        audience: str,
        deadline_s: float | None = None,
    ) -> Any:
        """A client-streaming call: `requests` written to the service as they
        come, until they end or the service ends the call. A service may
        answer before it has read them all (a refusal of the caller, such as
        no room for an upload): that answer is the caller's. A failure of
        `requests` (the caller's stream broken, too slow, refused here)
        cancels the call, so that the service keeps nothing, and is raised."""
        call = method(
            metadata=self.vouch(who, audience, context=context),
            timeout=self._timeout(context, deadline_s),
        )
        ending = _Ending(call)
        try:
            async for request in requests:
                if not await _written(call, request):
                    break
            else:
                await call.done_writing()
            return await call
        except grpc.aio.AioRpcError as err:
            await self._fail(ending.as_sent(err), context)
        finally:
            call.cancel()

    async def check_evidence(self, refs: Any, field: str, who: Identity, context: Ctx) -> None:
        """The caller may attach only evidence they uploaded; fills in each hash."""
        if len(refs) > rules.MAX_EVIDENCE:
            raise InvalidArgument.field(field, f"at most {rules.MAX_EVIDENCE} pieces of evidence")
        names = [ref.name for ref in refs]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise InvalidArgument.field(f"{field}[{i}]", rules.REPEATED_EVIDENCE)
        metadata = self.vouch(who, EVIDENCE, context=context) if len(refs) else ()
        for i, ref in enumerate(refs):
            try:
                found = await self.evidence.GetEvidence(
                    evidence_pb2.GetEvidenceRequest(name=ref.name),
                    metadata=metadata,
                    timeout=self._timeout(context),
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgument.field(
                        f"{field}[{i}]", "must be evidence/{id}, naming evidence you uploaded"
                    ) from None
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    raise _not_yours(field, i) from None
                await self._fail(err, context)
            if found.owner != who.subject:  # an agent sees everyone's, attaches their own
                raise _not_yours(field, i)
            ref.sha256 = found.sha256

    @staticmethod
    async def _fail(err: grpc.aio.AioRpcError, context: Ctx) -> NoReturn:
        """The service's status, with its google.rpc details, is the caller's
        answer, with the words to show in the caller's language if the service
        sent none (an outage); cut to the size every client accepts."""
        code = err.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("backend.unavailable", code=code.name, details=err.details())
        sent = sent_details(err.trailing_metadata()) or ()
        if _ours_not_theirs(code, bool(sent)):
            log.error("backend.refused_the_gateway", code=code.name, details=err.details())
            code, sent = grpc.StatusCode.INTERNAL, ()
        status = status_pb2.Status(code=code.value[0], message=err.details() or "")
        status.details.extend(sent)
        if not sent and code in UNSPOKEN:
            # Not the service's words but its transport's or a crash's (an
            # address, an exception): logged, and told in plain words.
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                log.error("backend.failed", code=code.name, details=err.details())
            status.message = plain_words(status)
        status = bounded(localized(status, caller_locale(context)))
        details = ((STATUS_DETAILS_KEY, status.SerializeToString()),)
        await context.abort(code, status.message, details)
        raise AssertionError("context.abort returned")


def _ours_not_theirs(code: grpc.StatusCode, detailed: bool) -> bool:
    """Whether a backend's answer is a fault of the system's, which the
    caller can neither fix nor wait out, though its code says otherwise:
    UNAUTHENTICATED from behind the gateway is the backend refusing the
    gateway's own word for the caller (keys or clocks out of step), never the
    caller's sign-in, which the gateway checked; and RESOURCE_EXHAUSTED with
    no details of the service's own is gRPC's (an answer over the size
    limit), not a rate limit to retry after. Both are told as INTERNAL."""
    return code == grpc.StatusCode.UNAUTHENTICATED or (
        code == grpc.StatusCode.RESOURCE_EXHAUSTED and not detailed
    )


def _as_resolve_help(err: grpc.aio.AioRpcError) -> None:
    """Raises the CreateTicket a ResolveHelp made failing with `err` as
    ResolveHelp's own refusal: its request id is the gateway's, not the
    caller's, and its fields are named as ResolveHelp's (`ticket.subject` is
    `subject`). Returns for any other failure."""
    if err.code() == grpc.StatusCode.ALREADY_EXISTS:
        raise AlreadyExists(
            "this help session already opened a ticket, with other details:"
            " add to that ticket instead",
            reason="SESSION_OUTCOME_RECORDED",
        )
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        status = status_pb2.Status(details=sent_details(err.trailing_metadata()) or ())
        named = field_violations(status)
        if named:
            raise InvalidArgument(
                [FieldViolation(field.removeprefix("ticket."), said) for field, said in named]
            )


# What grpcio's asyncio client says of a write that failed because the call
# had ended. Seen after the end itself, it replaces the status the service
# sent (grpc/grpc#36066): a refusal answered while a chunk was on its way
# became INTERNAL.
WRITE_FAILED = "Internal error from Core"


async def _written(call: Any, request: Any) -> bool:
    """Whether `request` went to the service; False once the call has ended
    (its status then says how)."""
    try:
        await call.write(request)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return False
    return True


class _Ending:
    """The status a client-streaming call ended with as it first came, before
    a failed write could replace it."""

    def __init__(self, call: Any) -> None:
        self.first: grpc.aio.AioRpcError | None = None
        call.add_done_callback(self._note)

    def _note(self, call: Any) -> None:
        if self.first is not None:
            return
        try:
            self.first = grpc.aio.AioRpcError(
                _settled(call.code()),
                grpc.aio.Metadata(),
                _settled(call.trailing_metadata()),
                _settled(call.details()),
            )
        except Exception as exc:  # a callback of grpc's: nothing may escape it
            log.warning("backend.status_unread", error=repr(exc))

    def as_sent(self, err: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
        """`err`, or the status the service sent if a failed write replaced it."""
        replaced = err.code() == grpc.StatusCode.INTERNAL and err.details() == WRITE_FAILED
        return self.first if replaced and self.first is not None else err


def _settled(accessor: Coroutine[Any, Any, Any]) -> Any:
    """What an ended call's status accessor (`code()`, `details()`…) gives,
    read in its done callback: a coroutine, though it does not wait once
    the call has ended."""
    try:
        accessor.send(None)
    except StopIteration as done:
        return done.value
    accessor.close()
    raise RuntimeError("the call has not ended")


def _authorization(context: Ctx) -> str | None:
    """The caller's `authorization` metadata, if it sent one."""
    auth = dict(context.invocation_metadata() or ()).get("authorization")
    return auth if isinstance(auth, str) else None


def _not_yours(field: str, i: int) -> PermissionDenied:
    """Evidence someone else uploaded is refused as evidence that does not
    exist is: the answer does not tell that it exists."""
    return PermissionDenied(
        f"{field}[{i}] is not evidence you uploaded",
        reason="NOT_YOUR_EVIDENCE",
        metadata={"field": f"{field}[{i}]"},
    )


# Where a request carries evidence references, and the field names to report.
Attachments = Callable[[Any], list[tuple[Any, str]]]


def route(
    method_name: str,
    *,
    agent_only: bool = False,
    admin_only: bool = False,
    check: checks.Check = checks.nothing,
    attachments: Attachments | None = None,
) -> Any:
    async def handler(self: Any, request: Any, context: Ctx) -> Any:
        who = self.backend.identity(context)
        if agent_only and not who.is_agent:
            raise PermissionDenied(f"{method_name} needs the agent role")
        if admin_only and not who.is_admin:
            raise PermissionDenied(f"{method_name} needs the admin role")
        v = Violations()
        await fieldrules.check_async(request, v)
        check(request, v)
        v.raise_if_any()
        for refs, field in attachments(request) if attachments else []:
            await self.backend.check_evidence(refs, field, who, context)
        return await self.backend.forward(
            getattr(self.stub, method_name), request, who, context, audience=self.audience
        )

    handler.__name__ = method_name
    return handler


async def _check(request: Any) -> None:
    """The field rules written in the proto, for a handler written by hand."""
    v = Violations()
    await fieldrules.check_async(request, v)
    v.raise_if_any()


class TicketGateway(pb_grpc.TicketServiceServicer):
    audience = TICKETS

    def __init__(self, backend: Backend, channel: grpc.aio.Channel) -> None:
        self.backend = backend
        self.stub = pb_grpc.TicketServiceStub(channel)

    CreateTicket = route(
        "CreateTicket",
        check=checks.create_ticket,
        attachments=lambda r: [(r.ticket.evidence, "ticket.evidence")],
    )
    GetTicket = route("GetTicket")
    ListTickets = route("ListTickets", check=checks.all_of(checks.page(100), checks.statuses))
    SearchTickets = route(
        "SearchTickets", agent_only=True, check=checks.all_of(checks.page(100), checks.statuses)
    )
    AddComment = route("AddComment", attachments=lambda r: [(r.evidence, "evidence")])
    AssignTicket = route("AssignTicket", agent_only=True)
    RequestInfo = route("RequestInfo", agent_only=True)
    HoldTicket = route("HoldTicket", agent_only=True)
    SolveTicket = route("SolveTicket", agent_only=True)
    ReopenTicket = route("ReopenTicket")
    CloseTicket = route("CloseTicket")
    CancelTicket = route("CancelTicket")
    RateTicket = route("RateTicket")
    ListTicketEvents = route("ListTicketEvents", check=checks.page(200))
    ListTicketCategories = route("ListTicketCategories")


# The most an upload's chunk may carry (the API's limit, and the evidence
# service's): one larger is refused here, naming the field.
CHUNK_LIMIT = 1024 * 1024
# Once an ordinary upload's time (`upload_timeout`) is past, the longest an
# upload's stream may go between two messages: a minute, and what its largest
# chunk takes at the slowest pace a transfer is sized for (16 s). Before
# that, any pace and any pause.
LARGEST_CHUNK = CHUNK_LIMIT
UPLOAD_PAUSE_S = 60.0 + LARGEST_CHUNK / export.SLOWEST_DOWNLOAD


# What an upload ended by `next_chunk_by` is told, by reason.
CUT = {
    "UPLOAD_PAUSED": f"the upload paused for more than {UPLOAD_PAUSE_S:g} s",
    "UPLOAD_TOO_SLOW": f"the upload came slower than {export.SLOWEST_DOWNLOAD >> 10} KiB/s",
}


def next_chunk_by(began: float, now: float, received: int, ordinary_s: float) -> tuple[float, str]:
    """By when an upload that began at `began` and has sent `received` bytes
    must have sent its next message (loop time), and the reason it is ended
    if it has not (`UPLOAD_PAUSED`, `UPLOAD_TOO_SLOW`). Any pace and pause
    within `ordinary_s`; after it, no pause over `UPLOAD_PAUSE_S`, and a pace
    of at least 64 KiB/s on average, counting the chunk on its way (a message
    is handed over only once whole, so a steady sender is a chunk behind)."""
    ordinary = began + ordinary_s
    paused_by = max(ordinary, now + UPLOAD_PAUSE_S)
    paced_by = max(ordinary, began + (received + LARGEST_CHUNK) / export.SLOWEST_DOWNLOAD)
    if paused_by <= paced_by:
        return paused_by, "UPLOAD_PAUSED"
    return paced_by, "UPLOAD_TOO_SLOW"


class EvidenceGateway(evidence_pb2_grpc.EvidenceServiceServicer):
    """Evidence uploads and reads, streamed through to the evidence service."""

    audience = EVIDENCE

    def __init__(
        self,
        backend: Backend,
        channel: grpc.aio.Channel,
        upload_timeout: float,
        largest_file: int,
    ) -> None:
        self.backend = backend
        self.stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        # An upload or a read of a file goes on as long as its caller waits,
        # up to what the largest file needs at the slowest rate an export
        # waits for (a 500 MiB video: about 2 h 13 min), or `upload_timeout`
        # if that is longer. The HTTP port does not wait that long for a
        # caller that stops sending: it ends a body that pauses for a minute.
        self.transfer_timeout = export.read_time(largest_file, upload_timeout)
        self.upload_timeout = upload_timeout

    async def UploadEvidence(
        self, request_iterator: AsyncIterator[evidence_pb2.UploadEvidenceRequest], context: Ctx
    ) -> evidence_pb2.Evidence:
        who = self.backend.identity(context)
        loop = asyncio.get_running_loop()
        # The metadata is waited for as long as a pause in the chunks may
        # last (a caller with no deadline that never sent it held the call
        # for ever).
        try:
            async with asyncio.timeout(max(self.upload_timeout, UPLOAD_PAUSE_S)):
                first = await anext(aiter(request_iterator), None)
        except TimeoutError:
            paused = "UPLOAD_PAUSED"
            raise DeadlineExceeded(CUT[paused], reason=paused) from None
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidArgument.field("metadata", "the first message must carry the metadata")
        # The metadata's rules; the chunks' type and the file's size are the
        # service's, which reads them as they stream through (each chunk's
        # size is checked here too).
        v = Violations()
        await fieldrules.check_async(first, v)
        v.raise_if_any()

        began, received = loop.time(), 0

        async def upstream() -> AsyncIterator[evidence_pb2.UploadEvidenceRequest]:
            nonlocal received
            yield first
            messages = aiter(request_iterator)
            while True:
                # The evidence service holds a video's share of its upload
                # budget while it comes: past an ordinary upload's time, no
                # pace below the slowest a transfer is sized for, and no long
                # pause (`UPLOAD_PAUSE_S`).
                by, reason = next_chunk_by(began, loop.time(), received, self.upload_timeout)
                try:
                    async with asyncio.timeout_at(by):
                        message = await anext(messages)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DeadlineExceeded(CUT[reason], reason=reason) from None
                if len(message.chunk) > CHUNK_LIMIT:
                    # Refused naming the field: a message is taken somewhat
                    # larger than the chunk it carries (its encoding's share).
                    raise InvalidArgument.field("chunk", "chunks must be at most 1 MiB")
                received += len(message.chunk)
                yield message

        # A message the caller's stream cannot give (one that is no protobuf,
        # a body cut off), or one refused here, cancels the upload, so that
        # the service keeps nothing; the caller is told why.
        result: evidence_pb2.Evidence = await self.backend.forward_client_stream(
            self.stub.UploadEvidence,
            upstream(),
            who,
            context,
            audience=EVIDENCE,
            deadline_s=self.transfer_timeout,
        )
        return result

    async def GetEvidence(
        self, request: evidence_pb2.GetEvidenceRequest, context: Ctx
    ) -> evidence_pb2.Evidence:
        who = self.backend.identity(context)
        await _check(request)
        result: evidence_pb2.Evidence = await self.backend.forward(
            self.stub.GetEvidence, request, who, context, audience=EVIDENCE
        )
        return result

    async def ReadEvidence(
        self, request: evidence_pb2.ReadEvidenceRequest, context: Ctx
    ) -> AsyncIterator[evidence_pb2.ReadEvidenceResponse]:
        who = self.backend.identity(context)
        await _check(request)
        # A video of hundreds of megabytes takes as long to read as to upload.
        responses = self.backend.forward_stream(
            self.stub.ReadEvidence,
            request,
            who,
            context,
            audience=EVIDENCE,
            deadline_s=self.transfer_timeout,
        )
        async with contextlib.aclosing(responses):
            async for response in responses:
                yield response

    ListEvidence = route("ListEvidence", check=checks.page(100))


def _appeal_evidence(appeal: Any, prefix: str) -> list[tuple[Any, str]]:
    return [
        (appeal.notice.originality_evidence, f"{prefix}.notice.originality_evidence"),
        (appeal.notice.infringement_evidence, f"{prefix}.notice.infringement_evidence"),
        (appeal.counter_notice.evidence, f"{prefix}.counter_notice.evidence"),
    ]


class AppealGateway(appeals_pb2_grpc.AppealServiceServicer):
    """Copyright cases, and appeals of report decisions: routed to the appeals
    service after the checks."""

    audience = APPEALS

    def __init__(self, backend: Backend, channel: grpc.aio.Channel) -> None:
        self.backend = backend
        self.stub = appeals_pb2_grpc.AppealServiceStub(channel)

    async def FileAppeal(self, request: Any, context: Ctx) -> Any:
        who = self.backend.identity(context)
        v = Violations()
        await fieldrules.check_async(request, v)
        v.raise_if_any()
        facts: dict[str, str] = {}
        if request.appeal.appeal_of.startswith(REPORT_CASES):
            facts = await self._report_decision(request.appeal, who, context)
        for refs, field in _appeal_evidence(request.appeal, "appeal"):
            await self.backend.check_evidence(refs, field, who, context)
        return await self.backend.forward(
            self.stub.FileAppeal, request, who, context, audience=APPEALS, facts=facts
        )

    async def _report_decision(self, appeal: Any, who: Identity, context: Ctx) -> dict[str, str]:
        """An appeal of a report decision: the caller must be a party of that
        case (a reporter or the affected uploader), whatever their roles
        (`_report_case_of`); the decision's appeal deadline travels to the
        appeals service, which judges the window (after its own replay check,
        so a retried filing still gets its appeal), with its territorial
        scope, whose law the appeal runs under, and the case they were read
        from. A case under review again has no decision to appeal, but for
        the uploader its earlier one still restricts (`_restricts_under_review`)."""
        field = "appeal.appeal_of"
        name = appeal.appeal_of
        ident = name.removeprefix(REPORT_CASES)
        try:
            # As the reports service spells its ids (lower case, with hyphens).
            canonical = str(uuid.UUID(ident, version=None)) == ident
        except ValueError:
            canonical = False
        if not canonical:
            raise InvalidArgument.field(field, "must be appeals/{id} or report-cases/{id}")
        if appeal.kind != appeals_pb2.APPEAL_KIND_DECISION_APPEAL:
            raise InvalidArgument.field(field, "only a DECISION_APPEAL names a decided case")
        case = await self._report_case_of(who.subject, name, context)
        if case is None:
            raise InvalidArgument.field(field, f"{name} is not a case you are part of")
        decided = (
            reports_pb2.REPORT_CASE_STATE_ACTION_TAKEN,
            reports_pb2.REPORT_CASE_STATE_NO_VIOLATION,
        )
        until = ""
        if case.state in decided or _restricts_under_review(case, who):
            until = case.decision.appeal_deadline.ToDatetime(tzinfo=UTC).isoformat()
        scope = ",".join(case.decision.territorial_scope)
        return {APPEALABLE_UNTIL: until, APPEALED_SCOPE: scope, APPEAL_OF: name}

    async def _report_case_of(self, person: str, name: str, context: Ctx) -> Any | None:
        """The report case `name` as `person` may read it, or None when they
        are no party of it (a reporter or the affected uploader). The reports
        service is asked as `person` with a user's role alone: an agent sees
        every case, and a case they are no party of is refused as a
        stranger's is."""
        try:
            return await self.backend.reports.GetReportCase(
                reports_pb2.GetReportCaseRequest(name=name),
                metadata=self.backend.vouch(export.as_person(person), REPORTS, context=context),
                timeout=self.backend._timeout(context),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            await self.backend._fail(err, context)

    async def _agents_work(
        self, method_name: str, request: Any, context: Ctx, assignee: str = ""
    ) -> Any:
        """An agent's work on an appeal (`method_name`), which the appeals
        service refuses its parties (OWN_CASE). Of a report decision it knows
        only those who appealed it: that the agent, or the one they give it
        to (`assignee`), reported the content or uploaded it, the reports
        service tells, asked here (`_refuse_report_party`)."""
        who = self.backend.identity(context)
        if not who.is_agent:
            raise PermissionDenied(f"{method_name} needs the agent role")
        await _check(request)
        await self._refuse_report_party(request.name, assignee or who.subject, who, context)
        return await self.backend.forward(
            getattr(self.stub, method_name), request, who, context, audience=APPEALS
        )

    async def _refuse_report_party(
        self, name: str, agent: str, who: Identity, context: Ctx
    ) -> None:
        """Refuses, as the appeals service refuses its parties (PERMISSION_DENIED,
        OWN_CASE), work by `agent` on the appeal `name` of a report decision
        they are a party of: one who reported the content would otherwise
        decide the uploader's appeal of its removal, and the uploader a
        reporter's. Costs a read of the appeal, and of a report case for an
        appeal of one. `who` is the calling agent: when `agent` is another
        (given the case), the refusal names the party it would go to."""
        try:
            appeal = await self.stub.GetAppeal(
                appeals_pb2.GetAppealRequest(name=name),
                metadata=self.backend.vouch(who, APPEALS, context=context),
                timeout=self.backend._timeout(context),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return  # the service answers the call itself (its fields first)
            await self.backend._fail(err, context)
        decided = _report_case_name(appeal.appeal_of)
        if decided and await self._report_case_of(agent, decided, context) is not None:
            of = (
                "the report case whose decision this appeals (one of its reporters or the uploader)"
            )
            raise own_case(agent, who.subject, of)

    async def AssignAppeal(self, request: Any, context: Ctx) -> Any:
        return await self._agents_work("AssignAppeal", request, context, request.assignee)

    async def RequestAppealInfo(self, request: Any, context: Ctx) -> Any:
        return await self._agents_work("RequestAppealInfo", request, context)

    async def DecideAppeal(self, request: Any, context: Ctx) -> Any:
        return await self._agents_work("DecideAppeal", request, context)

    GetAppeal = route("GetAppeal")
    ListAppeals = route("ListAppeals", check=checks.page(100))
    ListAppealEvents = route("ListAppealEvents")
    AddAppealInfo = route(
        "AddAppealInfo",
        attachments=lambda r: _appeal_evidence(r.completion, "completion"),
    )
    WithdrawAppeal = route("WithdrawAppeal")
    FileCounterNotice = route(
        "FileCounterNotice",
        attachments=lambda r: [(r.counter_notice.evidence, "counter_notice.evidence")],
    )
    RecordCourtAction = route(
        "RecordCourtAction",
        agent_only=True,
        attachments=lambda r: [(r.evidence, "evidence")],
    )
    RecordCourtOutcome = route(
        "RecordCourtOutcome",
        agent_only=True,
        attachments=lambda r: [(r.evidence, "evidence")],
    )


def _report_case_name(appeal_of: str) -> str:
    """The report case an appeal appeals the decision of, as the reports
    service spells its name; '' for an appeal of none."""
    if not appeal_of.startswith(REPORT_CASES):
        return ""
    try:
        return f"{REPORT_CASES}{uuid.UUID(appeal_of.removeprefix(REPORT_CASES))}"
    except ValueError:
        return ""


def _restricts_under_review(case: Any, who: Identity) -> bool:
    """Whether `case` is back under review (a reporter's appeal upheld)
    while the restrictions of its decision still hold on `who`, its affected
    uploader: they stay until it is decided again, and so does the
    uploader's right to appeal them, within that decision's window (DSA
    Art. 20), however long the review takes. (The case does not show whether
    the uploader's own appeal lifted them meanwhile: another one filed after
    that, upheld, changes nothing.)"""
    under_review = (reports_pb2.REPORT_CASE_STATE_OPEN, reports_pb2.REPORT_CASE_STATE_IN_REVIEW)
    if case.state not in under_review or not case.HasField("decision"):
        return False
    r = case.decision.restrictions
    restricts = bool(r.visibility or r.monetary or r.provision or r.account)
    return restricts and case.affected_uploader.user_id == who.subject


class ReportGateway(reports_pb2_grpc.ReportServiceServicer):
    """Abuse reports: routed to the reports service after the checks."""

    audience = REPORTS

    def __init__(self, backend: Backend, channel: grpc.aio.Channel) -> None:
        self.backend = backend
        self.stub = reports_pb2_grpc.ReportServiceStub(channel)

    FileReport = route(
        "FileReport",
        attachments=lambda r: [(r.report.evidence, "report.evidence")],
    )
    GetReport = route("GetReport")
    ListReports = route("ListReports", check=checks.page(100))
    ListReportEvents = route("ListReportEvents")
    ListReportReasons = route("ListReportReasons")
    GetReportCase = route("GetReportCase")
    ListReportCases = route("ListReportCases", agent_only=True, check=checks.page(100))
    AssignReportCase = route("AssignReportCase", agent_only=True)
    DecideReportCase = route("DecideReportCase", agent_only=True)
    VoidReportCase = route("VoidReportCase", agent_only=True)
    SetTrustedFlagger = route("SetTrustedFlagger", agent_only=True)
    RemoveTrustedFlagger = route("RemoveTrustedFlagger", agent_only=True)
    ListTrustedFlaggers = route("ListTrustedFlaggers", agent_only=True)
    GetTransparencyReport = route("GetTransparencyReport", agent_only=True)
    ListMyRestrictions = route("ListMyRestrictions")
    ListMyReportCases = route("ListMyReportCases", check=checks.page(100))
    GetMyReportingStanding = route("GetMyReportingStanding")


class PrivacyGateway(privacy_pb2_grpc.PrivacyServiceServicer):
    """People's rights over their personal data: erasure for admins; an
    export for the person, or an admin, composed here from the case services."""

    audience = PRIVACY

    def __init__(
        self,
        backend: Backend,
        channel: grpc.aio.Channel,
        cases: dict[str, Any],
        read_timeout: float,
    ) -> None:
        self.backend = backend
        self.stub = privacy_pb2_grpc.PrivacyServiceStub(channel)
        # What an export gathers from: each case service's stub, the help
        # centre's and the notifier's (`cases`, by audience), with the
        # audience of its tokens.
        self.services = {
            field: export.Service(cases[audience], audience)
            for field, audience in (
                ("tickets", TICKETS),
                ("appeals", APPEALS),
                ("reports", REPORTS),
                ("evidence", EVIDENCE),
                ("helpcenter", HELPCENTER),
                ("notifier", NOTIFIER),
            )
        }
        self.read_timeout = read_timeout
        # Whose exports are running in this process.
        self.exporting: set[str] = set()

    ErasePerson = route("ErasePerson", admin_only=True)

    async def ExportPerson(
        self, request: privacy_pb2.ExportPersonRequest, context: Ctx
    ) -> AsyncIterator[privacy_pb2.ExportPersonResponse]:
        who = self.backend.identity(context)
        await _check(request)
        person = request.person.strip() or who.subject
        if request.person and not request.person.strip():
            raise InvalidArgument.field("person", "must not be blank (leave it empty for yours)")
        fault = subject_fault(person)
        if fault is not None:
            raise InvalidArgument.field("person", fault)
        if person != who.subject and not who.is_admin:
            raise PermissionDenied("exporting another person's data needs the admin role")
        # One export at a time per caller (each reads every file of a person).
        if who.subject in self.exporting:
            raise ResourceExhausted(
                "an export you asked for is still running; wait for it to end",
                reason="EXPORT_RUNNING",
                retry_after=60,
            )
        self.exporting.add(who.subject)
        backend, them = self.backend, export.as_person(person)
        sources = export.Sources(
            **self.services,
            vouch=lambda audience: backend.vouch(them, audience, context=context),
            call_timeout=lambda: backend._timeout(context),
            read_timeout=lambda size: backend._timeout(
                context, export.read_time(size, self.read_timeout)
            ),
        )
        now, outcome, sent, held = datetime.now(UTC), "failed", 0, export.Held()
        try:
            async with contextlib.aclosing(export.archive(sources, person, now, held)) as pieces:
                async for data in pieces:
                    name = export.archive_name(now) if not sent else ""
                    sent += len(data)
                    yield privacy_pb2.ExportPersonResponse(file_name=name, data=data)
            if held.missing:
                yield privacy_pb2.ExportPersonResponse(missing_files=held.missing)
            outcome = "sent"
        except grpc.aio.AioRpcError as err:
            outcome = err.code().name
            await backend._fail(err, context)
        finally:
            self.exporting.discard(who.subject)
            # Who exported whose data, and what it held (as far as it got):
            # ids and counts only.
            log.info(
                "privacy.export",
                person=person,
                exported_by=who.subject,
                outcome=outcome,
                tickets=held.counts["tickets"],
                appeals=held.counts["appeals"],
                reports=held.counts["reports"],
                report_cases=held.counts["report_cases"],
                reporting_standing=held.standing,
                files=held.counts["evidence"],
                missing_files=len(held.missing),
                help_sessions=held.counts["help_sessions"],
                phone_changes=held.counts["phone_changes"],
                notifications=held.counts["notifications"],
                bytes=sent,
            )


class NotificationGateway(notifications_pb2_grpc.NotificationServiceServicer):
    """What the notifier sent the caller: theirs alone, whatever their role."""

    audience = NOTIFIER

    def __init__(self, backend: Backend, channel: grpc.aio.Channel) -> None:
        self.backend = backend
        self.stub = notifications_pb2_grpc.NotificationServiceStub(channel)

    ListMyNotifications = route("ListMyNotifications", check=checks.page(50))


class QueueGateway(casequeue_pb2_grpc.CaseQueueServiceServicer):
    """The agents' queue: every call needs the agent role."""

    audience = CASEQUEUE

    def __init__(self, backend: Backend, channel: grpc.aio.Channel) -> None:
        self.backend = backend
        self.stub = casequeue_pb2_grpc.CaseQueueServiceStub(channel)

    ListQueueCases = route("ListQueueCases", agent_only=True, check=checks.page(500))
    ClaimNextCase = route("ClaimNextCase", agent_only=True)
    RenewClaim = route("RenewClaim", agent_only=True)
    ReleaseClaim = route("ReleaseClaim", agent_only=True)

    async def WatchQueue(
        self, request: casequeue_pb2.WatchQueueRequest, context: Ctx
    ) -> AsyncIterator[casequeue_pb2.QueueChange]:
        who = self.backend.identity(context)
        if not who.is_agent:
            raise PermissionDenied("WatchQueue needs the agent role")
        # The watch lasts as long as the agent's sign-in, not beyond: a token
        # that expired (a role taken away with it) hears no more changes, nor
        # one whose key the identity provider withdrew (checked at each change
        # and heartbeat, about every 20 s). The queue service is told so too,
        # and ends the watch then even if this gateway does not.
        expires = self.backend.token_expiry(context)
        if expires is None:
            raise Unauthenticated("sign in again to watch the queue")
        expires = min(expires, time.time() + WATCH_LONGEST_S)
        until = datetime.fromtimestamp(expires, UTC).isoformat()
        metadata = self.backend.vouch(who, CASEQUEUE, {WATCH_UNTIL: until}, context=context)
        call = self.stub.WatchQueue(
            request, metadata=metadata, timeout=max(0.0, expires - time.time())
        )
        try:
            async for change in call:
                self.backend.identity_still(context)
                yield change
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise Unauthenticated("token expired: sign in again to go on watching") from None
            await self.backend._fail(err, context)
        finally:
            call.cancel()


class HelpGateway(helpcenter_pb2_grpc.HelpCenterServiceServicer):
    """The help centre: reading for any signed-in user, editing for admins.
    "Not solved" opens the user's ticket here (one per help session)."""

    audience = HELPCENTER

    def __init__(
        self, backend: Backend, channel: grpc.aio.Channel, tickets: grpc.aio.Channel
    ) -> None:
        self.backend = backend
        self.stub = helpcenter_pb2_grpc.HelpCenterServiceStub(channel)
        self.tickets = pb_grpc.TicketServiceStub(tickets)

    ListFlows = route("ListFlows")
    StartFlow = route("StartFlow")
    AnswerFlow = route("AnswerFlow")
    GetHelpFigures = route("GetHelpFigures", agent_only=True)

    async def RecommendArticles(
        self, request: helpcenter_pb2.RecommendArticlesRequest, context: Ctx
    ) -> helpcenter_pb2.RecommendArticlesResponse:
        """Adds the categories of the caller's open tickets (theirs alone)."""
        who = self.backend.identity(context)
        await _check(request)
        del request.categories[:]
        if who.is_agent:  # an agent's ticket list is everyone's: not theirs to go by
            for_agent: helpcenter_pb2.RecommendArticlesResponse = await self.backend.forward(
                self.stub.RecommendArticles, request, who, context, audience=HELPCENTER
            )
            return for_agent
        mine = await self.backend.forward(
            self.tickets.ListTickets,
            tickets_pb2.ListTicketsRequest(
                page_size=50,
                statuses=[
                    tickets_pb2.TICKET_STATUS_NEW,
                    tickets_pb2.TICKET_STATUS_OPEN,
                    tickets_pb2.TICKET_STATUS_PENDING,
                    tickets_pb2.TICKET_STATUS_ON_HOLD,
                ],
            ),
            who,
            context,
            audience=TICKETS,
        )
        request.categories.extend(dict.fromkeys(t.category for t in mine.tickets))
        answer: helpcenter_pb2.RecommendArticlesResponse = await self.backend.forward(
            self.stub.RecommendArticles, request, who, context, audience=HELPCENTER
        )
        return answer

    StartPhoneChange = route("StartPhoneChange")
    ConfirmPhoneChange = route("ConfirmPhoneChange")
    ResendPhoneChangeCode = route("ResendPhoneChangeCode")
    GetPhoneChange = route("GetPhoneChange")
    ListMyHelpSessions = route("ListMyHelpSessions", check=checks.page(100))
    ListMyPhoneChanges = route("ListMyPhoneChanges", check=checks.page(100))

    async def ResolveHelp(
        self, request: helpcenter_pb2.ResolveHelpRequest, context: Ctx
    ) -> helpcenter_pb2.ResolveHelpResponse:
        who = self.backend.identity(context)
        v = Violations()
        await fieldrules.check_async(request, v)
        if not request.solved:
            # Checked before the answer is recorded: a ticket must be possible.
            # Not annotations: they hold only when the session is not solved, and
            # contacts tie fields together. (The help centre checks the
            # ticket's words, which it records.)
            rules.check_contact(v, checks.contact(request.contact), prefix="contact.")
            if request.locale not in rules.LOCALES:
                v.add("locale", f"must be one of {', '.join(rules.LOCALES)}")
        v.raise_if_any()
        if not request.solved:
            await self.backend.check_evidence(request.evidence, "evidence", who, context)
        answer: helpcenter_pb2.ResolveHelpResponse = await self.backend.forward(
            self.stub.ResolveHelp, request, who, context, audience=HELPCENTER
        )
        if request.solved:
            return answer
        # The session recorded its ticket's words the first time "not solved"
        # was answered: sent again with others, the ticket is not opened with
        # words the session does not hold.
        for field in ("category", "subject", "description"):
            given = rules.said(getattr(request, field))
            if given and given != getattr(answer, field):
                raise AlreadyExists(
                    f"this help session's ticket was recorded with another {field}: send it"
                    " again without category, subject and description to open it as recorded,"
                    " or add to that ticket",
                    reason="SESSION_OUTCOME_RECORDED",
                )
        # The help centre accepted the name, so it holds a UUID in its one
        # spelling: the ticket is one per session.
        session = str(uuid.UUID(request.session.rpartition("/")[2]))
        try:
            ticket = await self.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(
                    request_id=f"help-{session}",
                    # The words the session recorded (the user's own where
                    # they gave them, the first time they answered).
                    ticket=tickets_pb2.Ticket(
                        category=answer.category,
                        subject=answer.subject,
                        description=answer.description,
                        locale=request.locale,
                        contact=request.contact,
                        evidence=request.evidence,
                    ),
                ),
                metadata=self.backend.vouch(who, TICKETS, context=context),
                timeout=self.backend._timeout(context),
            )
        except grpc.aio.AioRpcError as err:
            _as_resolve_help(err)
            await self.backend._fail(err, context)
        answer.ticket = ticket.name
        answer.category, answer.subject, answer.description = (
            ticket.category,
            ticket.subject,
            ticket.description,
        )
        return answer

    SearchArticles = route("SearchArticles")
    SuggestArticles = route("SuggestArticles")
    GetArticle = route("GetArticle")
    ListHelpCategories = route("ListHelpCategories")
    CreateArticle = route("CreateArticle", admin_only=True)
    UpdateArticle = route("UpdateArticle", admin_only=True)
    PublishArticle = route("PublishArticle", admin_only=True)
    ListArticleVersions = route("ListArticleVersions", admin_only=True)

"""gRPC serving shared by every service: error mapping with google.rpc details,
trace-context extraction, health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import context as otel_context
from opentelemetry import trace

from casemesh.platform import errors, metrics, starting, wire
from casemesh.platform.backends import PINGS_ALLOWED
from casemesh.platform.callers import BehindGateway, VouchedCalls, vouched
from casemesh.platform.identity import Identity
from casemesh.platform.localized import DEFAULT as DEFAULT_LOCALE
from casemesh.platform.localized import locale_of, localized
from casemesh.platform.logging import get_logger
from casemesh.platform.personal.errors import PersonalDataError, UnknownDataKey, UnknownMasterKey
from casemesh.platform.pools import DATABASE_OUTAGE
from casemesh.platform.starting import LIVENESS
from casemesh.platform.telemetry import extract_metadata, tracer

log = get_logger(__name__)

_CODES: dict[type[errors.CasemeshError], tuple[grpc.StatusCode, int]] = {
    errors.InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    errors.NotFound: (grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    errors.PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    errors.Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
    errors.FailedPrecondition: (
        grpc.StatusCode.FAILED_PRECONDITION,
        code_pb2.FAILED_PRECONDITION,
    ),
    errors.AlreadyExists: (grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    errors.Aborted: (grpc.StatusCode.ABORTED, code_pb2.ABORTED),
    errors.ResourceExhausted: (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    errors.Unavailable: (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    errors.DeadlineExceeded: (grpc.StatusCode.DEADLINE_EXCEEDED, code_pb2.DEADLINE_EXCEEDED),
}


def _code_of(err: errors.CasemeshError) -> tuple[grpc.StatusCode, int]:
    """The status code of a domain error: its own class's, or the nearest
    base class's (a service's `ChangesLost(Unavailable)` is UNAVAILABLE)."""
    for kind in type(err).__mro__:
        if kind in _CODES:
            return _CODES[kind]
    return grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION


# A failed call's status travels in trailers: grpc-message (percent-encoded)
# and grpc-status-details-bin (the whole Status, base64). A peer refuses
# trailers over 8 KiB by default, answering RESOURCE_EXHAUSTED instead of the
# error, so a status is kept to half of that, leaving room for the rest.
STATUS_BYTES = 4096
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# What a message may keep when a status is cut to size.
_MESSAGE_BYTES = 600
_TRAILER_OVERHEAD = len("grpc-status") + 1 + len("grpc-message") + 3 * 32


def status_bytes(status: status_pb2.Status) -> int:
    """The trailer bytes `status` takes, as a peer counts them."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in status.message.encode())
    serialized: int = status.ByteSize()
    details = 4 * -(-serialized // 3)  # base64
    return _TRAILER_OVERHEAD + len(STATUS_DETAILS_KEY) + message + details


def sent_details(trailing_metadata: Sequence[tuple[str, Any]] | None) -> list[any_pb2.Any] | None:
    """The google.rpc details (BadRequest, ErrorInfo…) a peer's failed call
    carried in its trailers; None when it sent none, [] when they were unreadable."""
    sent = [v for k, v in trailing_metadata or () if k == STATUS_DETAILS_KEY]
    if not sent:
        return None
    if not isinstance(sent[0], bytes):
        return []
    try:
        return list(status_pb2.Status.FromString(sent[0]).details)
    except DecodeError:
        return []


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _bad_request(violations: Sequence[tuple[str, str]]) -> any_pb2.Any:
    return _packed(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in violations
            ]
        )
    )


def _clipped(
    violation: error_details_pb2.BadRequest.FieldViolation,
) -> error_details_pb2.BadRequest.FieldViolation:
    """A violation cut to the sizes every client takes, its words for people kept."""
    kept = error_details_pb2.BadRequest.FieldViolation()
    kept.CopyFrom(violation)
    kept.field = errors.clip(violation.field, errors.FIELD_BYTES)
    kept.description = errors.clip(violation.description, errors.DESCRIPTION_BYTES)
    if violation.HasField("localized_message"):
        said = errors.clip(violation.localized_message.message, errors.DESCRIPTION_BYTES)
        kept.localized_message.message = said
    return kept


def bounded(status: status_pb2.Status) -> status_pb2.Status:
    """`status` cut to STATUS_BYTES, whoever made it: first its message is
    clipped, then a BadRequest loses violations from its end (keeping the
    first), then other details go from the last."""
    if status_bytes(status) <= STATUS_BYTES:
        return status
    cut = status_pb2.Status(code=status.code, message=errors.clip(status.message, _MESSAGE_BYTES))
    cut.details.extend(status.details)
    for i, detail in enumerate(cut.details):
        if status_bytes(cut) <= STATUS_BYTES:
            break
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            kept = [_clipped(v) for v in bad.field_violations][: errors.NAMED_VIOLATIONS]
            cut.details[i].CopyFrom(_packed(error_details_pb2.BadRequest(field_violations=kept)))
            while len(kept) > 1 and status_bytes(cut) > STATUS_BYTES:
                kept.pop()
                cut.details[i].CopyFrom(
                    _packed(error_details_pb2.BadRequest(field_violations=kept))
                )
    while len(cut.details) > 0 and status_bytes(cut) > STATUS_BYTES:
        del cut.details[-1]
    return cut


def to_status(err: errors.CasemeshError, locale: str = DEFAULT_LOCALE) -> grpc.Status:
    """The gRPC status for a domain error; field violations travel as
    BadRequest: the first ones (as many as fit in STATUS_BYTES, at most
    NAMED_VIOLATIONS) named in both, the rest counted in the message; and the
    words a front end shows, in `locale` (LocalizedMessage)."""
    _, code = _code_of(err)
    info: list[any_pb2.Any] = []
    if err.reason:
        info.append(
            _packed(
                error_details_pb2.ErrorInfo(
                    reason=err.reason, domain="casemesh", metadata=err.metadata
                )
            )
        )
    if isinstance(err, errors.ResourceExhausted) and err.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(0, round(err.retry_after * 1e9)))
        info.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = localized(status_pb2.Status(code=code, message=err.message, details=info), locale)
    if isinstance(err, errors.InvalidArgument):
        named = min(len(err.violations), errors.NAMED_VIOLATIONS)
        while True:
            shown = [(v.field, v.description) for v in err.violations[:named]]
            status = localized(
                status_pb2.Status(
                    code=code,
                    message=errors.summary(err.violations, named),
                    details=[_bad_request(shown), *info],
                ),
                locale,
            )
            if named <= 1 or status_bytes(status) <= STATUS_BYTES:
                break
            named -= 1
    grpc_status: grpc.Status = rpc_status.to_status(bounded(status))
    return grpc_status


def caller_locale(context: grpc.aio.ServicerContext) -> str:
    """The locale the caller reads (its `accept-language`, which the gateway
    passes on to the services)."""
    sent = dict(context.invocation_metadata() or ()).get("accept-language", "")
    return locale_of(sent if isinstance(sent, str) else "")


def to_timestamp(moment: datetime | str | None) -> Timestamp | None:
    """A protobuf Timestamp from a datetime (or its ISO text); None stays unset."""
    if not moment:
        return None
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)
    return ts


def from_timestamp(ts: Timestamp, field: str) -> datetime:
    """A Timestamp a client sent, as a UTC datetime; one out of range is the
    caller's mistake, named by field."""
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise errors.InvalidArgument.field(field, "is not a valid time") from None


def resource_id(name: str, collection: str, field: str = "name") -> str:
    """The id in a resource name `collection/{uuid}`, in its one spelling (the
    one the API hands out: lower case, hyphens in their places)."""
    prefix, _, ident = name.partition("/")
    try:
        if prefix != collection or str(uuid.UUID(ident)) != ident:
            raise ValueError(name)
        return ident
    except ValueError:
        raise errors.InvalidArgument.field(field, f"must be {collection}/{{id}}") from None


class ApplicationServicer:
    """Base of servicers in front of a synchronous event-sourced application:
    the caller's verified identity, and calls run in worker threads so the
    event loop keeps serving."""

    @staticmethod
    async def _call(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    @staticmethod
    def _who(context: grpc.aio.ServicerContext) -> Identity:
        """The caller the gateway vouched for (checked before the handler ran)."""
        return vouched().identity

    async def _page(
        self,
        list_page: Callable[..., Any],
        context: grpc.aio.ServicerContext,
        request: Any,
        *filters: Any,
    ) -> Any:
        """A List RPC's page: `list_page(who, page_size, page_token, *filters)`."""
        return await self._call(
            list_page, self._who(context), request.page_size, request.page_token, *filters
        )


def enum_name(enum: Any, value: int, field: str, prefix: str) -> str:
    """The name of an enum value a client sent, without its prefix; a number
    the contract does not define is the caller's mistake, named by field."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        raise errors.InvalidArgument.field(field, f"{value} is not a defined value") from None
    return name.removeprefix(prefix)


# How many values a list's filter of enum values (`statuses`, `states`,
# `types`) may hold, repeats counted: more than any such enum has values,
# few enough that a request is refused before its list is read (a 1 MB
# request carries a million, a second of work on a service's one event loop,
# which its liveness probe waits behind).
MOST_FILTER_VALUES = 20


def enum_filter(enum: Any, values: Sequence[int], field: str, prefix: str) -> list[str]:
    """The names a list's enum filter holds, each once (see `enum_name`); the
    unspecified value filters nothing, so it is refused rather than ignored."""
    if len(values) > MOST_FILTER_VALUES:
        raise errors.InvalidArgument.field(field, f"at most {MOST_FILTER_VALUES} items")
    names = [enum_name(enum, v, field, prefix) for v in dict.fromkeys(values)]
    if "UNSPECIFIED" in names:
        raise errors.InvalidArgument.field(field, f"must not contain {prefix}UNSPECIFIED")
    return names


def field_violations(status: status_pb2.Status) -> list[tuple[str, str]]:
    """The (field, description) pairs inside a status's BadRequest details."""
    found: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found


# Clients reconnect every few minutes (calls in flight, streams included, go
# on over the old connection): a client balancing over the addresses of a
# Kubernetes headless Service resolves them again and so finds replicas added
# since it connected. The other services' pings are allowed
# (`backends.PINGS_ALLOWED`).
SERVER_OPTIONS = (("grpc.max_connection_age_ms", 300_000), PINGS_ALLOWED)

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class _Measured:
    """Counts one RPC (started, handled by status code) and times it."""

    def __init__(self, method: str, kind: str, context: grpc.aio.ServicerContext) -> None:
        self._labels = metrics.grpc_labels(method, kind)
        self._context = context
        self._start = time.perf_counter()
        metrics.GRPC_STARTED.labels(*self._labels).inc()

    def done(self, failure: BaseException | None) -> None:
        metrics.GRPC_SECONDS.labels(*self._labels).observe(time.perf_counter() - self._start)
        metrics.GRPC_HANDLED.labels(*self._labels, _status_name(self._context, failure)).inc()


def _status_name(context: grpc.aio.ServicerContext, failure: BaseException | None) -> str:
    """The status code the client sees: the one the handler set or aborted
    with; CANCELLED for a call cut off; UNKNOWN for an uncaught exception."""
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int) and code in _BY_VALUE:
        return _BY_VALUE[code]
    return "UNKNOWN" if failure is not None else "OK"


_BY_VALUE: dict[int, str] = {c.value[0]: c.name for c in grpc.StatusCode}


async def _abort_unavailable(
    context: grpc.aio.ServicerContext, method: str, exc: BaseException
) -> None:
    """A call that meets a database outage: retryable. Usually nothing of it
    was stored; if the outage took only the answer to its commit, it was, and
    a retry with the same request id gets what it made."""
    log.warning("grpc.database_unavailable", method=method, error=repr(exc))
    await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unavailable: try again")


# Personal data that cannot be read for want of a key: a master key missing
# from the secret, or a process pointed at the wrong key database. The
# operator's to put right (the service, not the caller, is at fault), after
# which the same call succeeds. (The key database away is DATABASE_OUTAGE.)
KEYS_MISSING = (UnknownDataKey, UnknownMasterKey)


async def _abort_personal(
    context: grpc.aio.ServicerContext, method: str, exc: BaseException
) -> None:
    """A call that needs personal data the service cannot read. A key it
    cannot have now (`KEYS_MISSING`): retryable. Any other (a stored key
    or token that was altered): INTERNAL, the same on every retry. Either
    logged for the operator with what went wrong."""
    if isinstance(exc, KEYS_MISSING):
        log.error("grpc.personal_keys_missing", method=method, error=repr(exc))
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, "personal data cannot be read right now: try again later"
        )
    log.error("grpc.personal_data_unreadable", method=method, error=repr(exc))
    await context.abort(grpc.StatusCode.INTERNAL, "personal data stored here cannot be read")


def _wrap_unary(method: str, kind: str, behaviour: Handler) -> Handler:
    """For unary-response calls (unary-unary and stream-unary)."""

    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = otel_context.attach(extract_metadata(context.invocation_metadata()))
        measured = _Measured(method, kind, context)
        failure: BaseException | None = None
        try:
            with tracer("casemesh.grpc").start_as_current_span(
                method, kind=trace.SpanKind.SERVER, attributes={"rpc.system": "grpc"}
            ) as span:
                try:
                    return await behaviour(_decoded(request, kind), context)
                except errors.CasemeshError as err:
                    span.set_attribute("rpc.grpc.status_code", _code_of(err)[1])
                    if kind == "client_stream" and not isinstance(err, _ABOUT_THE_CALLER):
                        await finish_reading(request)
                    await context.abort_with_status(to_status(err, caller_locale(context)))
                except DATABASE_OUTAGE as exc:
                    await _abort_unavailable(context, method, exc)
                except PersonalDataError as exc:
                    await _abort_personal(context, method, exc)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            measured.done(failure)
            otel_context.detach(token)

    return wrapped


# Refusals of the caller rather than of what they sent: answered at once,
# without reading on.
_ABOUT_THE_CALLER = (errors.Unauthenticated, errors.ResourceExhausted)
# How long a refused client-streaming call reads on before it answers anyway.
FINISH_READING_SECONDS = 30.0


async def finish_reading(
    requests: AsyncIterator[Any], within: float = FINISH_READING_SECONDS
) -> None:
    """Reads and drops the rest of a client's request stream (for at most
    `within` seconds), so that a refusal is answered after the client's last
    message. Answered earlier, it reaches an asyncio client whose write is
    still in flight as INTERNAL "Internal error from Core": grpcio's aio
    client replaces the status it received when that write then fails."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            async for _ in requests:
                pass


@dataclass(frozen=True)
class _Undecodable:
    """Request bytes that are no message of the call's type, and where."""

    violation: errors.FieldViolation


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, except that bytes which do not parse become an
    _Undecodable (answered INVALID_ARGUMENT naming the field) instead of an
    exception (which gRPC answers UNKNOWN)."""
    if deserialize is None:
        return None
    parse = deserialize
    # A generated message class's FromString: its descriptor tells the fields.
    descriptor = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            if descriptor is None:
                return _Undecodable(errors.FieldViolation("", "is not a valid request message"))
            return _Undecodable(wire.first_fault(descriptor, data))

    return tolerant


def _decoded(request: Any, kind: str) -> Any:
    """The request (or, for a client stream, each request) the handler gets:
    one that did not parse is refused as INVALID_ARGUMENT."""
    if kind == "client_stream":
        return _each_decoded(request)
    if isinstance(request, _Undecodable):
        raise errors.InvalidArgument(request.violation)
    return request


async def _each_decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise errors.InvalidArgument(request.violation)
        yield request


class _Drained(Exception):
    """An open-ended stream ends because its server is draining."""


async def _until_drained(stream: AsyncIterator[Any], draining: asyncio.Event) -> AsyncIterator[Any]:
    """`stream`, ended by `_Drained` as soon as `draining` is set."""
    async with contextlib.aclosing(until_set(stream, draining, ending=_Drained)) as items:
        async for item in items:
            yield item


async def until_set(
    stream: AsyncIterator[Any],
    event: asyncio.Event,
    *,
    ending: type[Exception] | None = None,
) -> AsyncGenerator[Any, None]:
    """`stream`, cut off (and so closed, with what it holds open behind it) as
    soon as `event` is set, even while it waits for its next item: it then
    ends, or raises `ending` when given. However it ends, `stream` is
    closed then, not when the garbage collector finds it."""
    stop = asyncio.ensure_future(event.wait())
    items = aiter(stream)
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            # Its failure is read below; if the call is cancelled first (its
            # client went away), nobody reads it, and that is no error.
            step.add_done_callback(_read_outcome)
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                # Its end, not its outcome (read by `_read_outcome`); a
                # cancellation of this task meanwhile is not swallowed.
                await asyncio.wait({step})
                if ending is not None:
                    raise ending
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop.cancel()
        if step is not None and not step.done():
            # Cancelled while waiting for the next item: the stream is
            # running in `step`, and can be closed only once it stops.
            step.cancel()
            await asyncio.wait({step})
        if (close := getattr(items, "aclose", None)) is not None:
            await close()


def _read_outcome(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


def _wrap_response_stream(method: str, behaviour: Any, draining: asyncio.Event | None) -> Any:
    """For server-streaming calls: the behaviour is an async generator. An
    open-ended one (`draining` given) ends with UNAVAILABLE when the server
    starts draining, so its client watches again on another replica instead
    of holding the shutdown for the whole grace period. The behaviour's
    generator is closed as soon as the call ends, however it ends
    (`_closed_when_done`)."""

    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # An async generator (its state read below).
        responses: Any = serving(request, context)
        _closed_when_done(context, responses)
        try:
            async for response in responses:
                yield response
        finally:
            if not responses.ag_running:  # else being closed as its call ended
                await responses.aclose()

    async def serving(request: Any, context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        parent = extract_metadata(context.invocation_metadata())
        measured = _Measured(method, "server_stream", context)
        span = tracer("casemesh.grpc").start_span(
            method, context=parent, kind=trace.SpanKind.SERVER, attributes={"rpc.system": "grpc"}
        )
        # The call's trace context is current while the behaviour runs, never
        # across a yield: gRPC may close the stream from another task (its
        # client went away), where a context attached here cannot be detached.
        current = trace.set_span_in_context(span, parent)
        failure: BaseException | None = None
        try:
            try:
                stream = behaviour(_decoded(request, "server_stream"), context)
                if draining is not None:
                    stream = _until_drained(stream, draining)
                async with contextlib.aclosing(stream):
                    items = aiter(stream)
                    while True:
                        token = otel_context.attach(current)
                        try:
                            response = await anext(items)
                        except StopAsyncIteration:
                            break
                        finally:
                            otel_context.detach(token)
                        yield response
            except errors.CasemeshError as err:
                span.set_attribute("rpc.grpc.status_code", _code_of(err)[1])
                await context.abort_with_status(to_status(err, caller_locale(context)))
            except DATABASE_OUTAGE as exc:
                await _abort_unavailable(context, method, exc)
            except PersonalDataError as exc:
                await _abort_personal(context, method, exc)
            except _Drained:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, "the server is shutting down: watch again"
                )
        except BaseException as exc:
            failure = exc
            if isinstance(exc, Exception):
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, repr(exc)))
            raise
        finally:
            span.end()
            measured.done(failure)

    return wrapped


# The closings `_closed_when_done` started, held until they end.
_CLOSING: set[asyncio.Task[None]] = set()


def _closed_when_done(context: Any, responses: Any) -> None:
    """`responses` (a server stream's generator) closed as soon as its call
    is done. A call cancelled while grpcio writes a response (its client
    went away, slow to read) is cancelled in that write, outside the
    generator, which grpcio never closes: what the handler holds (the call
    to the service behind, an export under way) would be let go only when
    the garbage collector finds it, hours later for a long download. (An
    HTTP call's context has no such callback: the HTTP front closes the
    stream itself.)"""
    add_done_callback = getattr(context, "add_done_callback", None)
    if add_done_callback is None:
        return

    def close(_context: Any) -> None:
        if responses.ag_frame is None:  # it ended on its own
            return
        closing = asyncio.get_running_loop().create_task(responses.aclose())
        _CLOSING.add(closing)
        closing.add_done_callback(_closed)

    add_done_callback(close)


def _closed(closing: asyncio.Task[None]) -> None:
    _CLOSING.discard(closing)
    if not closing.cancelled() and (exc := closing.exception()) is not None:
        log.error("grpc.stream_close_failed", error=repr(exc))


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Runs every call in a server span (parented by the caller's trace
    context), turns domain errors into their status codes, and counts and
    times each call for the metrics endpoint."""

    def __init__(self, endless: Sequence[str] = (), draining: asyncio.Event | None = None) -> None:
        self._endless = frozenset(endless)
        self._draining = draining

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith("/grpc."):
            return handler
        codecs = {
            "request_deserializer": _tolerant(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, "unary", handler.unary_unary), **codecs
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, "client_stream", handler.stream_unary), **codecs
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_response_stream(
                    method,
                    handler.unary_stream,
                    self._draining if method in self._endless else None,
                ),
                **codecs,
            )
        return handler


class _Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class MethodRegistry:
    """Stands in for a grpc.aio.Server when the services are registered, to
    learn the method handlers they register (so HTTP has no routing table of
    its own)."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers.update({f"/{service}/{name}": h for name, h in handlers.items()})

    async def intercepted(
        self, interceptors: Sequence[grpc.aio.ServerInterceptor]
    ) -> dict[str, grpc.RpcMethodHandler]:
        """Each handler as the gRPC server's `interceptors` wrap it (the first
        outermost)."""

        def continuation(h: grpc.RpcMethodHandler) -> Any:
            async def returned(_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
                return h

            return returned

        wrapped = dict(self.handlers)
        for interceptor in reversed(interceptors):
            for method, h in wrapped.items():
                wrapped[method] = await interceptor.intercept_service(
                    continuation(h), _Details(method)
                )
        return wrapped


class Companion(Protocol):
    """A second front for the same method handlers (the gateway's HTTP port),
    started, drained and stopped with the gRPC server."""

    async def start(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None: ...

    def drain(self) -> None: ...

    async def stop(self, grace: float) -> None: ...

    async def serving(self) -> None:
        """Returns, or raises, only if the front stops by itself."""


class Serving(Protocol):
    """The settings a gRPC service is served with (its settings class has them)."""

    grpc_addr: str
    shutdown_delay_seconds: float
    shutdown_grace_seconds: float


async def serve(
    cfg: Serving,
    *,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    options: Sequence[tuple[str, Any]] = (),
    stop: asyncio.Event | None = None,
    endless_streams: Sequence[str] = (),
    companion: Companion | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serves on `cfg.grpc_addr` until SIGTERM/SIGINT (or `stop` is set), then drains gracefully:
    readiness (health of "" and of each service) turns NOT_SERVING first and
    the server keeps answering for `cfg.shutdown_delay_seconds`, so load
    balancers stop sending new calls before it refuses them; then it stops
    taking new calls and gives those in flight `cfg.shutdown_grace_seconds`
    to finish. The health
    name `liveness` stays SERVING until the process exits (a liveness probe
    must not kill a draining pod). Open-ended server streams
    (`endless_streams`, full method names) end with UNAVAILABLE when draining
    starts. A service behind the gateway (its settings hold
    `internal_verify_key`) answers only calls carrying the gateway's token for
    one of `service_names`; the gateway authenticates its own callers. A
    `companion` serves the same handlers, wrapped by the same interceptors,
    and is drained and stopped with the gRPC server. Given `ready`,
    readiness is NOT_SERVING until it is set (what every call needs, such as
    the identity provider's keys, has come); liveness is SERVING from the
    start, so the process is not restarted meanwhile."""
    draining = asyncio.Event()
    callers = [VouchedCalls.of(cfg, service_names)] if isinstance(cfg, BehindGateway) else []
    chain = [DomainErrorInterceptor(endless_streams, draining), *callers, *interceptors]
    server = grpc.aio.server(interceptors=chain, options=[*SERVER_OPTIONS, *options])
    register(server)
    if companion is not None:
        registry = MethodRegistry()
        register(registry)
        await companion.start(await registry.intercepted(chain))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = cfg.grpc_addr
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    await server.start()
    readiness = ("", *service_names)
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    starting.handed_over()

    async def ready_when_able() -> None:
        if ready is not None:
            await ready.wait()
        for name in readiness:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    becoming_ready: asyncio.Future[None] | None = None
    if ready is None or ready.is_set():
        await ready_when_able()
    else:
        for name in readiness:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        becoming_ready = asyncio.ensure_future(ready_when_able())
    log.info("grpc.serving", address=address, services=list(service_names))

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if companion is None:
        await stop.wait()
    else:
        # A companion that stops by itself takes the process down (to be
        # restarted), rather than leaving half the API unanswered for good.
        stopping = asyncio.ensure_future(stop.wait())
        serving = asyncio.ensure_future(companion.serving())
        await asyncio.wait({stopping, serving}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            stopping.cancel()
            await server.stop(0)
            failure = serving.exception()
            raise RuntimeError("the HTTP front stopped by itself") from failure
        serving.cancel()
    delay, grace = cfg.shutdown_delay_seconds, cfg.shutdown_grace_seconds
    log.info("grpc.draining", delay_seconds=delay, grace_seconds=grace)
    if becoming_ready is not None:
        becoming_ready.cancel()  # draining: never ready again
    for name in readiness:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if companion is not None:
        companion.drain()
    draining.set()
    if delay > 0:
        await asyncio.sleep(delay)
    await asyncio.gather(
        server.stop(grace), *([companion.stop(grace)] if companion is not None else [])
    )
    log.info("grpc.stopped")

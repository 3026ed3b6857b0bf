"""The public API for browsers and H5 pages, on an HTTP port beside the gRPC
one: the Connect protocol (JSON and binary, GET for reads) and gRPC-Web for
every casemesh.v1 service, served by `connectrpc` from the very method
handlers the gRPC server runs, wrapped by the same interceptor (trace span,
domain errors as status codes with their details, metrics). Beside them: an
evidence upload a browser can make (one HTTP body, streamed through the same
UploadEvidence handler, so with its progress events), a development sign-in,
health probes and the self-service page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import ipaddress
import itertools
import json
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote, unquote, urlsplit

import grpc
import uvicorn
from connectrpc._codec import (
    CODEC_NAME_JSON,
    CODEC_NAME_JSON_CHARSET_UTF8,
    CODEC_NAME_PROTO,
    ProtoBinaryCodec,
    ProtoJSONCodec,
)
from connectrpc._codec import _codecs as _codec_registry
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import descriptor_pb2, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from casemesh.platform import errors, wire
from casemesh.platform.grpcutil import sent_details, to_status, until_set
from casemesh.platform.identity import mint_token
from casemesh.platform.localized import DEFAULT as DEFAULT_LOCALE
from casemesh.platform.localized import locale_of, localized, reason_of
from casemesh.platform.logging import get_logger
from casemesh.v1 import evidence_pb2
from casemesh_gateway import grpcwebtext
from casemesh_gateway.envelopes import (
    CONNECT_STREAM_TYPES,
    end_of_stream,
    error_json,
    refusing_large_messages,
    stream_message_limit,
)
from casemesh_gateway.http11 import HEAD_MAX_BYTES, Http11

log = get_logger(__name__)

# The request headers a browser may send across origins, and the response
# headers its script may read (what Connect and gRPC-Web clients need).
ALLOWED_HEADERS = [
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "x-file-name",
    "traceparent",
]
EXPOSED_HEADERS = ["grpc-status", "grpc-message", "grpc-status-details-bin"]
# Content types the RPC paths take: Connect unary and streaming, gRPC-Web
# (its text mode too, served as binary: `grpcwebtext`).
RPC_CONTENT_TYPES = (
    "application/json",
    "application/proto",
    "application/connect+json",
    "application/connect+proto",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web+json",
)
UPLOAD_PATH = "/uploads/evidence"
UPLOAD_METHOD = "/casemesh.v1.EvidenceService/UploadEvidence"
UPLOAD_CHUNK = 256 * 1024
SIGN_IN_PATH = "/dev/sign-in"
# How long before a shutdown's grace ends the streams still going are ended.
STREAM_END_MARGIN_S = 2
# How long the body of a call (at most read_max_bytes) may take to come
# after its head, and how long an upload's may pause: a caller slower than
# that is answered DEADLINE_EXCEEDED, and its connection closed (`Http11`).
BODY_WITHIN_S = 60.0
# How long a connection may wait for its next request (or a new one for its
# first). Longer than a proxy keeps its idle connections to us (60 s for
# ingress-nginx), so it never sends on one we just closed.
KEEP_ALIVE_S = 75
SIGN_IN_ROLES = {"user", "agent", "admin"}
# The reason (ErrorInfo) a request refused for its body's size gives (HTTP 413),
# told apart from a rate limit (RESOURCE_EXHAUSTED too, HTTP 429), and said so
# in the caller's language (error_messages.toml).
TOO_LARGE = "REQUEST_TOO_LARGE"
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}

# Connect's HTTP status for each code (connectrpc.com/docs/protocol#error-codes).
HTTP_STATUS = {
    Code.CANCELED: 499,
    Code.INVALID_ARGUMENT: 400,
    Code.FAILED_PRECONDITION: 400,
    Code.OUT_OF_RANGE: 400,
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.ABORTED: 409,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.UNIMPLEMENTED: 501,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
}


def connect_code(code: grpc.StatusCode) -> Code:
    return Code.CANCELED if code == grpc.StatusCode.CANCELLED else Code[code.name]


# gRPC's number for each Connect code.
GRPC_CODE = {connect_code(c): c.value[0] for c in grpc.StatusCode if c != grpc.StatusCode.OK}


def connect_error(
    code: grpc.StatusCode, message: str, trailing_metadata: Sequence[tuple[str, Any]] = ()
) -> ConnectError:
    """The Connect error for a gRPC status: the same code, message and
    google.rpc details (BadRequest, ErrorInfo…) the gRPC caller gets."""
    return ConnectError(connect_code(code), message, sent_details(trailing_metadata) or [])


def error_body(err: ConnectError) -> tuple[int, bytes]:
    """A Connect unary error: its HTTP status and JSON body."""
    body = json.dumps(error_json(err), ensure_ascii=False).encode()
    return HTTP_STATUS.get(err.code, 500), body


# The language the current call's caller reads (its accept-language).
_CALLER_LOCALE: ContextVar[str] = ContextVar("caller_locale", default=DEFAULT_LOCALE)


def in_callers_words(err: ConnectError) -> ConnectError:
    """`err` with the words a front end shows, in the current caller's
    language (a google.rpc.LocalizedMessage), as the services' refusals and
    the gateway's domain errors carry them (`grpcutil.to_status`): for the
    refusals this front makes itself. One it already carries is kept."""
    if any(d.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR) for d in err.details):
        return err
    status = status_pb2.Status(code=GRPC_CODE[err.code], message=err.message, details=err.details)
    return ConnectError(err.code, err.message, localized(status, _CALLER_LOCALE.get()).details)


class CallContext:
    """What the gateway's handlers use of a grpc.aio.ServicerContext, for a
    call that came over HTTP: the caller's headers as metadata, the time left
    before its deadline, and abort as a ConnectError."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], deadline: float | None) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._code: grpc.StatusCode | None = None

    @classmethod
    def of(cls, ctx: RequestContext[Any, Any]) -> CallContext:
        headers = ctx.request_headers()
        left = ctx.timeout_ms()
        return cls(
            tuple((k.lower(), v) for k, v in headers.allitems() if not k.startswith(":")),
            None if left is None else time.monotonic() + left / 1000,
        )

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, Any]] = (),
    ) -> NoReturn:
        self._code = code
        raise connect_error(code, details, trailing_metadata)

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)


def _message_class(descriptor: Any) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def _method_info(service: ServiceDescriptor, method: MethodDescriptor) -> MethodInfo[Any, Any]:
    no_side_effects = (
        method.GetOptions().idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    )
    return MethodInfo(
        name=method.name,
        service_name=service.full_name,
        input=_message_class(method.input_type),
        output=_message_class(method.output_type),
        idempotency_level=(
            IdempotencyLevel.NO_SIDE_EFFECTS if no_side_effects else IdempotencyLevel.UNKNOWN
        ),
    )


def _deadline(ctx: RequestContext[Any, Any]) -> float | None:
    """The caller's deadline, in the event loop's time (None: none)."""
    left = ctx.timeout_ms()
    return None if left is None else asyncio.get_running_loop().time() + max(left, 0) / 1000


@contextlib.asynccontextmanager
async def _answered(info: MethodInfo[Any, Any], deadline: float | None) -> AsyncIterator[None]:
    """Runs (a step of) a call within the caller's deadline (`_deadline`:
    DEADLINE_EXCEEDED past it); a failure of ours is INTERNAL with a plain
    message, its details logged rather than sent to the caller."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except ConnectError as err:
        raise in_callers_words(err) from None
    except TimeoutError:
        raise in_callers_words(
            ConnectError(Code.DEADLINE_EXCEEDED, "the call's deadline passed")
        ) from None
    except Exception:
        log.exception("http.call_failed", method=f"/{info.service_name}/{info.name}")
        raise in_callers_words(ConnectError(Code.INTERNAL, "the call failed on our side")) from None


def _endpoint(info: MethodInfo[Any, Any], handler: grpc.RpcMethodHandler) -> Any:
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
            async with _answered(info, _deadline(ctx)):
                return await unary(request, CallContext.of(ctx))

        return Endpoint.unary(info, call)
    if handler.stream_unary is not None:
        client_stream = handler.stream_unary

        async def take(requests: AsyncIterator[Any], ctx: RequestContext[Any, Any]) -> Any:
            async with _answered(info, _deadline(ctx)):
                return await client_stream(requests, CallContext.of(ctx))

        return Endpoint.client_stream(info, take)
    if handler.unary_stream is not None:
        server_stream = handler.unary_stream

        async def watch(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
            # The deadline bounds each step, never a write: cancelled while
            # connectrpc writes to a slow reader, the stream would end as a
            # success, a download cut short and taken for whole. Past it, the
            # next step fails DEADLINE_EXCEEDED. connectrpc notices a caller
            # that hung up only when it next writes: the stream (and the call
            # behind it) ends as they go; a server shutting down ends it
            # UNAVAILABLE, to be retried elsewhere (`WebFront.stop`).
            deadline, cut = _deadline(ctx), _CALL_CUT.get()
            stream = server_stream(request, CallContext.of(ctx))
            items = stream if cut is None else until_set(stream, cut.event, ending=_Cut)
            # Both closed as the call ends, with what they hold (the call to
            # the service behind), not when the garbage collector finds them.
            async with contextlib.aclosing(stream), contextlib.aclosing(items):
                while True:
                    async with _answered(info, deadline):
                        try:
                            item = await anext(items)
                        except StopAsyncIteration:
                            return
                        except _Cut:
                            if cut is not None and cut.why is not None:
                                raise cut.why from None
                            return
                    yield item

        return Endpoint.server_stream(info, watch)
    raise ValueError(f"{info.service_name}/{info.name}: bidirectional streams are not served")


class _Cut(Exception):
    """A server stream cut off before its end (`until_set`)."""


@dataclass(eq=False)
class CallCut:
    """Set when the current call's stream must end early: its HTTP caller
    hung up (`why` None: nobody to tell), or the server is shutting down
    (`why`: the error the caller is told)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    why: ConnectError | None = None


_CALL_CUT: ContextVar[CallCut | None] = ContextVar("call_cut", default=None)


def _telling_in_callers_words(receive: Receive) -> Receive:
    """`receive`, a refusal of the body (too large, too slow, not base64…)
    raised `in_callers_words`."""

    async def receiving() -> Any:
        try:
            return await receive()
        except ConnectError as err:
            raise in_callers_words(err) from None

    return receiving


def _noting_hang_up(receive: Receive, cut: CallCut) -> Receive:
    async def receiving() -> Any:
        event = await receive()
        if event["type"] == "http.disconnect":
            cut.event.set()
        return event

    return receiving


class ServiceApp(ConnectASGIApplication[Mapping[str, grpc.RpcMethodHandler]]):
    """One casemesh.v1 service over Connect and gRPC-Web."""

    def __init__(
        self,
        service: ServiceDescriptor,
        handlers: Mapping[str, grpc.RpcMethodHandler],
        read_max_bytes: int,
    ) -> None:
        self._path = f"/{service.full_name}"
        infos = {f"{self._path}/{m.name}": (m, _method_info(service, m)) for m in service.methods}
        missing = infos.keys() - handlers.keys()
        if missing:
            raise ValueError(f"no handler registered for {sorted(missing)}")
        # What a request may be, checked before connectrpc reads it.
        self.paths = set(infos)
        self.reads = {
            path
            for path, (m, info) in infos.items()
            if info.idempotency_level == IdempotencyLevel.NO_SIDE_EFFECTS
            and not m.client_streaming
            and not m.server_streaming
        }
        self.client_streams = {path for path, (m, _) in infos.items() if m.client_streaming}
        self.streams = {
            path for path, (m, _) in infos.items() if m.client_streaming or m.server_streaming
        }
        endpoints = {path: _endpoint(info, handlers[path]) for path, (_, info) in infos.items()}
        # No compression: the answers are small, gzip costs more CPU than it
        # saves on the wire, and a proxy in front compresses if it pays.
        super().__init__(
            service=handlers,
            endpoints=lambda _handlers: endpoints,
            read_max_bytes=read_max_bytes,
            compressions=(),
        )

    @property
    def path(self) -> str:
        return self._path

    async def _read_post_request(
        self, endpoint: Any, receive: Any, codec: Any, headers: Any
    ) -> Any:
        """connectrpc's reading of a unary call's body, with a large JSON body
        parsed in a thread of its own (`_JSON_PARSING`). Parsing one of a
        megabyte with many repeated fields takes a second or more of CPU:
        on the event loop, before the caller is even authenticated, it
        would stall every call and the health checks."""
        if not isinstance(codec, _JSONCodec):
            return await super()._read_post_request(endpoint, receive, codec, headers)
        held: _Held = await super()._read_post_request(endpoint, receive, _HOLD, headers)
        if len(held.data) <= OFF_LOOP_JSON_BYTES:
            return codec.decode(held.data, held.message)
        loop = asyncio.get_running_loop()
        parse = contextvars.copy_context().run
        return await loop.run_in_executor(
            _JSON_PARSING, parse, codec.decode, held.data, held.message
        )

    async def _handle_error(self, exc: Exception, ctx: Any, send: Any) -> None:
        """connectrpc's answer to a Connect unary call that failed, in the
        caller's words (`in_callers_words`); a body found too large as it
        came is answered as one whose Content-Length says so
        (`_check_rpc_request`): 413, not connectrpc's 429."""
        if isinstance(exc, ConnectError) and reason_of(exc.details) == TOO_LARGE:
            await send_error(send, exc, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        if isinstance(exc, ConnectError):
            exc = in_callers_words(exc)
        await super()._handle_error(exc, ctx, send)


async def send_error(
    send: Send,
    err: ConnectError,
    status: int | None = None,
    *,
    grpc_web: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """A Connect error (its JSON body), with Connect's HTTP status for its code
    unless `status` says more precisely what went wrong; to a gRPC-Web caller,
    a trailers-only answer (200, grpc-status), as gRPC-Web clients read it.
    `headers` go with it (what the caller should send instead, say). It
    goes in the caller's words (`in_callers_words`)."""
    err = in_callers_words(err)
    if grpc_web:
        details = status_pb2.Status(
            code=GRPC_CODE[err.code], message=err.message, details=list(err.details)
        )
        trailers = [
            (b"content-type", b"application/grpc-web+proto"),
            (b"grpc-status", str(GRPC_CODE[err.code]).encode()),
            (b"grpc-message", quote(err.message, safe=" ").encode()),
            *headers,
        ]
        if err.details:
            encoded = base64.b64encode(details.SerializeToString())
            trailers.append((b"grpc-status-details-bin", encoded))
        await send({"type": "http.response.start", "status": 200, "headers": trailers})
        await send({"type": "http.response.body", "body": b""})
        return
    connect_status, body = error_body(err)
    await send(
        {
            "type": "http.response.start",
            "status": status or connect_status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_stream_error(
    send: Send,
    err: ConnectError,
    content_type: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """A Connect stream that ends at once with `err`: 200, the stream's
    content type and an end-of-stream message carrying the error, as Connect
    clients read a streaming call's failure. (connect-web reads a stream
    answered 4xx as INTERNAL "HTTP 400", the error in its body unread.)"""
    err = in_callers_words(err)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), *headers],
        }
    )
    await send({"type": "http.response.body", "body": end_of_stream(err)})


async def send_json(send: Send, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        event = await receive()
        body += event.get("body", b"")
        if len(body) > limit:
            raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(limit))
        if not event.get("more_body"):
            return bytes(body)


class _Refusal(Exception):
    """An HTTP request refused before any handler runs, with its status (and
    any headers the answer carries)."""

    def __init__(
        self, status: int, error: ConnectError, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error
        self.headers = headers


# The timeouts the protocols send: Connect's in milliseconds, gRPC-Web's with a unit.
CONNECT_TIMEOUT = re.compile(r"[0-9]{1,10}")
GRPC_TIMEOUT = re.compile(r"[0-9]{1,8}[HMSmun]")


def _check_get_query(query_string: bytes) -> None:
    """A Connect GET names its message's encoding (json or proto) in the
    query. (A query that is not UTF-8 never reaches us: uvicorn refuses it.)"""
    query = parse_qs(query_string.decode(errors="replace"), keep_blank_values=True)
    encoding = query.get("encoding", [""])[0]
    if encoding.lower() not in ("json", "proto"):
        raise _Refusal(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            ConnectError(
                Code.INVALID_ARGUMENT,
                f"encoding: {encoding or '(none)'!r} is not served: json or proto",
            ),
        )


# The request headers a call reads (connectrpc, the handlers, tracing). One
# of them that is not UTF-8 refuses the call; any other header that is not
# (a cookie another page of the site set, say) is left out of the call.
CALL_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "accept-language",
        "traceparent",
        "tracestate",
        "baggage",
        "x-grpc-web",
        "x-user-agent",
        "x-request-id",
    }
)
CALL_HEADER_PREFIXES = ("connect-", "grpc-")


def _media_type(content_type: str) -> tuple[str, str]:
    """A Content-Type's media type (lower case) and charset (utf-8 unless it
    names another)."""
    given, *params = content_type.split(";")
    charset = next(
        (
            v.strip().strip('"').lower()
            for k, _, v in (p.partition("=") for p in params)
            if k.strip().lower() == "charset"
        ),
        "utf-8",
    )
    return given.strip().lower(), charset


def _connect_stream_type(scope: Scope, service: ServiceApp) -> bytes | None:
    """The content type a Connect streaming call is answered with (the one
    it was sent with, as far as the protocol goes); None for any other call."""
    if scope["method"] != "POST" or scope["path"] not in service.streams:
        return None
    sent = next((v for k, v in scope["headers"] if k.lower() == b"content-type"), b"")
    content_type, charset = _media_type(sent.decode("latin-1"))
    if content_type in CONNECT_STREAM_TYPES and charset == "utf-8":
        return content_type.encode()
    return None


def _call_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, decoded; one the call does not read that is
    not UTF-8 is dropped from the request, one it reads refuses it."""
    headers: dict[str, str] = {}
    kept: list[tuple[bytes, bytes]] = []
    for key, value in scope["headers"]:
        try:
            headers[key.decode().lower()] = value.decode()
        except UnicodeDecodeError:
            name = key.decode("latin-1").lower()
            if name in CALL_HEADERS or name.startswith(CALL_HEADER_PREFIXES):
                raise _Refusal(
                    HTTPStatus.BAD_REQUEST,
                    ConnectError(Code.INVALID_ARGUMENT, f"the header {name} is not UTF-8"),
                ) from None
            continue
        kept.append((key, value))
    scope["headers"] = kept
    return headers


def _check_rpc_request(scope: Scope, service: ServiceApp, limit: int) -> None:
    """What connectrpc would answer with a 500, an empty body or the wrong
    error is refused here as a Connect error: a method the service lacks, a
    GET of what is no read, another HTTP method, a content type no protocol
    takes, a header the call reads that is not UTF-8, a malformed timeout, a
    compressed Connect stream, a body declared over the limit."""
    path, method = scope["path"], scope["method"]
    if path not in service.paths:
        raise _Refusal(
            HTTPStatus.NOT_FOUND, ConnectError(Code.UNIMPLEMENTED, f"{path} is no method here")
        )
    if method == "GET" and path not in service.reads:
        raise _Refusal(
            HTTPStatus.METHOD_NOT_ALLOWED,
            ConnectError(Code.UNIMPLEMENTED, f"{path} changes things: POST it"),
        )
    if method not in ("GET", "POST"):
        raise _Refusal(
            HTTPStatus.METHOD_NOT_ALLOWED,
            ConnectError(Code.UNIMPLEMENTED, f"{method} is not served: POST, or GET a read"),
        )
    headers = _call_headers(scope)
    for name, form in (("connect-timeout-ms", CONNECT_TIMEOUT), ("grpc-timeout", GRPC_TIMEOUT)):
        if name in headers and not form.fullmatch(headers[name]):
            raise _Refusal(
                HTTPStatus.BAD_REQUEST,
                ConnectError(Code.INVALID_ARGUMENT, f"{name}: {headers[name]!r} is no timeout"),
            )
    if method == "GET":
        _check_get_query(scope["query_string"])
        return
    content_type, charset = _media_type(headers.get("content-type", ""))
    stream = path in service.streams
    connect_types = CONNECT_STREAM_TYPES if stream else ("application/json", "application/proto")
    if (
        content_type not in RPC_CONTENT_TYPES
        or ("grpc-web" not in content_type and content_type not in connect_types)
        or charset != "utf-8"
    ):
        raise _Refusal(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            ConnectError(
                Code.INVALID_ARGUMENT,
                f"content type {headers.get('content-type') or '(none)'!r} is not served"
                f" for {path}: send {' or '.join(connect_types)} (Connect"
                f"{', a stream' if stream else ''}) or application/grpc-web+proto (gRPC-Web)",
            ),
        )
    encoding = headers.get("connect-content-encoding", "identity").strip().lower()
    if content_type in CONNECT_STREAM_TYPES and encoding not in ("", "identity"):
        # connectrpc would take the messages as uncompressed, and fail INTERNAL.
        raise _Refusal(
            HTTPStatus.NOT_IMPLEMENTED,
            ConnectError(
                Code.UNIMPLEMENTED,
                f"connect-content-encoding: {encoding!r} is not served: send identity",
            ),
            [(b"connect-accept-encoding", b"identity")],
        )
    # As connectrpc reads it (it picks the codec from the header as sent).
    scope["headers"] = [
        (k, content_type.encode()) if k.lower() == b"content-type" else (k, v)
        for k, v in scope["headers"]
    ]
    length = headers.get("content-length", "")
    if path not in service.client_streams and length.isdigit() and int(length) > limit:
        raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(limit))


def content_security_policy(connect_origins: Sequence[str] = ()) -> bytes:
    """The content security policy the pages are served with: scripts, styles
    and calls from this origin only, no inline script; evidence previews are
    blob: URLs made from what the API returned. A page may also call
    `connect_origins` (the console, its OpenID Connect provider)."""
    connect = " ".join(["'self'", *connect_origins])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self';"
        f" connect-src {connect}; img-src 'self' blob: data:; media-src 'self' blob:;"
        " frame-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'self'"
    ).encode()


CONTENT_SECURITY_POLICY = content_security_policy()


def _adding(send: Send, *headers: tuple[bytes, bytes]) -> Send:
    """`send`, its response given `headers` too (each unless already set)."""

    async def sending(event: Any) -> None:
        if event["type"] == "http.response.start":
            given = event.get("headers", [])
            named = {name.lower() for name, _ in given}
            event = {**event, "headers": [*given, *(h for h in headers if h[0] not in named)]}
        await send(event)

    return sending


def _with_csp(send: Send, policy: bytes) -> Send:
    # Asked again on every load (the bundles' names do not change when they do).
    return _adding(
        send,
        (b"content-security-policy", policy),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-cache"),
    )


# An answer about someone's cases is kept by no cache, the browser's disk
# included (a read may come as a GET).
NO_STORE = (b"cache-control", b"no-store")


def _too_large(limit: int) -> ConnectError:
    return ConnectError(
        Code.RESOURCE_EXHAUSTED,
        f"the request body is larger than {limit} bytes",
        [
            error_details_pb2.ErrorInfo(
                reason=TOO_LARGE, domain="casemesh", metadata={"limit": str(limit)}
            )
        ],
    )


def _in_time(receive: Receive, seconds: float, *, per_read: bool = False) -> Receive:
    """`receive`, failing DEADLINE_EXCEEDED a body that has not all come
    `seconds` after the request's head (`per_read`: that pauses longer than
    that, an upload of any length). The caller's own deadline starts only
    when the handler runs: this bounds the wait before."""
    loop = asyncio.get_running_loop()
    by = loop.time() + seconds
    whole = False

    async def receiving() -> Any:
        nonlocal by, whole
        if whole:
            return await receive()
        if per_read:
            by = loop.time() + seconds
        try:
            async with asyncio.timeout_at(by):
                event = await receive()
        except TimeoutError:
            raise _too_slow(seconds, per_read=per_read) from None
        whole = event["type"] != "http.request" or not event.get("more_body")
        return event

    return receiving


# The reasons (ErrorInfo) a request whose body came too slowly is refused
# with: the caller's connection, not the service, took too long, and it is
# said so in the caller's language (error_messages.toml), not as a service
# that took too long to answer (DEADLINE_EXCEEDED's own words).
BODY_TOO_SLOW = "BODY_TOO_SLOW"
UPLOAD_PAUSED = "UPLOAD_PAUSED"


def _too_slow(seconds: float, *, per_read: bool) -> ConnectError:
    """A body that did not all come within `seconds` (`per_read`: an
    upload's that paused that long)."""
    if per_read:
        reason, said = UPLOAD_PAUSED, f"the upload paused for more than {seconds:g} s"
    else:
        reason, said = BODY_TOO_SLOW, f"the request did not all arrive within {seconds:g} s"
    return ConnectError(
        Code.DEADLINE_EXCEEDED,
        f"{said}: send it again on a steadier connection",
        [error_details_pb2.ErrorInfo(reason=reason, domain="casemesh")],
    )


def _bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing a body (however it is sent) past `limit` bytes."""
    seen = 0

    async def bounded() -> Any:
        nonlocal seen
        event = await receive()
        seen += len(event.get("body", b""))
        if seen > limit:
            raise _too_large(limit)
        return event

    return bounded


class _JSONCodec(ProtoJSONCodec):  # type: ignore[type-arg]
    """Proto JSON. A request that does not parse (or is not UTF-8) is
    INVALID_ARGUMENT, not UNKNOWN (a 500); fields this version does not know
    are ignored, as the binary encoding ignores them, but an enum value by a
    name the enum lacks, or by a number that is not a whole one of 32 bits
    (or a string of other than ASCII digits), is refused, naming the field
    (the parser would drop the one and truncate or wrap the other). Answers
    are compact."""

    def encode(self, message: Any) -> bytes:
        return json_format.MessageToJson(message, indent=None, ensure_ascii=False).encode()

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        try:
            request = json.loads(bytes(data).decode(), object_pairs_hook=_unique_keys)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            if not _values_within(request, MOST_JSON_VALUES, MOST_JSON_CONTAINERS):
                # Parsed into the message, they would take the CPU for a
                # second or more (on the event loop, for a stream's
                # messages), before the caller is even authenticated.
                raise ValueError(
                    f"a request holds at most {MOST_JSON_VALUES:,} values, of them at most"
                    f" {MOST_JSON_CONTAINERS:,} objects and arrays"
                )
            if misnamed := wire.unknown_enum_names(message.DESCRIPTOR, request):
                status = to_status(errors.InvalidArgument(misnamed), _CALLER_LOCALE.get())
                raise connect_error(status.code, status.details, status.trailing_metadata)
            json_format.ParseDict(request, message, ignore_unknown_fields=True)
        except (
            json_format.ParseError,
            ValueError,
            RecursionError,
            # The parser's own, on a value of a kind it does not expect (an
            # infinite number where it wants an integer).
            OverflowError,
            TypeError,
        ) as exc:  # UnicodeDecodeError too
            raise in_callers_words(
                ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"the body is not a {message.DESCRIPTOR.full_name} in JSON: {exc}",
                )
            ) from None
        return message


@dataclass(frozen=True)
class _Held:
    data: bytes
    message: Any


class _HoldingCodec(_JSONCodec):
    """Hands back the body as read (decompressed, its size checked), to be
    parsed by the caller."""

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        return _Held(bytes(data), message)


_HOLD = _HoldingCodec()
# A JSON body larger than this is parsed off the event loop, in one thread
# of its own: a flood of them waits there, not in the pool other work uses.
OFF_LOOP_JSON_BYTES = 16 * 1024
_JSON_PARSING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="json-parsing")


# A request holds at most this many JSON values, of them at most so many
# objects and arrays (each a message to build, the costliest to parse). The
# API's lists take up to 50 items, but for a decision's manifestly
# unfounded reports (one a report of the case: thousands, after a mass
# reporting campaign), whose names are strings; a megabyte of them parses
# in about 0.1 s.
MOST_JSON_VALUES = 50_000
MOST_JSON_CONTAINERS = 5_000


def _values_within(request: Any, most: int, most_containers: int) -> bool:
    """Whether `request` (parsed JSON) holds at most `most` values and
    `most_containers` objects and arrays; counts no further than that."""
    left, containers, pending = most, most_containers, [request]
    while pending:
        value = pending.pop()
        left -= 1
        if left < 0:
            return False
        if isinstance(value, dict | list):
            containers -= 1
            if containers < 0:
                return False
            items = value.values() if isinstance(value, dict) else value
            pending.extend(itertools.islice(items, left + 1))
    return True


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys each come once (as proto JSON requires)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("an object names a field more than once")
    return found


class _ProtoCodec(ProtoBinaryCodec):  # type: ignore[type-arg]
    """Protobuf binary; bytes that do not parse are INVALID_ARGUMENT naming
    the first field at fault, as over gRPC."""

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        try:
            message.ParseFromString(bytes(data))
        except DecodeError:
            status = to_status(
                errors.InvalidArgument(wire.first_fault(message.DESCRIPTOR, bytes(data))),
                _CALLER_LOCALE.get(),
            )
            raise connect_error(status.code, status.details, status.trailing_metadata) from None
        return message


# connectrpc 0.9 keeps its codecs in one registry (it offers no per-handler
# codec): ours answer undecodable requests as the gRPC server does.
_codec_registry.update(
    {
        CODEC_NAME_JSON: _JSONCodec(),
        CODEC_NAME_JSON_CHARSET_UTF8: _JSONCodec(),
        CODEC_NAME_PROTO: _ProtoCodec(),
    }
)


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port`, its protocol TCP by name: asyncio
    turns Nagle's algorithm off (TCP_NODELAY) only on connections of such a
    socket, and `socket.create_server` makes its sockets with protocol 0.
    With Nagle on, a response written as its headers and then its body waits
    for the caller's delayed ACK after the headers: 40 ms a call."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen()
    except BaseException:
        listener.close()
        raise
    return listener


class WebFront:
    """The HTTP port: started, drained and stopped with the gRPC server."""

    def __init__(
        self,
        address: str,
        *,
        services: Sequence[ServiceDescriptor],
        cors_origins: Sequence[str],
        pages: Mapping[str, str],
        sign_in_secret: str | None,
        read_max_bytes: int,
        ready: Callable[[], bool] = lambda: True,
        connect_origins: Mapping[str, Sequence[str]] | None = None,
        max_connections: int | None = None,
    ) -> None:
        self._address = address
        self._services = services
        self._cors_origins = list(cors_origins)
        # Where each front end is served from: the path it is served at → its folder.
        self._page_roots = {prefix: Path(folder) for prefix, folder in pages.items() if folder}
        # The origins a page may call besides this one, by the path it is served at.
        self._connect_origins = dict(connect_origins or {})
        self._sign_in_secret = sign_in_secret
        self._read_max_bytes = read_max_bytes
        # Past this many calls under way (Connect and gRPC-Web calls, uploads),
        # a call is refused UNAVAILABLE at once; the probes and pages never
        # are, however many connections are open (an idle one is closed after
        # `KEEP_ALIVE_S`, a head not whole after `http11.HEAD_TIMEOUT_S`).
        # None: no limit.
        self._max_calls = max_connections
        self._under_way = 0
        # Whether what every call needs has come (`grpcutil.serve`'s `ready`).
        self._ready = ready
        self._draining = False
        # The calls under way (to end their streams before a shutdown's grace ends).
        self._calls: set[CallCut] = set()
        self._rpc: dict[str, ServiceApp] = {}
        self._upload: grpc.RpcMethodHandler | None = None
        self._pages: list[tuple[str, ASGIApp, bytes]] = []
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle (grpcutil.Companion) --

    async def start(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._route(handlers)
        for prefix, folder in sorted(self._page_roots.items(), key=lambda p: -len(p[0])):
            if folder.is_dir():
                policy = content_security_policy(self._connect_origins.get(prefix, ()))
                self._pages.append((prefix, StaticFiles(directory=folder, html=True), policy))
            else:
                log.warning("http.no_page", path=prefix, folder=str(folder), hint="run ./dev web")
        host, _, port = self._address.rpartition(":")
        try:
            listener = tcp_listener(host.strip("[]") or "0.0.0.0", int(port))
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"CASEMESH_HTTP_ADDR={self._address}: cannot listen ({exc})"
            ) from None
        app = CORSMiddleware(
            self.app,
            allow_origins=self._cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=7200,
        )
        config = uvicorn.Config(
            app,
            # h11 rather than httptools: the bounds on a request's head
            # (`Http11`), for a little more CPU a request.
            http=Http11,
            h11_max_incomplete_event_size=HEAD_MAX_BYTES,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))
        log.info("http.serving", address=self._address, pages=[p for p, _, _ in self._pages])

    def _route(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        """The calls each service's path takes to `handlers`. connectrpc
        checks a message against the most one may be in JSON (bytes in
        base64, a third larger): a client stream's messages are bounded by
        their encoding's share as they come (`refusing_large_messages`),
        any other request's body by `read_max_bytes` itself (`_bounded`)."""
        limit = stream_message_limit("+json", self._read_max_bytes)
        self._rpc = {f"/{s.full_name}": ServiceApp(s, handlers, limit) for s in self._services}
        self._upload = handlers.get(UPLOAD_METHOD)

    def drain(self) -> None:
        self._draining = True

    async def serving(self) -> None:
        assert self._task is not None
        await asyncio.shield(self._task)

    async def stop(self, grace: float) -> None:
        """Stops taking calls; those under way get `grace` seconds. A stream
        still going a moment before that ends UNAVAILABLE (to be retried
        elsewhere) rather than be cancelled mid-write, which would end it
        looking complete."""
        if self._server is None or self._task is None:
            return
        grace = max(1, math.ceil(grace))
        self._server.config.timeout_graceful_shutdown = grace
        self._server.should_exit = True
        ending = asyncio.get_running_loop().call_later(
            max(grace - STREAM_END_MARGIN_S, 0), self._end_streams
        )
        try:
            await self._task
        finally:
            ending.cancel()

    def _end_streams(self) -> None:
        for cut in list(self._calls):
            cut.why = ConnectError(Code.UNAVAILABLE, "the server is shutting down; retry")
            cut.event.set()

    # -- the ASGI application --

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        language = next((v for k, v in scope["headers"] if k.lower() == b"accept-language"), b"")
        _CALLER_LOCALE.set(locale_of(language.decode("latin-1")))
        service = self._rpc.get(path.rpartition("/")[0])
        if service is not None and grpcwebtext.is_text(scope):
            scope, receive, send = grpcwebtext.as_binary(scope, receive, send)
        grpc_web = any(
            k == b"content-type" and v.startswith(b"application/grpc-web")
            for k, v in scope["headers"]
        )
        stream_type: bytes | None = None
        try:
            if service is not None:
                stream_type = _connect_stream_type(scope, service)
                _check_rpc_request(scope, service, self._read_max_bytes)
                if path in service.client_streams:
                    sent = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
                    receive = refusing_large_messages(
                        _in_time(receive, BODY_WITHIN_S, per_read=True),
                        stream_message_limit(sent, self._read_max_bytes),
                    )
                else:
                    receive = _bounded(_in_time(receive, BODY_WITHIN_S), self._read_max_bytes)
                cut = CallCut()
                _CALL_CUT.set(cut)
                with self._taking(cut):
                    receive = _noting_hang_up(_telling_in_callers_words(receive), cut)
                    await service(scope, receive, _adding(send, NO_STORE))
            elif path in ("/healthz/live", "/healthz/ready"):
                await self._health(path, send)
            elif path == UPLOAD_PATH:
                with self._taking():
                    await self._upload_evidence(
                        scope,
                        _in_time(receive, BODY_WITHIN_S, per_read=True),
                        _adding(send, NO_STORE),
                    )
            elif path == SIGN_IN_PATH and self._sign_in_secret:
                await self._sign_in(scope, receive, send)
            elif page := self._page_for(path, scope["method"]):
                prefix, static, policy = page
                await static(
                    {**scope, "root_path": prefix.rstrip("/")}, receive, _with_csp(send, policy)
                )
            else:
                raise StarletteHTTPException(HTTPStatus.NOT_FOUND)
        except _Refusal as refusal:
            if stream_type is not None:
                await send_stream_error(send, refusal.error, stream_type, refusal.headers)
            else:
                await send_error(
                    send, refusal.error, refusal.status, grpc_web=grpc_web, headers=refusal.headers
                )
        except ConnectError as err:
            await send_error(send, err, grpc_web=grpc_web)
        except StarletteHTTPException as exc:
            missing = ConnectError(
                Code.NOT_FOUND if exc.status_code == 404 else Code.INVALID_ARGUMENT,
                f"nothing is served at {path}" if exc.status_code == 404 else exc.detail,
            )
            await send_error(send, missing, exc.status_code)

    @contextlib.contextmanager
    def _taking(self, cut: CallCut | None = None) -> Iterator[None]:
        """A call under way while it runs (its stream ended by `cut` at a
        shutdown); one past the bound is refused UNAVAILABLE at once (HTTP
        503 to a Connect unary call), for its client to try again, or the
        proxy another pod."""
        if self._max_calls is not None and self._under_way >= self._max_calls:
            raise _Refusal(
                HTTPStatus.SERVICE_UNAVAILABLE,
                ConnectError(Code.UNAVAILABLE, "the server is taking all the calls it can; retry"),
            )
        self._under_way += 1
        if cut is not None:
            self._calls.add(cut)
        try:
            yield
        finally:
            self._under_way -= 1
            if cut is not None:
                self._calls.discard(cut)

    def _page_for(self, path: str, method: str) -> tuple[str, ASGIApp, bytes] | None:
        if method not in ("GET", "HEAD"):
            return None
        return next((page for page in self._pages if (path + "/").startswith(page[0])), None)

    async def _health(self, path: str, send: Send) -> None:
        ready = path.endswith("live") or (not self._draining and self._ready())
        await send_json(
            send,
            b'{"status":"SERVING"}' if ready else b'{"status":"NOT_SERVING"}',
            200 if ready else 503,
        )

    async def _upload_evidence(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The file is the body; the caller's token, the file's type and its
        name (X-File-Name, URL-encoded) are headers. It goes through the
        UploadEvidence handler in chunks as it arrives; a body cut off (the
        caller went away, or sent less than its Content-Length) stores
        nothing."""
        if scope["method"] != "POST" or self._upload is None or self._upload.stream_unary is None:
            raise _Refusal(
                HTTPStatus.METHOD_NOT_ALLOWED,
                ConnectError(Code.UNIMPLEMENTED, f"POST the file to {UPLOAD_PATH}"),
            )
        metadata = tuple(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
        )
        headers = dict(metadata)
        announced = headers.get("content-length", "")
        try:
            file_name = unquote(headers.get("x-file-name", ""), errors="strict")
        except UnicodeDecodeError:
            # Not URL-encoded UTF-8: refused as no name, never stored with
            # its broken bytes replaced.
            file_name = ""
        first = evidence_pb2.UploadEvidenceRequest(
            metadata=evidence_pb2.EvidenceMetadata(
                file_name=file_name,
                declared_type=headers.get("content-type", "").split(";")[0].strip(),
            )
        )

        async def requests() -> AsyncIterator[evidence_pb2.UploadEvidenceRequest]:
            yield first
            received = 0
            while True:
                event = await receive()
                if event["type"] == "http.disconnect":
                    raise ConnectError(Code.CANCELED, "the upload was cut off")
                body: bytes = event.get("body", b"")
                received += len(body)
                for at in range(0, len(body), UPLOAD_CHUNK):
                    yield evidence_pb2.UploadEvidenceRequest(chunk=body[at : at + UPLOAD_CHUNK])
                if not event.get("more_body"):
                    break
            if announced.isdigit() and received != int(announced):
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"the body held {received} bytes, not the {announced} it announced",
                )

        try:
            evidence = await self._upload.stream_unary(requests(), CallContext(metadata, None))
        except ConnectError as err:
            await send_error(send, err)
            return
        except Exception:
            log.exception("http.upload_failed")
            await send_error(send, ConnectError(Code.INTERNAL, "the upload failed on our side"))
            return
        await send_json(
            send, json_format.MessageToJson(evidence, indent=None, ensure_ascii=False).encode()
        )

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Development only (CASEMESH_DEV_SIGN_IN): a token for whoever asks,
        signed with the HS256 secret, as `casemesh --as NAME` makes one; for
        pages on this machine only (a loopback Host, against DNS rebinding)."""
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        peer = (scope.get("client") or ("",))[0]
        if urlsplit(f"//{host}").hostname not in LOOPBACK_HOSTS or not _loopback(peer):
            raise _Refusal(
                HTTPStatus.FORBIDDEN,
                ConnectError(Code.PERMISSION_DENIED, "the development sign-in is local only"),
            )
        if scope["method"] != "POST":
            raise _Refusal(
                HTTPStatus.METHOD_NOT_ALLOWED, ConnectError(Code.UNIMPLEMENTED, "POST to sign in")
            )
        try:
            asked = json.loads(await read_body(receive, 4096) or b"{}")
        except ValueError:
            asked = None
        subject = asked.get("subject") if isinstance(asked, dict) else None
        roles = asked.get("roles", ["user"]) if isinstance(asked, dict) else None
        if not isinstance(subject, str) or not 0 < len(subject.strip()) <= 64:
            raise _Refusal(
                HTTPStatus.BAD_REQUEST,
                ConnectError(Code.INVALID_ARGUMENT, "subject: a name of 1 to 64 characters"),
            )
        if not isinstance(roles, list) or not all(r in SIGN_IN_ROLES for r in map(str, roles)):
            raise _Refusal(
                HTTPStatus.BAD_REQUEST,
                ConnectError(Code.INVALID_ARGUMENT, f"roles: some of {sorted(SIGN_IN_ROLES)}"),
            )
        assert self._sign_in_secret is not None
        token = mint_token(
            self._sign_in_secret, subject.strip(), [str(r) for r in roles] or ["user"]
        )
        await send_json(send, json.dumps({"token": token}).encode())


def _loopback(address: str) -> bool:
    """Whether a peer's address is this machine's (the Host header is the
    caller's to write; the address it connects from is not)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn, leaving the signals to the gRPC server's shutdown (which
    stops this one too)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

"""The gateway's HTTP front, driven as the ASGI application it is: server
streams end as they really ended (cut short by the caller's deadline, or
by the server shutting down, they end with an error, never looking
complete: a download taken for whole), a content type that does not
fit the method is a Connect error naming what to send, and a request
whose body comes too slowly is told its connection was too slow, not that
the service was."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import urllib.parse
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2

from casemesh.v1 import evidence_pb2, privacy_pb2, tickets_pb2
from casemesh_gateway import web as web_module
from casemesh_gateway.web import OFF_LOOP_JSON_BYTES, UPLOAD_PATH, ServiceApp, WebFront
from tests.support import asgi_post

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
EXPORT = "/casemesh.v1.PrivacyService/ExportPerson"
ERASE = "/casemesh.v1.PrivacyService/ErasePerson"


def front(chunks: int, pause: float = 0.0) -> WebFront:
    """A gateway front whose ExportPerson streams `chunks` messages, waiting
    `pause` before each."""

    async def export(request: Any, context: Any) -> AsyncIterator[privacy_pb2.ExportPersonResponse]:
        for n in range(chunks):
            await asyncio.sleep(pause)
            yield privacy_pb2.ExportPersonResponse(data=bytes([n % 256]) * 1024)

    web = WebFront(
        "127.0.0.1:0",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret="",
        read_max_bytes=4096,
    )

    async def erase(request: Any, context: Any) -> Any:
        return privacy_pb2.Erasure(person=request.person)

    handlers = {
        EXPORT: grpc.unary_stream_rpc_method_handler(export),
        ERASE: grpc.unary_unary_rpc_method_handler(erase),
    }
    web._rpc = {f"/{SERVICE.full_name}": ServiceApp(SERVICE, handlers, 4096)}
    return web


async def call(web: WebFront, headers: dict[str, str], write_s: float) -> list[dict[str, Any]]:
    """ExportPerson over Connect (JSON), read by a caller taking `write_s`
    for each frame; the frames it got: each message's JSON, the last the
    end of the stream."""
    body = json.dumps({}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": EXPORT,
        "query_string": b"",
        "headers": [(b"content-type", b"application/connect+json")]
        + [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
    }
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            await asyncio.Event().wait()  # the caller stays
        sent[0] = True
        return {
            "type": "http.request",
            "body": struct.pack(">BI", 0, len(body)) + body,
            "more_body": False,
        }

    data = bytearray()

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.sleep(write_s)
            data.extend(message.get("body", b""))

    await web.app(scope, receive, send)
    frames, at = [], 0
    while at < len(data):
        flags, size = struct.unpack(">BI", data[at : at + 5])
        frames.append({"end": bool(flags & 2), **json.loads(data[at + 5 : at + 5 + size])})
        at += 5 + size
        if frames[-1]["end"]:
            break  # what a client reads: nothing after the end of the stream
    return frames


async def test_a_stream_past_the_callers_deadline_while_writing_ends_deadline_exceeded() -> None:
    """A slow reader (a phone downloading its export): the deadline passes
    while a frame is being written. The stream ends DEADLINE_EXCEEDED."""
    frames = await call(front(50), {"connect-timeout-ms": "350"}, write_s=0.1)
    assert 0 < len(frames) < 51
    assert frames[-1]["end"] and frames[-1]["error"]["code"] == "deadline_exceeded"


async def test_a_stream_within_its_deadline_ends_well() -> None:
    frames = await call(front(5), {"connect-timeout-ms": "5000"}, write_s=0.0)
    assert len(frames) == 6 and frames[-1] == {"end": True}


async def test_a_stream_still_going_when_the_server_stops_ends_unavailable() -> None:
    """The shutdown's grace is about to end: the stream ends UNAVAILABLE (to
    be retried elsewhere), not cancelled mid-write looking complete."""
    web = front(1000, pause=0.05)
    answered = asyncio.create_task(call(web, {}, write_s=0.0))
    await asyncio.sleep(0.3)
    web._end_streams()
    frames = await asyncio.wait_for(answered, 10)
    assert frames[-1]["end"] and frames[-1]["error"]["code"] == "unavailable"


async def unary(web: WebFront, content_type: str, path: str = ERASE) -> tuple[int, Any]:
    """ErasePerson (or `path`) called with a JSON body sent as `content_type`:
    the HTTP status and the JSON answer."""
    body = json.dumps({"person": "zoe"}).encode()
    status, answer = await asgi_post(web.app, path, body, {"content-type": content_type})
    return status, json.loads(answer)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json;charset=utf-8", "Application/JSON; charset=UTF-8"],
)
async def test_json_with_its_charset_written_either_way_is_served(content_type: str) -> None:
    assert await unary(front(0), content_type) == (200, {"person": "zoe"})


@pytest.mark.parametrize(
    ("content_type", "path", "asked"),
    [
        ("application/connect+json", ERASE, "application/json"),  # a stream's type
        ("application/json", EXPORT, "application/connect+json"),  # a unary call's type
        ("application/json; charset=latin1", ERASE, "application/json"),
    ],
)
async def test_a_content_type_that_does_not_fit_the_method_is_a_connect_error_naming_it(
    content_type: str, path: str, asked: str
) -> None:
    """Such calls got a bare 415 with no body, which Connect clients read as
    UNKNOWN."""
    status, answer = await unary(front(0), content_type, path)
    assert status == 415
    assert answer["code"] == "invalid_argument" and asked in answer["message"]


async def posted(web: WebFront, path: str, content_type: str, body: bytes) -> dict[str, Any]:
    """One POST to the front: its answer's status, headers and body."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    said: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        said.append(message)

    await web.app(scope, receive, send)
    return {
        "status": said[0]["status"],
        "headers": dict(said[0]["headers"]),
        "body": b"".join(m.get("body", b"") for m in said[1:]),
    }


async def test_a_call_past_the_bound_is_refused_unavailable_as_its_protocol_reads_it() -> None:
    """The one call the front takes at once is under way: a second is
    refused UNAVAILABLE at once, as a Connect unary call (503), a Connect
    stream (its end) and gRPC-Web (grpc-status 14) each read a failure."""
    taken, release = asyncio.Event(), asyncio.Event()

    async def erase(request: Any, context: Any) -> Any:
        taken.set()
        await release.wait()
        return privacy_pb2.Erasure(person=request.person)

    async def export(request: Any, context: Any) -> AsyncIterator[Any]:
        yield privacy_pb2.ExportPersonResponse()

    web = WebFront(
        "127.0.0.1:0",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret="",
        read_max_bytes=4096,
        max_connections=1,
    )
    handlers = {
        EXPORT: grpc.unary_stream_rpc_method_handler(export),
        ERASE: grpc.unary_unary_rpc_method_handler(erase),
    }
    web._rpc = {f"/{SERVICE.full_name}": ServiceApp(SERVICE, handlers, 4096)}
    message = json.dumps({"person": "zoe"}).encode()
    holding = asyncio.create_task(posted(web, ERASE, "application/json", message))
    await asyncio.wait_for(taken.wait(), 10)

    async with asyncio.timeout(10):
        unary = await posted(web, ERASE, "application/json", message)
        stream = await posted(web, EXPORT, "application/connect+json", b"\0\0\0\0\2{}")
        grpc_web = await posted(web, ERASE, "application/grpc-web+proto", b"")
    assert unary["status"] == 503 and json.loads(unary["body"])["code"] == "unavailable"
    flags, size = struct.unpack(">BI", stream["body"][:5])
    assert stream["status"] == 200 and flags & 2
    assert json.loads(stream["body"][5 : 5 + size])["error"]["code"] == "unavailable"
    assert grpc_web["status"] == 200 and grpc_web["headers"][b"grpc-status"] == b"14"

    release.set()
    assert (await asyncio.wait_for(holding, 10))["status"] == 200
    assert (await posted(web, ERASE, "application/json", message))["status"] == 200


def privacy_app() -> ServiceApp:
    """PrivacyService over Connect and gRPC-Web, a megabyte a body: ErasePerson
    answers with the person and reason it was given."""

    async def erase(request: Any, context: Any) -> Any:
        return privacy_pb2.Erasure(person=request.person, reason=request.reason)

    async def export(request: Any, context: Any) -> AsyncIterator[Any]:
        yield privacy_pb2.ExportPersonResponse()

    return ServiceApp(
        SERVICE,
        {
            EXPORT: grpc.unary_stream_rpc_method_handler(export),
            ERASE: grpc.unary_unary_rpc_method_handler(erase),
        },
        1 << 20,
    )


@pytest.mark.parametrize(("reason_chars", "off_the_loop"), [(200, False), (60_000, True)])
async def test_a_large_json_body_is_parsed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, reason_chars: int, off_the_loop: bool
) -> None:
    """Parsing a large JSON body (a megabyte of repeated fields: a second or
    more of CPU) on the event loop would stall every other call and the
    health checks, before the caller is even authenticated: one above
    OFF_LOOP_JSON_BYTES is parsed in a thread of its own; a usual one, on
    the loop (no hop to pay)."""
    parsed_in: list[threading.Thread] = []
    parse = json_format.ParseDict

    def recorded(*args: Any, **kwargs: Any) -> Any:
        parsed_in.append(threading.current_thread())
        return parse(*args, **kwargs)

    monkeypatch.setattr(json_format, "ParseDict", recorded)

    app = privacy_app()
    body = {"person": "users/ana", "reason": "x" * reason_chars, "requestId": "r-1"}
    status, answer = await asgi_post(
        app, ERASE, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    assert status == 200, answer
    assert json.loads(answer)["reason"] == body["reason"]
    assert len(parsed_in) == 1
    assert (parsed_in[0] is not threading.main_thread()) == off_the_loop
    assert OFF_LOOP_JSON_BYTES < 60_000


@pytest.mark.parametrize("flood", [{}, 1], ids=["objects", "numbers"])
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/grpc-web+json"], ids=["connect", "grpc-web"]
)
async def test_a_json_request_of_more_values_than_any_request_holds_is_refused(
    content_type: str, flood: Any
) -> None:
    """A megabyte of empty objects in a list parses (into the message) in a
    second of CPU, for a stream's messages on the event loop: refused as
    INVALID_ARGUMENT before it is, whatever path it takes."""

    app = privacy_app()
    body = json.dumps(
        {"person": "users/ana", "reason": "r", "requestId": "r-1", "x": [flood] * 250_000}
    )
    data = body.encode()
    if content_type.startswith("application/grpc-web"):
        data = struct.pack(">BI", 0, len(data)) + data
    if content_type == "application/json":
        status, answer = await asgi_post(app, ERASE, data, {"content-type": content_type})
        assert status == 400 and json.loads(answer)["code"] == "invalid_argument", answer
    else:
        assert await grpc_web_status(app, ERASE, data, content_type) == "3"  # INVALID_ARGUMENT
    # A request of usual size still goes, and one naming thousands of things
    # (a decision's manifestly unfounded reports after a campaign).
    names = [f"reports/{n:08d}-aaaa-bbbb-cccc-dddddddddddd" for n in range(6_000)]
    usual = json.dumps(
        {"person": "users/ana", "reason": "r", "requestId": "r-1", "x": names}
    ).encode()
    if content_type.startswith("application/grpc-web"):
        usual = struct.pack(">BI", 0, len(usual)) + usual
    status, answer = await asgi_post(app, ERASE, usual, {"content-type": content_type})
    assert status == 200, answer


TICKETS = tickets_pb2.DESCRIPTOR.services_by_name["TicketService"]
A_TICKET = "tickets/0f8e6c1e-2b5d-4c3a-9e7f-1a2b3c4d5e6f"


def tickets_app() -> ServiceApp:
    """TicketService over Connect: ListTickets answers with a ticket in each
    status it was asked for, AssignTicket with the ticket and priority it was
    given (and no other call is made)."""

    async def answer(request: Any, context: Any) -> Any:
        if isinstance(request, tickets_pb2.ListTicketsRequest):
            shown = [tickets_pb2.Ticket(status=s) for s in request.statuses]
            return tickets_pb2.ListTicketsResponse(tickets=shown)
        return tickets_pb2.Ticket(name=request.name, priority=request.priority)

    handlers = {
        f"/{TICKETS.full_name}/{m.name}": grpc.unary_unary_rpc_method_handler(answer)
        for m in TICKETS.methods
    }
    return ServiceApp(TICKETS, handlers, 4096)


async def tickets_called(method: str, message: str, *, get: bool = False) -> tuple[int, Any]:
    """A TicketService call with a JSON `message`, by POST or by Connect's GET:
    the HTTP status and the JSON answer."""
    path = f"/{TICKETS.full_name}/{method}"
    if not get:
        status, answer = await asgi_post(
            tickets_app(), path, message.encode(), {"content-type": "application/json"}
        )
        return status, json.loads(answer)
    query = {"encoding": "json", "message": message, "connect": "v1"}
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": urllib.parse.urlencode(query).encode(),
        "headers": [],
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    said: list[MutableMapping[str, Any]] = []

    async def send(sent: MutableMapping[str, Any]) -> None:
        said.append(sent)

    await tickets_app()(scope, receive, send)
    return said[0]["status"], json.loads(b"".join(m.get("body", b"") for m in said[1:]))


def violated_fields(details: list[dict[str, Any]]) -> list[str]:
    """The fields a Connect error's BadRequest names."""
    return [
        v.field
        for detail in details
        if detail["type"] == "google.rpc.BadRequest"
        for v in error_details_pb2.BadRequest.FromString(
            base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
        ).field_violations
    ]


@pytest.mark.parametrize(
    ("method", "message", "field", "get"),
    [
        ("ListTickets", '{"statuses": [1e400]}', "statuses[0]", False),
        ("ListTickets", '{"statuses": [1e400]}', "statuses[0]", True),
        ("ListTickets", '{"statuses": ["TICKET_STATUS_NEW", 2.7]}', "statuses[1]", False),
        ("ListTickets", '{"statuses": [2.7]}', "statuses[0]", True),
        ("ListTickets", '{"statuses": [true]}', "statuses[0]", False),
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": 3.9}}', "priority", False),
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": -0.5}}', "priority", False),
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": -1e400}}', "priority", False),
    ],
)
async def test_an_enum_value_sent_as_a_number_not_a_whole_one_is_refused_naming_its_field(
    method: str, message: str, field: str, get: bool
) -> None:
    """The parser reads such a number with int(): 3.9 was PRIORITY_HIGH,
    2.7 OPEN, true NEW, -0.5 no priority (the ticket's kept), and an
    infinite one a 500 answer in Python's words, before the caller was even
    authenticated. Refused like a misspelt enum name, by its field, whether
    sent by POST or by Connect's GET."""
    status, answer = await tickets_called(method, message, get=get)
    assert status == 400 and answer["code"] == "invalid_argument", answer
    assert violated_fields(answer["details"]) == [field]


@pytest.mark.parametrize(
    ("method", "message", "field"),
    [
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": 4294967300}}', "priority"),
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": 4.2949673e9}}', "priority"),
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": "4294967300"}}', "priority"),
        ("AssignTicket", f'{{"name": "{A_TICKET}", "priority": " 4"}}', "priority"),
        ("ListTickets", '{"statuses": [4294967298]}', "statuses[0]"),
    ],
)
async def test_an_enum_value_sent_as_a_number_past_32_bits_is_refused_naming_its_field(
    method: str, message: str, field: str
) -> None:
    """The parser keeps the low 32 bits of such a number: 4294967300 was
    PRIORITY_URGENT, 4294967298 in a status filter OPEN. Refused like a
    misspelt enum name, by its field; so is a number string that is not
    ASCII digits."""
    status, answer = await tickets_called(method, message)
    assert status == 400 and answer["code"] == "invalid_argument", answer
    assert violated_fields(answer["details"]) == [field]


@pytest.mark.parametrize("fault", [OverflowError, TypeError])
async def test_whatever_the_parser_cannot_take_is_the_callers_mistake_not_a_500(
    monkeypatch: pytest.MonkeyPatch, fault: type[Exception]
) -> None:
    """The parser fails with a Python error of its own on a value of a kind
    it does not expect (an infinite number where it wants an integer): that
    is a bad request, not the server's failure in Python's words."""

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise fault("cannot convert float infinity to integer")

    monkeypatch.setattr(json_format, "ParseDict", failing)
    status, answer = await tickets_called("ListTickets", '{"statuses": [2]}')
    assert status == 400 and answer["code"] == "invalid_argument", answer


async def test_an_enum_value_sent_as_a_whole_number_is_still_taken() -> None:
    status, answer = await tickets_called("ListTickets", '{"statuses": [2, 3.0]}')
    assert (status, answer) == (
        200,
        {"tickets": [{"status": "TICKET_STATUS_OPEN"}, {"status": "TICKET_STATUS_PENDING"}]},
    )
    message = f'{{"name": "{A_TICKET}", "priority": 4}}'
    status, answer = await tickets_called("AssignTicket", message)
    assert (status, answer) == (200, {"name": A_TICKET, "priority": "PRIORITY_URGENT"})


async def grpc_web_status(app: Any, path: str, body: bytes, content_type: str) -> str:
    """The grpc-status a gRPC-Web call was answered with: in the headers of a
    trailers-only answer, else in the body's trailer frame."""
    said: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        said.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, send)
    headers = dict(said[0].get("headers", []))
    if b"grpc-status" in headers:
        return str(headers[b"grpc-status"].decode())
    data = b"".join(m.get("body", b"") for m in said if m["type"] == "http.response.body")
    at = 0
    while at < len(data):
        flags, size = struct.unpack(">BI", data[at : at + 5])
        frame = data[at + 5 : at + 5 + size]
        if flags & 0x80:
            for line in frame.decode().split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "grpc-status":
                    return value.strip()
        at += 5 + size
    raise AssertionError(f"no grpc-status in {said!r}")


def said_in_words(details: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """A Connect error's reason (ErrorInfo) and its words (LocalizedMessage)
    by locale."""
    reason, words = "", {}
    for detail in details:
        value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
        if detail["type"] == "google.rpc.ErrorInfo":
            reason = error_details_pb2.ErrorInfo.FromString(value).reason
        elif detail["type"] == "google.rpc.LocalizedMessage":
            said = error_details_pb2.LocalizedMessage.FromString(value)
            words[said.locale] = said.message
    return reason, words


async def sent_in_part(web: WebFront, path: str, content_type: str, language: str) -> Any:
    """A POST whose body stops coming after its first bytes: the answer's
    status and its JSON."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [
            (b"content-type", content_type.encode()),
            (b"accept-language", language.encode()),
        ],
        "client": ("127.0.0.1", 50000),
    }
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            await asyncio.Event().wait()  # the rest never comes
        sent[0] = True
        return {"type": "http.request", "body": b'{"person": ', "more_body": True}

    said: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        said.append(message)

    await web.app(scope, receive, send)
    return said[0]["status"], json.loads(b"".join(m.get("body", b"") for m in said[1:]))


def uploading(web: WebFront) -> WebFront:
    """`web`, taking evidence uploads (each read to its end)."""

    async def upload(requests: AsyncIterator[Any], context: Any) -> Any:
        return evidence_pb2.Evidence(size_bytes=sum([len(r.chunk) async for r in requests]))

    web._upload = grpc.stream_unary_rpc_method_handler(upload)
    return web


@pytest.mark.parametrize(
    ("path", "content_type", "reason", "zh", "en"),
    [
        (
            ERASE,
            "application/json",
            "BODY_TOO_SLOW",
            "网络太慢，请求未能按时传完；请在网络稳定时重试。",
            "the request did not all arrive within 0.2 s",
        ),
        (
            UPLOAD_PATH,
            "image/png",
            "UPLOAD_PAUSED",
            "上传中断太久，已停止；请在网络稳定时重新上传。",
            "the upload paused for more than 0.2 s",
        ),
    ],
    ids=["body", "upload"],
)
async def test_a_body_that_comes_too_slowly_is_said_to_be_the_callers_connections_fault(
    monkeypatch: pytest.MonkeyPatch, path: str, content_type: str, reason: str, zh: str, en: str
) -> None:
    """A request body that did not all come in time, or an upload that
    paused too long, was told in the caller's words "The service took too
    long to answer": the caller's network was slow, and it was told the
    service was. Each is told it by a reason of its own."""
    monkeypatch.setattr(web_module, "BODY_WITHIN_S", 0.2)
    for language, words in (("zh-CN", zh), ("en", en)):
        status, error = await sent_in_part(uploading(front(0)), path, content_type, language)
        assert status == 504 and error["code"] == "deadline_exceeded", error
        said = said_in_words(error["details"])
        assert said[0] == reason
        assert said[1][language].startswith(words), said

"""The gateway's HTTP port, over real sockets: a caller cannot hold a
connection open by sending slowly or too much. A request's head that stops
coming, a connection that never sends one, a head that grows without end,
a body trickled in, an answer its caller stops reading: each is answered
or closed within a bound, and a connection that behaves is kept alive as
before. Connections held open do
not take the pod out of service: the port bounds the calls under way, and
its probes are always answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from casemesh.v1 import privacy_pb2
from casemesh_devstack.ports import free_port
from casemesh_gateway import http11, web
from casemesh_gateway.web import WebFront

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
ERASE = "/casemesh.v1.PrivacyService/ErasePerson"
EXPORT = "/casemesh.v1.PrivacyService/ExportPerson"
# How long a test waits for what should come within a fraction of it.
PATIENCE_S = 10
# A bound a test expects to be reached is a fraction of a second; one it
# expects never to be is ten times its patience: a slow machine makes a test
# wait longer, never reach a bound it should not.
SHORT_S = 0.3
LONG_S = 10 * PATIENCE_S


async def erase(request: Any, context: Any) -> Any:
    return privacy_pb2.Erasure(person=request.person)


async def export(request: Any, context: Any) -> AsyncIterator[Any]:
    yield privacy_pb2.ExportPersonResponse()


Serve = Callable[..., Awaitable[int]]


@pytest.fixture
async def serve(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Serve]:
    """Starts a gateway front and gives its port: each bound `LONG_S` unless
    the test shortens it, ErasePerson answered by `erase_with` and
    ExportPerson by `export_with`, at most `max_calls` calls under way."""
    fronts: list[WebFront] = []

    async def serving(
        *,
        head: float = LONG_S,
        linger: float = LONG_S,
        body: float = LONG_S,
        keep_alive: float = LONG_S,
        write_stall: float = LONG_S,
        max_calls: int | None = None,
        erase_with: Callable[..., Awaitable[Any]] = erase,
        export_with: Callable[..., AsyncIterator[Any]] = export,
    ) -> int:
        monkeypatch.setattr(http11, "HEAD_TIMEOUT_S", head)
        monkeypatch.setattr(http11, "LINGER_S", linger)
        monkeypatch.setattr(http11, "WRITE_STALL_S", write_stall)
        monkeypatch.setattr(web, "BODY_WITHIN_S", body)
        monkeypatch.setattr(web, "KEEP_ALIVE_S", keep_alive)
        number = free_port()
        front = WebFront(
            f"127.0.0.1:{number}",
            services=[SERVICE],
            cors_origins=[],
            pages={},
            sign_in_secret=None,
            read_max_bytes=4096,
            max_connections=max_calls,
        )
        await front.start(
            {
                ERASE: grpc.unary_unary_rpc_method_handler(erase_with),
                EXPORT: grpc.unary_stream_rpc_method_handler(export_with),
            }
        )
        fronts.append(front)
        return number

    yield serving
    for front in fronts:
        await front.stop(1)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """All the server sends before it closes the connection (the test fails
    if it keeps it open). A close that resets the connection, the server
    leaving what the caller still sent unread, is a close too."""
    sent = b""
    async with asyncio.timeout(PATIENCE_S):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(64 * 1024):
                sent += chunk
    return sent


async def answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next HTTP answer on a connection: its head and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE_S)
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if b"content-length" in fields:
        return head, await reader.readexactly(int(fields[b"content-length"]))
    body = b""
    while size := int(await reader.readuntil(b"\r\n"), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return head, body


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def erase_request(person: str, declared: int | None = None) -> bytes:
    """An ErasePerson request over Connect (JSON), its body whole unless it
    declares a longer one."""
    body = json.dumps({"person": person}).encode()
    return (
        f"POST {ERASE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared or len(body)}\r\n\r\n"
    ).encode() + body


READY = b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n"


async def asked(port: int, request: bytes) -> tuple[bytes, bytes]:
    """The answer to `request`, sent on a new connection."""
    reader, writer = await connect(port)
    try:
        writer.write(request)
        return await answer(reader)
    finally:
        writer.close()


async def test_a_request_whose_head_stops_coming_has_its_connection_closed(serve: Serve) -> None:
    reader, writer = await connect(await serve(head=SHORT_S))
    writer.write(f"POST {ERASE} HTTP/1.1\r\nHost: x\r\nContent-Type: appl".encode())
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_connection_that_never_sends_a_request_is_closed(serve: Serve) -> None:
    reader, writer = await connect(await serve(keep_alive=SHORT_S))
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_head_longer_than_any_browser_sends_is_refused(serve: Serve) -> None:
    """Sent in pieces, as a caller growing it without end would: refused once
    it passes the bound, not held as it grows."""
    reader, writer = await connect(await serve())
    writer.write(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    for _ in range(3):
        writer.write(b"a" * (http11.HEAD_MAX_BYTES // 2))
        await writer.drain()
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    writer.close()


async def test_a_body_trickled_in_is_answered_deadline_exceeded_and_cut_off(serve: Serve) -> None:
    """Answered while it still trickles in, the rest is not read for ever:
    the connection is closed."""
    reader, writer = await connect(await serve(body=SHORT_S, linger=SHORT_S))
    writer.write(erase_request("zoe", declared=4000).partition(b"\r\n\r\n")[0] + b"\r\n\r\n")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        head, body = await answer(reader)
        assert head.startswith(b"HTTP/1.1 504 "), head
        assert json.loads(body)["code"] == "deadline_exceeded"
        assert await closed_by_server(reader) == b""
    finally:
        trickling.cancel()
        writer.close()


async def test_a_connection_that_behaves_is_kept_alive_for_the_next_request(serve: Serve) -> None:
    reader, writer = await connect(await serve(head=SHORT_S))
    for _ in range(2):
        writer.write(erase_request("zoe"))
        head, answered = await answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert json.loads(answered) == {"person": "zoe"}
        await asyncio.sleep(3 * SHORT_S)  # longer than a head may take
    writer.close()


async def test_a_body_sent_whole_after_its_answer_leaves_the_connection_kept_alive(
    serve: Serve,
) -> None:
    """Refused as too large from its head, the request's body still comes
    whole, soon: the connection is kept for the next request, not closed
    when the time to read the rest would have ended."""
    # A second for the rest, sent the moment the answer is read.
    reader, writer = await connect(await serve(linger=1.0))
    request = erase_request("zoe", declared=5000)
    writer.write(request)
    head, _ = await answer(reader)
    assert head.startswith(b"HTTP/1.1 413 "), head
    writer.write(b" " * (5000 - len(request.partition(b"\r\n\r\n")[2])))
    await asyncio.sleep(2.0)  # past the time the rest had to come
    writer.write(erase_request("zoe"))
    head, answered = await answer(reader)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(answered) == {"person": "zoe"}
    writer.close()


async def test_connections_held_open_leave_the_pod_ready_and_taking_calls(serve: Serve) -> None:
    """As many connections as the port takes calls, opened and left idle:
    the readiness probe is still answered, and so is a call."""
    port = await serve(max_calls=3)
    idle = [await connect(port) for _ in range(3)]
    try:
        head, body = await asked(port, READY)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert json.loads(body) == {"status": "SERVING"}
        head, _ = await asked(port, erase_request("zoe"))
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_call_past_those_the_port_takes_at_once_is_refused_unavailable(
    serve: Serve,
) -> None:
    """Three calls under way, the port's bound: a fourth is refused
    UNAVAILABLE at once (503, to be tried again), the readiness probe is
    answered, and once the three end, calls are taken again."""
    under_way, all_under_way, release = [], asyncio.Event(), asyncio.Event()

    async def erasing_slowly(request: Any, context: Any) -> Any:
        under_way.append(request.person)
        if len(under_way) == 3:
            all_under_way.set()
        await release.wait()
        return privacy_pb2.Erasure(person=request.person)

    port = await serve(max_calls=3, erase_with=erasing_slowly)
    calls = [await connect(port) for _ in range(3)]
    try:
        for n, (_, writer) in enumerate(calls):
            writer.write(erase_request(f"p{n}"))
        await asyncio.wait_for(all_under_way.wait(), PATIENCE_S)
        head, body = await asked(port, erase_request("zoe"))
        assert head.startswith(b"HTTP/1.1 503 "), head
        assert json.loads(body)["code"] == "unavailable"
        head, _ = await asked(port, READY)
        assert head.startswith(b"HTTP/1.1 200 "), head
        release.set()
        for n, (reader, _) in enumerate(calls):
            head, body = await answer(reader)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert json.loads(body) == {"person": f"p{n}"}
        head, _ = await asked(port, erase_request("zoe"))
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        release.set()
        for _, writer in calls:
            writer.close()


def export_request() -> bytes:
    """An ExportPerson stream over Connect (JSON)."""
    body = b"{}"
    body = struct.pack(">BI", 0, len(body)) + body
    return (
        f"POST {EXPORT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_a_stream_its_caller_stops_reading_ends_and_frees_its_call(serve: Serve) -> None:
    """A caller opens a stream behind a small receive window and never reads
    it. The gateway's write waited for it with no bound: the stream (and
    the call to the service behind it) went on for ever, its call counted
    under way, and with all of them taken so, every other call was refused
    503 while the pod stayed ready. Now the connection is cut off once its
    answer has waited past the bound: the stream ends, and the next call is
    answered."""
    ended = asyncio.Event()

    async def exporting(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            while True:
                yield privacy_pb2.ExportPersonResponse(data=bytes(64 * 1024))
        finally:
            ended.set()

    port = await serve(max_calls=1, write_stall=SHORT_S, export_with=exporting)
    loop = asyncio.get_running_loop()
    unread = socket.socket()
    try:
        unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        unread.setblocking(False)
        await loop.sock_connect(unread, ("127.0.0.1", port))
        await loop.sock_sendall(unread, export_request())
        await asyncio.wait_for(ended.wait(), PATIENCE_S)
        head, body = await asked(port, erase_request("zoe"))
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert json.loads(body) == {"person": "zoe"}
    finally:
        unread.close()

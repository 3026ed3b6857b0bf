"""The gateway's HTTP port, over real sockets: a caller cannot hold a
connection open by sending slowly or too much. A request's head that stops
coming, a connection that never sends one, a head that grows without end,
a body trickled in: each is answered or closed within a bound, and a
connection that behaves is kept alive as before."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from casemesh.v1 import privacy_pb2
from casemesh_devstack.ports import free_port
from casemesh_gateway import http11, web
from casemesh_gateway.web import WebFront

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
ERASE = "/casemesh.v1.PrivacyService/ErasePerson"
# How long a test waits for what should come within a fraction of it.
PATIENCE_S = 10


@pytest.fixture
async def port(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    """The port of a running gateway front whose bounds are a fraction of a
    second."""
    monkeypatch.setattr(http11, "HEAD_TIMEOUT_S", 0.3)
    monkeypatch.setattr(http11, "LINGER_S", 0.3)
    monkeypatch.setattr(web, "BODY_WITHIN_S", 0.3)
    monkeypatch.setattr(web, "KEEP_ALIVE_S", 1)

    async def erase(request: Any, context: Any) -> Any:
        return privacy_pb2.Erasure(person=request.person)

    async def export(request: Any, context: Any) -> AsyncIterator[Any]:
        yield privacy_pb2.ExportPersonResponse()

    handlers = {
        ERASE: grpc.unary_unary_rpc_method_handler(erase),
        "/casemesh.v1.PrivacyService/ExportPerson": grpc.unary_stream_rpc_method_handler(export),
    }
    number = free_port()
    front = WebFront(
        f"127.0.0.1:{number}",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret=None,
        read_max_bytes=4096,
    )
    await front.start(handlers)
    try:
        yield number
    finally:
        await front.stop(1)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """All the server sends before it closes the connection (the test fails
    if it keeps it open)."""
    return await asyncio.wait_for(reader.read(), PATIENCE_S)


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


async def test_a_request_whose_head_stops_coming_has_its_connection_closed(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(f"POST {ERASE} HTTP/1.1\r\nHost: x\r\nContent-Type: appl".encode())
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_connection_that_never_sends_a_request_is_closed(port: int) -> None:
    reader, writer = await connect(port)
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_head_longer_than_any_browser_sends_is_refused(port: int) -> None:
    """Sent in pieces, as a caller growing it without end would: refused once
    it passes the bound, not held as it grows."""
    reader, writer = await connect(port)
    writer.write(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    for _ in range(3):
        writer.write(b"a" * (http11.HEAD_MAX_BYTES // 2))
        await writer.drain()
        await asyncio.sleep(0.05)
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    writer.close()


async def test_a_body_trickled_in_is_answered_deadline_exceeded_and_cut_off(port: int) -> None:
    """Answered while it still trickles in, the rest is not read for ever:
    the connection is closed."""
    reader, writer = await connect(port)
    writer.write(
        f"POST {ERASE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 4000\r\n\r\n".encode()
    )

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


async def test_a_connection_that_behaves_is_kept_alive_for_the_next_request(port: int) -> None:
    reader, writer = await connect(port)
    body = b'{"person": "zoe"}'
    request = (
        f"POST {ERASE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    for _ in range(2):
        writer.write(request)
        head, answered = await answer(reader)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert json.loads(answered) == {"person": "zoe"}
        await asyncio.sleep(0.5)  # longer than a head may take, shorter than keep-alive
    writer.close()

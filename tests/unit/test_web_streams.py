"""Server streams over Connect end as they really ended: a stream cut short
by the caller's deadline, or by the server shutting down, ends with an
error, never looking complete (a download taken for whole)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import grpc

from casemesh.v1 import privacy_pb2
from casemesh_gateway.web import ServiceApp, WebFront

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
EXPORT = "/casemesh.v1.PrivacyService/ExportPerson"


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
        raise AssertionError("not called")

    handlers = {
        EXPORT: grpc.unary_stream_rpc_method_handler(export),
        "/casemesh.v1.PrivacyService/ErasePerson": grpc.unary_unary_rpc_method_handler(erase),
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

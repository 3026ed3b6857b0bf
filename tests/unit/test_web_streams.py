"""Streaming calls on the gateway's HTTP port, as browser clients read them.
An upload announcing a message over the size limit is refused as soon as
the message's prefix comes, not held in memory as it streams in; an upload
in chunks of any size still goes through. A Connect stream refused before
it starts (a malformed timeout, a compression not served) ends with its
error in an end-of-stream message, which connect-web reads, rather than an
HTTP 4xx it reports as INTERNAL "HTTP 400". gRPC-Web's text mode, the
default of Google's grpc-web client, is served, refusals included."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from casemesh.platform.errors import InvalidArgument
from casemesh.platform.grpcutil import to_status
from casemesh.v1 import evidence_pb2
from casemesh_gateway.__main__ import MAX_MESSAGE
from casemesh_gateway.api import CHUNK_LIMIT
from casemesh_gateway.web import ServiceApp, WebFront

SERVICE = evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"]
UPLOAD = "/casemesh.v1.EvidenceService/UploadEvidence"
READ = "/casemesh.v1.EvidenceService/ReadEvidence"
LIMIT = 64 * 1024
PIECE = 64 * 1024


def front() -> WebFront:
    """A gateway front whose UploadEvidence counts the bytes it is sent and
    whose ReadEvidence streams two chunks."""

    async def upload(requests: AsyncIterator[Any], context: Any) -> Any:
        first = await anext(aiter(requests))
        size = sum([len(r.chunk) async for r in requests])
        return evidence_pb2.Evidence(file_name=first.metadata.file_name, size_bytes=size)

    async def read(request: Any, context: Any) -> AsyncIterator[Any]:
        for n in range(2):
            yield evidence_pb2.ReadEvidenceResponse(chunk=bytes([n]))

    async def unused(request: Any, context: Any) -> Any:
        raise NotImplementedError

    handlers = {
        UPLOAD: grpc.stream_unary_rpc_method_handler(upload),
        READ: grpc.unary_stream_rpc_method_handler(read),
        "/casemesh.v1.EvidenceService/GetEvidence": grpc.unary_unary_rpc_method_handler(unused),
        "/casemesh.v1.EvidenceService/ListEvidence": grpc.unary_unary_rpc_method_handler(unused),
    }
    web = WebFront(
        "127.0.0.1:0",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret="",
        read_max_bytes=LIMIT,
    )
    web._rpc = {f"/{SERVICE.full_name}": ServiceApp(SERVICE, handlers, LIMIT)}
    return web


def envelope(message: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(message)) + message


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """The enveloped messages of a stream's body: each one's flags and bytes."""
    found, at = [], 0
    while at + 5 <= len(body):
        flags, size = struct.unpack(">BI", body[at : at + 5])
        found.append((flags, body[at + 5 : at + 5 + size]))
        at += 5 + size
    return found


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    chunks: list[bytes]  # the body, as it was sent
    read: int  # how many pieces of the request's body were read

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


async def call(
    path: str,
    content_type: str,
    pieces: list[bytes],
    headers: dict[str, str] | None = None,
    *,
    stays: bool = False,
    to: WebFront | None = None,
) -> Answer:
    """A call whose body comes in `pieces`, and its answer (from `to`, or
    `front()`). The caller then hangs up if more is asked of it (`stays`:
    it waits for the answer)."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode())]
        + [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
    }
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read == len(pieces):
            if stays:
                await asyncio.Event().wait()
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": pieces[read - 1], "more_body": read < len(pieces)}

    said: list[Any] = []

    async def send(message: Any) -> None:
        said.append(message)

    await (to or front()).app(scope, receive, send)
    chunks = [m.get("body", b"") for m in said if m["type"] == "http.response.body"]
    return Answer(said[0]["status"], dict(said[0]["headers"]), chunks, read)


def metadata() -> bytes:
    return evidence_pb2.UploadEvidenceRequest(
        metadata=evidence_pb2.EvidenceMetadata(file_name="a.png", declared_type="image/png")
    ).SerializeToString()


def grpc_status(body: bytes) -> str:
    """The grpc-status a gRPC-Web stream ended with (its trailers, the last
    message)."""
    flags, trailers = frames(body)[-1]
    assert flags == 0x80, body
    said = dict(line.split(": ", 1) for line in trailers.decode().splitlines() if line)
    return said["grpc-status"]


def stream_error(body: bytes) -> dict[str, Any]:
    """The error a Connect stream ended with."""
    flags, end = frames(body)[-1]
    assert flags == 0x02, body
    error: dict[str, Any] = json.loads(end)["error"]
    return error


@pytest.mark.parametrize("protocol", ["connect", "grpc-web"])
async def test_an_upload_announcing_a_message_over_the_limit_is_refused_before_it_is_read(
    protocol: str,
) -> None:
    """Any signed-in user could announce 4 GiB and stream zeros: the gateway
    held all it was sent. Now the call fails RESOURCE_EXHAUSTED, as a stream
    error of its protocol, with nothing of the message read."""
    announced = envelope(metadata()) + struct.pack(">BI", 0, 0xFFFFFFF0)
    answer = await call(UPLOAD, f"application/{protocol}+proto", [announced] + [bytes(PIECE)] * 200)
    assert answer.status == 200
    if protocol == "connect":
        error = stream_error(answer.body)
        assert error["code"] == "resource_exhausted" and "4294967280 bytes" in error["message"]
    else:
        assert grpc_status(answer.body) == "8", answer.body
    assert answer.read * PIECE < 2 * LIMIT


async def test_an_upload_in_chunks_of_any_size_goes_through() -> None:
    """Messages up to the limit, their prefixes split across the body's
    chunks however the network cut them."""
    chunk = bytes(LIMIT - 4)
    largest = evidence_pb2.UploadEvidenceRequest(chunk=chunk).SerializeToString()
    assert len(largest) == LIMIT
    small = evidence_pb2.UploadEvidenceRequest(chunk=b"xyz").SerializeToString()
    body = b"".join(envelope(m) for m in (metadata(), largest, small, largest, small))
    cuts = [1, 2, 3, 4, 5, 6, 1000, PIECE, 7, PIECE - 3]
    pieces, at = [], 0
    for size in cuts:
        pieces.append(body[at : at + size])
        at += size
    pieces.append(body[at:])

    answer = await call(UPLOAD, "application/connect+proto", pieces)
    assert answer.status == 200
    (flags, message), (end_flags, end) = frames(answer.body)
    evidence = evidence_pb2.Evidence.FromString(message)
    assert flags == 0 and evidence.file_name == "a.png"
    assert evidence.size_bytes == 2 * len(chunk) + 6
    assert end_flags == 0x02 and json.loads(end) == {}


@pytest.mark.parametrize("content_type", ["application/connect+json", "application/connect+proto"])
async def test_a_connect_stream_refused_before_it_starts_ends_with_its_error(
    content_type: str,
) -> None:
    request = envelope(b'{"name": "evidence/1"}')
    answer = await call(READ, content_type, [request], {"connect-timeout-ms": "1.5"})
    assert answer.status == 200 and answer.headers[b"content-type"] == content_type.encode()
    error = stream_error(answer.body)
    assert error["code"] == "invalid_argument" and "connect-timeout-ms" in error["message"]


async def test_a_compressed_connect_stream_is_unimplemented_naming_what_to_send() -> None:
    """Compression is not served: a gzip stream was taken as uncompressed
    and failed INTERNAL."""
    request = envelope(gzip.compress(b'{"name": "evidence/1"}'), flags=1)
    answer = await call(
        READ, "application/connect+json", [request], {"connect-content-encoding": "gzip"}
    )
    assert answer.status == 200 and answer.headers[b"connect-accept-encoding"] == b"identity"
    error = stream_error(answer.body)
    assert error["code"] == "unimplemented" and "identity" in error["message"]


async def test_a_stream_sent_as_no_protocol_takes_is_still_refused_415() -> None:
    answer = await call(READ, "application/connect+json; charset=latin1", [b""])
    assert answer.status == 415 and json.loads(answer.body)["code"] == "invalid_argument"


async def test_a_grpc_web_text_stream_is_served_in_base64() -> None:
    """Google's grpc-web client sends and reads base64 (its default, and
    its only mode for server streams): padded wherever its sender flushed,
    in chunks cut anywhere."""
    request = envelope(evidence_pb2.ReadEvidenceRequest(name="evidence/1").SerializeToString())
    text = base64.b64encode(request[:7]) + base64.b64encode(request[7:])
    assert b"=" in text[:-2]
    pieces = [text[:5], text[5:6], text[6:]]
    answer = await call(READ, "application/grpc-web-text", pieces, {"x-grpc-web": "1"}, stays=True)
    assert answer.status == 200
    assert answer.headers[b"content-type"] == b"application/grpc-web-text+proto"
    body = b"".join(base64.b64decode(chunk) for chunk in answer.chunks)
    chunks = [evidence_pb2.ReadEvidenceResponse.FromString(m).chunk for _, m in frames(body)[:-1]]
    assert chunks == [b"\x00", b"\x01"] and grpc_status(body) == "0"


def text_status(answer: Answer) -> str:
    """The grpc-status of a gRPC-Web text answer: in its headers (an answer
    of trailers only), else in its trailers, its last message."""
    if b"grpc-status" in answer.headers:
        return answer.headers[b"grpc-status"].decode()
    return grpc_status(b"".join(base64.b64decode(chunk) for chunk in answer.chunks))


@pytest.mark.parametrize(
    ("body", "headers"),
    [(b"not base64!", {}), (base64.b64encode(envelope(b"")), {"grpc-timeout": "5x"})],
    ids=["not-base64", "refused-before-it-starts"],
)
async def test_a_grpc_web_text_call_refused_is_told_why_in_text_mode(
    body: bytes, headers: dict[str, str]
) -> None:
    answer = await call(READ, "application/grpc-web-text", [body], headers)
    assert answer.headers[b"content-type"] == b"application/grpc-web-text+proto"
    assert text_status(answer) == "3"  # INVALID_ARGUMENT


def full_size_front() -> WebFront:
    """A front routed as the gateway's own (its message size, its
    `WebFront.start`), whose UploadEvidence refuses a chunk over 1 MiB
    naming it, as the gateway's does, and otherwise counts the bytes."""

    async def upload(requests: AsyncIterator[Any], context: Any) -> Any:
        size = 0
        async for request in requests:
            if len(request.chunk) > CHUNK_LIMIT:
                refused = InvalidArgument.field("chunk", "chunks must be at most 1 MiB")
                await context.abort_with_status(to_status(refused))
            size += len(request.chunk)
        return evidence_pb2.Evidence(size_bytes=size)

    async def unused(request: Any, context: Any) -> Any:
        raise NotImplementedError

    web = WebFront(
        "127.0.0.1:0",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret="",
        read_max_bytes=MAX_MESSAGE,
    )
    web._route(
        {
            UPLOAD: grpc.stream_unary_rpc_method_handler(upload),
            READ: grpc.unary_stream_rpc_method_handler(unused),
            "/casemesh.v1.EvidenceService/GetEvidence": grpc.unary_unary_rpc_method_handler(unused),
            "/casemesh.v1.EvidenceService/ListEvidence": grpc.unary_unary_rpc_method_handler(
                unused
            ),
        }
    )
    return web


def json_upload(chunk: int) -> bytes:
    """A Connect JSON upload of one chunk of `chunk` bytes (in base64, as
    JSON carries bytes)."""
    meta = {"metadata": {"fileName": "a.png", "declaredType": "image/png"}}
    data = {"chunk": base64.b64encode(bytes(chunk)).decode()}
    return envelope(json.dumps(meta).encode()) + envelope(json.dumps(data).encode())


async def test_a_connect_json_upload_of_a_1_mib_chunk_goes_through() -> None:
    """The documented chunk, 1 MiB, is about 1.4 MB in base64: its message
    was refused RESOURCE_EXHAUSTED by the size a binary message may be."""
    answer = await call(
        UPLOAD, "application/connect+json", [json_upload(CHUNK_LIMIT)], to=full_size_front()
    )
    (_, message), (end_flags, end) = frames(answer.body)
    assert end_flags == 0x02 and json.loads(end) == {}, end
    assert json.loads(message)["sizeBytes"] == str(CHUNK_LIMIT)


async def test_a_connect_json_chunk_over_1_mib_is_invalid_argument_naming_chunk() -> None:
    answer = await call(
        UPLOAD, "application/connect+json", [json_upload(CHUNK_LIMIT + 1)], to=full_size_front()
    )
    error = stream_error(answer.body)
    assert error["code"] == "invalid_argument", error
    assert "chunk" in json.dumps(error)


@pytest.mark.parametrize("path", [UPLOAD, READ])
async def test_a_binary_message_keeps_its_cap(path: str) -> None:
    """JSON's share is JSON's: an upload's binary message, or a server
    stream's request, past the size a message may be is still refused."""
    big = evidence_pb2.UploadEvidenceRequest(chunk=bytes(MAX_MESSAGE)).SerializeToString()
    answer = await call(
        path,
        "application/connect+proto",
        [envelope(metadata()) + envelope(big)],
        to=full_size_front(),
    )
    assert stream_error(answer.body)["code"] == "resource_exhausted"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/casemesh.v1.EvidenceService/GetEvidence", "application/json"),
        ("/casemesh.v1.EvidenceService/GetEvidence", "application/proto"),
        (READ, "application/connect+json"),
    ],
)
async def test_a_request_other_than_a_client_streams_keeps_its_cap_in_json_too(
    path: str, content_type: str
) -> None:
    """A unary call's body, or a server stream's request, a byte past the
    size a message may be is refused, whatever its encoding: only a client
    stream's messages are taken larger in JSON."""
    over = b" " * (MAX_MESSAGE + 1)
    body = over if path != READ else envelope(over)
    answer = await call(path, content_type, [body], to=full_size_front())
    if path == READ:
        assert stream_error(answer.body)["code"] == "resource_exhausted"
    else:
        assert answer.status == 413 and json.loads(answer.body)["code"] == "resource_exhausted"

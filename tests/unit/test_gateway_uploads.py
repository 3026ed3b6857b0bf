"""Uploads through the gateway, as its callers are told their outcome. The
evidence service refuses an upload it has no room for as soon as it knows
the file's type, without reading the rest: the caller is told so, with the
service's reason and when to retry, not INTERNAL because the gateway was
still sending chunks. A chunk over the documented 1 MiB is refused naming
`chunk`, before anything reaches the service. A read its caller gives up
on ends its call to the service at once, whatever the gateway was doing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from casemesh.platform.errors import InvalidArgument, ResourceExhausted
from casemesh.platform.grpcutil import STATUS_DETAILS_KEY, DomainErrorInterceptor, to_status
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    TokenVerifier,
    mint_token,
    new_signing_key,
)
from casemesh.v1 import evidence_pb2 as pb
from casemesh.v1 import evidence_pb2_grpc
from casemesh_gateway.api import CHUNK_LIMIT, EVIDENCE, Backend, EvidenceGateway
from casemesh_gateway.ratelimit import RateLimiter
from tests.support import eventually

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ALICE = Identity("alice", frozenset({"user"}))
PNG = b"\x89PNG\r\n\x1a\n" + bytes(CHUNK_LIMIT - 8)
BUSY = "this server is taking in as many uploads as it can hold; retry shortly"


class Aborted(Exception):
    """What the gateway answered its caller: the code, the message and the
    google.rpc status in its trailers."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: Any) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.status = status_pb2.Status.FromString(dict(trailers)[STATUS_DETAILS_KEY])


def caller() -> Any:
    """Alice's side of an upload: her token, no deadline of her own, and
    the answer the gateway ends the call with."""
    token = mint_token(SECRET, ALICE.subject, ALICE.roles)

    async def abort(code: grpc.StatusCode, message: str, trailers: Any = ()) -> None:
        raise Aborted(code, message, trailers)

    return SimpleNamespace(
        invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
        time_remaining=lambda: None,
        abort=abort,
    )


async def a_video(chunks: int, chunk: bytes = PNG) -> AsyncIterator[pb.UploadEvidenceRequest]:
    """An upload as Alice sends it: the metadata, then `chunks` chunks."""
    yield pb.UploadEvidenceRequest(metadata=pb.EvidenceMetadata(file_name="clip.png"))
    for _ in range(chunks):
        yield pb.UploadEvidenceRequest(chunk=chunk)


class Busy:
    """An evidence service with no room: it reads the metadata and the first
    chunk (the file's type), then refuses at once, reading no further. What
    it was sent, by call."""

    def __init__(self) -> None:
        self.chunks: list[int] = []

    async def UploadEvidence(self, requests: AsyncIterator[Any], context: Any) -> pb.Evidence:
        messages = aiter(requests)
        await anext(messages)
        await anext(messages)
        self.chunks.append(1)
        refusal = ResourceExhausted(BUSY, reason="UPLOADS_BUSY", retry_after=30)
        await context.abort_with_status(to_status(refusal))
        raise AssertionError("abort_with_status returned")


class Taking:
    """An evidence service with room: it reads the whole upload. What it was
    sent, and how each call ended for it."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.ended: list[str] = []

    async def UploadEvidence(self, requests: AsyncIterator[Any], context: Any) -> pb.Evidence:
        try:
            size = sum([len(r.chunk) async for r in requests])
        except BaseException as exc:
            self.ended.append(type(exc).__name__)
            raise
        self.sizes.append(size)
        self.ended.append("read")
        return pb.Evidence(name="evidence/1", size_bytes=size)


async def serving(evidence: Any) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    handlers = {
        "UploadEvidence": grpc.stream_unary_rpc_method_handler(
            evidence.UploadEvidence,
            request_deserializer=pb.UploadEvidenceRequest.FromString,
            response_serializer=pb.Evidence.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(EVIDENCE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def gateway(channel: grpc.aio.Channel) -> EvidenceGateway:
    backend = Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(new_signing_key()),
        limiter=RateLimiter(per_minute=600, burst=100),
        timeout=5,
    )
    return EvidenceGateway(backend, channel, upload_timeout=60, largest_file=500 << 20)


async def test_an_upload_the_evidence_service_has_no_room_for_is_told_to_retry() -> None:
    """The service answers while the gateway is still sending: grpcio's
    asyncio client then reported INTERNAL "Internal error from Core" most
    of the time, and Alice was told the system failed. Every time, she is
    told the server is busy, why, and when to retry."""
    busy = Busy()
    server, port = await serving(busy)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = gateway(channel)
            for _ in range(30):
                with pytest.raises(Aborted) as answered:
                    await served.UploadEvidence(a_video(16), caller())
                told = answered.value
                assert told.code == grpc.StatusCode.RESOURCE_EXHAUSTED, told
                assert told.status.message == BUSY
                details = {d.type_url.rpartition("/")[2]: d for d in told.status.details}
                info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
                details["google.rpc.ErrorInfo"].Unpack(info)
                details["google.rpc.RetryInfo"].Unpack(retry)
                assert info.reason == "UPLOADS_BUSY" and retry.retry_delay.seconds == 30
    finally:
        await server.stop(0)
    assert len(busy.chunks) == 30


async def test_a_chunk_over_1_mib_is_refused_naming_chunk() -> None:
    """The documented limit, told as the caller's mistake in `chunk` (not a
    RESOURCE_EXHAUSTED a client would retry), before the service hears of it."""
    busy = Busy()
    server, port = await serving(busy)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = gateway(channel)
            with pytest.raises(InvalidArgument) as refused:
                await served.UploadEvidence(a_video(2, PNG + b"x"), caller())
    finally:
        await server.stop(0)
    assert [v.field for v in refused.value.violations] == ["chunk"]
    assert "1 MiB" in refused.value.violations[0].description
    assert busy.chunks == []


async def test_an_upload_goes_through_whole() -> None:
    taking = Taking()
    server, port = await serving(taking)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stored = await gateway(channel).UploadEvidence(a_video(3), caller())
    finally:
        await server.stop(0)
    assert stored.size_bytes == 3 * len(PNG) and taking.sizes == [3 * len(PNG)]


async def test_an_upload_whose_stream_breaks_is_cancelled_and_the_caller_told_why() -> None:
    """The service sees the call cancelled (it keeps nothing), not ended as
    if the file were whole; the caller hears what broke."""
    taking = Taking()
    server, port = await serving(taking)

    async def broken() -> AsyncIterator[pb.UploadEvidenceRequest]:
        async for message in a_video(2):
            yield message
        raise InvalidArgument.field("chunk", "not a message of UploadEvidenceRequest")

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(InvalidArgument, match="not a message"):
                await gateway(channel).UploadEvidence(broken(), caller())
            await eventually(lambda: bool(taking.ended))
    finally:
        await server.stop(0)
    assert taking.sizes == [] and taking.ended == ["CancelledError"]


class Endless:
    """The evidence service as the gateway's stub calls it: a file read in
    256 KiB chunks with no end in sight, each there at once; and whether
    the gateway cancelled its read."""

    def __init__(self) -> None:
        self.cancelled = False

    def ReadEvidence(self, request: pb.ReadEvidenceRequest, **_: Any) -> Any:
        service = self

        class Call:
            def __aiter__(self) -> AsyncIterator[pb.ReadEvidenceResponse]:
                return self.chunks()

            async def chunks(self) -> AsyncIterator[pb.ReadEvidenceResponse]:
                while True:
                    yield pb.ReadEvidenceResponse(chunk=bytes(256 * 1024))

            def cancel(self) -> None:
                service.cancelled = True

        return Call()


async def test_a_read_its_caller_gives_up_on_ends_the_services_read_at_once() -> None:
    """Alice reads a few chunks of a large file over gRPC, then cancels
    while the gateway waits to write her the next. The evidence service's
    read was cancelled only when the garbage collector came by: until then
    (up to the 2 h a 500 MiB file is given) it went on holding the file
    open. It is cancelled as soon as she goes."""
    evidence = Endless()
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
    async with grpc.aio.insecure_channel("127.0.0.1:9") as unused:  # the stub is replaced
        served = gateway(unused)
    served.stub = cast(Any, evidence)
    evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(served, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            read = evidence_pb2_grpc.EvidenceServiceStub(channel).ReadEvidence(
                pb.ReadEvidenceRequest(name="evidence/0b7a2a4e-0c1d-4c63-9d6f-3a1c6b2f4e10"),
                metadata=[("authorization", f"Bearer {mint_token(SECRET, 'alice', ['user'])}")],
            )
            for _ in range(3):
                assert len((await read.read()).chunk) == 256 * 1024
            read.cancel()
            await eventually(lambda: evidence.cancelled, within=10)
    finally:
        await server.stop(0)

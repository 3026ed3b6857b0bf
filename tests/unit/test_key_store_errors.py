"""What a caller sees when a service cannot read personal data for want of a
key (a master key missing from the secret, the wrong key database): a
retryable UNAVAILABLE saying so, never UNKNOWN with the key's name in it;
the key database away is UNAVAILABLE as any database away is. A stored key
or token altered is INTERNAL: the same on every retry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import psycopg
import pytest
from psycopg_pool import PoolTimeout

from casemesh.platform.grpcutil import DomainErrorInterceptor
from casemesh.platform.personal.errors import (
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)

MISSING: list[Exception] = [
    UnknownMasterKey(
        "a data key is wrapped by master key 'k2', which CASEMESH_MASTER_KEYS does not hold"
    ),
    UnknownDataKey("no data key 5f0c… in the key database, erased or not"),
]
AWAY: list[Exception] = [
    psycopg.OperationalError("connection to server at keys-db-rw failed"),
    PoolTimeout("couldn't get a connection after 0.10 sec"),
]


async def _served(handler: grpc.RpcMethodHandler, call: Callable[[grpc.aio.Channel], Any]) -> Any:
    """What `call` gets from a server (with the services' interceptor) whose
    one method, /t.Service/Method, is `handler`."""
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("t.Service", {"Method": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await call(channel)
    finally:
        await server.stop(None)


async def _refusal(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


@pytest.mark.parametrize("error", MISSING + AWAY, ids=lambda e: type(e).__name__)
async def test_a_read_that_needs_a_key_not_to_be_had_is_unavailable(error: Exception) -> None:
    async def read(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise error

    err = await _served(
        grpc.unary_unary_rpc_method_handler(read),
        lambda channel: _refusal(channel.unary_unary("/t.Service/Method")(b"", timeout=10)),
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert "CASEMESH_MASTER_KEYS" not in (err.details() or "")


@pytest.mark.parametrize("error", MISSING, ids=lambda e: type(e).__name__)
async def test_a_watch_that_needs_a_key_not_to_be_had_ends_unavailable(error: Exception) -> None:
    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        raise error

    async def read_all(channel: grpc.aio.Channel) -> tuple[list[bytes], grpc.aio.AioRpcError]:
        got: list[bytes] = []

        async def each() -> None:
            async for item in channel.unary_stream("/t.Service/Method")(b"", timeout=10):
                got.append(item)

        return got, await _refusal(each())

    got, err = await _served(grpc.unary_stream_rpc_method_handler(watch), read_all)
    assert got == [b"first"]
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert err.details() == "personal data cannot be read right now: try again later"


@pytest.mark.parametrize(
    "error",
    [WrappedKeyRefused("data key 5f0c… does not unwrap"), TokenRefused("token altered")],
    ids=lambda e: type(e).__name__,
)
async def test_a_read_of_personal_data_altered_where_it_is_stored_is_internal(
    error: Exception,
) -> None:
    async def read(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise error

    err = await _served(
        grpc.unary_unary_rpc_method_handler(read),
        lambda channel: _refusal(channel.unary_unary("/t.Service/Method")(b"", timeout=10)),
    )
    assert err.code() == grpc.StatusCode.INTERNAL, err.details()
    assert err.details() == "personal data stored here cannot be read"

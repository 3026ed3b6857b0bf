"""What a caller sees when a service cannot read personal data for want of a
key (a master key missing from the secret, the wrong key database): a
retryable UNAVAILABLE saying so, never UNKNOWN with the key's name in it;
the key database away is UNAVAILABLE as any database away is. A stored key
or token altered is INTERNAL: the same on every retry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from psycopg_pool import PoolTimeout

from casemesh.platform.personal.errors import (
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)
from tests.support import stream_failure, unary_failure

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


@pytest.mark.parametrize("error", MISSING + AWAY, ids=lambda e: type(e).__name__)
async def test_a_read_that_needs_a_key_not_to_be_had_is_unavailable(error: Exception) -> None:
    async def read(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise error

    err = await unary_failure(read)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert "CASEMESH_MASTER_KEYS" not in (err.details() or "")


@pytest.mark.parametrize("error", MISSING, ids=lambda e: type(e).__name__)
async def test_a_watch_that_needs_a_key_not_to_be_had_ends_unavailable(error: Exception) -> None:
    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        raise error

    got, err = await stream_failure(watch)
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

    err = await unary_failure(read)
    assert err.code() == grpc.StatusCode.INTERNAL, err.details()
    assert err.details() == "personal data stored here cannot be read"

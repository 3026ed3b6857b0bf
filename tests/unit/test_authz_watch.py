"""A WatchQueue lasts as long as the agent's sign-in, in the gateway and in
the queue service alike: the queue service ends it with UNAUTHENTICATED
when the sign-in the gateway vouched for runs out, whoever opened it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import grpc
import jwt
import pytest

import casemesh_casequeue.api as queue_api
import casemesh_gateway.api as gateway_api
from casemesh.platform.callers import _VOUCHED
from casemesh.platform.clock import SystemClock
from casemesh.platform.errors import Unauthenticated
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    InternalTokenVerifier,
    TokenVerifier,
    Vouched,
    mint_token,
    new_signing_key,
    verify_key_of,
)
from casemesh.v1 import casequeue_pb2 as pb
from casemesh_gateway.api import CASEQUEUE, Backend, QueueGateway
from casemesh_gateway.ratelimit import RateLimiter

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEY = new_signing_key()
LI = Identity("li", frozenset({"agent"}))


class Changes:
    """The queue's changes as a watch hears them: none, here."""

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Any]]:
        yield asyncio.Queue()


class Wall:
    """The real time as the queue service reads it, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def watch(found: Vouched, wall: Any = time.time) -> Iterator[AsyncIterator[pb.QueueChange]]:
    """A WatchQueue of the queue service, vouched for with `found`."""
    token = _VOUCHED.set(found)
    servicer = queue_api.QueueServicer(
        cast(Any, None), SystemClock(), cast(Any, Changes()), queues=[], wall=wall
    )
    try:
        yield servicer.WatchQueue(pb.WatchQueueRequest(), cast(Any, None))
    finally:
        _VOUCHED.reset(token)


@pytest.fixture()
def heartbeat_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of a quiet watch answers at once: HEARTBEAT, or its end."""
    monkeypatch.setattr(queue_api, "HEARTBEAT_SECONDS", 0.0)


async def said(stream: AsyncIterator[pb.QueueChange]) -> str:
    async with asyncio.timeout(5):
        return (await anext(stream)).change


@pytest.mark.usefixtures("heartbeat_at_once")
async def test_a_watch_goes_on_past_the_calls_token_until_the_agents_sign_in_ends() -> None:
    """The gateway's token for the call lives a minute; the agent's sign-in,
    which the gateway vouched for, an hour: the watch lasts the hour, with
    the leeway the two hosts' clocks have, and then ends UNAUTHENTICATED."""
    opened = float(int(time.time()))  # whole seconds, as a token's `exp` is
    signed_in_until = datetime.fromtimestamp(opened + 3600, UTC).isoformat()
    wall = Wall(opened)
    found = Vouched(LI, {"watch_until": signed_in_until}, until=opened + 70)
    with watch(found, wall) as stream:
        assert await said(stream) == "WATCHING"
        wall.now = opened + 71
        assert await said(stream) == "HEARTBEAT"
        wall.now = opened + 3609
        assert await said(stream) == "HEARTBEAT"
        wall.now = opened + 3610
        with pytest.raises(Unauthenticated, match="expired"):
            await said(stream)


@pytest.mark.usefixtures("heartbeat_at_once")
async def test_a_watch_opened_with_a_stolen_token_naming_no_sign_in_ends_with_the_token() -> None:
    """A token of the gateway's that vouches for no sign-in (one read off the
    wire from another call, or a gateway of an older release) keeps a watch
    open no longer than the token itself is taken: its expiry plus 10 s."""
    now = time.time()
    token = InternalTokenSigner(KEY, clock=lambda: now).metadata(LI, CASEQUEUE)
    found = InternalTokenVerifier(verify_key_of(KEY), [CASEQUEUE]).verify(token)
    expires = int(now) + 60 + 10
    assert found.until == expires
    wall = Wall(now)
    with watch(found, wall) as stream:
        assert await said(stream) == "WATCHING"
        wall.now = expires - 1
        assert await said(stream) == "HEARTBEAT"
        wall.now = expires
        with pytest.raises(Unauthenticated):
            await said(stream)


async def test_a_silent_watch_ends_when_the_sign_in_does_not_at_its_next_heartbeat() -> None:
    found = Vouched(LI, until=time.time() + 0.2)
    with watch(found) as stream:
        assert await said(stream) == "WATCHING"
        with pytest.raises(Unauthenticated):
            await said(stream)  # well before the 20 s heartbeat


async def test_the_gateway_vouches_for_the_agents_sign_in_to_the_queue_service() -> None:
    """What the gateway opens the queue's watch with: a deadline at the end
    of the agent's sign-in (with the 30 s allowed for the provider's clock),
    and the same end vouched for the queue service."""
    backend = Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(KEY),
        limiter=RateLimiter(per_minute=600, burst=100),
        timeout=5,
    )
    opened: list[tuple[Any, float]] = []

    class Watch:
        def __init__(self) -> None:
            self.cancelled = False

        def __aiter__(self) -> AsyncIterator[pb.QueueChange]:
            return self.changes()

        async def changes(self) -> AsyncIterator[pb.QueueChange]:
            yield pb.QueueChange(change="WATCHING")

        def cancel(self) -> None:
            self.cancelled = True

    class Queue:
        def WatchQueue(self, request: Any, *, metadata: Any, timeout: float) -> Watch:
            opened.append((metadata, timeout))
            return Watch()

    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # never used: the stub is replaced
    served = QueueGateway(backend, channel)
    served.stub = cast(Any, Queue())
    await channel.close()
    token = mint_token(SECRET, LI.subject, LI.roles, ttl_seconds=3600)
    context = SimpleNamespace(
        invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
        time_remaining=lambda: None,
    )
    before = time.time()
    told = [c.change async for c in served.WatchQueue(pb.WatchQueueRequest(), cast(Any, context))]
    assert told == ["WATCHING"]
    ends = jwt.decode(token, options={"verify_signature": False})["exp"] + 30
    [(metadata, deadline)] = opened
    found = InternalTokenVerifier(verify_key_of(KEY), [CASEQUEUE]).verify(metadata)
    assert found.facts["watch_until"] == datetime.fromtimestamp(ends, UTC).isoformat()
    assert ends - time.time() - 5 < deadline <= ends - before


@pytest.mark.parametrize("lifetime", [10**20, 300 * 365 * 86400], ids=["past-9999", "past-2262"])
async def test_a_watch_with_a_token_expiring_far_off_goes_on_until_the_cap(lifetime: int) -> None:
    """A token that says it expires far off (past the year 9999, which no
    datetime reaches, or past 2262, which no gRPC deadline does): the watch
    goes on as any does, through a real gRPC call, and ends no later than
    the gateway's cap (`WATCH_LONGEST_S`), rather than failing at once."""
    told: list[tuple[float | None, str]] = []

    async def watch(request: Any, context: Any) -> AsyncIterator[pb.QueueChange]:
        """The queue service's WatchQueue, noting what it was told."""
        vouched = InternalTokenVerifier(verify_key_of(KEY), [CASEQUEUE]).verify(
            context.invocation_metadata()
        )
        told.append((context.time_remaining(), vouched.facts["watch_until"]))
        yield pb.QueueChange(change="WATCHING")

    server = grpc.aio.server()
    queue = {
        "WatchQueue": grpc.unary_stream_rpc_method_handler(
            watch,
            request_deserializer=pb.WatchQueueRequest.FromString,
            response_serializer=pb.QueueChange.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(CASEQUEUE, queue),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    backend = Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(KEY),
        limiter=RateLimiter(per_minute=600, burst=100),
        timeout=5,
    )
    token = mint_token(SECRET, LI.subject, LI.roles, ttl_seconds=lifetime)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = QueueGateway(backend, channel)
            before = time.time()
            context = SimpleNamespace(
                invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
                time_remaining=lambda: None,
            )
            watching = served.WatchQueue(pb.WatchQueueRequest(), cast(Any, context))
            changes = [change.change async for change in watching]
    finally:
        await server.stop(0)
    assert changes == ["WATCHING"]
    [(left, until)] = told
    ends = datetime.fromisoformat(until).timestamp()
    assert before + gateway_api.WATCH_LONGEST_S <= ends <= time.time() + gateway_api.WATCH_LONGEST_S
    assert left is not None and left > 0

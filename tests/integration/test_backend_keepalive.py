"""A long stream from a backend that vanishes without closing its connection
(its node died, the network cut it off) fails within seconds, where it would
hang until its deadline, hours for a download; and the pings that find this
out are welcome at every server, however long a stream stays quiet.

Real sockets: between the backend channel and a server made by `serve` runs
a proxy on loopback that counts the pings the channel sends and can drop
every byte while both ends stay connected, as a dead node does. The ping
figures of both sides run 20 times faster than in production, in the same
proportion."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from casemesh.platform import backends, grpcutil
from casemesh.platform.backends import backend_channel
from casemesh.platform.grpcutil import serve
from casemesh_devstack.ports import free_port

SCALE = 20
PING_FIGURES = frozenset(
    {
        "grpc.keepalive_time_ms",
        "grpc.keepalive_timeout_ms",
        "grpc.http2.ping_timeout_ms",
        "grpc.http2.min_ping_interval_without_data_ms",
    }
)
# In production a vanished backend is noticed within 30 s (a ping, and the
# time its answer is waited for): 1.5 s here, with room for a slow machine.
NOTICED_WITHIN = 30 / SCALE + 3.5
# A chunk every quarter of a second (the ping interval is a second here).
CHUNK_EVERY = 0.25

STEADY = "/casemesh.test.Downloads/Steady"
PAUSED = "/casemesh.test.Downloads/Paused"


def _faster(options: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(k, v // SCALE if k in PING_FIGURES else v) for k, v in options]


@pytest.fixture(autouse=True)
def faster_pings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "BACKEND_OPTIONS", _faster(backends.BACKEND_OPTIONS))
    monkeypatch.setattr(grpcutil, "SERVER_OPTIONS", tuple(_faster(grpcutil.SERVER_OPTIONS)))


class _Pings:
    """Counts the PING frames (not the acknowledgements) in what a client
    sends on an HTTP/2 connection."""

    PREFACE = 24  # "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self) -> None:
        self._pending = bytearray()
        self._skip = self.PREFACE  # bytes to pass over: the preface, then each frame's payload

    def found_in(self, data: bytes) -> int:
        self._pending += data
        found = 0
        while True:
            passed = min(self._skip, len(self._pending))
            del self._pending[:passed]
            self._skip -= passed
            if self._skip or len(self._pending) < 9:
                return found
            length = int.from_bytes(self._pending[:3], "big")
            kind, flags = self._pending[3], self._pending[4]
            if kind == 0x6 and not flags & 0x1:
                found += 1
            del self._pending[:9]
            self._skip = length


class Link:
    """The network between the gateway and a backend: a TCP proxy on
    loopback that counts the pings the client sends on to the server, and
    that can go silent, dropping every byte both ways while neither end
    hears of it (no FIN, no RST)."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self.pings = 0
        self._pinged = asyncio.Condition()
        self.silent = False
        self._writers: list[asyncio.StreamWriter] = []
        self._carrying: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._joined, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _joined(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        host, port = self._upstream.rsplit(":", 1)
        server_in, server_out = await asyncio.open_connection(host, int(port))
        self._writers += [client_out, server_out]
        pings = _Pings()
        for carrying in (
            self._carry(client_in, server_out, pings),
            self._carry(server_in, client_out, None),
        ):
            task = asyncio.create_task(carrying)
            self._carrying.add(task)
            task.add_done_callback(self._carrying.discard)

    async def _carry(
        self, source: asyncio.StreamReader, to: asyncio.StreamWriter, pings: _Pings | None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if self.silent:
                    continue
                to.write(data)
                await to.drain()
                if pings is not None and (found := pings.found_in(data)):
                    async with self._pinged:
                        self.pings += found
                        self._pinged.notify_all()
            if not self.silent:
                to.close()

    async def pinged(self, times: int, within: float) -> None:
        """Returns once the server has been sent `times` pings in all."""
        try:
            async with asyncio.timeout(within), self._pinged:
                await self._pinged.wait_for(lambda: self.pings >= times)
        except TimeoutError:
            pytest.fail(f"the client stopped pinging: {self.pings} pings of {times} in {within} s")

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        for task in list(self._carrying):
            task.cancel()
        await asyncio.gather(*self._carrying, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Downloads:
    """Two downloads: one sending a chunk every quarter of a second for as
    long as it is read, one sending a chunk, then waiting (the store behind
    it slow) until `resume` is set, then sending the last."""

    def __init__(self) -> None:
        self.resume = asyncio.Event()

    async def steady(self, _request: bytes, _context: Any) -> AsyncIterator[bytes]:
        while True:
            yield b"chunk"
            await asyncio.sleep(CHUNK_EVERY)

    async def paused(self, _request: bytes, _context: Any) -> AsyncIterator[bytes]:
        yield b"first"
        await self.resume.wait()
        yield b"last"

    def register(self, server: Any) -> None:
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "casemesh.test.Downloads",
                    {
                        "Steady": grpc.unary_stream_rpc_method_handler(self.steady),
                        "Paused": grpc.unary_stream_rpc_method_handler(self.paused),
                    },
                ),
            )
        )


@dataclass
class Settings:
    grpc_addr: str
    shutdown_delay_seconds: float = 0.0
    shutdown_grace_seconds: float = 1.0


@dataclass
class Backend:
    downloads: Downloads
    link: Link


@pytest.fixture()
async def backend(faster_pings: None) -> AsyncIterator[Backend]:
    """A backend made by `serve`, reached through a `Link`."""
    address, stop, downloads = f"127.0.0.1:{free_port()}", asyncio.Event(), Downloads()
    serving = asyncio.create_task(
        serve(Settings(address), register=downloads.register, service_names=[], stop=stop)
    )
    link = Link(address)
    await link.start()
    try:
        yield Backend(downloads, link)
    finally:
        await link.close()
        stop.set()
        await asyncio.wait_for(serving, 30)


async def _ending(call: Any, within: float) -> grpc.StatusCode:
    """The status `call` (a server stream) ends with, its chunks still on
    the way read; a failure if it has not ended within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while await call.read() is not grpc.aio.EOF:
                pass
    except grpc.aio.AioRpcError as failed:
        return failed.code()
    except TimeoutError:
        pytest.fail(f"the stream still hangs {within} s after its backend vanished")
    code: grpc.StatusCode = await call.code()
    return code


async def _read(call: Any, chunks: int) -> Sequence[bytes]:
    return [await asyncio.wait_for(call.read(), 5) for _ in range(chunks)]


async def test_a_download_from_a_backend_that_vanishes_fails_within_seconds(
    backend: Backend,
) -> None:
    async with backend_channel(backend.link.address) as channel:
        call = channel.unary_stream(STEADY)(b"", timeout=600)  # an export's hours, scaled
        # Four ping intervals of a download, the client sending nothing meanwhile.
        await _read(call, int(4 / CHUNK_EVERY))
        backend.link.silent = True
        assert await _ending(call, NOTICED_WITHIN) == grpc.StatusCode.UNAVAILABLE


async def test_a_paused_download_outlives_the_pings_that_watch_it(backend: Backend) -> None:
    async with backend_channel(backend.link.address) as channel:
        call = channel.unary_stream(PAUSED)(b"", timeout=600)
        assert await _read(call, 1) == [b"first"]
        # By default gRPC's server answers the fourth ping in a row that
        # comes sooner than it allows, nothing sent meanwhile, with GOAWAY.
        await backend.link.pinged(backend.link.pings + 6, within=30)
        backend.downloads.resume.set()
        assert await _read(call, 1) == [b"last"]
        assert await _ending(call, 5) == grpc.StatusCode.OK

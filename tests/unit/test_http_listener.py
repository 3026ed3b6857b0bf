"""The gateway's HTTP connections send each response at once.

A Connect response is written as its headers and then its body. On a
connection with Nagle's algorithm on, the body waits for the caller to
acknowledge the headers, and callers delay that acknowledgement: every
browser call took 40 ms more than the work behind it. asyncio turns Nagle
off only on connections of a listener whose protocol says TCP by name.
"""

from __future__ import annotations

import asyncio
import socket

from casemesh_gateway.web import tcp_listener


async def nagle_on_accepted(listener: socket.socket) -> bool:
    """Whether a connection accepted on `listener` by asyncio keeps Nagle on."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.BaseTransport] = loop.create_future()

    class Accepting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)

    server = await loop.create_server(Accepting, sock=listener)
    try:
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            transport = await asyncio.wait_for(accepted, 30)
            try:
                sock: socket.socket = transport.get_extra_info("socket")
                return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            finally:
                transport.close()
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


async def test_the_gateways_listener_gives_connections_with_nagle_off() -> None:
    assert not await nagle_on_accepted(tcp_listener("127.0.0.1", 0))


async def test_a_listener_made_by_create_server_would_not() -> None:
    assert await nagle_on_accepted(socket.create_server(("127.0.0.1", 0)))

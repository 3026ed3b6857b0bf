"""A server whose calls all need something not yet there (the gateway
before the identity provider's keys came) is alive but not ready: the
probes keep it running and send it no traffic until it comes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casemesh.platform.grpcutil import LIVENESS, serve
from casemesh_devstack.ports import free_port
from casemesh_gateway.web import WebFront


@dataclass
class Settings:
    grpc_addr: str
    shutdown_delay_seconds: float = 0.0
    shutdown_grace_seconds: float = 1.0


async def test_a_server_is_alive_but_not_ready_until_what_its_calls_need_has_come() -> None:
    addr, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    loaded, stop = asyncio.Event(), asyncio.Event()
    front = WebFront(
        http,
        services=[],
        cors_origins=[],
        pages={},
        sign_in_secret=None,
        read_max_bytes=4096,
        ready=loaded.is_set,
    )
    serving = asyncio.create_task(
        serve(
            Settings(addr),
            register=lambda _: None,
            service_names=[],
            stop=stop,
            companion=front,
            ready=loaded,
        )
    )
    async with grpc.aio.insecure_channel(addr) as channel, httpx.AsyncClient() as web:
        health = health_pb2_grpc.HealthStub(channel)

        async def status(name: str) -> int:
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            return int(answer.status)

        async def probes() -> tuple[int, int, int, int]:
            ready = (await web.get(f"http://{http}/healthz/ready")).status_code
            live = (await web.get(f"http://{http}/healthz/live")).status_code
            return await status(""), await status(LIVENESS), ready, live

        serving_, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        await eventually_async(probes, (not_serving, serving_, 503, 200))
        loaded.set()
        await eventually_async(probes, (serving_, serving_, 200, 200))
    stop.set()
    await asyncio.wait_for(serving, 30)


async def eventually_async(
    check: Callable[[], Awaitable[Any]], wanted: Any, within: float = 30.0
) -> None:
    """Until `await check()` gives `wanted`."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            got = await check()
        except (grpc.aio.AioRpcError, httpx.TransportError):
            got = None
        if got == wanted:
            return
        assert asyncio.get_running_loop().time() < deadline, f"still {got}, not {wanted}"
        await asyncio.sleep(0.1)

"""A server whose calls all need something not yet there (the gateway
before the identity provider's keys came) is alive but not ready: the
probes keep it running and send it no traffic until it comes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casemesh.platform.grpcutil import serve
from casemesh.platform.starting import LIVENESS, alive_while_starting
from casemesh_devstack.ports import free_port
from casemesh_gateway.web import WebFront
from tests.support import eventually


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
    serving_, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    with grpc.insecure_channel(addr) as channel, httpx.Client() as web:
        health = health_pb2_grpc.HealthStub(channel)

        def probes(wanted: tuple[int, int, int, int]) -> bool:
            """Whether gRPC health of "" and of liveness, and the HTTP ready and
            live probes, say `wanted` (False while the server is not up yet)."""
            try:
                said = tuple(
                    health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                    for name in ("", LIVENESS)
                ) + tuple(
                    web.get(f"http://{http}/healthz/{p}").status_code for p in ("ready", "live")
                )
            except (grpc.RpcError, httpx.TransportError):
                return False
            return said == wanted

        await eventually(partial(probes, (not_serving, serving_, 503, 200)))
        loaded.set()
        await eventually(partial(probes, (serving_, serving_, 200, 200)))
    stop.set()
    await asyncio.wait_for(serving, 30)


def test_while_a_service_starts_its_address_answers_alive_and_nothing_else() -> None:
    """Before its own server listens: health says alive and not ready, and a
    call of its API is UNAVAILABLE (to be tried again, as when nothing
    listened), not UNIMPLEMENTED."""
    port = free_port()
    with (
        alive_while_starting(f"127.0.0.1:{port}"),
        grpc.insecure_channel(f"127.0.0.1:{port}") as ch,
    ):
        health = health_pb2_grpc.HealthStub(ch)
        check = health_pb2.HealthCheckRequest
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert health.Check(check(service=LIVENESS), timeout=10).status == serving
        assert health.Check(check(service=""), timeout=10).status == not_serving
        call = ch.unary_unary("/casemesh.v1.TicketService/GetTicket")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

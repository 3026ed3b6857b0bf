"""Liveness while a gRPC service starts.

A service connects to its databases before it serves (`connect_at_start`
waits out one that is away, however long). Until then nothing listened on
its gRPC address, so the orchestrator's start-up probe (gRPC health of
`liveness`) failed, and after its limit (three minutes) the pod was
restarted, and again, each time after a longer back-off: minutes after the
database was back. Now a small server answers on that address from the
first moment: `liveness` SERVING, readiness ("") NOT_SERVING, so no traffic
is sent; any other call is UNAVAILABLE, to be tried again (as when nothing
listened). The service's own server binds the same address beside it (gRPC
listens with SO_REUSEPORT) and then stops it (`handed_over`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from casemesh.platform.backends import PINGS_ALLOWED
from casemesh.platform.logging import get_logger

log = get_logger(__name__)

LIVENESS = "liveness"

_lock = threading.Lock()
_serving: grpc.Server | None = None


@contextmanager
def alive_while_starting(address: str) -> Iterator[None]:
    """Answers gRPC health on `address` until `handed_over` or the end of the
    block: `liveness` SERVING, "" NOT_SERVING. If the address cannot be
    listened on, says so and carries on: the service's own server will say
    more."""
    global _serving
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="starting"),
        options=[PINGS_ALLOWED],
    )
    servicer = health.HealthServicer()
    servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((_NotYet(),))
    try:
        if server.add_insecure_port(address) == 0:
            raise RuntimeError(f"cannot listen on {address}")
    except RuntimeError as exc:
        log.warning("grpc.starting_health_unavailable", address=address, error=str(exc))
    else:
        server.start()
        with _lock:
            _serving = server
    try:
        yield
    finally:
        handed_over()


class _NotYet(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every call but health's: UNAVAILABLE while the service starts."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        def refuse(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the service is starting; try again")
            yield b""  # never reached: a stream handler, whatever the call's kind

        return grpc.stream_stream_rpc_method_handler(refuse)


def handed_over() -> None:
    """The service's own server listens on the address now: the starting one
    stops (calls in flight to it, health checks, end at once)."""
    global _serving
    with _lock:
        server, _serving = _serving, None
    if server is not None:
        server.stop(None).wait()

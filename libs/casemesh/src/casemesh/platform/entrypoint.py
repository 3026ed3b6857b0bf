"""Process entry points shared by the services: `python -m <service> <command>`
loads and validates the command's settings, sets up logging, tracing and the
metrics endpoint, and runs it; and the relay process every writer service has."""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

import grpc
from eventsourcing.application import Application
from google.protobuf.descriptor import ServiceDescriptor

from casemesh.platform import settings as settings_mod
from casemesh.platform.grpcutil import Serving, serve
from casemesh.platform.logging import configure_logging, get_logger
from casemesh.platform.metrics import serve_metrics
from casemesh.platform.relay import Relay, Translate
from casemesh.platform.starting import alive_while_starting
from casemesh.platform.telemetry import configure_tracing

log = get_logger(__name__)

# command -> (its settings class, what it runs with them)
Commands = dict[str, tuple[type[Any], Callable[[Any], Coroutine[Any, Any, None]]]]


def exit_on_sigterm() -> None:
    """SIGTERM ends the process until it takes the signal its own way (a
    server's graceful drain, a relay's stop). In a container it runs as PID
    1, and the kernel drops a signal PID 1 does not catch: a start waiting
    for its database would ignore the orchestrator's SIGTERM and wait for
    its SIGKILL, the whole grace period later."""

    def ended(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, ended)


def run_command(program: str | None, commands: Commands) -> None:
    """`python -m <program> [command]`; without one, the first of `commands`."""
    exit_on_sigterm()
    command = sys.argv[1] if len(sys.argv) > 1 else next(iter(commands))
    if command not in commands:
        print(f"usage: python -m {program} {'|'.join(commands)}", file=sys.stderr)
        raise SystemExit(2)
    settings_class, run = commands[command]
    cfg = settings_mod.load(settings_class)
    configure_logging(cfg.service_name, cfg.log_level, cfg.log_format)
    configure_tracing(cfg.service_name)
    serve_metrics(cfg.metrics_addr)
    address = getattr(cfg, "grpc_addr", None)
    # A server's liveness answered while it connects to what it needs,
    # however long that takes, until its own server listens.
    with alive_while_starting(address) if isinstance(address, str) else nullcontext():
        asyncio.run(run(cfg))


class RelayConfig(Protocol):
    database_url: str
    kafka_bootstrap: str


async def relay_until_stopped(
    cfg: RelayConfig, app: Application[Any], topic: str, translate: Translate
) -> None:
    """Publishes `app`'s event store to `topic` until SIGTERM/SIGINT."""
    relay = Relay(
        app=app,
        topic=topic,
        translate=translate,
        bootstrap=cfg.kafka_bootstrap,
        conninfo=cfg.database_url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await relay.run(stop)
    finally:
        app.close()


class Worker(Protocol):
    """Background work beside a server: a projector, a timer."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


async def serve_servicer(
    cfg: Serving,
    servicer: Any,
    service: ServiceDescriptor,
    add: Callable[[Any, grpc.aio.Server], None],
    *,
    workers: Sequence[Worker] = (),
    close: Callable[[], object] = lambda: None,
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """Serves `servicer` as `service` (`add` is its generated
    add_…Servicer_to_server) with `workers` running, until SIGTERM/SIGINT and
    a graceful drain; then stops the workers and calls `close` (the
    application's or the pool's)."""
    started: list[Worker] = []
    try:
        for worker in workers:
            worker.start()
            started.append(worker)
        await serve(
            cfg,
            register=lambda server: add(servicer, server),
            service_names=[service.full_name],
            options=options,
        )
    finally:
        try:
            stop_workers(started)
        finally:
            closed = close()
            if inspect.isawaitable(closed):
                await closed


# The most the workers are given to stop, all together, once the server has
# drained: each waits for its threads with limits of its own (a consumer
# thread up to 30 s), which one after another would outlast the pod's
# terminationGracePeriodSeconds (45 s, 20 of them beyond the drain; 330 s,
# 25 beyond, for evidence).
WORKERS_STOP_S = 15.0


def stop_workers(workers: Sequence[Worker], within: float = WORKERS_STOP_S) -> list[str]:
    """Stops every worker at once, each in a thread of its own, and waits up
    to `within` seconds for them all; returns the names of those still
    stopping then (logged), which the process leaves behind as it exits
    (their threads are daemons). A worker whose stop fails is logged, and
    keeps no other from stopping."""

    def stop(worker: Worker) -> None:
        try:
            worker.stop()
        except Exception:
            log.exception("worker.stop_failed", worker=_name_of(worker))

    stopping = [
        (_name_of(w), threading.Thread(target=stop, args=(w,), daemon=True)) for w in workers
    ]
    for _, thread in stopping:
        thread.start()
    deadline = time.monotonic() + within
    for _, thread in stopping:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [name for name, thread in stopping if thread.is_alive()]
    if left:
        log.error("worker.stop_timed_out", workers=left, seconds=within)
    return left


def _name_of(worker: Worker) -> str:
    """A worker's name in logs: its own (`name`), as several of one class
    (`Periodic`: the evidence purger and sweeper) tell apart, else its
    class's."""
    name = getattr(worker, "name", None)
    return name if isinstance(name, str) and name else type(worker).__name__

"""Process entry points shared by the services: `python -m <service> <command>`
loads and validates the command's settings, sets up logging, tracing and the
metrics endpoint, and runs it; and the relay process every writer service has."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from eventsourcing.application import Application

from casemesh.platform import settings as settings_mod
from casemesh.platform.logging import configure_logging
from casemesh.platform.metrics import serve_metrics
from casemesh.platform.relay import Relay, Translate
from casemesh.platform.telemetry import configure_tracing

# command -> (its settings class, what it runs with them)
Commands = dict[str, tuple[type[Any], Callable[[Any], Coroutine[Any, Any, None]]]]


def run_command(program: str, commands: Commands, default: str) -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else default
    if command not in commands:
        print(f"usage: python -m {program} {'|'.join(commands)}", file=sys.stderr)
        raise SystemExit(2)
    settings_class, run = commands[command]
    cfg = settings_mod.load(settings_class)
    configure_logging(cfg.service_name, cfg.log_level, cfg.log_format)
    configure_tracing(cfg.service_name)
    serve_metrics(cfg.metrics_addr)
    asyncio.run(run(cfg))


async def relay_until_stopped(
    *, app: Application[Any], topic: str, translate: Translate, bootstrap: str, conninfo: str
) -> None:
    """Publishes `app`'s event store to `topic` until SIGTERM/SIGINT."""
    relay = Relay(app=app, topic=topic, translate=translate, bootstrap=bootstrap, conninfo=conninfo)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await relay.run(stop)
    finally:
        app.close()

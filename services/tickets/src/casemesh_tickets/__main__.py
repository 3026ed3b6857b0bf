"""`python -m casemesh_tickets serve|relay`: the gRPC service, or the relay
that publishes the ticket event store to Kafka."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

from casemesh.platform import settings as settings_mod
from casemesh.platform.caseindex import IndexProjector
from casemesh.platform.grpcutil import serve
from casemesh.platform.logging import configure_logging, get_logger
from casemesh.platform.relay import Relay, StreamFollower
from casemesh.platform.telemetry import configure_tracing
from casemesh.v1 import tickets_pb2, tickets_pb2_grpc
from casemesh_tickets.api import TicketServicer
from casemesh_tickets.application import Tickets, case_row, open_tickets
from casemesh_tickets.events import TOPIC, Translator
from casemesh_tickets.settings import RelaySettings, TicketsSettings

log = get_logger(__name__)


async def run_api(cfg: TicketsSettings) -> None:
    app = open_tickets(cfg.database_url, pool_size=cfg.db_pool_size)
    projector = IndexProjector(app, app.index, case_row)
    projector.start()
    servicer = TicketServicer(app)
    service_name = tickets_pb2.DESCRIPTOR.services_by_name["TicketService"].full_name
    try:
        await serve(
            address=cfg.grpc_addr,
            register=lambda s: tickets_pb2_grpc.add_TicketServiceServicer_to_server(servicer, s),
            service_names=[service_name],
        )
    finally:
        projector.stop()
        app.close()


def status_lookup(app: Tickets) -> Callable[[Any], str]:
    """The ticket's status right after a given event (public events carry it)."""
    follow = StreamFollower(app)
    return lambda domain_event: str(follow(domain_event).status)


async def run_relay(cfg: RelaySettings) -> None:
    app = open_tickets(cfg.database_url, pool_size=2)
    relay = Relay(
        app=app,
        topic=TOPIC,
        translate=Translator(status_lookup(app)),
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


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "serve":
        api_cfg = settings_mod.load(TicketsSettings)
        configure_logging(api_cfg.service_name, api_cfg.log_level, api_cfg.log_format)
        configure_tracing(api_cfg.service_name)
        asyncio.run(run_api(api_cfg))
    elif command == "relay":
        relay_cfg = settings_mod.load(RelaySettings)
        configure_logging(relay_cfg.service_name, relay_cfg.log_level, relay_cfg.log_format)
        configure_tracing(relay_cfg.service_name)
        asyncio.run(run_relay(relay_cfg))
    else:
        print("usage: python -m casemesh_tickets serve|relay", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()

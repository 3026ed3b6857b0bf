"""`python -m casemesh_tickets serve|relay`: the gRPC service, or the relay
that publishes the ticket event store to Kafka."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from casemesh.platform.casemain import serve_case_api
from casemesh.platform.clock import service_clock
from casemesh.platform.entrypoint import relay_until_stopped, run_command
from casemesh.platform.logging import get_logger
from casemesh.platform.personal import open_sealer
from casemesh.platform.relay import StreamFollower
from casemesh.v1 import tickets_pb2, tickets_pb2_grpc
from casemesh_tickets.api import TicketServicer
from casemesh_tickets.application import Tickets, case_row, open_tickets
from casemesh_tickets.events import TOPIC, Translator
from casemesh_tickets.settings import RelaySettings, TicketsSettings

log = get_logger(__name__)


async def run_api(cfg: TicketsSettings) -> None:
    # The application is synchronous and called in worker threads (the
    # servicer's calls, the index projector, the timer), so a key look-up on
    # a cache miss blocks one of those threads, never the event loop.
    with open_sealer(cfg) as personal:
        app = open_tickets(
            cfg.database_url,
            pool_size=cfg.db_pool_size,
            clock=service_clock(cfg.clock_offset_file),
            auto_close_after=timedelta(hours=cfg.ticket_auto_close_hours),
            sealer=personal,
        )
        await serve_case_api(
            cfg,
            TicketServicer(app),
            tickets_pb2.DESCRIPTOR.services_by_name["TicketService"],
            tickets_pb2_grpc.add_TicketServiceServicer_to_server,
            index_row=case_row,
            timers="ticket_timers",
        )


def status_lookup(app: Tickets) -> Callable[[Any], str]:
    """The ticket's status right after a given event (public events carry it)."""
    follow = StreamFollower(app)
    return lambda domain_event: str(follow(domain_event).status)


async def run_relay(cfg: RelaySettings) -> None:
    # Events are read with their personal fields left sealed, so what goes
    # onto the topic carries tokens; consumers reveal them (`reveal_message`).
    # The relay translates in a worker thread (`Relay`), off the event loop.
    with open_sealer(cfg) as personal:
        app = open_tickets(cfg.database_url, pool_size=2, sealer=personal, reveal_personal=False)
        await relay_until_stopped(cfg, app, TOPIC, Translator(status_lookup(app)))


if __name__ == "__main__":
    run_command(
        __package__, {"serve": (TicketsSettings, run_api), "relay": (RelaySettings, run_relay)}
    )

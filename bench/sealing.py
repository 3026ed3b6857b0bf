"""CreateTicket with the requester's personal fields sealed against the same
calls with sealing off, through the tickets gRPC service, with fsync on.

Each side is the tickets service in a process of its own, served as
`casemesh_tickets serve` serves it (`serve_case_api`: the gateway's token
checked on every call, the case index projector and the deadline timer
running beside it), on an event-store database of its own on the writer's
durable cluster. The two differ only in the application: one is given a
`Sealer` (`open_sealer`, as the service opens it, on a key database in a
durable cluster of its own, as production's `keys-db` is), the other
`sealer=None`. Sealing cannot be turned off in the service; the bench opens
the application itself to have the reference.

Two kinds of load, each at 1 and 8 calls in flight, measured alternately
(A-B-A-B) against the same load on the unsealed service:

- a new requester on every call: each ticket needs its person's first data
  key, made and stored in the key database (the worst case);
- returning requesters (one a caller): their keys are in memory after their
  first ticket, so sealing costs only the encryption (and the index
  projector's decryption of what it reads back).

Either way each ticket is sealed under a case key of its own too (for its
retention), taken from spares the service makes 128 at a time in the
background.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

from bench.gateway import SPAN_S, load, ready
from bench.report import Goal, interleaved, row
from casemesh.platform.casemain import serve_case_api
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    new_signing_key,
    verify_key_of,
)
from casemesh.platform.logging import configure_logging
from casemesh.platform.personal import Sealer, create_schema, open_sealer
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_tickets.api import TicketServicer
from casemesh_tickets.application import case_row, open_tickets
from casemesh_tickets.settings import TicketsSettings

TICKETS = pb.DESCRIPTOR.services_by_name["TicketService"]
USER = frozenset({"user"})
# Runs of each side (medians): sealing's cost is a few milliseconds a call,
# of the order of what a busy machine adds.
ROUNDS = 3


def serve(settings: dict[str, Any], sealed: bool) -> None:
    """The tickets service, sealing or not, until SIGTERM."""
    cfg = TicketsSettings(**settings)
    configure_logging("bench", "warning", "console")

    async def main() -> None:
        with ExitStack() as stack:
            sealer: Sealer | None = stack.enter_context(open_sealer(cfg)) if sealed else None
            app = open_tickets(cfg.database_url, pool_size=cfg.db_pool_size, sealer=sealer)
            await serve_case_api(
                cfg,
                TicketServicer(app),
                TICKETS,
                pb_grpc.add_TicketServiceServicer_to_server,
                index_row=case_row,
                timers="ticket_timers",
            )

    asyncio.run(main())


@contextmanager
def tickets_service(settings: dict[str, Any], sealed: bool) -> Iterator[None]:
    spawn = multiprocessing.get_context("spawn")
    child = spawn.Process(target=serve, args=(settings, sealed), daemon=True)
    child.start()
    try:
        yield
    finally:
        child.terminate()  # SIGTERM: the service drains and closes
        child.join(30)
        if child.is_alive():
            child.kill()


class Callers:
    """Who the calls come from: a new requester on every call, or one
    returning requester per caller. Tokens are signed before a run (a
    gateway's work, not the service's), and more on the way if it runs out."""

    def __init__(self, key: str, fresh: bool) -> None:
        self.signer = InternalTokenSigner(key)
        self.fresh = fresh
        self.run = uuid.uuid4().hex[:8]
        self._signed: list[tuple[tuple[str, str]]] = []

    def _metadata(self, person: str) -> tuple[tuple[str, str]]:
        return self.signer.metadata(Identity(person, USER), TICKETS.full_name)

    def prepare(self, count: int) -> None:
        """Signs `count` new requesters' tokens ahead (none for returning ones)."""
        if not self.fresh:
            return
        run = uuid.uuid4().hex[:8]
        self._signed = [self._metadata(f"bench-{run}-{i}") for i in range(count)]

    def metadata(self, caller: int) -> tuple[tuple[str, str]]:
        if not self.fresh:
            return self._metadata(f"bench-{self.run}-caller-{caller}")
        if self._signed:
            return self._signed.pop()
        return self._metadata(f"bench-{uuid.uuid4().hex}")


def measure(target: str, in_flight: int, callers: Callers, ahead: int) -> float:
    callers.prepare(ahead)
    return asyncio.run(load(target, in_flight, callers.metadata))


def compare(targets: dict[bool, str], in_flight: int, callers: Callers, ahead: int) -> list[str]:
    """The sealed service (`targets[True]`) against the other, A-B-A-B: the
    goal's row, and each run's figure in order (how far apart they are says
    how noisy the machine was)."""
    runs: dict[bool, list[float]] = {True: [], False: []}

    def side(sealed: bool) -> float:
        runs[sealed].append(measure(targets[sealed], in_flight, callers, ahead))
        return runs[sealed][-1]

    sealed_rate, unsealed_rate = interleaved(partial(side, True), partial(side, False), ROUNDS)
    goal = Goal(f"CreateTicket sealed, {in_flight} in flight", "/s", 0.9)
    each = {sealed: ", ".join(f"{r:.0f}" for r in rates) for sealed, rates in runs.items()}
    return [
        row(goal, sealed_rate, unsealed_rate, "the same, sealing off"),
        f"      each run /s: sealed {each[True]}; sealing off {each[False]}",
    ]


def run(events: LocalPostgres, keys: LocalPostgres, bootstrap: str, ahead: int = 4000) -> None:
    """`events` and `keys`: started durable clusters; `bootstrap`: a started
    Kafka broker (each service follows the erasures topic, as in
    production). `ahead`: new requesters' tokens signed before each run
    (more than a run uses, if possible)."""
    events.create_database("bench_sealed")
    events.create_database("bench_unsealed")
    keys.create_database("casemesh_keys")
    create_schema(keys.dsn("casemesh_keys"))
    key = new_signing_key()
    common = {
        "internal_verify_key": verify_key_of(key),
        "keys_database_url": keys.dsn("casemesh_keys"),
        "kafka_bootstrap": bootstrap,
        "master_keys": f"bench:{new_master_key()}",
        "log_level": "warning",
        "log_format": "console",
        "shutdown_grace_seconds": 1.0,
    }
    targets = {}
    with ExitStack() as stack:
        for sealed, dbname in ((True, "bench_sealed"), (False, "bench_unsealed")):
            targets[sealed] = f"127.0.0.1:{free_port()}"
            settings = {**common, "grpc_addr": targets[sealed], "database_url": events.dsn(dbname)}
            stack.enter_context(tickets_service(settings, sealed))
        for target in targets.values():
            ready(target, Callers(key, fresh=False).metadata(0))
        lines = []
        for fresh in (True, False):
            lines.append("  a new requester on every call:" if fresh else "  returning requesters:")
            for in_flight in (1, 8):
                lines += compare(targets, in_flight, Callers(key, fresh), ahead)
    print(
        "\nCreateTicket, personal data sealed against not (fsync on; the tickets gRPC"
        f" service in a process of its own; {SPAN_S:g} s a run, the median of {ROUNDS},"
        " A-B-A-B…)"
    )
    print("\n".join(lines))

"""What the entry point of a case service with a relay (tickets, appeals)
does alike: `python -m <program> serve|relay`, serving by default, and the
workers the API runs beside it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from casemesh.platform.caseindex import CaseRow, IndexProjector
from casemesh.platform.entrypoint import run_command, serve_servicer
from casemesh.platform.timers import case_timer

# A command: its settings class, and what runs with them.
Command = tuple[type[Any], Callable[[Any], Coroutine[Any, Any, None]]]


def run_case_service(program: str, serve: Command, relay: Command) -> None:
    run_command(program, {"serve": serve, "relay": relay}, default="serve")


class CaseServicer(Protocol):
    app: Any  # the case application it serves


async def serve_case_api(
    cfg: Any,
    servicer: CaseServicer,
    service: ServiceDescriptor,
    add: Callable[[Any, grpc.aio.Server], None],
    *,
    index_row: Callable[[Any], CaseRow],
    timers: str,
) -> None:
    """Serves `servicer` (as `serve_servicer` does) with its application's
    case index, fed with `index_row(case)`, and its deadline timer, kept in
    the table `timers`; closes the application at the end."""
    app = servicer.app
    await serve_servicer(
        cfg,
        servicer,
        service,
        add,
        workers=[
            IndexProjector(app, app.index, index_row),
            case_timer(app, cfg.database_url, timers),
        ],
        close=app.close,
    )

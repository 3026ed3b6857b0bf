"""What the entry point of a case service with a relay (tickets, appeals)
does alike when it serves its API: the workers the API runs beside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from casemesh.platform.caseindex import CaseRow, IndexProjector
from casemesh.platform.cases import CaseApplication
from casemesh.platform.entrypoint import serve_servicer
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.grpcutil import Serving
from casemesh.platform.timers import case_timer


class CaseServing(Serving, Protocol):
    """The settings a case service's API is served with: a gRPC service's,
    the database its events (and deadline timers) are kept in, and the Kafka
    it hears erasures from."""

    database_url: str
    service_name: str
    kafka_bootstrap: str


class CaseServicer(Protocol):
    """A servicer of one case application."""

    @property
    def app(self) -> CaseApplication[Any]: ...


async def serve_case_api(
    cfg: CaseServing,
    servicer: CaseServicer,
    service: ServiceDescriptor,
    add: Callable[[Any, grpc.aio.Server], None],
    *,
    index_row: Callable[[Any], CaseRow],
    timers: str,
) -> None:
    """Serves `servicer` (as `serve_servicer` does) with its application's
    case index, fed with `index_row(case)`, its deadline timer, kept in the
    table `timers`, and its follower of erasures (`forgetting`); closes the
    application at the end."""
    app = servicer.app
    await serve_servicer(
        cfg,
        servicer,
        service,
        add,
        workers=[
            IndexProjector(app, app.index, index_row),
            case_timer(app, cfg.database_url, timers),
            ErasureFollower(
                cfg,
                lambda person: app.forget_person(person, index_row),
                app.forget_keys,
                forget_late=lambda person: app.forget_person(person, index_row, lately=False),
            ),
        ],
        close=app.close,
    )

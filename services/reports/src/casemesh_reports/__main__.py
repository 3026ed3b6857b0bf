"""`python -m casemesh_reports serve|relay|consume`: the gRPC service (with its
read model and retention timer), the relay that publishes to Kafka, or the
consumer of appeals of report decisions."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from prometheus_client import REGISTRY

from casemesh.platform.caseindex import Projector
from casemesh.platform.clock import service_clock
from casemesh.platform.consuming import start_broker, watch_lag
from casemesh.platform.entrypoint import relay_until_stopped, run_command, serve_servicer
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.personal import Sealer, open_sealer
from casemesh.platform.relay import StreamFollower
from casemesh.platform.timers import case_timer
from casemesh.v1 import reports_pb2, reports_pb2_grpc
from casemesh_reports.api import ReportServicer, index_doc
from casemesh_reports.application import Reports, open_reports
from casemesh_reports.consumer import APPEALS_TOPIC, build_broker
from casemesh_reports.events import TOPIC, Translator
from casemesh_reports.metrics import TransparencyCollector
from casemesh_reports.policy import Misuse, ReportsPolicy, load_taxonomy
from casemesh_reports.settings import (
    ConsumerSettings,
    PolicySettings,
    RelaySettings,
    ReportsSettings,
)

TIMERS = "report_timers"


def open_app(
    cfg: PolicySettings, pool_size: int, personal: Sealer, *, reveal_personal: bool = True
) -> Reports:
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(cfg.reports_taxonomy_file),
        misuse=Misuse(
            warn_after=cfg.reports_misuse_warn_after,
            suspend_after=cfg.reports_misuse_suspend_after,
            window_days=cfg.reports_misuse_window_days,
            suspension_days=cfg.reports_suspension_days,
        ),
        appeal_window_months=cfg.reports_appeal_window_months,
    )
    return open_reports(
        cfg.database_url,
        clock=service_clock(cfg.clock_offset_file),
        policy=policy,
        link_hosts=tuple(h.lower() for h in cfg.reports_link_hosts),
        pool_size=pool_size,
        sealer=personal,
        reveal_personal=reveal_personal,
    )


async def run_api(cfg: ReportsSettings) -> None:
    # The application is synchronous and called in worker threads (the
    # servicer's calls, the view's projector), so a key look-up on a cache
    # miss blocks one of those threads, never the event loop. The view keeps
    # what the application reads: personal text revealed, as a case index does.
    with open_sealer(cfg) as personal:
        app = open_app(cfg, cfg.db_pool_size, personal)

        def project(aggregate: Any, tracking: Any) -> None:
            app.view.apply(aggregate, tracking, index_doc(aggregate))

        REGISTRY.register(TransparencyCollector(app.view))
        await serve_servicer(
            cfg,
            ReportServicer(app),
            reports_pb2.DESCRIPTOR.services_by_name["ReportService"],
            reports_pb2_grpc.add_ReportServiceServicer_to_server,
            workers=[
                Projector(app, app.view, project, name="reports_view"),
                case_timer(app, cfg.database_url, TIMERS),
                ErasureFollower(
                    cfg,
                    lambda person: app.forget_in_view(person, index_doc),
                    app.forget_keys,
                    forget_late=lambda person: app.forget_in_view(person, index_doc, lately=False),
                ),
            ],
            close=app.close,
        )


async def run_relay(cfg: RelaySettings) -> None:
    # Events are read with their personal fields left sealed, so what goes
    # onto the topic carries tokens; consumers reveal them (`reveal_message`).
    # The relay translates in a worker thread (`Relay`), off the event loop.
    with open_sealer(cfg) as personal:
        app = open_app(cfg, 4, personal, reveal_personal=False)
        await relay_until_stopped(cfg, app, TOPIC, Translator(StreamFollower(app)))


async def run_consumer(cfg: ConsumerSettings) -> None:
    # The appeals events it reads carry no personal text it needs (ids and
    # outcomes), but what it saves may: a lifted suspension repeats the
    # reporter's contact, sealed again. It works in worker threads.
    with open_sealer(cfg) as personal:
        await consume(cfg, open_app(cfg, 4, personal))


async def consume(cfg: ConsumerSettings, app: Reports) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # What it saves may seal a reporter's contact again: it drops an erased
    # person's keys at once, lest it reveal and seal them anew.
    erasures = ErasureFollower(cfg, None, app.forget_keys)
    erasures.start()
    broker = await start_broker(
        lambda: build_broker(app, cfg.kafka_bootstrap, cfg.consumer_group),
        stop,
        "reports_consumer",
    )
    try:
        await watch_lag(cfg.kafka_bootstrap, cfg.consumer_group, [APPEALS_TOPIC], stop)
    finally:
        if broker is not None:
            await broker.stop()
        await asyncio.to_thread(erasures.stop)
        app.close()


if __name__ == "__main__":
    run_command(
        __package__,
        {
            "serve": (ReportsSettings, run_api),
            "relay": (RelaySettings, run_relay),
            "consume": (ConsumerSettings, run_consumer),
        },
    )

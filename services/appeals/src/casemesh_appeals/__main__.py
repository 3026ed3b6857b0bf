"""`python -m casemesh_appeals serve|relay`: the gRPC service (with its case
index and deadline timer), or the relay that publishes to Kafka."""

from __future__ import annotations

import asyncio
import signal
import sys

from casemesh.platform import settings as settings_mod
from casemesh.platform.caseindex import IndexProjector
from casemesh.platform.clock import clock_from_setting
from casemesh.platform.grpcutil import serve
from casemesh.platform.logging import configure_logging
from casemesh.platform.relay import Relay, StreamFollower
from casemesh.platform.telemetry import configure_tracing
from casemesh.platform.timers import Timer
from casemesh.v1 import appeals_pb2, appeals_pb2_grpc
from casemesh_appeals import policy
from casemesh_appeals.api import AppealServicer, index_doc
from casemesh_appeals.application import RowSource, open_appeals
from casemesh_appeals.events import TOPIC, Translator
from casemesh_appeals.settings import AppealsSettings, RelaySettings


async def run_api(cfg: AppealsSettings) -> None:
    policies = policy.load(cfg.appeals_policy_file)
    if cfg.default_jurisdiction not in policies:
        raise SystemExit(f"CASEMESH_DEFAULT_JURISDICTION: unknown {cfg.default_jurisdiction!r}")
    app = open_appeals(
        cfg.database_url,
        clock=clock_from_setting(cfg.clock_offset_file),
        policies=policies,
        default_jurisdiction=cfg.default_jurisdiction,
        pool_size=cfg.db_pool_size,
    )
    projector = IndexProjector(app, app.index, RowSource(index_doc))
    timer = Timer(
        app=app, table=app.timers, clock=app.clock, deadlines_of=app.deadlines_of, fire=app.fire
    )
    projector.start()
    timer.start()
    servicer = AppealServicer(app)
    service = appeals_pb2.DESCRIPTOR.services_by_name["AppealService"].full_name
    try:
        await serve(
            address=cfg.grpc_addr,
            register=lambda s: appeals_pb2_grpc.add_AppealServiceServicer_to_server(servicer, s),
            service_names=[service],
        )
    finally:
        timer.stop()
        projector.stop()
        app.close()


async def run_relay(cfg: RelaySettings) -> None:
    app = open_appeals(
        cfg.database_url,
        clock=clock_from_setting(cfg.clock_offset_file),
        policies=policy.load(cfg.appeals_policy_file),
        pool_size=4,
    )
    relay = Relay(
        app=app,
        topic=TOPIC,
        translate=Translator(StreamFollower(app)),
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
        api_cfg = settings_mod.load(AppealsSettings)
        configure_logging(api_cfg.service_name, api_cfg.log_level, api_cfg.log_format)
        configure_tracing(api_cfg.service_name)
        asyncio.run(run_api(api_cfg))
    elif command == "relay":
        relay_cfg = settings_mod.load(RelaySettings)
        configure_logging(relay_cfg.service_name, relay_cfg.log_level, relay_cfg.log_format)
        configure_tracing(relay_cfg.service_name)
        asyncio.run(run_relay(relay_cfg))
    else:
        print("usage: python -m casemesh_appeals serve|relay", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()

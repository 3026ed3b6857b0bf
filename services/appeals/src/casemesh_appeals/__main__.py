"""`python -m casemesh_appeals serve|relay`: the gRPC service (with its case
index and deadline timer), or the relay that publishes to Kafka."""

from __future__ import annotations

from casemesh.platform.casemain import serve_case_api
from casemesh.platform.clock import service_clock
from casemesh.platform.entrypoint import relay_until_stopped, run_command
from casemesh.platform.personal import open_sealer
from casemesh.platform.relay import StreamFollower
from casemesh.v1 import appeals_pb2, appeals_pb2_grpc
from casemesh_appeals import policy
from casemesh_appeals.api import AppealServicer, index_doc
from casemesh_appeals.application import RowSource, open_appeals
from casemesh_appeals.events import TOPIC, Translator
from casemesh_appeals.settings import AppealsSettings, RelaySettings

SERVICE = appeals_pb2.DESCRIPTOR.services_by_name["AppealService"]
TIMERS = "appeal_timers"


async def run_api(cfg: AppealsSettings) -> None:
    policies = policy.load(cfg.appeals_policy_file)
    if cfg.default_jurisdiction not in policies:
        raise SystemExit(f"CASEMESH_DEFAULT_JURISDICTION: unknown {cfg.default_jurisdiction!r}")
    # The application runs in worker threads (the servicer's calls, the index
    # projector, the deadline timer): a key look-up that misses memory blocks
    # one of them, not the event loop.
    with open_sealer(cfg) as personal:
        app = open_appeals(
            cfg.database_url,
            clock=service_clock(cfg.clock_offset_file),
            policies=policies,
            default_jurisdiction=cfg.default_jurisdiction,
            pool_size=cfg.db_pool_size,
            sealer=personal,
        )
        serve = appeals_pb2_grpc.add_AppealServiceServicer_to_server
        await serve_case_api(
            cfg, AppealServicer(app), SERVICE, serve, index_row=RowSource(index_doc), timers=TIMERS
        )


async def run_relay(cfg: RelaySettings) -> None:
    # The relay reads the personal fields as the tokens they are stored as,
    # so casemesh.appeals.v1 carries tokens too (consumers `reveal_message`).
    with open_sealer(cfg) as personal:
        app = open_appeals(
            cfg.database_url,
            clock=service_clock(cfg.clock_offset_file),
            policies=policy.load(cfg.appeals_policy_file),
            pool_size=4,
            sealer=personal,
            reveal_personal=False,
        )
        await relay_until_stopped(cfg, app, TOPIC, Translator(StreamFollower(app)))


if __name__ == "__main__":
    run_command(
        __package__, {"serve": (AppealsSettings, run_api), "relay": (RelaySettings, run_relay)}
    )

"""`python -m casemesh_privacy serve`: the privacy service's gRPC service
(erasures) and the publisher of the erasures it records."""

from __future__ import annotations

import asyncio
import contextlib

from casemesh.platform.clock import clock_from_setting
from casemesh.platform.entrypoint import run_command
from casemesh.platform.grpcutil import serve
from casemesh.platform.outbox import OutboxPublisher
from casemesh.platform.personal import open_key_pool
from casemesh.platform.personal.postgres import ERASURES
from casemesh.v1 import privacy_pb2, privacy_pb2_grpc
from casemesh_privacy.api import PrivacyServicer
from casemesh_privacy.settings import PrivacySettings


async def run(cfg: PrivacySettings) -> None:
    keys = open_key_pool(cfg.keys_database_url, ("personal_keys", "personal_erasures"))
    stop = asyncio.Event()
    publisher = OutboxPublisher(
        conninfo=cfg.keys_database_url,
        bootstrap=cfg.kafka_bootstrap,
        outbox=ERASURES,
        client_id="privacy-outbox",
    )
    # Erasures are recorded while Kafka is away, and published when it is back.
    publishing = asyncio.create_task(publisher.run(stop), name="outbox")
    servicer = PrivacyServicer(keys, clock_from_setting(cfg.clock_offset_file))
    service = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"].full_name
    try:
        await serve(
            cfg,
            register=lambda s: privacy_pb2_grpc.add_PrivacyServiceServicer_to_server(servicer, s),
            service_names=[service],
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(publishing, timeout=15)
        keys.close()


if __name__ == "__main__":
    run_command(__package__, {"serve": (PrivacySettings, run)})

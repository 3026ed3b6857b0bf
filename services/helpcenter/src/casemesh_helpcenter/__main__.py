"""`python -m casemesh_helpcenter serve`: the help centre's gRPC service (it
loads the starter knowledge base into an empty database), the publishers of
its verification codes and verified requests, its follower of erasures, and
its retention timer (what people typed and their numbers, forgotten after
their period). It reaches the shared key database: the phone numbers it
publishes are sealed under the user's key (a verified change's once
`seal_phone_changes` is on)."""

from __future__ import annotations

import asyncio
from functools import partial

import psycopg

from casemesh.platform.clock import clock_from_setting
from casemesh.platform.entrypoint import run_command, serve_servicer
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.logging import get_logger
from casemesh.platform.outbox import OutboxPublisher
from casemesh.platform.personal import AsyncSealer, open_sealer
from casemesh.platform.pools import async_pool, wait_for_database, with_keepalives
from casemesh.v1 import helpcenter_pb2, helpcenter_pb2_grpc
from casemesh_helpcenter import erasures, phone, search, store
from casemesh_helpcenter.api import HelpServicer
from casemesh_helpcenter.application import HelpCenter
from casemesh_helpcenter.retention import RetentionTimer
from casemesh_helpcenter.settings import HelpSettings

log = get_logger(__name__)


async def run(cfg: HelpSettings) -> None:
    # Loaded by the first query otherwise, blocking every call for a second.
    await asyncio.to_thread(search.warm)
    wait_for_database(cfg.database_url, database="helpcenter")
    # Keepalives: a start the network cut off mid-way (the schema, the seed,
    # a re-index) fails within a minute and is tried again, not left hanging
    # while its liveness answers.
    async with await psycopg.AsyncConnection.connect(
        with_keepalives(cfg.database_url), autocommit=True
    ) as conn:
        await store.create_schema(conn, phone.SCHEMA)
        seeded = await store.seed(conn)
        if seeded:
            log.info("helpcenter.seeded", articles=seeded)
    # The phone numbers it publishes are sealed under the user's key.
    # Opened before SIGTERM is taken over: a start waiting for the key
    # database ends at once when told to.
    personal = AsyncSealer(open_sealer(cfg))
    pool = async_pool(cfg.database_url, min_size=2, max_size=cfg.db_pool_size)
    await pool.open()
    clock = clock_from_setting(cfg.clock_offset_file)
    stop = asyncio.Event()
    publishers = [
        asyncio.create_task(
            OutboxPublisher(
                conninfo=cfg.database_url, bootstrap=cfg.kafka_bootstrap, outbox=o, client_id=name
            ).run(stop),
            name=name,
        )
        for name, o in (("helpcenter-codes", phone.CODES), ("helpcenter-requests", phone.REQUESTS))
    ]
    # What people typed, and their numbers, forgotten once past their period.
    retention = asyncio.create_task(
        RetentionTimer(cfg.database_url, clock).run(stop), name="helpcenter-retention"
    )

    async def close() -> None:
        stop.set()
        await asyncio.gather(*publishers, retention, return_exceptions=True)
        await pool.close()
        await personal.aclose()

    await serve_servicer(
        cfg,
        HelpServicer(HelpCenter(pool, clock, personal, seal_phone_changes=cfg.seal_phone_changes)),
        helpcenter_pb2.DESCRIPTOR.services_by_name["HelpCenterService"],
        helpcenter_pb2_grpc.add_HelpCenterServiceServicer_to_server,
        # What an erased person typed, and their numbers, forgotten; their
        # keys dropped from this process's memory.
        workers=[
            ErasureFollower(
                cfg,
                None,
                personal.forget,
                forget_at=partial(erasures.forget_person, cfg.database_url),
            )
        ],
        close=close,
    )


if __name__ == "__main__":
    run_command(__package__, {"serve": (HelpSettings, run)})

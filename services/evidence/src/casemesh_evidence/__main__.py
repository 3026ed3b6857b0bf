"""`python -m casemesh_evidence`: the evidence service."""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import partial
from pathlib import Path

from casemesh.platform.clock import clock_from_setting
from casemesh.platform.consuming import HeardUntil
from casemesh.platform.entrypoint import run_command, serve_servicer
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.periodic import Periodic
from casemesh.platform.pools import async_pool, wait_for_database
from casemesh.v1 import evidence_pb2, evidence_pb2_grpc
from casemesh_evidence.api import EvidenceServicer
from casemesh_evidence.application import (
    MAX_CHUNK,
    SWEEP_EVERY,
    EvidenceLocker,
    forget_person,
)
from casemesh_evidence.lifecycle import CASE_TOPICS, GROUP, CaseFollower, Purger
from casemesh_evidence.settings import EvidenceSettings
from casemesh_evidence.store import BlobStore, LocalBlobStore, S3BlobStore


def open_store(cfg: EvidenceSettings) -> tuple[BlobStore, Path]:
    if cfg.evidence_store == "s3":
        store = S3BlobStore(
            bucket=cfg.s3_bucket,
            endpoint_url=cfg.s3_endpoint_url,
            region=cfg.s3_region,
            access_key_id=cfg.s3_access_key_id,
            secret_access_key=cfg.s3_secret_access_key.get_secret_value(),
        )
        return store, Path(cfg.evidence_dir) / "incoming"
    local = LocalBlobStore(Path(cfg.evidence_dir))
    return local, local.incoming


async def run(cfg: EvidenceSettings) -> None:
    wait_for_database(cfg.database_url, database="evidence")
    pool = async_pool(cfg.database_url, min_size=1, max_size=8)
    await pool.open()
    store, incoming = open_store(cfg)
    clock = clock_from_setting(cfg.clock_offset_file)
    locker = EvidenceLocker(
        pool=pool,
        store=store,
        limits=cfg.limits(),
        incoming=incoming,
        clock=clock,
        spool_budget=cfg.evidence_spool_bytes,
        spool_per_owner=cfg.evidence_spool_bytes_per_person,
    )
    await locker.create_schema()
    # Not awaited: the store's part may wait on a bucket out of reach
    # (boto's retries), which must not hold readiness; a daemon thread, so
    # it does not hold an exit either.
    threading.Thread(target=locker.remove_stale_spools, name="first-sweep", daemon=True).start()
    sweeping = Periodic(
        "spool-sweeper",
        SWEEP_EVERY.total_seconds(),
        locker.remove_stale_spools,
        failed="evidence.spool_sweep_failed",
        join_s=5,
    )
    # Beside the API: the cases' files followed (which cases hold them, and
    # where those stand), erased people's file names forgotten, and the
    # files no case needs any more deleted.
    grace = timedelta(seconds=cfg.evidence_deletion_grace_seconds)
    following = CaseFollower(cfg.kafka_bootstrap, cfg.database_url, clock)
    forgetting = ErasureFollower(
        cfg, None, forget_at=partial(forget_person, cfg.database_url, clock)
    )
    purging = Purger(
        cfg.database_url,
        store,
        clock,
        grace,
        cfg.evidence_purge_interval_seconds,
        HeardUntil(cfg.kafka_bootstrap, GROUP, CASE_TOPICS),
    )
    await serve_servicer(
        cfg,
        EvidenceServicer(locker),
        evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"],
        evidence_pb2_grpc.add_EvidenceServiceServicer_to_server,
        workers=[following, forgetting, purging, sweeping],
        close=pool.close,
        options=[("grpc.max_receive_message_length", MAX_CHUNK + 64 * 1024)],
    )


if __name__ == "__main__":
    run_command(__package__, {"serve": (EvidenceSettings, run)})

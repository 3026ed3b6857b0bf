"""`python -m casemesh_evidence`: the evidence service."""

from __future__ import annotations

from pathlib import Path

from casemesh.platform.entrypoint import run_command
from casemesh.platform.grpcutil import serve
from casemesh.platform.pools import async_pool
from casemesh.v1 import evidence_pb2, evidence_pb2_grpc
from casemesh_evidence.api import EvidenceServicer
from casemesh_evidence.application import MAX_CHUNK, EvidenceLocker
from casemesh_evidence.settings import EvidenceSettings
from casemesh_evidence.store import BlobStore, LocalBlobStore, S3BlobStore


def open_store(cfg: EvidenceSettings) -> tuple[BlobStore, Path]:
    if cfg.evidence_store == "s3":
        store = S3BlobStore(
            bucket=cfg.s3_bucket,
            endpoint_url=cfg.s3_endpoint_url,
            region=cfg.s3_region,
            access_key_id=cfg.s3_access_key_id,
            secret_access_key=cfg.s3_secret_access_key,
        )
        return store, Path(cfg.evidence_dir) / "incoming"
    local = LocalBlobStore(Path(cfg.evidence_dir))
    return local, local.incoming


async def run(cfg: EvidenceSettings) -> None:
    pool = async_pool(cfg.database_url, min_size=1, max_size=8)
    await pool.open()
    store, incoming = open_store(cfg)
    locker = EvidenceLocker(pool=pool, store=store, limits=cfg.limits(), incoming=incoming)
    await locker.create_schema()
    servicer = EvidenceServicer(locker)
    service = evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name
    try:
        await serve(
            cfg,
            register=lambda s: evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(servicer, s),
            service_names=[service],
            options=[("grpc.max_receive_message_length", MAX_CHUNK + 64 * 1024)],
        )
    finally:
        await pool.close()


def main() -> None:
    run_command("casemesh_evidence", {"serve": (EvidenceSettings, run)}, default="serve")


if __name__ == "__main__":
    main()

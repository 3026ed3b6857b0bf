"""Settings of the evidence service (environment variables CASEMESH_*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


class EvidenceSettings(PostgresSettings, KafkaSettings, InternalServiceSettings):
    service_name: str = "evidence"
    grpc_addr: str = "127.0.0.1:50062"

    # Where the bytes go: a local directory, or an S3-compatible bucket.
    evidence_store: Literal["local", "s3"] = "local"
    evidence_dir: str = ".run/evidence"
    s3_bucket: str = ""
    s3_endpoint_url: str = ""  # empty: the provider's default endpoint
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")

    # A file no case needs any more is deleted this long after it became so
    # (and still is): cases that took it up meanwhile may be heard late.
    evidence_deletion_grace_seconds: float = Field(3 * 86400, ge=0)
    # How often the purger looks for files to delete.
    evidence_purge_interval_seconds: float = Field(30.0, gt=0)
    # Tests move the service's time forward through this file.
    clock_offset_file: str = ""

    # The bytes all uploads under way may spool at once (in
    # CASEMESH_EVIDENCE_DIR/incoming): keep it below that volume's size. An
    # upload past it is refused RESOURCE_EXHAUSTED, to be retried.
    evidence_spool_bytes: int = Field(3 << 30, gt=0)
    # What one person's uploads under way on a replica may hold of the spool
    # budget at once (each its kind's largest size: a video and a few
    # screenshots): past it they are refused RESOURCE_EXHAUSTED
    # (UPLOADS_IN_FLIGHT), to be retried, so that one account's stalled
    # videos cannot hold the whole budget.
    evidence_spool_bytes_per_person: int = Field(640 << 20, gt=0)
    # Size limits per kind of file, in bytes.
    max_image_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_video_bytes: int = Field(500 * 1024 * 1024, gt=0)
    max_pdf_bytes: int = Field(20 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> EvidenceSettings:
        if self.evidence_store == "s3" and not self.s3_bucket:
            raise ValueError("CASEMESH_S3_BUCKET is required when CASEMESH_EVIDENCE_STORE=s3")
        return self

    @model_validator(mode="after")
    def _limits_within_spool(self) -> EvidenceSettings:
        # An upload holds its kind's whole limit of the spool budget, and of
        # its person's share of it, once its first bytes say what it is: a
        # limit past either would refuse every upload of that kind, for ever.
        room = min(self.evidence_spool_bytes, self.evidence_spool_bytes_per_person)
        over = [
            f"CASEMESH_MAX_{kind.upper()}_BYTES ({limit})"
            for kind, limit in self.limits().items()
            if limit > room
        ]
        if over:
            raise ValueError(
                f"{', '.join(over)} must be at most CASEMESH_EVIDENCE_SPOOL_BYTES"
                f" ({self.evidence_spool_bytes}) and CASEMESH_EVIDENCE_SPOOL_BYTES_PER_PERSON"
                f" ({self.evidence_spool_bytes_per_person}): an upload holds its kind's limit"
                " of both, so a larger one could never be taken in"
            )
        return self

    def limits(self) -> dict[str, int]:
        return {
            "image": self.max_image_bytes,
            "video": self.max_video_bytes,
            "pdf": self.max_pdf_bytes,
        }

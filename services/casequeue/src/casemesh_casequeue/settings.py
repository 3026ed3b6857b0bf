"""Settings of the case queue (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


class QueueSettings(PostgresSettings, KafkaSettings, InternalServiceSettings):
    service_name: str = "casequeue"
    grpc_addr: str = "127.0.0.1:50065"
    # The consumer group reading the case topics (a rebuild adds a generation).
    consumer_group: str = "casemesh-casequeue"
    # Optional JSON file replacing the built-in service levels (sla.json).
    sla_policy_file: str = ""
    db_pool_size: int = Field(10, ge=2)
    # How far behind now the SLA timer reads the clocks: an event stamped before
    # a due time may still be on its way from its relay.
    sla_grace_seconds: float = Field(30.0, ge=0)
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""


class RebuildSettings(PostgresSettings):
    service_name: str = "casequeue-rebuild"

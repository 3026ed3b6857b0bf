"""Settings of the tickets service (environment variables CASEMESH_*)."""

from __future__ import annotations

from casemesh.platform.settings import KafkaSettings, PostgresSettings


class TicketsSettings(PostgresSettings):
    service_name: str = "tickets"
    grpc_addr: str = "127.0.0.1:50061"
    db_pool_size: int = 10


class RelaySettings(PostgresSettings, KafkaSettings):
    service_name: str = "tickets-relay"

"""Settings of the tickets service (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


class TicketsSettings(PostgresSettings, InternalServiceSettings):
    service_name: str = "tickets"
    grpc_addr: str = "127.0.0.1:50061"
    db_pool_size: int = 10
    # A solved ticket the requester leaves alone closes after this long.
    ticket_auto_close_hours: float = Field(96.0, gt=0)
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""


class RelaySettings(PostgresSettings, KafkaSettings):
    service_name: str = "tickets-relay"

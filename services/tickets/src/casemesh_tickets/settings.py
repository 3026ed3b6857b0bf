"""Settings of the tickets service (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.personal import PersonalDataSettings
from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


# Both processes need the key database: tickets' personal fields are stored
# sealed, and neither starts without CASEMESH_MASTER_KEYS and
# CASEMESH_KEYS_DATABASE_URL. The API hears erasures from Kafka
# (casemesh.privacy.v1) to forget the person (`casemesh.platform.forgetting`).
class TicketsSettings(
    PostgresSettings, KafkaSettings, InternalServiceSettings, PersonalDataSettings
):
    service_name: str = "tickets"
    grpc_addr: str = "127.0.0.1:50061"
    db_pool_size: int = 10
    # A solved ticket the requester leaves alone closes after this long.
    ticket_auto_close_hours: float = Field(96.0, gt=0)
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""


class RelaySettings(PostgresSettings, KafkaSettings, PersonalDataSettings):
    service_name: str = "tickets-relay"

"""Settings of the appeals service (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.personal import PersonalDataSettings
from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


# Both processes need the key database: a case's personal fields (the
# parties' details, what they wrote) are stored sealed, and neither starts
# without CASEMESH_MASTER_KEYS and CASEMESH_KEYS_DATABASE_URL. The API hears
# erasures from Kafka (casemesh.privacy.v1) to forget the person.
class AppealsSettings(
    PostgresSettings, KafkaSettings, InternalServiceSettings, PersonalDataSettings
):
    service_name: str = "appeals"
    grpc_addr: str = "127.0.0.1:50063"
    db_pool_size: int = Field(10, ge=4)
    # `cn`, `us` or `eu`: the time limits a case follows unless it names one.
    default_jurisdiction: str = "cn"
    # Optional JSON file overriding the built-in jurisdiction policies.
    appeals_policy_file: str = ""
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""


class RelaySettings(PostgresSettings, KafkaSettings, PersonalDataSettings):
    service_name: str = "appeals-relay"
    clock_offset_file: str = ""
    appeals_policy_file: str = ""

"""Settings of the reports service (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.personal import PersonalDataSettings
from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


# What every reports process opens the application with. Each needs the key
# database: reports' personal fields are stored sealed, serve and the
# consumer write and read them, the relay reads them as tokens; none starts
# without CASEMESH_MASTER_KEYS and CASEMESH_KEYS_DATABASE_URL.
class PolicySettings(PostgresSettings, PersonalDataSettings):
    # Optional JSON file replacing the built-in reason taxonomy (taxonomy.json).
    reports_taxonomy_file: str = ""
    # Reporting misuse (DSA Art. 23): a warning after this many manifestly
    # unfounded reports within the window, then a suspension after this many more.
    reports_misuse_warn_after: int = Field(2, ge=1)
    reports_misuse_suspend_after: int = Field(3, ge=1)
    reports_misuse_window_days: int = Field(180, ge=1)
    reports_suspension_days: int = Field(30, ge=1)
    # How long a decision may be appealed (DSA Art. 20: at least six months).
    reports_appeal_window_months: int = Field(6, ge=6)
    # Hosts whose links name a reported item (a link elsewhere is refused).
    reports_link_hosts: list[str] = Field(
        default_factory=lambda: ["www.casemesh.video", "casemesh.video", "m.casemesh.video"]
    )
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""


class ReportsSettings(PolicySettings, KafkaSettings, InternalServiceSettings):
    service_name: str = "reports"
    grpc_addr: str = "127.0.0.1:50064"
    db_pool_size: int = Field(10, ge=4)


class RelaySettings(PolicySettings, KafkaSettings):
    service_name: str = "reports-relay"


class ConsumerSettings(PolicySettings, KafkaSettings):
    """The consumer of the appeals topic: appeals of report decisions."""

    service_name: str = "reports-appeals"
    consumer_group: str = "casemesh-reports"

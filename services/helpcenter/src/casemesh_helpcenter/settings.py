"""Settings of the help centre (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.personal import PersonalDataSettings
from casemesh.platform.settings import InternalServiceSettings, KafkaSettings, PostgresSettings


class HelpSettings(PostgresSettings, KafkaSettings, PersonalDataSettings, InternalServiceSettings):
    service_name: str = "helpcenter"
    grpc_addr: str = "127.0.0.1:50066"
    db_pool_size: int = Field(10, ge=2)
    # A verified phone change's two numbers on casemesh.helpcenter.v1 sealed
    # under the user's key (each code's number always is). Off, they go out in
    # the clear: the account system must reveal them before this is turned on
    # (docs/operations.md, "Personal data").
    seal_phone_changes: bool = False
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""

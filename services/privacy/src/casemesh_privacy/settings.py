"""Settings of the privacy service (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field

from casemesh.platform.personal.settings import KeyDatabaseSettings
from casemesh.platform.settings import HOST_PORT, InternalServiceSettings, KafkaSettings


class PrivacySettings(KeyDatabaseSettings, KafkaSettings, InternalServiceSettings):
    """It destroys keys and records erasures in the key database, and
    publishes the erasures from there; it never unwraps a key, so it holds no
    master key."""

    service_name: str = "privacy"
    grpc_addr: str = Field("127.0.0.1:50067", pattern=HOST_PORT)
    # Tests and drills only: a file holding seconds to add to the system time.
    clock_offset_file: str = ""

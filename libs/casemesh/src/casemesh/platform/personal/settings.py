"""The settings of a process that seals or reveals personal data.

A service's settings class adds these by inheriting `PersonalDataSettings`;
`casemesh.platform.settings.load` then refuses to start on a bad master key
secret or key database URL, naming `CASEMESH_MASTER_KEYS` or
`CASEMESH_KEYS_DATABASE_URL`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from casemesh.platform.personal.masterkeys import MasterKeys
from casemesh.platform.settings import ServiceSettings, postgres_url


class KeyDatabaseSettings(ServiceSettings):
    # The shared key database (casemesh_keys), e.g. postgresql://…/casemesh_keys.
    keys_database_url: str

    @field_validator("keys_database_url")
    @classmethod
    def _keys_database_url(cls, v: str) -> str:
        return postgres_url(v)


class PersonalDataSettings(KeyDatabaseSettings):
    # id:base64key,… (32-byte keys); the first wraps new data keys, the
    # others only unwrap until a rewrap moved every data key off them.
    master_keys: SecretStr
    # How long a process keeps a person's unwrapped keys in memory: also the
    # longest another process may go on revealing after an erasure.
    key_cache_seconds: float = Field(60.0, ge=0, le=3600)

    @field_validator("master_keys")
    @classmethod
    def _master_keys(cls, v: SecretStr) -> SecretStr:
        MasterKeys.parse(v.get_secret_value())
        return v

    def master_key_set(self) -> MasterKeys:
        return MasterKeys.parse(self.master_keys.get_secret_value())

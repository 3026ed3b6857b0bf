"""Configuration by environment, validated at start-up.

Each service subclasses `ServiceSettings`; `load` refuses to start with a
message naming every bad setting by its environment variable.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from casemesh.platform.identity import signing_key, verify_keys

ENV_PREFIX = "CASEMESH_"


# host:port: an address to listen on ("0.0.0.0:50051", "[::]:8080") or a gRPC
# target to call ("dns:///tickets:50061").
HOST_PORT = r"^\S*:[0-9]{1,5}$"


def listen_address(addr: str) -> tuple[str, int]:
    """The host and port to listen on at `addr` (a `HOST_PORT`): an IPv6
    host without its brackets ("[::]:9464" → "::"), no host meaning every
    IPv4 address."""
    host, _, port = addr.rpartition(":")
    return host.removeprefix("[").removesuffix("]") or "0.0.0.0", int(port)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    service_name: str = "casemesh"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # json for machines (default), console for a person at a terminal.
    log_format: Literal["json", "console"] = "json"
    # host:port of the Prometheus metrics endpoint; empty: none.
    metrics_addr: str = ""
    # On SIGTERM: seconds a gRPC server keeps answering after its readiness
    # turned NOT_SERVING (so load balancers notice first), then the seconds
    # in-flight calls get to finish. The orchestrator's grace period must
    # cover both, plus the consumers' and relays' stop.
    shutdown_delay_seconds: float = Field(0.0, ge=0, le=120)
    shutdown_grace_seconds: float = Field(10.0, gt=0, le=600)

    @field_validator("metrics_addr")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if v:
            _, sep, port = v.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be host:port, e.g. 0.0.0.0:9464")
        return v


class InternalServiceSettings(ServiceSettings):
    """A service only the gateway calls: it believes a call's identity only
    from a token the gateway signed (`casemesh.platform.callers`)."""

    # The gateway's Ed25519 public keys in PEM; during a rotation the old and
    # the new one after another.
    internal_verify_key: str
    # The inbound mail service's public keys, likewise: given only to the
    # services it calls as a requester replying by e-mail (tickets, evidence),
    # so that its key is worth nothing anywhere else. Empty: none.
    inbound_verify_key: str = ""

    @field_validator("internal_verify_key", "inbound_verify_key")
    @classmethod
    def _public_keys(cls, v: str, info: ValidationInfo) -> str:
        if info.field_name == "inbound_verify_key" and not v.strip():
            return v
        try:
            verify_keys(v)
        except ValueError as exc:
            raise ValueError(f"must hold Ed25519 public keys in PEM ({exc})") from None
        return v


class VouchingSettings(ServiceSettings):
    """A process that vouches for callers to the services behind the gateway
    (`casemesh.platform.identity.InternalTokenSigner`): the gateway, and the
    inbound mail service for the requesters whose replies it carries."""

    # The Ed25519 private key (PKCS#8 PEM) each call to a service is signed
    # with; the services hold its public key (CASEMESH_INTERNAL_VERIFY_KEY).
    internal_signing_key: SecretStr

    @field_validator("internal_signing_key")
    @classmethod
    def _signing_key(cls, v: SecretStr) -> SecretStr:
        try:
            signing_key(v.get_secret_value())
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return v


class PostgresSettings(ServiceSettings):
    # postgresql://user[:password]@host:port/dbname
    database_url: str

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str) -> str:
        return postgres_url(v)


def postgres_url(v: str) -> str:
    """`v` if it is a PostgreSQL URL naming a database; else ValueError saying why."""
    parts = urlsplit(v)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ValueError("must look like postgresql://user:password@host:5432/dbname")
    if not parts.path.strip("/"):
        raise ValueError("must name the database: postgresql://…/dbname")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    return v


class KafkaSettings(ServiceSettings):
    kafka_bootstrap: str = "127.0.0.1:9092"


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Reads settings from the environment or exits, naming each bad setting."""
    try:
        return cls()
    except ValidationError as exc:
        lines = [f"{cls.__name__}: refusing to start, bad configuration:"]
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None

"""Settings of the gateway (environment variables CASEMESH_*)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from casemesh.platform.identity import AUDIENCE, ISSUER, TokenRules, public_keys
from casemesh.platform.settings import HOST_PORT, VouchingSettings

# An origin a page may call (a content security policy's source): https, or
# plain http on loopback; a host name or address, an optional port, nothing
# more. deploy/console/entrypoint.sh checks nginx's with the same pattern.
CONNECT_ORIGIN = re.compile(
    r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?"
)


class GatewaySettings(VouchingSettings):
    service_name: str = "gateway"
    grpc_addr: str = Field("127.0.0.1:50051", pattern=HOST_PORT)
    # Connect, gRPC-Web, the browser upload, probes and the page (HTTP/1.1).
    http_addr: str = Field("127.0.0.1:8080", pattern=HOST_PORT)
    # Calls the HTTP port has under way at once (Connect and gRPC-Web calls,
    # uploads) before it refuses further ones UNAVAILABLE (503): a bound on the
    # memory and work callers can take. Idle connections do not count (the
    # keep-alive and head times bound them); the probes are always answered.
    http_max_connections: int = Field(1000, ge=1)
    # Origins whose pages may call the HTTP port, comma-separated
    # (https://help.example.com,https://m.example.com); none when empty.
    cors_origins: str = ""
    # Folders served on the HTTP port, if set: the self-service page at /, the
    # agents' console at /console/ (each a production build).
    web_root: str = ""
    console_root: str = ""
    # Origins the console's page may call besides its own, comma-separated:
    # its OpenID Connect provider's (discovery and token endpoints), added to
    # the connect-src of the content security policy it is served with.
    console_connect_origins: str = ""
    # Local runs only: POST /dev/sign-in mints a token (HS256 secret) for any name.
    dev_sign_in: bool = False
    # The services' gRPC targets, host:port or dns:///host:port.
    tickets_target: str = Field("127.0.0.1:50061", pattern=HOST_PORT)
    evidence_target: str = Field("127.0.0.1:50062", pattern=HOST_PORT)
    appeals_target: str = Field("127.0.0.1:50063", pattern=HOST_PORT)
    reports_target: str = Field("127.0.0.1:50064", pattern=HOST_PORT)
    casequeue_target: str = Field("127.0.0.1:50065", pattern=HOST_PORT)
    helpcenter_target: str = Field("127.0.0.1:50066", pattern=HOST_PORT)
    privacy_target: str = Field("127.0.0.1:50067", pattern=HOST_PORT)
    notifier_target: str = Field("127.0.0.1:50068", pattern=HOST_PORT)
    # Uploads and reads of large videos (and exports) take longer than
    # ordinary calls.
    upload_timeout_seconds: float = Field(900.0, gt=0)
    # The largest evidence file, as the evidence service's largest limit
    # (its CASEMESH_MAX_VIDEO_BYTES): an upload or a read of evidence may take
    # as long as this many bytes need at the slowest rate waited for.
    largest_evidence_bytes: int = Field(500 * 1024 * 1024, gt=0)
    # Users' tokens. HS256 shared secret (local runs); in production the
    # identity provider's keys: RS256 public keys in PEM (while keys rotate,
    # the old and the new one after another) or the URL of its published key
    # set (JWKS), fetched at start and every jwks_refresh_seconds.
    jwt_secret: SecretStr = SecretStr("")
    jwt_public_key: str = ""
    jwks_url: str = ""
    jwks_refresh_seconds: float = Field(300.0, ge=10)
    # What the tokens must say: issuer (`iss`) and audience (`aud`), and where
    # their roles are (a dotted path such as realm_access.roles). A role map
    # (JSON, {"support-agent": "agent"}) maps the provider's role names onto
    # user, agent and admin and ignores the rest; without one, the roles must
    # be ours.
    jwt_issuer: str = Field(ISSUER, min_length=1)
    jwt_audience: str = Field(AUDIENCE, min_length=1)
    jwt_roles_claim: str = Field("roles", pattern=r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$")
    jwt_role_map: dict[str, str] | None = None
    backend_timeout_seconds: float = Field(5.0, gt=0)
    # Per-user token bucket: sustained calls per minute, and the burst allowed.
    rate_limit_per_minute: int = Field(120, ge=1)
    rate_limit_burst: int = Field(30, ge=1)
    # Agents work a case with many calls (a report case's evidence, the queue):
    # their own, larger bucket.
    agent_rate_limit_per_minute: int = Field(1200, ge=1)
    agent_rate_limit_burst: int = Field(200, ge=1)

    @field_validator("jwt_public_key")
    @classmethod
    def _pem(cls, v: str) -> str:
        if v.strip():
            try:
                public_keys(v)
            except ValueError as exc:
                raise ValueError(
                    f"must hold RSA public keys or certificates in PEM ({exc})"
                ) from None
        return v

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: str) -> str:
        for origin in (o.strip() for o in v.split(",") if o.strip()):
            if not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin like https://help.example.com")
        return v

    @field_validator("console_connect_origins")
    @classmethod
    def _connect_origins(cls, v: str) -> str:
        for origin in (o.strip() for o in v.split(",") if o.strip()):
            if not CONNECT_ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin like https://id.example.com"
                    " (https://, or http:// on loopback; no path)"
                )
        return v

    @property
    def console_connect_origin_list(self) -> list[str]:
        return [o.strip() for o in self.console_connect_origins.split(",") if o.strip()]

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, v: str) -> str:
        loopback = ("http://127.0.0.1:", "http://localhost:", "http://[::1]:")
        if v and not v.startswith(("https://", *loopback)):
            raise ValueError("must be an https:// URL (http:// only on loopback)")
        return v

    @property
    def token_rules(self) -> TokenRules:
        return TokenRules(
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            roles_claim=self.jwt_roles_claim,
            role_map=self.jwt_role_map,
        )

    @model_validator(mode="after")
    def _a_key(self) -> GatewaySettings:
        provider = bool(self.jwt_public_key or self.jwks_url)
        if self.jwt_public_key and self.jwks_url:
            raise ValueError("set CASEMESH_JWT_PUBLIC_KEY or CASEMESH_JWKS_URL, not both")
        if not provider and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError(
                "set CASEMESH_JWKS_URL or CASEMESH_JWT_PUBLIC_KEY (an identity provider's keys)"
                " or CASEMESH_JWT_SECRET (HS256, 32+ characters)"
            )
        if self.dev_sign_in and (provider or not self.jwt_secret.get_secret_value()):
            raise ValueError(
                "CASEMESH_DEV_SIGN_IN is for local runs: it needs CASEMESH_JWT_SECRET (it signs"
                " with it) and no CASEMESH_JWT_PUBLIC_KEY or CASEMESH_JWKS_URL (a production"
                " identity provider)"
            )
        if self.dev_sign_in and (self.jwt_issuer, self.jwt_audience) != (ISSUER, AUDIENCE):
            raise ValueError(
                f"CASEMESH_DEV_SIGN_IN mints tokens of issuer and audience {ISSUER!r}:"
                " leave CASEMESH_JWT_ISSUER and CASEMESH_JWT_AUDIENCE unset"
            )
        try:
            self.token_rules  # noqa: B018 - a role map onto roles we do not have
        except ValueError as exc:
            raise ValueError(f"CASEMESH_JWT_ROLE_MAP: {exc}") from None
        return self

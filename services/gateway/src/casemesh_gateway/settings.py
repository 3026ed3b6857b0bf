"""Settings of the gateway (environment variables CASEMESH_*)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from casemesh.platform.identity import public_keys, signing_key
from casemesh.platform.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    grpc_addr: str = "127.0.0.1:50051"
    # Connect, gRPC-Web, the browser upload, probes and the page (HTTP/1.1).
    http_addr: str = "127.0.0.1:8080"
    # Origins whose pages may call the HTTP port, comma-separated
    # (https://help.example.com,https://m.example.com); none when empty.
    cors_origins: str = ""
    # Folders served on the HTTP port, if set: the self-service page at /, the
    # agents' console at /console/ (each a production build).
    web_root: str = ""
    console_root: str = ""
    # Local runs only: POST /dev/sign-in mints a token (HS256 secret) for any name.
    dev_sign_in: bool = False
    tickets_target: str = "127.0.0.1:50061"
    evidence_target: str = "127.0.0.1:50062"
    appeals_target: str = "127.0.0.1:50063"
    reports_target: str = "127.0.0.1:50064"
    casequeue_target: str = "127.0.0.1:50065"
    helpcenter_target: str = "127.0.0.1:50066"
    # Uploads of large videos take longer than ordinary calls.
    upload_timeout_seconds: float = Field(900.0, gt=0)
    # HS256 shared secret (local runs) or RS256 public keys in PEM (production;
    # while keys rotate, the old and the new one after another).
    jwt_secret: SecretStr = SecretStr("")
    jwt_public_key: str = ""
    # The Ed25519 private key (PKCS#8 PEM) the gateway signs each call to a
    # service with; the services hold its public key (CASEMESH_INTERNAL_VERIFY_KEY).
    internal_signing_key: SecretStr
    backend_timeout_seconds: float = Field(5.0, gt=0)
    # Per-user token bucket: sustained calls per minute, and the burst allowed.
    rate_limit_per_minute: int = Field(120, ge=1)
    rate_limit_burst: int = Field(30, ge=1)

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

    @field_validator("internal_signing_key")
    @classmethod
    def _signing_key(cls, v: SecretStr) -> SecretStr:
        try:
            signing_key(v.get_secret_value())
        except ValueError as exc:
            raise ValueError(str(exc)) from None
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

    @model_validator(mode="after")
    def _a_key(self) -> GatewaySettings:
        if not self.jwt_public_key and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError(
                "set CASEMESH_JWT_PUBLIC_KEY (RS256) or CASEMESH_JWT_SECRET (HS256, 32+ characters)"
            )
        if self.dev_sign_in and (self.jwt_public_key or not self.jwt_secret.get_secret_value()):
            raise ValueError(
                "CASEMESH_DEV_SIGN_IN is for local runs: it needs CASEMESH_JWT_SECRET (it signs"
                " with it) and no CASEMESH_JWT_PUBLIC_KEY (a production identity provider)"
            )
        return self

"""Who is calling: JWT verification at the gateway, and the verified identity
as it travels to the services in call metadata.

Tokens: `sub`, `roles` ⊂ {user, agent, admin}, `exp`, `iss=casemesh`,
`aud=casemesh`; HS256 with a shared secret for local runs, RS256 with a public
key in production.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from casemesh.platform.errors import Unauthenticated

ISSUER = "casemesh"
AUDIENCE = "casemesh"
ROLES = frozenset({"user", "agent", "admin"})

# Metadata the gateway sets on calls to internal services. Internal ports are
# not public (network policy), so services trust these. Binary (`-bin`) headers:
# a token's subject may be any string, and plain header values must be ASCII.
SUBJECT_KEY = "x-casemesh-subject-bin"
ROLES_KEY = "x-casemesh-roles-bin"


@dataclass(frozen=True)
class Identity:
    subject: str
    roles: frozenset[str]

    @property
    def is_agent(self) -> bool:
        return "agent" in self.roles or "admin" in self.roles

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def to_metadata(self) -> list[tuple[str, bytes]]:
        return [
            (SUBJECT_KEY, self.subject.encode()),
            (ROLES_KEY, ",".join(sorted(self.roles)).encode()),
        ]

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        values = {k: v if isinstance(v, str) else v.decode() for k, v in (metadata or ())}
        subject = values.get(SUBJECT_KEY, "")
        if not subject:
            raise Unauthenticated("the call carries no verified identity")
        roles = frozenset(r for r in values.get(ROLES_KEY, "").split(",") if r in ROLES)
        return cls(subject=subject, roles=roles)


_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


def public_keys(text: str) -> list[RSAPublicKey]:
    """The RSA public keys in `text`, in order: several while keys rotate (a
    token signed by any of them is accepted). Each PEM block may be a public
    key (SubjectPublicKeyInfo or PKCS#1) or a certificate (its key is used).
    Anything else, a private key above all, is refused with ValueError."""
    keys: list[RSAPublicKey] = []
    for block in _PEM.finditer(text):
        kind, pem = block.group(1), block.group(0).encode()
        if kind == "CERTIFICATE":
            key: Any = x509.load_pem_x509_certificate(pem).public_key()
        elif kind in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            key = serialization.load_pem_public_key(pem)
        else:
            raise ValueError(f"a {kind} is not a public key or certificate")
        if not isinstance(key, RSAPublicKey):
            raise ValueError("only RSA keys verify RS256 tokens")
        keys.append(key)
    if not keys:
        raise ValueError("no PEM public key or certificate found")
    return keys


class TokenVerifier:
    def __init__(self, *, secret: str | None = None, public_key: str | None = None) -> None:
        if public_key:
            self._keys: list[Any] = list(public_keys(public_key))
            self._algorithms = ["RS256"]
        elif secret:
            self._keys = [secret]
            self._algorithms = ["HS256"]
        else:
            raise ValueError("a JWT secret or public key is required")

    def _decode(self, token: str) -> dict[str, Any]:
        for key in self._keys[:-1]:
            with contextlib.suppress(jwt.InvalidSignatureError):
                return self._decode_with(token, key)
        return self._decode_with(token, self._keys[-1])

    def _decode_with(self, token: str, key: Any) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=self._algorithms,
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
        return claims

    def verify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise Unauthenticated("missing `authorization: Bearer <token>` metadata")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be `Bearer <token>`")
        try:
            claims = self._decode(token.strip())
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        subject = claims.get("sub")
        raw_roles = claims.get("roles", ["user"])
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise Unauthenticated("token subject must be a non-empty string")
        if not isinstance(raw_roles, list) or not all(isinstance(r, str) for r in raw_roles):
            raise Unauthenticated("token roles must be a list of strings")
        roles = frozenset(raw_roles)
        if not roles or not roles <= ROLES:
            raise Unauthenticated(f"token roles must be a non-empty subset of {sorted(ROLES)}")
        return Identity(subject=subject, roles=roles)


def mint_token(
    secret: str, subject: str, roles: Iterable[str] = ("user",), ttl_seconds: int = 3600
) -> str:
    """An HS256 token for local runs and tests."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "roles": sorted(set(roles)),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")

"""Who is calling: JWT verification at the gateway, and the identity the
gateway vouches for on each call it makes to a service.

Users' tokens: `sub`, `roles` ⊂ {user, agent, admin}, `exp`, `iss`, `aud`;
HS256 with a shared secret for local runs (`iss` = `aud` = `casemesh`). In
production they come from the platform's OpenID Connect provider: its issuer
and audience are configured, its keys are PEM public keys or its published key
set (JWKS, see `KeySet`), and its role names may be mapped onto ours.

Behind the gateway a service believes only what the gateway signed. On each
call the gateway mints a short-lived token (EdDSA over Ed25519; `iss` the
gateway, `aud` the gRPC service called, `sub`, `roles`, `iat`, `exp` a minute
later, and any facts the gateway checked for the service) with a private key
only it holds. Services hold only the public keys, so a service broken into
cannot speak for anyone to another service, and a header forged anywhere else
is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from casemesh.platform.errors import Unauthenticated, Unavailable
from casemesh.platform.logging import get_logger

log = get_logger(__name__)

ISSUER = "casemesh"
AUDIENCE = "casemesh"
ROLES = frozenset({"user", "agent", "admin"})
MAX_SUBJECT = 128
# The longest `authorization` value read (a gRPC server takes 8 KiB of
# metadata in all): far more than any provider's token with its claims.
MAX_AUTHORIZATION = 8192
# No person's id begins with this: the key database's case keys have owners
# of that form (`casemesh.platform.personal.keys.CASE_KEYS`).
RESERVED_SUBJECTS = "#case/"
# What a request naming a person is told when it names a case key's owner.
NOT_A_PERSON = f"is no person's id (ids beginning with {RESERVED_SUBJECTS!r} are case keys')"

# The gateway's per-call token travels in this metadata entry.
INTERNAL_TOKEN_KEY = "x-casemesh-identity"
INTERNAL_ISSUER = "casemesh-gateway"
# Long enough for a call to reach its service, short enough that a token seen
# on the wire is soon worthless; a token claiming a longer life is refused.
INTERNAL_TTL_SECONDS = 60
INTERNAL_MAX_LIFETIME_SECONDS = 120
# The gateway's and a service's host clocks may differ by this much.
INTERNAL_LEEWAY_SECONDS = 10
# The identity provider's and the gateway's clocks may differ by this much: a
# token issued a moment "in the future" is taken, and one is taken this long
# past its `exp`.
USER_LEEWAY_SECONDS = 30


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


def _identity(claims: Mapping[str, Any], default_roles: list[str] | None = None) -> Identity:
    """The identity in verified claims; its subject and roles must be sound."""
    return _identity_with(claims, TokenRules(), default_roles)


def subject_fault(subject: str) -> str | None:
    """Why `subject` names no person (None: it may), in words that follow
    the name of what carried it. A person is named so everywhere (their
    cases, an erasure, an export): a subject with spaces around it or
    characters that do not show could not be told from another, nor named
    back; one beginning with RESERVED_SUBJECTS is a case key's."""
    if not subject or len(subject) > MAX_SUBJECT:
        return f"must be 1–{MAX_SUBJECT} characters"
    if subject != subject.strip() or any(
        unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in subject
    ):
        return "must have no spaces around it and no control or invisible characters"
    if subject.startswith(RESERVED_SUBJECTS):
        return NOT_A_PERSON
    return None


def _roles_claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim `name` names: a dotted path into the claims
    (`realm_access.roles`), else a claim of that very name (a provider's
    namespaced claim is a URL, `https://example.com/roles`, dots and all,
    which no path reaches)."""
    found: Any = claims
    for step in name.split("."):
        found = found.get(step) if isinstance(found, Mapping) else None
    return claims.get(name) if found is None else found


@functools.cache
def _say_roles_claim_missing(name: str) -> None:
    """Logs, once a process, that a token came without the roles claim: so
    is every token, if the setting names it wrongly, and every agent and
    admin works as a user with nothing else to say why."""
    log.warning(
        "token.roles_claim_missing",
        claim=name,
        note="tokens without it are taken as a user's; check CASEMESH_JWT_ROLES_CLAIM",
    )


def _identity_with(
    claims: Mapping[str, Any], rules: TokenRules, default_roles: list[str] | None = None
) -> Identity:
    subject = claims.get("sub")
    raw_roles = _roles_claim(claims, rules.roles_claim)
    if raw_roles is None:
        if default_roles is not None and rules.role_map is not None:
            _say_roles_claim_missing(rules.roles_claim)
        raw_roles = default_roles
    if not isinstance(subject, str):
        raise Unauthenticated("token subject must be a string")
    fault = subject_fault(subject)
    if fault is not None:
        raise Unauthenticated(f"token subject {fault}")
    if not isinstance(raw_roles, list) or not all(isinstance(r, str) for r in raw_roles):
        raise Unauthenticated(f"token {rules.roles_claim} must be a list of strings")
    if rules.role_map is not None:
        # A provider's token lists the roles of every application it serves:
        # only those mapped onto ours count, and a person with none is a user.
        mapped = {rules.role_map[r] for r in raw_roles if r in rules.role_map}
        return Identity(subject=subject, roles=frozenset(mapped or {"user"}))
    roles = frozenset(raw_roles)
    if not roles or not roles <= ROLES:
        raise Unauthenticated(f"token roles must be a non-empty subset of {sorted(ROLES)}")
    return Identity(subject=subject, roles=roles)


@dataclass(frozen=True)
class TokenRules:
    """What a user's token must say: who issued it, for whom, and where its
    roles are. `roles_claim` is a dotted path (`realm_access.roles`), or a
    claim's whole name where no path reaches one (a namespaced URL);
    `role_map`, when set, maps the provider's role names onto ours (others
    are ignored) instead of requiring ours."""

    issuer: str = ISSUER
    audience: str = AUDIENCE
    roles_claim: str = "roles"
    role_map: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.role_map is not None and not set(self.role_map.values()) <= ROLES:
            raise ValueError(f"roles may be mapped only onto {sorted(ROLES)}")


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


# Tokens a process remembers having checked (a client sends the same one on
# every call until it expires): the most it keeps.
REMEMBERED_TOKENS = 10_000

T = TypeVar("T")


class _CheckedTokens(Generic[T]):
    """What each token found good stands for, until it expires: a client
    sends the same token on every call, and its signature and claims cannot
    change, so it is checked once. At most REMEMBERED_TOKENS are kept."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._checked: dict[str, tuple[T, float]] = {}

    def vouched(self, token: str, check: Callable[[str], tuple[T, float]], expired: str) -> T:
        """What `token` stands for: remembered, or found by `check` (what it
        stands for, and until when; it raises for a token that is not good).
        A remembered token past its time is refused with `expired`."""
        known = self._checked.get(token)
        if known is not None:
            value, expires = known
            if self._clock() < expires:
                return value
            self._checked.pop(token, None)  # another thread may have dropped it
            raise Unauthenticated(expired)
        value, expires = check(token)
        if len(self._checked) >= REMEMBERED_TOKENS:
            self._checked.clear()
        self._checked[token] = (value, expires)
        return value

    def expiry(self, token: str) -> float | None:
        """When a token found good stops being good (None: not known)."""
        known = self._checked.get(token)
        return None if known is None else known[1]


# What a provider's published key may sign with: public-key algorithms only
# (a shared secret in a published set would let anyone sign).
KEY_SET_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class KeySet:
    """An identity provider's published signing keys (its JWKS), by key id.

    The gateway fetches the set in the background, again and again; until
    the first fetch succeeds every call is UNAVAILABLE (retry), and a token
    signed by a key not yet in the set is refused and calls `on_unknown_key`,
    so the owner can fetch early (a provider publishes a new key before it
    signs with it, so this is rare)."""

    def __init__(self, on_unknown_key: Callable[[], None] = lambda: None) -> None:
        self._keys: dict[str, jwt.PyJWK] = {}
        self.on_unknown_key = on_unknown_key
        # Counts the sets that took a key away: tokens it signed, found good
        # before, must be checked again.
        self.withdrawals = 0

    def __len__(self) -> int:
        return len(self._keys)

    def replace(self, document: Any) -> None:
        """Takes the keys of a JWKS document; ValueError (and the old keys
        kept) when it holds no usable signing key."""
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("a key set is a JSON object with a `keys` list")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            try:
                key = jwt.PyJWK.from_dict(entry)
            except Exception:
                continue
            if isinstance(kid, str) and key.algorithm_name in KEY_SET_ALGORITHMS:
                keys[kid] = key
        if not keys:
            raise ValueError("the key set holds no public signing key with a `kid`")
        if self._keys.keys() - keys.keys():
            self.withdrawals += 1
        self._keys = keys

    def key(self, kid: Any) -> jwt.PyJWK:
        if not self._keys:
            # Not the caller's fault: their token may be good; they may retry.
            raise Unavailable("the identity provider's keys are not loaded yet; retry shortly")
        if not isinstance(kid, str):
            raise Unauthenticated("token names no key (`kid`)")
        found = self._keys.get(kid)
        if found is None:
            self.on_unknown_key()
            raise Unauthenticated("token signed by a key the identity provider has not published")
        return found


class TokenVerifier:
    """Checks a caller's bearer token; a token already found good is not
    checked again until it expires (the signature and claims cannot change).

    Its keys: a shared secret (HS256, local runs), PEM public keys (RS256), or
    a provider's key set (each token names its key by `kid`)."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        key_set: KeySet | None = None,
        rules: TokenRules | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules or TokenRules()
        self._clock = clock
        self._checked = _CheckedTokens[Identity](clock)
        self._key_set = key_set
        self._withdrawals_seen = key_set.withdrawals if key_set is not None else 0
        if key_set is not None:
            self._keys: list[Any] = []
            self._algorithms = sorted(KEY_SET_ALGORITHMS)
        elif public_key:
            self._keys = list(public_keys(public_key))
            self._algorithms = ["RS256"]
        elif secret:
            self._keys = [secret]
            self._algorithms = ["HS256"]
        else:
            raise ValueError("a JWT secret, public key or key set is required")

    def _decode(self, token: str) -> dict[str, Any]:
        if self._key_set is not None:
            key = self._key_set.key(jwt.get_unverified_header(token).get("kid"))
            return self._decode_with(token, key.key, [key.algorithm_name])
        for pem_key in self._keys[:-1]:
            with contextlib.suppress(jwt.InvalidSignatureError):
                return self._decode_with(token, pem_key, self._algorithms)
        return self._decode_with(token, self._keys[-1], self._algorithms)

    def _decode_with(self, token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=self._rules.audience,
            issuer=self._rules.issuer,
            leeway=USER_LEEWAY_SECONDS,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
        return claims

    def verify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise Unauthenticated("missing `authorization: Bearer <token>` metadata")
        if len(authorization) > MAX_AUTHORIZATION:
            # Refused unread: decoding and checking a huge one takes seconds of
            # the caller's event loop, before any limit on who asks applies.
            raise Unauthenticated(
                f"authorization is longer than any token this API takes ({MAX_AUTHORIZATION:,})"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be `Bearer <token>`")
        if self._key_set is not None and self._key_set.withdrawals != self._withdrawals_seen:
            # A key the provider withdrew (compromised, say) vouches for no
            # token it signed, however recently one was found good.
            self._withdrawals_seen = self._key_set.withdrawals
            self._checked = _CheckedTokens[Identity](self._clock)
        return self._checked.vouched(token.strip(), self._check, "token expired")

    def expiry(self, authorization: str) -> float | None:
        """When the token `verify` took from `authorization` stops being
        taken (its `exp` plus the leeway): a call that lasts, a watch, ends then."""
        return self._checked.expiry(authorization.partition(" ")[2].strip())

    def _check(self, token: str) -> tuple[Identity, float]:
        """Who a token names, and until when (its expiry, with the same
        leeway the check allows)."""
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        who = _identity_with(claims, self._rules, default_roles=["user"])
        return who, float(claims["exp"]) + USER_LEEWAY_SECONDS


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


# -- the gateway's per-call tokens --------------------------------------------------


def _ed25519_blocks(text: str) -> list[Any]:
    """The keys in the PEM blocks of `text`, in order (ValueError if one does not load)."""
    keys: list[Any] = []
    for block in _PEM.finditer(text):
        kind, pem = block.group(1), block.group(0).encode()
        try:
            if kind == "PRIVATE KEY":
                keys.append(serialization.load_pem_private_key(pem, password=None))
            elif kind == "PUBLIC KEY":
                keys.append(serialization.load_pem_public_key(pem))
            else:
                raise ValueError(f"a {kind} is not an Ed25519 key (PKCS#8 or SubjectPublicKeyInfo)")
        except (TypeError, UnsupportedAlgorithm) as exc:  # encrypted, or of an unknown kind
            raise ValueError(f"a {kind} that cannot be read ({exc})") from None
    return keys


def signing_key(text: str) -> Ed25519PrivateKey:
    """The one Ed25519 private key (PKCS#8 PEM) in `text`; ValueError otherwise."""
    keys = _ed25519_blocks(text)
    if len(keys) != 1 or not isinstance(keys[0], Ed25519PrivateKey):
        raise ValueError("must be one Ed25519 private key in PEM (BEGIN PRIVATE KEY)")
    return keys[0]


def verify_keys(text: str) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys (SubjectPublicKeyInfo PEM) in `text`: several
    while the gateway's key rotates. A private key is refused: a service must
    not be able to sign."""
    keys = _ed25519_blocks(text)
    if not keys:
        raise ValueError("no PEM public key found")
    if not all(isinstance(k, Ed25519PublicKey) for k in keys):
        raise ValueError("must hold only Ed25519 public keys in PEM (BEGIN PUBLIC KEY)")
    return keys


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, named in each token's header so a
    service checks the one signature that can match."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_signing_key() -> str:
    """A fresh Ed25519 private key in PEM (PKCS#8): for local runs and tests."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def verify_key_of(private_key: str) -> str:
    """The public half of a signing key, in PEM: what the services are given."""
    return (
        signing_key(private_key)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# The facts a narrow key's token may carry: the ticket a call acts on
# (`callers.the_ticket_named`).
NARROW_FACTS = frozenset({"ticket"})


class InternalTokenSigner:
    """The gateway's half: a token naming the caller and the service it is
    for (one a call where the call carries facts; otherwise one serves a
    caller's calls to a service for a quarter of its life)."""

    def __init__(
        self,
        private_key: str,
        *,
        ttl_seconds: float = INTERNAL_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = signing_key(private_key)
        self._headers = {"kid": key_id(self._key.public_key())}
        self._ttl = ttl_seconds
        self._clock = clock
        self._minted: dict[tuple[str, frozenset[str], str], tuple[str, float]] = {}

    def token(self, who: Identity, audience: str, facts: Mapping[str, str] | None = None) -> str:
        """A token for `who`'s calls to `audience`; one without facts serves
        the same caller's calls to the same service for a quarter of its life
        (it still has most of it left when used), instead of a signature per call."""
        if facts:
            return self._mint(who, audience, facts)
        key = (who.subject, who.roles, audience)
        minted = self._minted.get(key)
        now = self._clock()
        if minted is not None and minted[1] <= now < minted[1] + self._ttl / 4:
            return minted[0]
        if len(self._minted) >= REMEMBERED_TOKENS:
            self._minted.clear()
        token = self._mint(who, audience, None)
        self._minted[key] = (token, now)
        return token

    def _mint(self, who: Identity, audience: str, facts: Mapping[str, str] | None) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": INTERNAL_ISSUER,
            "aud": audience,
            "sub": who.subject,
            "roles": sorted(who.roles),
            "iat": now,
            "exp": now + int(self._ttl),
        }
        if facts:
            claims["facts"] = dict(facts)
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers=self._headers)

    def metadata(
        self, who: Identity, audience: str, facts: Mapping[str, str] | None = None
    ) -> tuple[tuple[str, str]]:
        """The call metadata that vouches for `who` to the gRPC service `audience`."""
        return ((INTERNAL_TOKEN_KEY, self.token(who, audience, facts)),)


@dataclass(frozen=True)
class Vouched:
    """What the gateway vouched for on one call: who calls, and the facts it
    checked on the service's behalf (e.g. a report decision's appeal deadline)."""

    identity: Identity
    facts: Mapping[str, str] = field(default_factory=dict)
    # Signed by a key believed only for a few identities (`narrow_keys`):
    # the service checks what such a caller may do (`callers`).
    narrow: bool = False
    # Until when the token is taken: its expiry plus the leeway, in seconds
    # since the epoch.
    until: float = float("inf")


class InternalTokenVerifier:
    """A service's half: believes a call's identity only from a token the
    gateway signed for this service, still fresh. A token found good is not
    checked again until it expires (the gateway reuses a caller's token for a
    quarter of its life; its signature and claims cannot change)."""

    def __init__(
        self,
        public_keys: str,
        audiences: Collection[str],
        *,
        narrow_keys: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        believed = {key_id(k): k for k in verify_keys(public_keys)}
        narrow = {key_id(k): k for k in verify_keys(narrow_keys)} if narrow_keys.strip() else {}
        self._keys = {**narrow, **believed}
        self._narrow = narrow.keys() - believed.keys()
        self._audiences = list(audiences)
        if not self._audiences:
            raise ValueError("a service must name the audiences it answers to")
        self._checked = _CheckedTokens[Vouched](clock)

    def verify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Vouched:
        token = next((v for k, v in metadata or () if k == INTERNAL_TOKEN_KEY), None)
        if not token or not isinstance(token, str):
            raise Unauthenticated("the call carries no identity vouched for by the gateway")
        return self._checked.vouched(
            token, self._check, "the gateway's token for this call has expired"
        )

    def _check(self, token: str) -> tuple[Vouched, float]:
        """What a token vouches for, and until when (its expiry, with the
        same leeway the check allows)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthenticated("the call's identity is not signed by the gateway's key")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=self._audiences,
                issuer=INTERNAL_ISSUER,
                leeway=INTERNAL_LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "sub", "iat", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the gateway's token for this call has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the call's identity token is invalid: {exc}") from None
        if claims["exp"] - claims["iat"] > INTERNAL_MAX_LIFETIME_SECONDS:
            raise Unauthenticated("the call's identity token lives longer than the gateway's do")
        facts = claims.get("facts", {})
        if not isinstance(facts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in facts.items()
        ):
            raise Unauthenticated("the call's identity token carries malformed facts")
        narrow = kid in self._narrow
        # A narrow key (inbound mail's) may only name the ticket it acts on.
        if narrow and set(facts) - NARROW_FACTS:
            raise Unauthenticated("only the gateway's token may vouch for facts")
        until = float(claims["exp"] + INTERNAL_LEEWAY_SECONDS)
        return Vouched(_identity(claims), facts, narrow=narrow, until=until), until

"""Tokens from the platform's OpenID Connect provider: its issuer and audience,
its roles where it puts them, and its published keys (JWKS), fetched over
loopback HTTP and fetched again when it starts signing with a new key."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from structlog.testing import capture_logs

from casemesh.platform.errors import Unauthenticated, Unavailable
from casemesh.platform.identity import KeySet, TokenRules, TokenVerifier, new_signing_key
from casemesh.platform.settings import load
from casemesh_gateway.keys import MAX_BACKOFF, published_keys
from casemesh_gateway.settings import GatewaySettings
from tests.support import eventually

ISSUER = "https://id.example.com/realms/platform"
AUDIENCE = "casemesh-console"


def provider_claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "agent-7",
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "exp": now + 300,
        "realm_access": {"roles": ["offline_access", "support-agent"]},
        **overrides,
    }


def jwk(key: Any, kid: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[
            "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        ].to_jwk(key.public_key())
    )
    return {**entry, "kid": kid, "use": "sig"}


def signed(key: Any, kid: str, **overrides: object) -> str:
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(provider_claims(**overrides), key, algorithm, headers={"kid": kid})


RULES = TokenRules(
    issuer=ISSUER,
    audience=AUDIENCE,
    roles_claim="realm_access.roles",
    role_map={"support-agent": "agent", "support-admin": "admin"},
)


def test_a_providers_token_maps_its_roles_and_must_name_our_issuer_and_audience() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = KeySet()
    keys.replace({"keys": [jwk(key, "k1")]})
    verifier = TokenVerifier(key_set=keys, rules=RULES)

    agent = verifier.verify(f"Bearer {signed(key, 'k1')}")
    assert agent.subject == "agent-7" and agent.roles == {"agent"}
    # No role of ours: an ordinary signed-in user of the platform.
    user = verifier.verify(f"Bearer {signed(key, 'k1', realm_access={'roles': ['x']})}")
    assert user.roles == {"user"}
    for bad, why in (
        ({"iss": "https://evil.example.com"}, "(?i)issuer"),
        ({"aud": "another-app"}, "(?i)audience"),
        ({"realm_access": {"roles": "support-agent"}}, "realm_access.roles"),
    ):
        with pytest.raises(Unauthenticated, match=why):
            verifier.verify(f"Bearer {signed(key, 'k1', **bad)}")


def test_a_namespaced_roles_claim_is_read_by_its_name_and_one_missing_is_logged() -> None:
    """Providers name custom claims by URL (`https://casemesh.example.com/roles`,
    dots and all): read as a dotted path it was never found, and every agent
    worked as a plain user with nothing said. A claim of the configured name
    is read as it is; a token without it is a user's, and the process says
    once that such tokens come (a setting that names it wrongly)."""
    claim = "https://casemesh.example.com/roles"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = KeySet()
    keys.replace({"keys": [jwk(key, "k1")]})
    rules = TokenRules(
        issuer=ISSUER, audience=AUDIENCE, roles_claim=claim, role_map={"support-agent": "agent"}
    )
    verifier = TokenVerifier(key_set=keys, rules=rules)
    agent = verifier.verify(f"Bearer {signed(key, 'k1', **{claim: ['support-agent']})}")
    assert agent.roles == {"agent"}
    with capture_logs() as logs:
        without = verifier.verify(f"Bearer {signed(key, 'k1', sub='user-8')}")
        again = verifier.verify(f"Bearer {signed(key, 'k1', sub='user-9')}")
    assert without.roles == again.roles == {"user"}
    said = [e for e in logs if e["event"] == "token.roles_claim_missing"]
    assert [e["claim"] for e in said] == [claim]


def test_a_key_the_provider_withdraws_vouches_for_no_token_it_signed_before() -> None:
    """A compromised key is taken out of the set: tokens it signed, though
    found good a moment before (and remembered), are refused from then on."""
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    keys = KeySet()
    keys.replace({"keys": [jwk(old, "k1"), jwk(new, "k2")]})
    verifier = TokenVerifier(key_set=keys, rules=RULES)
    stolen, fresh = f"Bearer {signed(old, 'k1')}", f"Bearer {signed(new, 'k2')}"
    assert verifier.verify(stolen).subject == verifier.verify(fresh).subject == "agent-7"
    keys.replace({"keys": [jwk(new, "k2")]})
    with pytest.raises(Unauthenticated, match="not published"):
        verifier.verify(stolen)
    assert verifier.verify(fresh).subject == "agent-7"


def test_only_public_signing_keys_of_a_key_set_count() -> None:
    keys = KeySet()
    with pytest.raises(ValueError, match="no public signing key"):
        keys.replace({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s", "alg": "HS256"}]})
    with pytest.raises(ValueError, match="`keys` list"):
        keys.replace({"not": "a key set"})
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = {**jwk(rsa_key, "enc"), "use": "enc"}
    keys.replace({"keys": [jwk(ec_key, "e1"), encryption]})
    verifier = TokenVerifier(key_set=keys, rules=RULES)
    assert verifier.verify(f"Bearer {signed(ec_key, 'e1')}").roles == {"agent"}
    with pytest.raises(Unauthenticated, match="has not published"):
        verifier.verify(f"Bearer {signed(rsa_key, 'enc')}")
    # A token that signs itself with the shared secret "HS256" over a public key is refused.
    forged = jwt.encode(
        provider_claims(), "a-shared-secret-of-thirty-two-bytes!", "HS256", headers={"kid": "e1"}
    )
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(f"Bearer {forged}")


class Provider:
    """A provider's JWKS endpoint on loopback, counting fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.status = 200
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps(provider.document).encode()
                self.send_response(provider.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/certs"


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    thread = threading.Thread(target=p.server.serve_forever, daemon=True)
    thread.start()
    yield p
    p.server.shutdown()
    p.server.server_close()
    thread.join()


def test_the_gateway_serves_while_the_keys_are_away_then_fetches_a_new_one_when_named(
    provider: Provider,
) -> None:
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.status = 503  # the provider is down when the gateway starts

    async def story() -> None:
        async with published_keys(provider.url, refresh=3600, early_gap=0.2) as keys:
            verifier = TokenVerifier(key_set=keys, rules=RULES)
            await eventually(lambda: provider.fetches >= 2, 20)
            # Serving, but no key yet: a retryable answer, not "you are signed out".
            with pytest.raises(Unavailable, match="not loaded yet"):
                verifier.verify(f"Bearer {signed(old, 'old')}")
            provider.document, provider.status = {"keys": [jwk(old, "old")]}, 200
            await eventually(lambda: len(keys) == 1, 20)
            assert verifier.verify(f"Bearer {signed(old, 'old')}").subject == "agent-7"
            # The provider publishes a new key and signs with it: the first
            # such token is refused, and the gateway fetches the set early.
            provider.document = {"keys": [jwk(old, "old"), jwk(new, "new")]}
            token = signed(new, "new")
            with pytest.raises(Unauthenticated, match="has not published"):
                verifier.verify(f"Bearer {token}")
            fetched = provider.fetches
            await eventually(lambda: provider.fetches > fetched and len(keys) == 2, 20)
            assert verifier.verify(f"Bearer {token}").subject == "agent-7"
            # A broken answer later keeps the keys the gateway has, and so does
            # a set whose entries no library could read.
            for status, document in ((500, provider.document), (200, {"keys": BROKEN})):
                provider.status, provider.document = status, document
                with pytest.raises(Unauthenticated):
                    verifier.verify(f"Bearer {signed(new, 'unknown')}")
                fetched = provider.fetches
                await eventually(lambda: provider.fetches > fetched, 20)  # noqa: B023
                assert verifier.verify(f"Bearer {signed(old, 'old')}").subject == "agent-7"

    asyncio.run(story())


def test_keys_are_fetched_when_the_provider_returns_after_hours_away(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.status = 503  # away from the start, for hours
    away = 1_100  # tries, at the longest pause between them: over nine hours
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def no_wait(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == away:
            provider.document, provider.status = {"keys": [jwk(key, "k")]}, 200
        await real_sleep(0)

    monkeypatch.setattr("casemesh_gateway.keys.asyncio.sleep", no_wait)

    async def story() -> None:
        loaded = asyncio.Event()
        async with published_keys(provider.url, refresh=3600, loaded=loaded) as keys:
            await asyncio.wait_for(loaded.wait(), 120)
            verifier = TokenVerifier(key_set=keys, rules=RULES)
            assert verifier.verify(f"Bearer {signed(key, 'k')}").subject == "agent-7"
            assert max(pauses) <= MAX_BACKOFF * 1.25

    asyncio.run(story())


# Entries a careless or hostile provider could publish; none may stop the gateway.
BROKEN: list[Any] = [
    {"kty": "RSA", "kid": "a", "alg": "none", "n": "AQAB", "e": "AQAB"},
    {"kty": "RSA", "kid": "b", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"},
    {"kty": "EC", "kid": "c", "crv": "P-256"},
    "not an object",
    {"kid": "d"},
]


def test_a_key_set_of_unreadable_entries_is_refused_whole_and_a_token_must_name_its_key() -> None:
    keys = KeySet()
    with pytest.raises(ValueError, match="no public signing key"):
        keys.replace({"keys": BROKEN})
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys.replace({"keys": [*BROKEN, jwk(rsa_key, "good")]})
    assert len(keys) == 1
    verifier = TokenVerifier(key_set=keys, rules=RULES)
    unnamed = jwt.encode(provider_claims(), rsa_key, "RS256")
    with pytest.raises(Unauthenticated, match="names no key"):
        verifier.verify(f"Bearer {unnamed}")
    # The key's own algorithm only: PS256 over an RS256 key is refused.
    other = jwt.encode(provider_claims(), rsa_key, "PS256", headers={"kid": "good"})
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(f"Bearer {other}")


def test_provider_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_INTERNAL_SIGNING_KEY", new_signing_key())
    monkeypatch.setenv("CASEMESH_JWKS_URL", "http://id.example.com/certs")
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    assert "https://" in capsys.readouterr().err
    monkeypatch.setenv("CASEMESH_JWKS_URL", "https://id.example.com/certs")
    monkeypatch.setenv("CASEMESH_JWT_ROLE_MAP", '{"support-agent": "root"}')
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    assert "CASEMESH_JWT_ROLE_MAP" in capsys.readouterr().err
    monkeypatch.setenv("CASEMESH_JWT_ROLE_MAP", '{"support-agent": "agent"}')
    monkeypatch.setenv("CASEMESH_JWT_ROLES_CLAIM", "realm_access.roles")
    monkeypatch.setenv("CASEMESH_JWT_ISSUER", ISSUER)
    settings = load(GatewaySettings)
    assert settings.token_rules == TokenRules(
        issuer=ISSUER,
        audience="casemesh",
        roles_claim="realm_access.roles",
        role_map={"support-agent": "agent"},
    )

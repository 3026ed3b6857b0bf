"""The identity the gateway vouches for behind it: a service believes a call
only with a fresh token the gateway signed for that service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from casemesh.platform.callers import _VOUCHED, INBOUND_READER, VouchedCalls, the_ticket_named
from casemesh.platform.errors import PermissionDenied, Unauthenticated
from casemesh.platform.identity import (
    INTERNAL_TOKEN_KEY,
    Identity,
    InternalTokenSigner,
    InternalTokenVerifier,
    key_id,
    new_signing_key,
    signing_key,
    verify_key_of,
)
from casemesh.platform.settings import load
from casemesh_gateway.settings import GatewaySettings
from casemesh_tickets.settings import TicketsSettings
from tests.support import personal_env

TICKETS = "casemesh.v1.TicketService"
ALICE = Identity("alice", frozenset({"user"}))
KEY = new_signing_key()


def verifier(*keys: str, audience: str = TICKETS) -> InternalTokenVerifier:
    return InternalTokenVerifier("".join(verify_key_of(k) for k in keys or (KEY,)), [audience])


def as_metadata(token: str) -> list[tuple[str, str]]:
    return [(INTERNAL_TOKEN_KEY, token)]


def forged(key: str = KEY, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
    """A token as the gateway makes it, with `overrides` (None removes a claim)."""
    now = int(time.time())
    claims = {
        "iss": "casemesh-gateway",
        "aud": TICKETS,
        "sub": "mallory",
        "roles": ["agent"],
        "iat": now,
        "exp": now + 60,
        **overrides,
    }
    private = signing_key(key)
    kid = key_id(private.public_key())
    body = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(body, private, algorithm="EdDSA", headers={"kid": kid, **(headers or {})})


def test_a_callers_token_serves_a_quarter_of_its_life_then_a_fresh_one_is_signed() -> None:
    now = [time.time() - 30]  # the signer's clock; the verifier's is the real one
    signer = InternalTokenSigner(KEY, clock=lambda: now[0])
    first = signer.token(ALICE, TICKETS)
    now[0] += 10
    assert signer.token(ALICE, TICKETS) == first
    assert signer.token(Identity("bob", frozenset({"user"})), TICKETS) != first
    assert signer.token(ALICE, "casemesh.v1.EvidenceService") != first
    assert signer.token(ALICE, TICKETS, {"appealable_until": ""}) != first  # facts: per call
    now[0] += 6
    fresh = signer.token(ALICE, TICKETS)
    assert fresh != first
    assert verifier().verify(as_metadata(fresh)).identity == ALICE


def test_the_gateways_token_tells_the_service_who_calls_and_what_was_checked() -> None:
    signer = InternalTokenSigner(KEY)
    vouched = verifier().verify(signer.metadata(ALICE, TICKETS, {"appealable_until": ""}))
    assert vouched.identity == ALICE
    assert vouched.facts == {"appealable_until": ""}
    assert verifier().verify(signer.metadata(ALICE, TICKETS)).facts == {}


def _unsigned() -> str:
    now = int(time.time())
    claims = {"iss": "casemesh-gateway", "aud": TICKETS, "sub": "m", "roles": ["admin"]}
    return jwt.encode({**claims, "iat": now, "exp": now + 60}, "", algorithm="none")


def _hmac_with_the_public_key() -> str:
    """Algorithm confusion: HS256 keyed with the public key everyone may hold."""
    public = signing_key(KEY).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": key_id(public)}
    claims: dict[str, Any] = {"iss": "casemesh-gateway", "aud": TICKETS, "sub": "m"}
    claims |= {"roles": ["admin"], "iat": now, "exp": now + 60}
    signed = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    signature = hmac.new(pem, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _with_header(**header: Any) -> str:
    """A valid token whose header is replaced (its signature no longer matters)."""
    _, claims, signature = forged().split(".")
    return f"{_b64(json.dumps({'alg': 'EdDSA', **header}).encode())}.{claims}.{signature}"


OTHER_KEY = new_signing_key()


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (lambda: [], "no identity"),
        (
            lambda: [("x-casemesh-subject-bin", b"alice"), ("x-casemesh-roles-bin", b"admin")],
            "no identity",
        ),
        (lambda: as_metadata("not a token"), "invalid"),
        (lambda: as_metadata(forged(OTHER_KEY)), "not signed by the gateway"),
        (
            lambda: as_metadata(
                forged(headers={"kid": key_id(signing_key(KEY).public_key())}).rsplit(".", 1)[0]
                + "."
                + forged(OTHER_KEY).rsplit(".", 1)[1]
            ),
            "invalid",
        ),
        (lambda: as_metadata(_unsigned()), "not signed by the gateway"),
        (lambda: as_metadata(_hmac_with_the_public_key()), "invalid"),
        (lambda: as_metadata(forged(aud="casemesh.v1.AppealService")), "invalid"),
        (lambda: as_metadata(forged(aud="casemesh")), "invalid"),
        (lambda: as_metadata(forged(iss="casemesh")), "invalid"),
        (lambda: as_metadata(forged(exp=int(time.time()) - 30)), "expired"),
        (lambda: as_metadata(forged(exp=None)), "invalid"),
        (lambda: as_metadata(forged(iat=None)), "invalid"),
        (
            lambda: as_metadata(forged(iat=int(time.time()) + 300, exp=int(time.time()) + 360)),
            "invalid",
        ),
        (lambda: as_metadata(forged(nbf=int(time.time()) + 300)), "invalid"),
        (lambda: as_metadata(forged(exp=int(time.time()) + 86400)), "lives longer"),
        (lambda: as_metadata(forged(roles=["root"])), "roles"),
        (lambda: as_metadata(forged(sub="")), "subject"),
        (lambda: as_metadata(forged(facts=["appealable_until"])), "facts"),
        (lambda: as_metadata(_with_header(kid=["x"])), "invalid"),
    ],
    ids=[
        "missing",
        "old plain headers",
        "garbage",
        "wrong key",
        "signature spliced from another key",
        "alg none",
        "HS256 keyed with the public key",
        "another service's audience",
        "the users' audience",
        "the users' issuer",
        "expired",
        "no exp",
        "no iat",
        "issued in the future",
        "future nbf",
        "lives a day",
        "unknown role",
        "empty subject",
        "malformed facts",
        "kid not a string",
    ],
)
def test_anything_but_a_fresh_token_the_gateway_signed_for_this_service_is_refused(
    metadata: Any, reason: str
) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        verifier().verify(metadata())


def test_a_little_clock_skew_between_hosts_is_tolerated() -> None:
    now = int(time.time())
    assert verifier().verify(as_metadata(forged(iat=now + 5, exp=now + 65))).identity.subject
    assert verifier().verify(as_metadata(forged(iat=now - 65, exp=now - 5))).identity.subject


def test_while_the_gateways_key_rotates_both_keys_are_believed() -> None:
    old, new = new_signing_key(), new_signing_key()
    both = verifier(old, new)
    for key in (old, new):
        assert both.verify(InternalTokenSigner(key).metadata(ALICE, TICKETS)).identity == ALICE
    with pytest.raises(Unauthenticated):
        verifier(new).verify(InternalTokenSigner(old).metadata(ALICE, TICKETS))


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "no PEM public key"),
        ("not a key", "no PEM public key"),
        (KEY, "only Ed25519 public keys"),  # the private key pasted by mistake
    ],
    ids=["empty", "not PEM", "a private key"],
)
def test_a_service_with_a_bad_verify_key_refuses_to_start_naming_it(
    value: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://x@h/db")
    monkeypatch.setenv("CASEMESH_INTERNAL_VERIFY_KEY", value)
    with pytest.raises(SystemExit):
        load(TicketsSettings)
    err = capsys.readouterr().err
    assert "CASEMESH_INTERNAL_VERIFY_KEY" in err and says in err


def test_a_service_without_a_verify_key_refuses_to_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://x@h/db")
    for name, value in personal_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CASEMESH_INTERNAL_VERIFY_KEY", raising=False)
    with pytest.raises(SystemExit):
        load(TicketsSettings)
    assert "CASEMESH_INTERNAL_VERIFY_KEY" in capsys.readouterr().err
    monkeypatch.setenv("CASEMESH_INTERNAL_VERIFY_KEY", verify_key_of(KEY))
    assert load(TicketsSettings).internal_verify_key == verify_key_of(KEY)


@pytest.mark.parametrize(
    "value", ["", "not a key", verify_key_of(KEY)], ids=["missing", "not PEM", "a public key"]
)
def test_a_gateway_with_a_bad_signing_key_refuses_to_start_naming_it(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("CASEMESH_INTERNAL_SIGNING_KEY", value)
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    err = capsys.readouterr().err
    assert "CASEMESH_INTERNAL_SIGNING_KEY" in err and "Ed25519 private key" in err
    monkeypatch.setenv("CASEMESH_INTERNAL_SIGNING_KEY", KEY)
    assert load(GatewaySettings).internal_signing_key.get_secret_value() == KEY


def test_inbound_mails_key_is_believed_only_where_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tickets and evidence are given inbound mail's public key beside the
    gateway's; a service without it refuses inbound mail's tokens."""
    mail = new_signing_key()
    monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://x@h/db")
    for name, value in personal_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CASEMESH_INTERNAL_VERIFY_KEY", verify_key_of(KEY))
    without = VouchedCalls.of(load(TicketsSettings), [TICKETS])
    monkeypatch.setenv("CASEMESH_INBOUND_VERIFY_KEY", verify_key_of(mail))
    given = VouchedCalls.of(load(TicketsSettings), [TICKETS])
    for key in (KEY, mail):
        metadata = InternalTokenSigner(key).metadata(ALICE, TICKETS)
        assert given._verifier.verify(metadata).identity == ALICE
    assert without._verifier.verify(InternalTokenSigner(KEY).metadata(ALICE, TICKETS))
    with pytest.raises(Unauthenticated):
        without._verifier.verify(InternalTokenSigner(mail).metadata(ALICE, TICKETS))
    monkeypatch.setenv("CASEMESH_INBOUND_VERIFY_KEY", mail)  # its private key, by mistake
    with pytest.raises(SystemExit):
        load(TicketsSettings)


class _Call:
    def __init__(self, metadata: Any) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> Any:
        return self._metadata


def test_inbound_mails_key_speaks_for_a_requester_and_its_reader_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inbound mail takes mail from the internet: its key vouches for a
    ticket's requester (a user) and for its reader reading a ticket, and for
    nothing an agent or admin may do; the gateway's key, for anyone."""
    mail = new_signing_key()
    monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://x@h/db")
    for name, value in personal_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CASEMESH_INTERNAL_VERIFY_KEY", verify_key_of(KEY))
    monkeypatch.setenv("CASEMESH_INBOUND_VERIFY_KEY", verify_key_of(mail))
    calls = VouchedCalls.of(load(TicketsSettings), [TICKETS])
    reader = Identity(INBOUND_READER, frozenset({"agent"}))
    admin = Identity("mallory", frozenset({"admin", "agent"}))
    get, search = f"/{TICKETS}/GetTicket", f"/{TICKETS}/SearchTickets"

    def check(key: Any, who: Identity, method: str, facts: dict[str, str] | None = None) -> Any:
        metadata = InternalTokenSigner(key).metadata(who, TICKETS, facts)
        return calls._check(_Call(metadata), method)

    named = {"ticket": "tickets/t1"}
    assert check(mail, ALICE, f"/{TICKETS}/AddComment", named).identity == ALICE
    assert check(mail, reader, get, named).identity == reader
    # Each call to tickets names the ticket it acts on (an inbound service of
    # a release before that is told to come back: its mail is retried).
    for who, method in ((ALICE, f"/{TICKETS}/AddComment"), (reader, get)):
        with pytest.raises(Unauthenticated, match="names no ticket"):
            check(mail, who, method)
    for who, method in ((reader, search), (admin, get), (admin, search)):
        with pytest.raises(PermissionDenied):
            check(mail, who, method, named)
    # As the requester it only replies: it reads, lists, opens, cancels,
    # closes, reopens and rates nothing in her name.
    for method in (
        "GetTicket",
        "ListTickets",
        "ListTicketEvents",
        "CreateTicket",
        "CancelTicket",
        "CloseTicket",
        "ReopenTicket",
        "RateTicket",
    ):
        with pytest.raises(PermissionDenied):
            check(mail, ALICE, f"/{TICKETS}/{method}", named)
    with pytest.raises(Unauthenticated, match="facts"):
        check(mail, ALICE, get, {"appeal_deadline": "2099-01-01"})
    # And the service acts on that ticket only (`the_ticket_named`).
    vouched = check(mail, reader, get, named)
    token = _VOUCHED.set(vouched)
    try:
        the_ticket_named("tickets/t1")
        with pytest.raises(PermissionDenied, match="tickets/t2"):
            the_ticket_named("tickets/t2")
    finally:
        _VOUCHED.reset(token)
    token = _VOUCHED.set(check(KEY, admin, get))  # the gateway's: any ticket
    try:
        the_ticket_named("tickets/t2")
    finally:
        _VOUCHED.reset(token)
    # The gateway's key vouches for an admin, as ever.
    assert check(KEY, admin, search).identity == admin


def test_a_token_found_good_is_believed_without_a_new_check_until_it_expires() -> None:
    now = [time.time()]
    checks = verifier()
    remembered = InternalTokenVerifier(verify_key_of(KEY), [TICKETS], clock=lambda: now[0])
    token = forged(exp=int(now[0]) + 60)
    assert remembered.verify(as_metadata(token)).identity.subject == "mallory"
    # The same token again is answered from memory, to the same caller...
    assert remembered.verify(as_metadata(token)) == checks.verify(as_metadata(token))
    # ...but not past its expiry and the leeway the signature check allows.
    now[0] += 60 + 11
    with pytest.raises(Unauthenticated, match="expired"):
        remembered.verify(as_metadata(token))

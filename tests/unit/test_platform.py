"""Shared plumbing: identity, masking, rate limits, settings, the envelope,
errors that stay small."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import grpc
import jwt
import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import unary_unary_rpc_method_handler as unary_unary
from prometheus_client import CollectorRegistry, Counter

from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform import envelope, outbox
from casemesh.platform.caseindex import Created
from casemesh.platform.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
)
from casemesh.platform.grpcutil import (
    DomainErrorInterceptor,
    bounded,
    field_violations,
    to_status,
    until_set,
)
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    TokenVerifier,
    mint_token,
    new_signing_key,
)
from casemesh.platform.masking import holds_contact, mask_email, mask_phone, mask_text
from casemesh.platform.metrics import serve_metrics
from casemesh.platform.settings import ServiceSettings, listen_address, load
from casemesh.platform.where import Where
from casemesh.rules import tickets as ticket_rules
from casemesh.v1 import evidence_pb2
from casemesh_casequeue.watch import ChangesLost
from casemesh_devstack.ports import free_port
from casemesh_gateway import api
from casemesh_gateway.api import Backend, EvidenceGateway
from casemesh_gateway.ratelimit import RateLimiter
from casemesh_gateway.settings import GatewaySettings
from casemesh_notifier.settings import NotifierSettings
from tests.support import served_alone, stream_failure, unary_failure

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "alice",
        "roles": ["user"],
        "iss": "casemesh",
        "aud": "casemesh",
        "exp": now + 60,
        **overrides,
    }


def test_a_valid_token_gives_the_identity() -> None:
    who = TokenVerifier(secret=SECRET).verify(f"Bearer {mint_token(SECRET, 'li', ['agent'])}")
    assert who == Identity("li", frozenset({"agent"}))
    assert who.is_agent


def test_a_token_checked_once_is_taken_until_it_expires_and_not_after() -> None:
    now = [time.time()]
    verifier = TokenVerifier(secret=SECRET, clock=lambda: now[0])
    token = f"Bearer {mint_token(SECRET, 'li', ['agent'], ttl_seconds=60)}"
    assert verifier.verify(token).subject == "li"
    now[0] += 89  # 30 s past `exp`: the provider's clock may be behind
    assert verifier.verify(token).subject == "li"
    now[0] += 2
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)
    with pytest.raises(Unauthenticated, match="invalid"):  # a good token does not vouch for others
        verifier.verify(f"Bearer {jwt.encode(claims(), 'x' + SECRET)}")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "missing"),
        (lambda: "Basic abc", "Bearer"),
        (lambda: f"Bearer {jwt.encode(claims(exp=int(time.time()) - 31), SECRET)}", "expired"),
        (lambda: f"Bearer {jwt.encode(claims(aud='other'), SECRET)}", "invalid"),
        (lambda: f"Bearer {jwt.encode(claims(iss='other'), SECRET)}", "invalid"),
        (lambda: f"Bearer {jwt.encode(claims(roles=['root']), SECRET)}", "roles"),
        (lambda: f"Bearer {jwt.encode(claims(roles=[]), SECRET)}", "roles"),
        # A case key's owner in the key database, nobody's own id.
        (lambda: f"Bearer {jwt.encode(claims(sub='#case/1'), SECRET)}", "no person's id"),
        # Named so nowhere else: an erasure or an export could not name them back.
        (lambda: "Bearer " + jwt.encode(claims(sub=" alice"), SECRET), "spaces around"),
        (lambda: "Bearer " + jwt.encode(claims(sub="alice\n"), SECRET), "spaces around"),
        (lambda: "Bearer " + jwt.encode(claims(sub="ali\u200bce"), SECRET), "invisible"),
        (lambda: f"Bearer {jwt.encode(claims(), 'x' + SECRET)}", "invalid"),
        (lambda: f"Bearer {jwt.encode(claims(), SECRET * 2, algorithm='HS512')}", "invalid"),
        # Refused unread: checking a huge one stalled the gateway for seconds.
        (lambda: f"Bearer {jwt.encode(claims(pad='x' * 9000), SECRET)}", "longer than any"),
    ],
)
def test_bad_tokens_are_unauthenticated(make: Callable[[], str | None], reason: str) -> None:
    token = make()  # minted now: a token made at collection time could expire first
    with pytest.raises(Unauthenticated, match=reason):
        TokenVerifier(secret=SECRET).verify(token)


def test_contact_details_are_masked() -> None:
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_phone("+8613800138000") == "+86*******8000"
    text = mask_text("mail alice@example.com or call +8613800138000")
    assert "alice@" not in text and "13800138000" not in text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("电话13800138000", "13800138000"),
        ("手机号是+8613800138000请回电", "13800138000"),
        ("请拨打 138-0013-8000，谢谢", "0013-8000"),
        ("邮箱dora.wang@example.com谢谢", "dora.wang"),
        ("请发到dora@example.cn。", "dora@"),
        ("「dora@example.com」", "dora@"),
    ],
)
def test_contact_details_touching_chinese_text_are_masked(text: str, secret: str) -> None:
    masked = mask_text(text)
    assert secret not in masked, masked
    assert masked[0] == text[0] and masked[-1] == text[-1]  # the words around stay


@pytest.mark.parametrize(
    "text",
    [
        "order ORD20251201001 shipped",
        "ticket-12345678 and order_87654321",
        "evidence/3f1c2a7e-1234-5678-9abc-123456789012",
        "ce_id 0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10:12",
        "Заказ12345678 отправлен",
        "build v20251201",
    ],
)
def test_numbers_inside_longer_tokens_stay_readable(text: str) -> None:
    assert mask_text(text) == text


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("asked by lin@example.com", True),
        ("来电138 0013 8000", True),
        ("call +86 138-0013-8000 after six", True),
        ("PIPL-2026-0042", False),
        ("request of 2026-12-01, desk ticket ORD20251201001", False),
    ],
)
def test_an_address_or_number_is_told_apart_from_a_reference_or_a_date(
    text: str, holds: bool
) -> None:
    assert holds_contact(text) is holds


def test_the_rate_limiter_allows_a_burst_then_the_steady_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    assert [limiter.allow("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.allow("u") == pytest.approx(1.0)
    assert limiter.allow("v") == 0.0  # per user
    now[0] = 1.0
    assert limiter.allow("u") == 0.0


def test_the_rate_limiter_forgets_users_gone_quiet_whether_or_not_anyone_is_limited() -> None:
    """A replica sees many users over its life: it keeps the buckets of
    those of the last minute or so, not of everyone it ever served (the
    buckets were let go only when some call was refused)."""
    now = [0.0]
    limiter = RateLimiter(per_minute=120, burst=30, clock=lambda: now[0])
    for i in range(1000):
        assert limiter.allow(f"u{i}") == 0.0
    now[0] = 61.0
    assert limiter.allow("late") == 0.0
    assert limiter.users == 1
    # A bucket still filling up when the next sweep comes is kept: it
    # still limits its user.
    now[0] = 120.9
    for _ in range(30):
        limiter.allow("busy")
    now[0] = 121.0
    assert limiter.allow("other") == 0.0  # the sweep's call
    assert limiter.allow("busy") > 0
    assert limiter.users == 2


def test_agents_have_a_bucket_of_their_own() -> None:
    """An agent working a case with many evidence files is not stopped by the
    limit that keeps one user from flooding the service."""
    now = [0.0]
    backend = Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(new_signing_key()),
        limiter=RateLimiter(per_minute=60, burst=2, clock=lambda: now[0]),
        agent_limiter=RateLimiter(per_minute=600, burst=20, clock=lambda: now[0]),
        timeout=5,
    )

    def calls(roles: list[str]) -> int:
        token = mint_token(SECRET, f"someone-{roles[0]}", roles)
        context = SimpleNamespace(
            invocation_metadata=lambda: [("authorization", f"Bearer {token}")]
        )
        for made in range(100):
            try:
                backend.identity(context)
            except ResourceExhausted:
                return made
        return 100

    assert calls(["user"]) == 2
    assert calls(["agent"]) == 20
    assert calls(["admin"]) == 20


INTERNAL = grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("code", "said", "told", "as_code"),
    [
        # A crash's or the transport's words (code, addresses) are not shown.
        (
            grpc.StatusCode.UNKNOWN,
            "Unexpected <class 'KeyError'>: 'x'",
            "Something went wrong",
            None,
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: ipv4:10.0.0.7:50061",
            "The service is unavailable",
            None,
        ),
        # A service's own refusal is passed on as it said it.
        (grpc.StatusCode.FAILED_PRECONDITION, "the ticket is closed", "the ticket is closed", None),
        # The backend refused the gateway's word for the caller (keys or
        # clocks out of step): no sign-in of the caller's would help.
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "the call's identity is not signed by the gateway's key",
            "Something went wrong",
            INTERNAL,
        ),
        # gRPC's own limit on an answer's size, not a rate limit to wait out.
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Received message larger than max (5242880 vs. 4194304)",
            "Something went wrong",
            INTERNAL,
        ),
    ],
)
async def test_a_backends_failure_is_told_in_plain_words_not_its_own(
    code: grpc.StatusCode, said: str, told: str, as_code: grpc.StatusCode | None
) -> None:
    aborted: list[tuple[grpc.StatusCode, str]] = []

    async def abort(code: grpc.StatusCode, message: str, details: object) -> None:
        aborted.append((code, message))

    context = SimpleNamespace(invocation_metadata=lambda: [], abort=abort)
    failed = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), said)
    with pytest.raises(AssertionError):  # abort does not return on a real context
        await Backend._fail(failed, context)
    [(answered, message)] = aborted
    assert answered == (as_code or code) and message.startswith(told)
    assert "10.0.0.7" not in message and "KeyError" not in message


async def evidence_gateway(backend: Backend, stub: object) -> EvidenceGateway:
    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # never used: the stub is replaced
    gateway = EvidenceGateway(
        backend,
        channel,
        upload_timeout=900,
        largest_file=GatewaySettings.model_fields["largest_evidence_bytes"].default,
    )
    gateway.stub = cast(Any, stub)
    await channel.close()
    return gateway


class Reading:
    """A server-streaming call as grpc.aio gives it: its messages, and cancel."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages

    async def _read(self) -> AsyncIterator[Any]:
        for message in self.messages:
            yield message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._read()

    def cancel(self) -> bool:
        return False


class Storing:
    """A client-streaming call to a service that takes every message and
    stores the file, as grpc.aio's call is used: written to, then awaited."""

    def __init__(self) -> None:
        self.written: list[Any] = []

    async def write(self, request: Any) -> None:
        self.written.append(request)

    async def done_writing(self) -> None:
        pass

    def add_done_callback(self, callback: Any) -> None:
        pass

    def cancel(self) -> bool:
        return False

    def __await__(self) -> Any:
        async def stored() -> evidence_pb2.Evidence:
            return evidence_pb2.Evidence(name="evidence/x")

        return stored().__await__()


def transfer_backend() -> Backend:
    return Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(new_signing_key()),
        limiter=RateLimiter(per_minute=60, burst=5),
        timeout=5,
    )


# What a 500 MiB video (the largest evidence) needs at 64 KiB/s: 8000 s.
LARGEST_AT_SLOWEST = 500 * 1024 * 1024 / (64 * 1024)


async def test_evidence_is_read_within_the_transfer_deadline_not_an_ordinary_calls() -> None:
    """A video of hundreds of megabytes takes minutes to read: its stream is
    given the time the largest file needs at 64 KiB/s, not the 5 s of an
    ordinary call, nor the 15 minutes once given (a 500 MiB video over a
    2 Mbit/s link takes 35)."""
    given: list[float] = []

    class Stub:
        def ReadEvidence(self, request: object, *, metadata: object, timeout: float) -> Any:
            given.append(timeout)

            return Reading([evidence_pb2.ReadEvidenceResponse(chunk=b"x")])

    gateway = await evidence_gateway(transfer_backend(), Stub())
    token = mint_token(SECRET, "viewer", ["agent"])
    request = evidence_pb2.ReadEvidenceRequest(
        name="evidence/" + "1" * 8 + "-1111-1111-1111-" + "1" * 12
    )
    for client_deadline in (None, 3 * 3600.0, 2400.0):
        context = SimpleNamespace(
            invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
            time_remaining=lambda d=client_deadline: d,
        )
        read = [r async for r in gateway.ReadEvidence(request, cast(Any, context))]
        assert [r.chunk for r in read] == [b"x"]
    # No deadline of its own, and one past the largest file's time: that
    # time; a shorter one of its own: the client's.
    assert given == [LARGEST_AT_SLOWEST, LARGEST_AT_SLOWEST, 2400.0]


async def test_an_upload_is_given_the_clients_own_deadline_up_to_the_largest_files_time() -> None:
    """A client that gives a large video's upload 40 minutes (35 are needed
    at 2 Mbit/s) gets them, not 15 minutes and DEADLINE_EXCEEDED part-way;
    one that gives none, or more than the largest file needs at 64 KiB/s,
    gets that."""
    given: list[float] = []

    class Stub:
        def UploadEvidence(self, *, metadata: object, timeout: float) -> Any:
            given.append(timeout)
            return Storing()

    gateway = await evidence_gateway(transfer_backend(), Stub())
    token = mint_token(SECRET, "alice", ["user"])
    for client_deadline in (2400.0, 3 * 3600.0, None):

        async def requests() -> AsyncIterator[evidence_pb2.UploadEvidenceRequest]:
            yield evidence_pb2.UploadEvidenceRequest(
                metadata=evidence_pb2.EvidenceMetadata(file_name="v.mp4")
            )
            yield evidence_pb2.UploadEvidenceRequest(chunk=b"x")

        context = SimpleNamespace(
            invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
            time_remaining=lambda d=client_deadline: d,
        )
        stored = await gateway.UploadEvidence(requests(), cast(Any, context))
        assert stored.name == "evidence/x"
    assert given == [2400.0, LARGEST_AT_SLOWEST, LARGEST_AT_SLOWEST]


def test_the_rate_limit_tells_the_client_how_long_to_wait_in_retry_info() -> None:
    now = [0.0]
    backend = Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(new_signing_key()),
        limiter=RateLimiter(per_minute=60, burst=1, clock=lambda: now[0]),
        timeout=5,
    )
    token = mint_token(SECRET, "hasty", ["user"])
    context = SimpleNamespace(invocation_metadata=lambda: [("authorization", f"Bearer {token}")])
    backend.identity(context)
    now[0] = 0.25
    with pytest.raises(ResourceExhausted) as limited:
        backend.identity(context)

    status = to_status(limited.value)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    retry, info = error_details_pb2.RetryInfo(), error_details_pb2.ErrorInfo()
    packed = status_pb2.Status.FromString(details).details
    said = error_details_pb2.LocalizedMessage()
    assert [d.Unpack(retry) or d.Unpack(info) or d.Unpack(said) for d in packed] == [True] * 3
    assert (said.locale, said.message) == ("en", limited.value.message)
    assert retry.retry_delay.ToNanoseconds() == 750_000_000
    assert info.reason == "RATE_LIMITED"
    assert "retry in 0.8 s" in status.details


def test_a_bad_setting_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://x@h/db")
    monkeypatch.setenv("CASEMESH_SMTP_HOST", "mail")
    monkeypatch.setenv("CASEMESH_SMS_URL", "not a url")
    monkeypatch.setenv("CASEMESH_SMS_QUIET_HOURS", "late")
    with pytest.raises(SystemExit):
        load(NotifierSettings)
    err = capsys.readouterr().err
    assert "CASEMESH_SMS_URL" in err and "CASEMESH_SMS_QUIET_HOURS" in err
    monkeypatch.delenv("CASEMESH_JWT_SECRET", raising=False)
    monkeypatch.setenv("CASEMESH_INTERNAL_SIGNING_KEY", new_signing_key())
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    assert "CASEMESH_JWT_SECRET" in capsys.readouterr().err


def test_the_gateway_refuses_an_address_or_target_without_a_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_JWT_SECRET", SECRET)
    monkeypatch.setenv("CASEMESH_INTERNAL_SIGNING_KEY", new_signing_key())
    monkeypatch.setenv("CASEMESH_TICKETS_TARGET", "dns:///tickets:50061")
    assert load(GatewaySettings).tickets_target == "dns:///tickets:50061"
    monkeypatch.setenv("CASEMESH_HTTP_ADDR", "0.0.0.0")
    monkeypatch.setenv("CASEMESH_APPEALS_TARGET", "appeals")
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    err = capsys.readouterr().err
    assert "CASEMESH_HTTP_ADDR" in err and "CASEMESH_APPEALS_TARGET" in err


def test_the_envelope_round_trips_and_rejects_foreign_records() -> None:
    event = envelope.CloudEvent(
        id="t1:3",
        source="casemesh/tickets",
        type="casemesh.tickets.TicketSolved.v1",
        subject="tickets/t1",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data=b"\x01",
        key="t1",
        trace_headers=(("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),),
    )
    assert envelope.parse(b"t1", b"\x01", event.kafka_headers()) == event
    with pytest.raises(envelope.EnvelopeError):
        envelope.parse(b"t1", b"{}", [("content-type", b"application/json")])


def test_an_event_gives_its_message_as_the_class_its_type_names() -> None:
    solved = tev.TicketSolved(resolution="restarted")
    event = envelope.CloudEvent(
        id="t1:3",
        source="casemesh/tickets",
        type=envelope.type_of(solved),
        subject="tickets/t1",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data=solved.SerializeToString(),
        key="t1",
    )
    assert event.message() == solved
    with pytest.raises(envelope.EnvelopeError):
        replace(event, type="casemesh.tickets.NoSuchEvent.v1").message()
    # Decoded only when it is a message the consumer acts on: one it ignores
    # cannot fail it, even unreadable.
    assert event.message_if(tev.TicketCreated, tev.TicketSolved) == solved
    unreadable = replace(event, data=b"\xff\xff")
    assert unreadable.message_if(tev.TicketCreated) is None


@pytest.mark.parametrize(
    "service",
    [
        "tickets",
        "tickets relay",
        "appeals",
        "appeals relay",
        "notifier",
        "reports",
        "reports relay",
        "reports appeals",
    ],
)
def test_a_service_that_seals_or_reveals_will_not_start_without_the_key_settings(
    service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from casemesh_appeals import settings as appeals
    from casemesh_reports import settings as reports
    from casemesh_tickets.settings import RelaySettings, TicketsSettings

    settings: dict[str, type[ServiceSettings]] = {
        "tickets": TicketsSettings,
        "tickets relay": RelaySettings,
        "appeals": appeals.AppealsSettings,
        "appeals relay": appeals.RelaySettings,
        "notifier": NotifierSettings,
        "reports": reports.ReportsSettings,
        "reports relay": reports.RelaySettings,
        "reports appeals": reports.ConsumerSettings,
    }
    monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://x@h/db")
    monkeypatch.setenv("CASEMESH_SMTP_HOST", "mail")
    monkeypatch.setenv("CASEMESH_SMS_URL", "http://sms.local")
    monkeypatch.delenv("CASEMESH_MASTER_KEYS", raising=False)
    monkeypatch.setenv("CASEMESH_KEYS_DATABASE_URL", "localhost:5432")
    with pytest.raises(SystemExit) as stopped:
        load(settings[service])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "CASEMESH_MASTER_KEYS" in err and "CASEMESH_KEYS_DATABASE_URL" in err


@pytest.mark.parametrize("url", ["localhost:5432", "postgresql://host", "mysql://u@h/db"])
def test_a_bad_database_url_stops_start_up_naming_it(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from casemesh_tickets.settings import RelaySettings

    monkeypatch.setenv("CASEMESH_DATABASE_URL", url)
    with pytest.raises(SystemExit):
        load(RelaySettings)
    assert "CASEMESH_DATABASE_URL" in capsys.readouterr().err


def _rsa_key() -> tuple[rsa.RSAPrivateKey, str]:
    """A new RSA key, and its private half in PEM (to sign test tokens)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key, private


def _rsa_pair() -> tuple[str, str]:
    key, private = _rsa_key()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_while_keys_rotate_a_token_signed_by_the_old_or_the_new_key_is_accepted() -> None:
    old_private, old_public = _rsa_pair()
    new_private, new_public = _rsa_pair()
    other_private, _ = _rsa_pair()
    verifier = TokenVerifier(public_key=old_public + "\n" + new_public)
    for private, who in ((old_private, "old"), (new_private, "new")):
        token = jwt.encode(claims(sub=who), private, algorithm="RS256")
        assert verifier.verify(f"Bearer {token}").subject == who
    stranger = jwt.encode(claims(), other_private, algorithm="RS256")
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify(f"Bearer {stranger}")
    # Once the old key is removed, its tokens stop working.
    old_token = jwt.encode(claims(), old_private, algorithm="RS256")
    with pytest.raises(Unauthenticated):
        TokenVerifier(public_key=new_public).verify(f"Bearer {old_token}")


def test_a_public_key_setting_without_a_pem_key_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEMESH_JWT_PUBLIC_KEY", "not a key")
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    assert "CASEMESH_JWT_PUBLIC_KEY" in capsys.readouterr().err


def test_pkcs1_keys_and_certificates_verify_and_a_private_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key, private = _rsa_key()
    pkcs1 = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        .decode()
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "casemesh issuer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    token = jwt.encode(claims(sub="kim"), private, algorithm="RS256")
    for text in (pkcs1, cert):
        assert TokenVerifier(public_key=text).verify(f"Bearer {token}").subject == "kim"
    # A private key pasted by mistake is refused at start-up, by name.
    monkeypatch.setenv("CASEMESH_JWT_PUBLIC_KEY", private)
    with pytest.raises(SystemExit):
        load(GatewaySettings)
    err = capsys.readouterr().err
    assert "CASEMESH_JWT_PUBLIC_KEY" in err and "PRIVATE KEY is not a public key" in err


# -- errors stay small ------------------------------------------------------------

# A peer refuses trailers over this many bytes by default (RESOURCE_EXHAUSTED
# "received metadata size exceeds soft limit" instead of the error).
METADATA_LIMIT = 8192


def _wire_size(err: grpc.aio.AioRpcError) -> int:
    """The bytes a status takes in the trailers as a peer counts them: each
    entry's name and value (grpc-message percent-encoded, binary values in
    base64) plus 32."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in err.details().encode())
    size = len("grpc-status") + 1 + 32 + len("grpc-message") + message + 32
    for key, value in err.trailing_metadata() or ():
        if key.endswith("-bin"):
            size += len(key) + len(base64.b64encode(value)) + 32
    return size


async def _refused_with(violations: list[FieldViolation]) -> grpc.aio.AioRpcError:
    """What a client sees when a service refuses a call with `violations`."""

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise InvalidArgument(violations)

    return await unary_failure(refuse)


async def test_a_write_to_a_primary_just_demoted_is_unavailable_to_retry_not_unknown() -> None:
    """In a failover, a pooled connection still on the old primary answers
    "read-only transaction": the caller should retry, as for any outage."""

    async def write(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise psycopg.errors.ReadOnlySqlTransaction(
            "cannot execute UPDATE in a read-only transaction"
        )

    err = await unary_failure(write)
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()


async def test_a_watch_whose_changes_were_lost_ends_unavailable_so_the_client_watches_again() -> (
    None
):
    """A service's own error class (the queue's `ChangesLost`) takes its
    base class's status, in a stream as in a unary call."""

    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"change"
        raise ChangesLost("the queue's changes were not heard for a while")

    got, err = await stream_failure(watch)
    assert got == [b"change"]
    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
    assert to_status(ChangesLost("lost")).code == grpc.StatusCode.UNAVAILABLE


async def test_a_clients_own_binary_metadata_does_not_fail_its_call() -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    answer = await served_alone(
        unary_unary(echo),
        lambda channel: channel.unary_unary("/t.Service/Method")(
            b"hello", metadata=[("x-client-bin", b"\xff\xfe")], timeout=10
        ),
    )
    assert answer == b"hello"


def _named(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return field_violations(status_pb2.Status.FromString(value))
    raise AssertionError("INVALID_ARGUMENT must carry google.rpc.BadRequest details")


# A client's long, odd string: Chinese, control characters, then more.
LONG = "长" * 3000 + "\x00\x1b[31m" + "x" * 20000

MANY_BAD_ITEMS = {
    "ascii": [
        FieldViolation(f"flagger.areas[{i}]", f"{'area-' + 'z' * 55!r} is not a reason category")
        for i in range(100)
    ],
    "chinese": [
        FieldViolation(f"appeal.notice.infringing_items[{i}]", "不得包含控制字符，" * 20)
        for i in range(120)
    ],
    "long and odd": [
        FieldViolation(f"appeal.{'deep.' * 200}items[{i}]", f"{LONG} is not allowed")
        for i in range(150)
    ],
}


@pytest.mark.parametrize("violations", MANY_BAD_ITEMS.values(), ids=MANY_BAD_ITEMS.keys())
async def test_many_bad_items_name_the_first_and_count_the_rest_under_the_limit(
    violations: list[FieldViolation],
) -> None:
    err = await _refused_with(violations)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()[:200]
    assert _wire_size(err) < METADATA_LIMIT // 2
    named = _named(err)
    assert 1 <= len(named) <= 10
    assert [f for f, _ in named] == [v.field for v in violations[: len(named)]]
    assert err.details().startswith(f"{named[0][0]}: {named[0][1]}")
    assert err.details().endswith(f"… and {len(violations) - len(named)} more")


async def test_a_few_violations_are_told_whole() -> None:
    violations = [
        FieldViolation("ticket.subject", "must not be empty"),
        FieldViolation("ticket.contact.email", "is not an e-mail address"),
    ]
    err = await _refused_with(violations)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "ticket.subject: must not be empty; ticket.contact.email: is not an e-mail address"
    )
    assert _named(err) == [(v.field, v.description) for v in violations]


def test_a_violation_never_echoes_a_long_client_string_whole() -> None:
    for v in (
        FieldViolation("name" * 100, f"{LONG} is not evidence you uploaded"),
        InvalidArgument.field("name", LONG).violations[0],
    ):
        assert len(v.field.encode()) <= 128 and len(v.description.encode()) <= 256
        assert v.description.startswith("长长") and v.description.endswith("…")
        assert v.description.isprintable()


def test_a_forwarded_status_is_cut_to_the_limit() -> None:
    """A service's status the gateway passes on stays small, however big it came."""
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=f"items[{i}]",
                description=LONG,
                localized_message=error_details_pb2.LocalizedMessage(
                    locale="zh-CN", message="不能超过 200 个字符。"
                ),
            )
            for i in range(40)
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(bad)
    big = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=LONG, details=[packed])
    small = bounded(big)
    assert small.code == code_pb2.INVALID_ARGUMENT
    assert field_violations(small)[0][0] == "items[0]"
    # Each violation kept keeps its words for people.
    kept = error_details_pb2.BadRequest()
    small.details[0].Unpack(kept)
    assert {v.localized_message.message for v in kept.field_violations} == {"不能超过 200 个字符。"}
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in small.message.encode())
    details = len(base64.b64encode(small.SerializeToString()))
    assert message + details < METADATA_LIMIT // 2


class _Ctx:
    """What the serving wrapper asks of a streaming call's context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> None:
        return None


def test_a_watch_its_client_left_ends_without_an_error_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """gRPC closes a stream whose client went away from wherever it notices
    (another task, so another context): that is an ordinary end, not an
    error with a traceback in the operators' logs."""

    async def changes(request: bytes, context: Any) -> AsyncIterator[bytes]:
        while True:
            yield b"change"

    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_stream_rpc_method_handler(changes)

    async def watch_then_leave() -> None:
        details = SimpleNamespace(method="/t.Watcher/Watch")
        handler = await DomainErrorInterceptor().intercept_service(continuation, details)
        stream = handler.unary_stream(b"", _Ctx())
        assert await anext(stream) == b"change"
        await asyncio.create_task(stream.aclose())

    with caplog.at_level(logging.WARNING):
        asyncio.run(watch_then_leave())
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("etag", ["²", "١", "01", "1_0", " 3", "v3", "9" * 30])
def test_an_etag_this_api_never_gave_is_refused_not_taken_for_a_change(etag: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ticket_rules.stale(etag, 3)
    assert [v.field for v in info.value.violations] == ["etag"]


def test_an_etag_is_stale_only_when_it_names_an_older_version() -> None:
    assert ticket_rules.stale("2", 3)
    assert not ticket_rules.stale("3", 3)
    assert not ticket_rules.stale("", 3)  # no etag: no condition


async def test_a_watch_whose_client_left_leaves_no_unread_failure_behind() -> None:
    """The client of a watch goes away while the backend's next item is still
    coming; the backend's stream then fails. Nobody is left to read that
    failure, and the event loop must not report it as a lost error."""
    from casemesh.platform.grpcutil import _until_drained

    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    failed = asyncio.Event()

    async def backend() -> AsyncIterator[int]:
        try:
            await asyncio.sleep(0.3)
        finally:
            failed.set()
        raise RuntimeError("the backend call broke")
        yield 0

    async def watch() -> None:
        async for _ in _until_drained(backend(), asyncio.Event()):
            pass

    try:
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        watcher.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await watcher
        await asyncio.wait_for(failed.wait(), 5)
        for _ in range(5):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(handler)
    assert [c.get("message") for c in reported] == []


def test_a_list_querys_where_clause_holds_the_filters_given_and_their_parameters() -> None:
    where = (
        Where("open")
        .given(["ticket"], "type = ANY(%s)")
        .given("", "category = %s")
        .given([], "queue = ANY(%s)")
        .given(None, "holder = %s")
        .given(0, "priority = %s")
        .add("(a, b) > (%s, %s)", 1, "x")
    )
    assert str(where) == "open AND type = ANY(%s) AND priority = %s AND (a, b) > (%s, %s)"
    assert where.params == [["ticket"], 0, 1, "x"]
    assert str(Where()) == "TRUE" and Where().params == []


def test_a_created_case_not_taken_is_let_go_after_a_while_or_past_the_most_kept() -> None:
    now = [0.0]
    kept = Created(keep=2, keep_s=60.0, clock=lambda: now[0])
    cases = [SimpleNamespace(id=uuid.uuid4(), version=1) for _ in range(4)]
    kept.add(cases[0], kept.clears)
    now[0] = 61.0
    assert kept.take(cases[0].id, 1) is None  # kept too long: read back instead
    for case in cases[1:]:
        kept.add(case, kept.clears)
    assert kept.take(cases[1].id, 1) is None  # the oldest of three, two kept at most
    assert kept.take(cases[3].id, 1) is cases[3]
    # An erasure heard while a case was being saved: it is not kept.
    clears = kept.clears
    kept.clear()
    kept.add(cases[2], clears)
    assert kept.take(cases[2].id, 1) is None


@pytest.mark.parametrize("away", ["kafka", "database"])
async def test_an_outbox_publisher_that_cannot_start_stops_the_producer_it_made(
    away: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka or the database away when an outbox publisher starts: it fails,
    to be tried again, and the producer it made is stopped, not left open
    (each try makes a new one)."""

    class Producer:
        started = stopped = False

        async def start(self) -> None:
            if away == "kafka":
                raise KafkaConnectionError("Unable to bootstrap")
            self.started = True

        async def stop(self) -> None:
            self.stopped = True

    producer = Producer()
    monkeypatch.setattr(outbox, "make_producer", lambda *_: producer)
    publisher = outbox.OutboxPublisher(
        conninfo=f"postgresql://casemesh@127.0.0.1:{free_port()}/none?connect_timeout=2",
        bootstrap="127.0.0.1:9",
        outbox=outbox.Outbox("unit_outbox", "casemesh.unit.v1", "casemesh/unit", "case_id"),
        client_id="unit",
    )
    with pytest.raises((KafkaConnectionError, psycopg.OperationalError)):
        await publisher._publish_until(asyncio.Event())
    assert (producer.started, producer.stopped) == (away == "database", True)


async def test_an_upload_that_pauses_or_trickles_past_an_ordinary_uploads_time_is_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The evidence service holds a video's share of its upload budget while
    it comes: once an ordinary upload's time is past, an upload that stops
    sending, or comes slower than a transfer is sized for, is ended
    DEADLINE_EXCEEDED, not left to hold it for the hours its deadline
    allows. Before that, any pace and any pause (a slow link's large chunks)."""
    monkeypatch.setattr(api, "UPLOAD_PAUSE_S", 0.5)
    monkeypatch.setattr(api, "LARGEST_CHUNK", 1024)  # the chunks this test sends

    class Stub:
        def UploadEvidence(self, *, metadata: object, timeout: float) -> Any:
            return Storing()

    token = mint_token(SECRET, "alice", ["user"])
    context = SimpleNamespace(
        invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
        time_remaining=lambda: None,
    )

    def sending(
        pauses: list[float], chunk: int, first_after: float = 0.0
    ) -> AsyncIterator[evidence_pb2.UploadEvidenceRequest]:
        async def requests() -> AsyncIterator[evidence_pb2.UploadEvidenceRequest]:
            await asyncio.sleep(first_after)
            yield evidence_pb2.UploadEvidenceRequest(
                metadata=evidence_pb2.EvidenceMetadata(file_name="v.mp4")
            )
            for pause in pauses:
                await asyncio.sleep(pause)
                yield evidence_pb2.UploadEvidenceRequest(chunk=b"x" * chunk)

        return requests()

    async def upload(
        pauses: list[float], chunk: int, ordinary: float, first_after: float = 0.0
    ) -> str:
        gateway = await evidence_gateway(transfer_backend(), Stub())
        gateway.upload_timeout = ordinary
        requests = sending(pauses, chunk, first_after)
        stored = await gateway.UploadEvidence(requests, cast(Any, context))
        return stored.name

    # Within an ordinary upload's time: a pause longer than the limit, and a
    # pace far below 64 KiB/s (1 KiB a message), are a slow link's.
    assert await upload([0.05, 1.5, 0.05], 1024, ordinary=5.0) == "evidence/x"
    # Past it (here 0.2 s): 256 KiB a message keeps well ahead of 64 KiB/s...
    assert await upload([0.05] * 6, 256 * 1024, ordinary=0.2) == "evidence/x"
    # ...until it stops sending;
    with pytest.raises(DeadlineExceeded, match="paused") as paused:
        await upload([0.05, 0.05, 3.0], 256 * 1024, ordinary=0.2)
    assert paused.value.reason == "UPLOAD_PAUSED"
    # 1 KiB every 0.05 s is far slower than 64 KiB/s.
    with pytest.raises(DeadlineExceeded, match="slower") as slow:
        await upload([0.05] * 40, 1024, ordinary=0.2)
    assert slow.value.reason == "UPLOAD_TOO_SLOW"
    # A caller that never sends even the metadata is ended the same way.
    with pytest.raises(DeadlineExceeded, match="paused") as silent:
        await upload([], 1024, ordinary=0.2, first_after=3.0)
    assert silent.value.reason == "UPLOAD_PAUSED"


@pytest.mark.parametrize("chunk", [64 * 1024, 512 * 1024, 1024 * 1024])
def test_an_upload_keeping_to_64_kib_a_second_is_never_cut_and_a_stall_is(chunk: int) -> None:
    """A sender at exactly the slowest pace a transfer is sized for, in the
    chunks the CLI (512 KiB) or the proto's largest (1 MiB) make, is a chunk
    behind by nature (a message is handed over only once whole): never cut,
    across the 900 s boundary and on. Past it, a stall is cut 76 s after the
    last message."""
    floor = 64 * 1024
    sent, now = 0, 0.0
    while now < 3000:
        by, _ = api.next_chunk_by(0.0, now, sent, 900.0)
        now += chunk / floor  # the next message, whole
        assert now <= by, f"cut at {by:.0f} s, the chunk came at {now:.0f} s"
        sent += chunk
    # Stalling at that pace, it falls behind it once the largest chunk
    # could have come (16 s).
    assert api.next_chunk_by(0.0, now, sent, 900.0) == (now + 16.0, "UPLOAD_TOO_SLOW")
    # Well ahead of it (four times as fast), a stall is cut 76 s on.
    assert api.next_chunk_by(0.0, now, 4 * sent, 900.0) == (now + 76.0, "UPLOAD_PAUSED")
    # Before 900 s, any pause: a stall at 100 s is cut no sooner than 900 s.
    assert api.next_chunk_by(0.0, 100.0, chunk, 900.0) == (900.0, "UPLOAD_PAUSED")


@pytest.mark.parametrize(
    ("addr", "listened"),
    [
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("[::]:9464", ("::", 9464)),
        ("[::1]:2526", ("::1", 2526)),
    ],
)
def test_an_ipv6_listen_address_is_listened_on_without_its_brackets(
    addr: str, listened: tuple[str, int]
) -> None:
    assert listen_address(addr) == listened


def test_metrics_are_served_on_an_ipv6_address() -> None:
    """An IPv6 cluster's `CASEMESH_METRICS_ADDR=[::]:9464` passes the
    settings' check: it must be served, not end the start on a name the
    resolver cannot read."""
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError:
            pytest.skip("this machine has no IPv6 loopback")
    port = free_port()
    registry = CollectorRegistry()
    Counter("casemesh_ipv6_probe", "A counter to find.", registry=registry).inc()
    serve_metrics(f"[::1]:{port}", registry)
    with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as page:
        assert b"casemesh_ipv6_probe_total 1.0" in page.read()


async def test_a_stream_cut_off_as_its_reader_is_cancelled_ends_the_reader_cancelled() -> None:
    """A stream is cut off (its event set) and, while its read is being
    stopped, the task reading it is cancelled (its caller gone): the task
    ends cancelled, as its canceller expects, rather than as a stream that
    simply ended."""
    cut, stopping, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> AsyncIterator[int]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await release.wait()  # what it holds takes a while to let go
            raise
        yield 1

    async def reader() -> None:
        async for _ in until_set(slow_to_stop(), cut):
            pass

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)  # reading
    cut.set()
    await stopping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()

"""Who may do what, over every public RPC of casemesh.v1 (enumerated from the
generated descriptors: a new RPC is checked too, or this test asks for it to
be classified):

(a) a user on another user's resource: NOT_FOUND (it does not exist for them);
(b) a user on agents' and admins' calls, an agent on admins': PERMISSION_DENIED;
(c) at the gateway, a token with alg none, no exp, a future nbf, a wrong key,
    the wrong audience or issuer, or expired: UNAUTHENTICATED on every RPC;
(d) straight to each service's own port, a forged identity (the old plain
    headers, a token signed with another key, the gateway's token expired or
    made for another service, nothing): UNAUTHENTICATED on every RPC it serves.

Counts per category are printed (pytest -s) and are in the assertion message.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

import casemesh.v1
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    key_id,
    mint_token,
    new_signing_key,
    signing_key,
)
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import helpcenter_pb2_grpc as hpb_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e import test_appeals, test_reports
from tests.e2e.test_evidence import png
from tests.e2e.vouching import AUDIENCES, gateway_signer
from tests.support import Client

TIMEOUT = 10.0


@dataclass(frozen=True)
class Rpc:
    service: ServiceDescriptor
    method: MethodDescriptor

    @property
    def name(self) -> str:
        return f"{self.service.name}.{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    def request(self, **fields: Any) -> Message:
        message: Message = message_factory.GetMessageClass(self.method.input_type)(**fields)
        return message


def public_rpcs() -> list[Rpc]:
    """Every RPC of every service in the generated casemesh.v1 modules."""
    found = []
    for info in pkgutil.iter_modules(casemesh.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"casemesh.v1.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found += [Rpc(service, m) for m in service.methods]
    return sorted(found, key=lambda r: r.name)


RPCS = public_rpcs()

# Who each RPC is for. A new RPC fails this test until it is placed here.
AGENT_ONLY = {
    "TicketService.SearchTickets",
    "TicketService.AssignTicket",
    "TicketService.RequestInfo",
    "TicketService.HoldTicket",
    "TicketService.SolveTicket",
    "AppealService.AssignAppeal",
    "AppealService.RequestAppealInfo",
    "AppealService.DecideAppeal",
    "AppealService.RecordCourtAction",
    "AppealService.RecordCourtOutcome",
    "ReportService.ListReportCases",
    "ReportService.AssignReportCase",
    "ReportService.DecideReportCase",
    "ReportService.VoidReportCase",
    "ReportService.SetTrustedFlagger",
    "ReportService.RemoveTrustedFlagger",
    "ReportService.ListTrustedFlaggers",
    "ReportService.GetTransparencyReport",
    "CaseQueueService.ListQueueCases",
    "CaseQueueService.ClaimNextCase",
    "CaseQueueService.RenewClaim",
    "CaseQueueService.ReleaseClaim",
    "CaseQueueService.WatchQueue",
    "HelpCenterService.GetHelpFigures",
}
ADMIN_ONLY = {
    "HelpCenterService.CreateArticle",
    "HelpCenterService.UpdateArticle",
    "HelpCenterService.PublishArticle",
    "HelpCenterService.ListArticleVersions",
    "PrivacyService.ErasePerson",
}
ANY_USER = {
    "TicketService.CreateTicket",
    "TicketService.GetTicket",
    "TicketService.ListTickets",
    "TicketService.AddComment",
    "TicketService.ReopenTicket",
    "TicketService.CloseTicket",
    "TicketService.CancelTicket",
    "TicketService.RateTicket",
    "TicketService.ListTicketEvents",
    "TicketService.ListTicketCategories",
    "EvidenceService.UploadEvidence",
    "EvidenceService.GetEvidence",
    "EvidenceService.ReadEvidence",
    "EvidenceService.ListEvidence",
    "AppealService.FileAppeal",
    "AppealService.GetAppeal",
    "AppealService.ListAppeals",
    "AppealService.ListAppealEvents",
    "AppealService.AddAppealInfo",
    "AppealService.WithdrawAppeal",
    "AppealService.FileCounterNotice",
    "ReportService.FileReport",
    "ReportService.GetReport",
    "ReportService.ListReportEvents",
    "ReportService.ListReports",
    "ReportService.ListReportReasons",
    "ReportService.GetReportCase",
    "ReportService.ListMyRestrictions",
    "ReportService.ListMyReportCases",
    "ReportService.GetMyReportingStanding",
    "HelpCenterService.SearchArticles",
    "HelpCenterService.SuggestArticles",
    "HelpCenterService.GetArticle",
    "HelpCenterService.ListHelpCategories",
    "HelpCenterService.ListFlows",
    "HelpCenterService.StartFlow",
    "HelpCenterService.AnswerFlow",
    "HelpCenterService.ResolveHelp",
    "HelpCenterService.StartPhoneChange",
    "HelpCenterService.ConfirmPhoneChange",
    "HelpCenterService.ResendPhoneChangeCode",
    "HelpCenterService.GetPhoneChange",
    "HelpCenterService.RecommendArticles",
    "HelpCenterService.ListMyHelpSessions",
    "HelpCenterService.ListMyPhoneChanges",
    "NotificationService.ListMyNotifications",
    # Their own data; another person's is for admins (test_export).
    "PrivacyService.ExportPerson",
}
# Fields that name something a user owns.
RESOURCE_FIELDS = {"name", "session", "report_case"}
# User RPCs with such a field that (a) does not cover, and why.
NOT_OWNED = {
    # Articles are everyone's reading; the optional session is covered by (a).
    "HelpCenterService.GetArticle:name": "articles are public",
    # Filtering by case is for agents: a user is refused whoever owns the case.
    "ReportService.ListReports:report_case": "agents only (PERMISSION_DENIED)",
}


# -- calling any RPC -----------------------------------------------------------


def call(channel: grpc.Channel, rpc: Rpc, request: Message, metadata: Any) -> grpc.StatusCode:
    """The status of one call (a stream counts as answered at its first message)."""
    out = message_factory.GetMessageClass(rpc.method.output_type)
    codec = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": out.FromString,
    }
    try:
        if rpc.method.client_streaming:
            channel.stream_unary(rpc.path, **codec)(
                iter([request]), metadata=metadata, timeout=TIMEOUT
            )
        elif rpc.method.server_streaming:
            stream = channel.unary_stream(rpc.path, **codec)(
                request, metadata=metadata, timeout=TIMEOUT
            )
            try:
                next(stream, None)
            finally:
                stream.cancel()
        else:
            channel.unary_unary(rpc.path, **codec)(request, metadata=metadata, timeout=TIMEOUT)
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()
        return code
    return grpc.StatusCode.OK


@dataclass
class Tally:
    """One category's outcomes."""

    title: str
    expected: grpc.StatusCode
    checked: int = 0
    allowed: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def record(self, what: str, code: grpc.StatusCode) -> None:
        self.checked += 1
        if code == grpc.StatusCode.OK:
            self.allowed.append(what)
        elif code != self.expected:
            self.other.append(f"{what}: {code.name}")

    def line(self) -> str:
        right = self.checked - len(self.allowed) - len(self.other)
        return (
            f"{self.title}: {self.checked} calls, {right} {self.expected.name}, "
            f"{len(self.allowed)} wrongly allowed, {len(self.other)} other codes"
        )


# -- user A's resources, and the requests that name them -------------------------------


@dataclass
class Owned:
    """What user A owns, by resource name."""

    ticket: str
    evidence: str
    appeal: str
    report: str
    report_case: str
    session: str
    flow: str
    flow_session: str
    article: str
    phone_change: str


def owned_by(stack: Stack, user: str) -> Owned:
    client = Client(stack.gateway, stack.secret, user)
    ticket = client.CreateTicket(
        pb.CreateTicketRequest(
            request_id=f"authz-{user}",
            ticket=pb.Ticket(
                category="account.login",
                subject="cannot log in",
                description="the code never arrives",
                locale="en",
                contact=pb.Contact(email=f"{user}@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
        )
    )
    filer = test_appeals.Person(stack, user)
    evidence = filer.evidence.upload(png(), "proof.png")
    appeal = filer.FileAppeal(
        apb.FileAppealRequest(
            appeal=test_appeals.notice(filer, f"{user}@example.com", ""), request_id="authz"
        )
    )
    report = test_reports.Person(stack, user).report(f"video-{user}", email=f"{user}@example.com")
    help_desk = hpb_grpc.HelpCenterServiceStub(client._channel)

    def ask(method: str, request: Message) -> Any:
        return getattr(help_desk, method)(request, metadata=client.metadata, timeout=TIMEOUT)

    found = ask("SearchArticles", hpb.SearchArticlesRequest(query="忘记密码 登录不了"))
    flows = ask("ListFlows", hpb.ListFlowsRequest(locale="en")).flows
    step = ask("StartFlow", hpb.StartFlowRequest(flow=flows[0].name, locale="en"))
    digits = int(uuid.uuid4().hex[:8], 16) % 10**8
    change = ask(
        "StartPhoneChange",
        hpb.StartPhoneChangeRequest(
            old_phone=f"+86137{digits:08d}", new_phone=f"+86136{digits:08d}", request_id="authz"
        ),
    )
    return Owned(
        ticket=ticket.name,
        evidence=evidence.name,
        appeal=appeal.name,
        report=report.name,
        report_case=report.report_case,
        session=found.session,
        flow=flows[0].name,
        flow_session=step.session,
        article=found.results[0].article.name,
        phone_change=change.name,
    )


def counter_notice(name: str) -> apb.FileCounterNoticeRequest:
    return apb.FileCounterNoticeRequest(
        name=name,
        uploader=apb.Party(
            legal_name="Uma Lee",
            locale="en",
            contact=pb.Contact(email="uma@example.com", channels=[pb.CHANNEL_EMAIL]),
        ),
        counter_notice=apb.CounterNotice(removed_item="content:1", reason="I made it myself."),
        good_faith_statement=True,
        accuracy_statement=True,
    )


# For each RPC that names something a user owns: a request, otherwise sound,
# naming user A's.
ON_OWNED: dict[str, Callable[[Owned], Message]] = {
    "TicketService.GetTicket": lambda o: pb.GetTicketRequest(name=o.ticket),
    "TicketService.AddComment": lambda o: pb.AddCommentRequest(name=o.ticket, body="hello"),
    "TicketService.ReopenTicket": lambda o: pb.ReopenTicketRequest(name=o.ticket),
    "TicketService.CloseTicket": lambda o: pb.CloseTicketRequest(name=o.ticket),
    "TicketService.CancelTicket": lambda o: pb.CancelTicketRequest(name=o.ticket),
    "TicketService.RateTicket": lambda o: pb.RateTicketRequest(name=o.ticket, score=5),
    "TicketService.ListTicketEvents": lambda o: pb.ListTicketEventsRequest(name=o.ticket),
    "EvidenceService.GetEvidence": lambda o: epb.GetEvidenceRequest(name=o.evidence),
    "EvidenceService.ReadEvidence": lambda o: epb.ReadEvidenceRequest(name=o.evidence),
    "AppealService.GetAppeal": lambda o: apb.GetAppealRequest(name=o.appeal),
    "AppealService.ListAppealEvents": lambda o: apb.ListAppealEventsRequest(name=o.appeal),
    "AppealService.AddAppealInfo": lambda o: apb.AddAppealInfoRequest(
        name=o.appeal, message="more"
    ),
    "AppealService.WithdrawAppeal": lambda o: apb.WithdrawAppealRequest(name=o.appeal),
    "AppealService.FileCounterNotice": lambda o: counter_notice(o.appeal),
    "ReportService.GetReport": lambda o: rpb.GetReportRequest(name=o.report),
    "ReportService.ListReportEvents": lambda o: rpb.ListReportEventsRequest(name=o.report),
    "ReportService.GetReportCase": lambda o: rpb.GetReportCaseRequest(name=o.report_case),
    "HelpCenterService.SearchArticles": lambda o: hpb.SearchArticlesRequest(
        query="忘记密码", session=o.session
    ),
    "HelpCenterService.GetArticle": lambda o: hpb.GetArticleRequest(
        name=o.article, session=o.session
    ),
    "HelpCenterService.StartFlow": lambda o: hpb.StartFlowRequest(flow=o.flow, session=o.session),
    "HelpCenterService.AnswerFlow": lambda o: hpb.AnswerFlowRequest(
        session=o.flow_session, answer=0
    ),
    "HelpCenterService.ResolveHelp": lambda o: hpb.ResolveHelpRequest(
        session=o.flow_session, solved=True
    ),
    "HelpCenterService.RecommendArticles": lambda o: hpb.RecommendArticlesRequest(
        session=o.session, locale="en"
    ),
    "HelpCenterService.ConfirmPhoneChange": lambda o: hpb.ConfirmPhoneChangeRequest(
        name=o.phone_change, code="123456"
    ),
    "HelpCenterService.ResendPhoneChangeCode": lambda o: hpb.ResendPhoneChangeCodeRequest(
        name=o.phone_change
    ),
    "HelpCenterService.GetPhoneChange": lambda o: hpb.GetPhoneChangeRequest(name=o.phone_change),
}
RPC = {r.name: r for r in RPCS}


def request_for(rpc: Rpc, owned: Owned) -> Message:
    """User A's resource where the RPC names one, else an empty request."""
    make = ON_OWNED.get(rpc.name)
    return make(owned) if make else rpc.request()


# -- bad tokens at the gateway ----------------------------------------------------------


def user_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": f"mallory-{uuid.uuid4().hex[:6]}",
        "roles": ["admin"],
        "iss": "casemesh",
        "aud": "casemesh",
        "iat": now,
        "exp": now + 600,
        **changes,
    }
    return {k: v for k, v in claims.items() if v is not None}


def bad_tokens(stack: Stack) -> dict[str, str]:
    secret = stack.secret
    now = int(time.time())
    internal = gateway_signer(stack).token(
        Identity("mallory", frozenset({"admin"})), AUDIENCES["tickets"]
    )
    return {
        "alg none": jwt.encode(user_claims(), "", algorithm="none"),
        "no exp": jwt.encode(user_claims(exp=None), secret, algorithm="HS256"),
        "future nbf": jwt.encode(user_claims(nbf=now + 3600), secret, algorithm="HS256"),
        "wrong key": jwt.encode(user_claims(), "x" * 48, algorithm="HS256"),
        "wrong audience": jwt.encode(user_claims(aud="someone-else"), secret, algorithm="HS256"),
        "wrong issuer": jwt.encode(user_claims(iss="someone-else"), secret, algorithm="HS256"),
        "expired": jwt.encode(
            user_claims(iat=now - 7200, exp=now - 3600), secret, algorithm="HS256"
        ),
        "the gateway's own internal token": internal,
    }


# -- forged identities on the services' own ports --------------------------------------------


def forgeries(stack: Stack, service: str, victim: str) -> dict[str, list[tuple[str, Any]]]:
    """Ways to claim to be `victim` (with every role) to `service` directly."""
    real = stack.supervisor.command("gateway")[1]["CASEMESH_INTERNAL_SIGNING_KEY"]
    who = Identity(victim, frozenset({"user", "agent", "admin"}))
    audience = AUDIENCES[service]
    now = int(time.time())
    # Another key, but the header names the gateway's: only the signature tells.
    claims = {
        "iss": "casemesh-gateway",
        "aud": audience,
        "sub": victim,
        "roles": sorted(who.roles),
        "iat": now,
        "exp": now + 60,
    }
    wrong_key = jwt.encode(
        claims,
        signing_key(new_signing_key()),
        algorithm="EdDSA",
        headers={"kid": key_id(signing_key(real).public_key())},
    )
    expired = InternalTokenSigner(real, clock=lambda: time.time() - 600).token(who, audience)
    elsewhere = next(a for s, a in AUDIENCES.items() if s != service)
    other_service = InternalTokenSigner(real).token(who, elsewhere)
    return {
        "plain headers": [
            ("x-casemesh-subject-bin", victim.encode()),
            ("x-casemesh-roles-bin", b"admin,agent,user"),
        ],
        "signed with another key": [("x-casemesh-identity", wrong_key)],
        "the gateway's, expired": [("x-casemesh-identity", expired)],
        "the gateway's, for another service": [("x-casemesh-identity", other_service)],
        "none": [],
    }


# -- the matrix -------------------------------------------------------------------------


@pytest.fixture
def channels(stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    targets = {"gateway": stack.gateway} | {
        name: stack.supervisor.command(name)[1]["CASEMESH_GRPC_ADDR"] for name in AUDIENCES
    }
    opened = {name: grpc.insecure_channel(target) for name, target in targets.items()}
    yield opened
    for channel in opened.values():
        channel.close()


def test_every_rpc_is_classified() -> None:
    names = {r.name for r in RPCS}
    assert len(names) > 60
    unclassified = names - AGENT_ONLY - ADMIN_ONLY - ANY_USER
    assert not unclassified, f"say who may call {sorted(unclassified)} (AGENT_ONLY, …)"
    assert not (AGENT_ONLY | ADMIN_ONLY | ANY_USER) - names, "classified RPCs that do not exist"
    naming = {
        f"{r.name}:{f.name}"
        for r in RPCS
        if r.name in ANY_USER
        for f in r.method.input_type.fields
        if f.name in RESOURCE_FIELDS
    }
    uncovered = {n for n in naming if n.partition(":")[0] not in ON_OWNED} - set(NOT_OWNED)
    assert not uncovered, f"give (a) a request naming user A's resource for {sorted(uncovered)}"


def test_the_authorisation_matrix_over_every_rpc(
    stack: Stack, channels: dict[str, grpc.Channel]
) -> None:
    run = uuid.uuid4().hex[:6]
    owner, other, agent = f"authz-a-{run}", f"authz-b-{run}", f"authz-agent-{run}"
    owned = owned_by(stack, owner)
    gateway = channels["gateway"]

    def bearer(subject: str, *roles: str) -> list[tuple[str, str]]:
        token = mint_token(stack.secret, subject, roles or ("user",))
        return [("authorization", f"Bearer {token}")]

    # (a) user B on user A's resources.
    a = Tally("(a) another user's resource", grpc.StatusCode.NOT_FOUND)
    for name in sorted(ON_OWNED):
        a.record(name, call(gateway, RPC[name], ON_OWNED[name](owned), bearer(other)))

    # (b) a user on agents' and admins' calls; an agent on admins'.
    b = Tally("(b) a role the call needs", grpc.StatusCode.PERMISSION_DENIED)
    for rpc in RPCS:
        if rpc.name in AGENT_ONLY | ADMIN_ONLY:
            b.record(f"{rpc.name} as a user", call(gateway, rpc, rpc.request(), bearer(other)))
        if rpc.name in ADMIN_ONLY:
            caller = bearer(agent, "agent")
            b.record(f"{rpc.name} as an agent", call(gateway, rpc, rpc.request(), caller))

    # (c) bad tokens at the gateway, on every RPC.
    c = Tally("(c) bad tokens at the gateway", grpc.StatusCode.UNAUTHENTICATED)
    for kind, token in bad_tokens(stack).items():
        for rpc in RPCS:
            metadata = [("authorization", f"Bearer {token}")]
            c.record(
                f"{rpc.name} with {kind}", call(gateway, rpc, request_for(rpc, owned), metadata)
            )

    # (d) forged identities straight to each service, on every RPC it serves.
    d = Tally("(d) forged identity on a service's own port", grpc.StatusCode.UNAUTHENTICATED)
    for service, audience in AUDIENCES.items():
        served = [r for r in RPCS if r.service.full_name == audience]
        assert served, service
        for kind, metadata in forgeries(stack, service, owner).items():
            for rpc in served:
                code = call(channels[service], rpc, request_for(rpc, owned), metadata)
                d.record(f"{service} {rpc.name} with {kind}", code)

    tallies = [a, b, c, d]
    summary = "\n".join(t.line() for t in tallies)
    print(f"\nauthorisation matrix over {len(RPCS)} RPCs:\n{summary}")
    wrong = [f"allowed: {w}" for t in tallies for w in t.allowed]
    wrong += [f"other code: {w}" for t in tallies for w in t.other]
    assert not wrong, summary + "\n" + "\n".join(wrong[:40])

"""Appeals of report decisions: only a party of the decided case may file
one, whatever their roles, and the deadline the gateway vouches for holds
for the case it was read from alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from casemesh.platform.callers import _VOUCHED
from casemesh.platform.errors import (
    CasemeshError,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from casemesh.platform.grpcutil import to_status
from casemesh.platform.identity import (
    Identity,
    InternalTokenSigner,
    InternalTokenVerifier,
    TokenVerifier,
    Vouched,
    mint_token,
    new_signing_key,
    verify_key_of,
)
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import tickets_pb2 as tpb
from casemesh_appeals import policy
from casemesh_appeals.api import AppealServicer
from casemesh_appeals.application import Appeals
from casemesh_gateway.api import APPEALS, REPORTS, AppealGateway, Backend
from casemesh_gateway.ratelimit import RateLimiter
from casemesh_reports.api import ReportServicer
from casemesh_reports.application import Reports
from casemesh_reports.policy import Misuse, ReportsPolicy, load_taxonomy
from tests.application.story import AGENT, ALICE, FakeClock, in_memory
from tests.application.test_reports import NO_VIOLATION, report

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEY = new_signing_key()
# An agent who neither reported the video nor uploaded it.
MALLORY = Identity("mallory", frozenset({"agent"}))
# An agent who reported it, as anyone may.
KIM = Identity("kim", frozenset({"agent"}))


def services_verifier() -> InternalTokenVerifier:
    return InternalTokenVerifier(verify_key_of(KEY), [REPORTS, APPEALS])


class ReportsBehindItsCheck:
    """The reports service as the gateway reaches it: the gateway's token
    checked, its refusals coming back as a channel gives them."""

    def __init__(self, app: Reports) -> None:
        self.servicer = ReportServicer(app)

    def GetReportCase(self, request: Any, *, metadata: Any, timeout: float) -> Awaitable[Any]:
        return self._answer(request, metadata)

    async def _answer(self, request: Any, metadata: Any) -> Any:
        token = _VOUCHED.set(services_verifier().verify(metadata))
        try:
            return await self.servicer.GetReportCase(request, cast(Any, None))
        except CasemeshError as err:
            status = to_status(err)
            raise grpc.aio.AioRpcError(
                status.code,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(*status.trailing_metadata),
                status.details,
            ) from None
        finally:
            _VOUCHED.reset(token)


class AppealsTaking:
    """The appeals service, recording what the gateway forwards to it; it
    holds the appeals in `held` (by name)."""

    def __init__(self) -> None:
        self.forwarded: list[Vouched] = []
        self.held: dict[str, apb.Appeal] = {}
        self.worked: list[tuple[str, str]] = []

    def FileAppeal(self, request: Any, *, metadata: Any, timeout: float) -> Awaitable[Any]:
        self.forwarded.append(services_verifier().verify(metadata))
        return self._answer(apb.Appeal(name="appeals/forwarded"))

    def GetAppeal(self, request: Any, *, metadata: Any, timeout: float) -> Awaitable[Any]:
        return self._answer(self.held[request.name])

    def AssignAppeal(self, request: Any, *, metadata: Any, timeout: float) -> Awaitable[Any]:
        return self._worked("AssignAppeal", request, metadata)

    def RequestAppealInfo(self, request: Any, *, metadata: Any, timeout: float) -> Awaitable[Any]:
        return self._worked("RequestAppealInfo", request, metadata)

    def DecideAppeal(self, request: Any, *, metadata: Any, timeout: float) -> Awaitable[Any]:
        return self._worked("DecideAppeal", request, metadata)

    def _worked(self, method: str, request: Any, metadata: Any) -> Awaitable[Any]:
        self.worked.append((method, services_verifier().verify(metadata).identity.subject))
        return self._answer(self.held[request.name])

    @staticmethod
    async def _answer(appeal: apb.Appeal) -> Any:
        return appeal


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def decided(clock: FakeClock) -> tuple[Reports, str]:
    """A video Alice and Kim reported, decided not to break the rules: the
    decided case's name."""
    misuse = Misuse(warn_after=3, suspend_after=5, window_days=180, suspension_days=30)
    app = Reports(
        in_memory(), clock=clock, policy=ReportsPolicy(taxonomy=load_taxonomy(), misuse=misuse)
    )
    filed = app.file(ALICE, report())
    assert app.file(KIM, report("r2")).case_id == filed.case_id
    app.decide(AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    return app, f"report-cases/{filed.case_id}"


async def gateway(app: Reports) -> tuple[AppealGateway, AppealsTaking]:
    backend = Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(KEY),
        limiter=RateLimiter(per_minute=600, burst=100),
        timeout=5,
    )
    backend.reports = ReportsBehindItsCheck(app)
    appeals = AppealsTaking()
    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # never used: the stub is replaced
    served = AppealGateway(backend, channel)
    served.stub = cast(Any, appeals)
    await channel.close()
    return served, appeals


def signed_in(who: Identity) -> Any:
    token = mint_token(SECRET, who.subject, who.roles)
    return SimpleNamespace(
        invocation_metadata=lambda: [("authorization", f"Bearer {token}")],
        time_remaining=lambda: None,
    )


def appeal_of(case: str, request_id: str = "a1") -> apb.FileAppealRequest:
    return apb.FileAppealRequest(
        request_id=request_id,
        appeal=apb.Appeal(
            kind=apb.APPEAL_KIND_DECISION_APPEAL,
            jurisdiction="cn",
            appeal_of=case,
            grounds="视频确实宣扬恐怖组织，请重新审核。",
            filer=apb.Party(
                legal_name="M",
                locale="zh-CN",
                contact=tpb.Contact(email="m@example.com", channels=[tpb.CHANNEL_EMAIL]),
            ),
        ),
    )


async def test_an_agent_who_is_no_party_of_a_decided_case_cannot_appeal_it(
    decided: tuple[Reports, str],
) -> None:
    """An agent reads every case, but appeals a decision only as its parties
    may: Mallory is refused as a stranger is, on appeal.appeal_of, and the
    appeals service hears nothing; Kim, an agent who reported the video, and
    Alice appeal it."""
    app, case = decided
    served, appeals = await gateway(app)
    with pytest.raises(InvalidArgument) as refused:
        await served.FileAppeal(appeal_of(case), signed_in(MALLORY))
    assert [v.field for v in refused.value.violations] == ["appeal.appeal_of"]
    assert "not a case you are part of" in refused.value.message
    assert appeals.forwarded == []

    for who in (KIM, ALICE):
        await served.FileAppeal(appeal_of(case), signed_in(who))
    assert [v.identity for v in appeals.forwarded] == [KIM, ALICE]


async def test_an_agent_who_reported_a_decided_case_may_not_work_its_appeals(
    decided: tuple[Reports, str],
) -> None:
    """Kim, an agent, reported the video: the appeals of its decision are not
    hers to take, decide or ask more of, nor to be given (PERMISSION_DENIED,
    OWN_CASE, as the appeals service refuses its own parties), though the
    appeals service cannot tell she reported it. Mallory, no party, works
    them, and may be given them; the appeals service hears only her."""
    app, case = decided
    served, appeals = await gateway(app)
    name = "appeals/3f1c9a7e-52b4-4d0e-9b8a-7c6d5e4f3a21"
    appeals.held[name] = apb.Appeal(name=name, appeal_of=case)
    assign = apb.AssignAppealRequest(name=name)
    decide = apb.DecideAppealRequest(name=name, outcome=apb.APPEAL_OUTCOME_UPHOLD)
    ask = apb.RequestAppealInfoRequest(name=name, message="请补充截图。")
    kims_work: list[tuple[Identity, Callable[[], Awaitable[Any]]]] = [
        (KIM, lambda: served.AssignAppeal(assign, signed_in(KIM))),
        (KIM, lambda: served.DecideAppeal(decide, signed_in(KIM))),
        (KIM, lambda: served.RequestAppealInfo(ask, signed_in(KIM))),
        (MALLORY, lambda: served.AssignAppeal(
            apb.AssignAppealRequest(name=name, assignee="kim"), signed_in(MALLORY))),
    ]  # fmt: skip
    for who, work in kims_work:
        with pytest.raises(PermissionDenied) as refused:
            await work()
        assert refused.value.reason == "OWN_CASE"
        told = "you are a party" if who is KIM else "kim is a party"
        assert refused.value.message.startswith(told)
    assert appeals.worked == []

    await served.AssignAppeal(assign, signed_in(MALLORY))
    await served.DecideAppeal(decide, signed_in(MALLORY))
    assert appeals.worked == [("AssignAppeal", "mallory"), ("DecideAppeal", "mallory")]


async def test_the_gateway_vouches_for_the_deadline_of_the_case_it_read(
    decided: tuple[Reports, str], clock: FakeClock
) -> None:
    app, case = decided
    served, appeals = await gateway(app)
    await served.FileAppeal(appeal_of(case), signed_in(ALICE))
    (vouched,) = appeals.forwarded
    assert dict(vouched.facts) == {
        "appealable_until": app.policy.appeal_deadline(clock.now()).isoformat(),
        "appealed_scope": "",
        "appeal_of": case,
    }


# -- the appeals service: the facts hold for the case they name ------------------------

URSULA = Identity("ursula", frozenset({"user"}))
CASE = "report-cases/6c1f0a52-4a35-4f8e-9d0c-5f2b7d3c9a11"
OTHER_CASE = "report-cases/0d9e8f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a"


def appeals(clock: FakeClock) -> Appeals:
    return Appeals(in_memory(), clock=clock, policies=policy.load())


async def file_with(app: Appeals, request: apb.FileAppealRequest, facts: dict[str, str]) -> Any:
    """FileAppeal as the appeals service serves it, vouched for with `facts`."""
    token = _VOUCHED.set(Vouched(URSULA, facts))
    try:
        return await AppealServicer(app).FileAppeal(request, cast(Any, None))
    finally:
        _VOUCHED.reset(token)


def open_window(clock: FakeClock, case: str) -> dict[str, str]:
    until = (clock.now() + timedelta(days=30)).isoformat()
    return {"appealable_until": until, "appealed_scope": "CN", "appeal_of": case}


async def test_a_deadline_vouched_for_one_case_files_no_appeal_of_another(
    clock: FakeClock,
) -> None:
    """A token the gateway signed for an appeal of one case (its window
    open) does not lend that window to another case, whose window closed."""
    app = appeals(clock)
    with pytest.raises(PermissionDenied, match=CASE):
        await file_with(app, appeal_of(OTHER_CASE), open_window(clock, CASE))
    assert app.list_appeals(URSULA, 50, "", []).items == []
    filed = await file_with(app, appeal_of(CASE), open_window(clock, CASE))
    assert (filed.appeal_of, filed.state) == (CASE, apb.APPEAL_STATE_SUBMITTED)


async def test_facts_from_an_older_gateway_naming_no_case_are_to_be_retried(
    clock: FakeClock,
) -> None:
    """While the gateway is rolled out, its older replicas vouch for a
    deadline without naming the case: the filing is refused as UNAVAILABLE
    (retry), not taken for whatever case it names; a retry through an
    upgraded gateway files it, once."""
    app = appeals(clock)
    older = {k: v for k, v in open_window(clock, CASE).items() if k != "appeal_of"}
    with pytest.raises(Unavailable, match="retry"):
        await file_with(app, appeal_of(CASE), older)
    assert app.list_appeals(URSULA, 50, "", []).items == []
    first = await file_with(app, appeal_of(CASE), open_window(clock, CASE))
    again = await file_with(app, appeal_of(CASE), open_window(clock, CASE))
    assert first.name == again.name

"""Abuse reports through the gateway only: reports of one video grouped into
one case, one reasoned decision, the statement to the uploader and the
outcome to each reporter (each exactly once); triage order; reporting misuse
and its suspension on the test clock; appeals that reverse a decision; and
transparency figures checked against the topic."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import httpx
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.parser import text_string_to_metric_families

from casemesh import topics
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import reports_pb2_grpc as rpb_grpc
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack
from tests.e2e.test_evidence import EvidenceClient, png
from tests.support import (
    Client,
    error_info,
    rejected,
    told_everything,
    violated_fields,
    wait_until,
)

TOPIC = topics.REPORTS


class Person:
    def __init__(self, stack: Stack, user: str, *roles: str) -> None:
        self.client = Client(stack.gateway, stack.secret, user, roles or ("user",))
        self.user = user
        self.stub = rpb_grpc.ReportServiceStub(self.client._channel)
        self.appeals = apb_grpc.AppealServiceStub(self.client._channel)
        self.evidence = EvidenceClient(self.client)

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self.stub, method)
        return lambda request: rpc(request, metadata=self.client.metadata, timeout=15)

    def appeal(self, request: apb.FileAppealRequest) -> apb.Appeal:
        return self.appeals.FileAppeal(request, metadata=self.client.metadata, timeout=15)  # type: ignore[no-any-return]

    def report(
        self,
        video: str,
        *,
        category: str = "violence_terrorism",
        subcategory: str = "terrorism",
        kind: rpb.TargetType.ValueType = rpb.TARGET_TYPE_VIDEO,
        email: str = "",
        phone: str = "",
        locale: str = "zh-CN",
        request_id: str = "",
        explanation: str = "视频宣扬恐怖组织，画面中有袭击场景。",
    ) -> rpb.Report:
        # The child-safety lane takes no copy of what is reported.
        proofs = (
            []
            if category == "child_safety"
            else [epb.EvidenceRef(name=self.evidence.upload(png(), "截图.png").name)]
        )
        channels = ([pb.CHANNEL_EMAIL] if email else []) + ([pb.CHANNEL_SMS] if phone else [])
        return self.FileReport(  # type: ignore[no-any-return]
            rpb.FileReportRequest(
                request_id=request_id or uuid.uuid4().hex,
                report=rpb.Report(
                    target=rpb.ReportTarget(type=kind, id=video),
                    reason=rpb.ReportReasonRef(category=category, subcategory=subcategory),
                    explanation=explanation,
                    evidence=proofs,
                    good_faith_statement=True,
                    contact=pb.Contact(email=email, phone=phone, channels=channels),
                    locale=locale,
                ),
            )
        )

    def take_action(
        self, stack: Stack, case: str, uploader: apb.Party, **changes: Any
    ) -> rpb.ReportCase:
        """As an agent: the reported video goes (`statement`, with `changes`),
        and its uploader is told."""
        return self.DecideReportCase(  # type: ignore[no-any-return]
            rpb.DecideReportCaseRequest(
                name=case,
                outcome=rpb.REPORT_DECISION_OUTCOME_ACTION_TAKEN,
                statement=statement(stack, **changes),
                affected_uploader=uploader,
            )
        )


def party(user_id: str, email: str, locale: str, legal_name: str = "") -> apb.Party:
    """An affected uploader, told by e-mail."""
    contact = pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL])
    return apb.Party(user_id=user_id, legal_name=legal_name, locale=locale, contact=contact)


def service_now(stack: Stack) -> datetime:
    """The services' time: the system's plus the test clock's offset."""
    return datetime.now(UTC) + timedelta(seconds=stack.clock_offset())


def statement(stack: Stack, **changes: Any) -> rpb.DecisionStatement:
    s = rpb.DecisionStatement(
        decision_ground=rpb.DECISION_GROUND_INCOMPATIBLE_CONTENT,
        incompatible_content_ground="社区自律公约 第 3.2 条：禁止宣扬恐怖主义",
        incompatible_content_explanation="视频展示并美化恐怖袭击。",
        incompatible_content_illegal=True,
        category_specification=["KEYWORD_TERRORIST_CONTENT"],
        content_type=[rpb.CONTENT_TYPE_VIDEO],
        content_date="2026-11-01",
        application_date=service_now(stack).date().isoformat(),
        decision_facts="三名用户举报；人工审核确认视频第 12 秒起出现袭击画面并配有宣扬口号。",
        automated_detection=False,
        automated_decision=rpb.AUTOMATED_DECISION_NOT_AUTOMATED,
        restrictions=rpb.Restrictions(
            visibility=[rpb.DECISION_VISIBILITY_CONTENT_REMOVED],
            account=rpb.DECISION_ACCOUNT_SUSPENDED,
        ),
        territorial_scope=["CN"],
        content_language="zh",
    )
    end = Timestamp()
    end.FromDatetime(service_now(stack) + timedelta(days=7))
    s.restrictions.account_end_time.CopyFrom(end)
    for key, value in changes.items():
        s.ClearField(cast(Any, key))
        if isinstance(value, list):
            getattr(s, key).extend(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(s, key).CopyFrom(value)
        elif value is not None:
            setattr(s, key, value)
    return s


def people(stack: Stack, n: int) -> tuple[str, list[Person], Person]:
    run = uuid.uuid4().hex[:6]
    reporters = [Person(stack, f"rep{i}-{run}") for i in range(n)]
    return run, reporters, Person(stack, f"agent-{run}", "agent")


def test_three_reports_one_case_one_decision_each_party_told_once(stack: Stack) -> None:
    run, reporters, agent = people(stack, 3)
    video = f"v{run}"
    emails = [f"{r.user}@example.com" for r in reporters]
    phone = f"+86138{int(run, 16) % 10**8:08d}"
    filed = [
        reporters[0].report(video, email=emails[0], phone=phone),
        reporters[1].report(video, email=emails[1], locale="en"),
        reporters[2].report(video, email=emails[2]),
    ]
    assert len({r.report_case for r in filed}) == 1
    case_name = filed[0].report_case

    # Agents see one case with three reports, first in the queue's order of priority.
    case = agent.GetReportCase(rpb.GetReportCaseRequest(name=case_name))
    assert case.reporter_count == 3 and len(case.reports) == 3
    assert set(case.reports) == {r.name for r in filed}
    queued = agent.ListReportCases(rpb.ListReportCasesRequest(category="violence_terrorism"))
    assert case_name in [c.name for c in queued.report_cases]
    listed = agent.ListReports(rpb.ListReportsRequest(report_case=case_name))
    assert {r.name for r in listed.reports} == {r.name for r in filed}

    uploader = Person(stack, f"uploader-{run}")
    uploader_email = f"{uploader.user}@example.com"
    agent.AssignReportCase(rpb.AssignReportCaseRequest(name=case_name))
    decided = agent.take_action(
        stack, case_name, party(uploader.user, uploader_email, "zh-CN", legal_name="张三")
    )
    assert decided.state == rpb.REPORT_CASE_STATE_ACTION_TAKEN
    d = decided.decision
    assert d.source_type == "SOURCE_ARTICLE_16" and d.puid == video
    assert d.category == rpb.STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY
    assert d.appeal_deadline.ToDatetime(tzinfo=UTC) > service_now(stack) + timedelta(days=180)

    # Each reporter: a receipt, then the outcome. The uploader: the statement.
    def arrived() -> bool:
        return all(len(stack.mail.to(e)) >= 2 for e in emails) and bool(
            stack.mail.to(uploader_email)
        )

    wait_until(arrived, timeout=60)
    # Nothing left to send them: a message planned twice would be among those counted.
    wait_until(
        lambda: told_everything(
            stack.infra.kafka.bootstrap, stack.notifier_dsn, [*emails, phone, uploader_email]
        ),
        timeout=60,
    )
    for email, locale in zip(emails, ("zh-CN", "en", "zh-CN"), strict=True):
        subjects = [m["Subject"] for m in stack.mail.to(email)]
        assert len(subjects) == 2, subjects
        assert ("已处理" if locale == "zh-CN" else "action taken") in subjects[1]
    statements = stack.mail.to(uploader_email)
    assert len(statements) == 1
    body = statements[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for fact in ("社区自律公约 第 3.2 条", "删除内容", "暂停账号", "危害公共安全", "人工审核"):
        assert fact in body, body
    assert len(stack.sms.to(phone)) == 2

    # Reporters see the outcome on their report; nobody sees another's report.
    mine = reporters[1].GetReport(rpb.GetReportRequest(name=filed[1].name))
    assert mine.state == rpb.REPORT_STATE_ACTION_TAKEN
    assert "DECISION_VISIBILITY_CONTENT_REMOVED" in mine.outcome.restrictions
    steps = reporters[1].ListReportEvents(rpb.ListReportEventsRequest(name=filed[1].name)).events
    assert [(s.sequence, s.type, s.state) for s in steps] == [
        (1, "ReportFiled", rpb.REPORT_STATE_SUBMITTED),
        (2, "ReportResolved", rpb.REPORT_STATE_ACTION_TAKEN),
    ]
    err = rejected(lambda: reporters[1].GetReport(rpb.GetReportRequest(name=filed[0].name)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # The uploader reads the decision about them, not who reported it.
    seen = uploader.GetReportCase(rpb.GetReportCaseRequest(name=case_name))
    assert seen.decision.decision_facts and not seen.reports and not seen.decision.source_identity
    stranger = Person(stack, f"stranger-{run}")
    err = rejected(lambda: stranger.GetReportCase(rpb.GetReportCaseRequest(name=case_name)))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    # A new report after the decision opens the next case for the same video.
    later = Person(stack, f"later-{run}").report(video, email=f"later-{run}@example.com")
    assert later.report_case != case_name


def decide_no_violation(
    agent: Person, report: rpb.Report, *, unfounded: bool = False
) -> rpb.ReportCase:
    return agent.DecideReportCase(  # type: ignore[no-any-return]
        rpb.DecideReportCaseRequest(
            name=report.report_case,
            outcome=rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION,
            statement=rpb.DecisionStatement(decision_facts="普通的舞蹈视频，没有任何违规内容。"),
            manifestly_unfounded_reports=[report.name] if unfounded else [],
        )
    )


def test_child_safety_and_trusted_flaggers_come_first(stack: Stack) -> None:
    run, (ordinary, flagger, parent), agent = people(stack, 3)
    email = f"{ordinary.user}@example.com"
    older = [
        ordinary.report(
            f"o{run}{i}", category="pornography_vulgar", subcategory="vulgar", email=email
        )
        for i in range(50)
    ]
    child = parent.report(
        f"c{run}",
        category="child_safety",
        subcategory="grooming",
        email=f"{parent.user}@example.com",
    )
    names: list[str] = []
    token = ""
    while True:
        page = agent.ListReportCases(rpb.ListReportCasesRequest(page_size=100, page_token=token))
        names += [c.name for c in page.report_cases]
        token = page.next_page_token
        if not token:
            break
    assert len(names) == len(set(names))  # paging repeats nothing
    position = {n: i for i, n in enumerate(names)}
    assert all(position[child.report_case] < position[r.report_case] for r in older)
    lane = agent.ListReportCases(rpb.ListReportCasesRequest(lane=rpb.QUEUE_LANE_CHILD_SAFETY))
    assert child.report_case in [c.name for c in lane.report_cases]
    assert all(c.lane == rpb.QUEUE_LANE_CHILD_SAFETY for c in lane.report_cases)

    # A trusted flagger in their area is ahead of an ordinary report of the same age,
    # even one made a moment earlier; outside their area they are an ordinary notifier.
    agent.SetTrustedFlagger(
        rpb.SetTrustedFlaggerRequest(
            flagger=rpb.TrustedFlagger(
                user_id=flagger.user, display_name="反网络欺凌中心", areas=["harassment"]
            )
        )
    )
    listed = agent.ListTrustedFlaggers(rpb.ListTrustedFlaggersRequest())
    assert flagger.user in [f.user_id for f in listed.flaggers]
    plain = ordinary.report(f"h{run}a", category="harassment", subcategory="bullying", email=email)
    flagged = flagger.report(
        f"h{run}b", category="harassment", subcategory="bullying", email=f"{flagger.user}@e.com"
    )
    elsewhere = flagger.report(
        f"h{run}c", category="fraud", subcategory="phishing", email=f"{flagger.user}@e.com"
    )
    assert flagged.source == rpb.REPORT_SOURCE_TRUSTED_FLAGGER
    assert elsewhere.source == rpb.REPORT_SOURCE_NOTICE
    queue = agent.ListReportCases(
        rpb.ListReportCasesRequest(category="harassment", page_size=100)
    ).report_cases
    order = [c.name for c in queue]
    assert order.index(flagged.report_case) < order.index(plain.report_case)
    by_name = {c.name: c for c in queue}
    assert by_name[flagged.report_case].priority > by_name[plain.report_case].priority
    assert by_name[flagged.report_case].trusted_flagger
    # The statement names the trusted flagger as its source.
    decided = agent.take_action(
        stack, flagged.report_case, party(f"bully-{run}", f"bully-{run}@example.com", "zh-CN")
    )
    assert decided.decision.source_type == "SOURCE_TRUSTED_FLAGGER"
    assert decided.decision.source_identity == "反网络欺凌中心"
    agent.RemoveTrustedFlagger(rpb.RemoveTrustedFlaggerRequest(user_id=flagger.user))
    again = flagger.report(
        f"h{run}d", category="harassment", subcategory="bullying", email=f"{flagger.user}@e.com"
    )
    assert again.source == rpb.REPORT_SOURCE_NOTICE


def test_decisions_missing_statement_fields_and_other_bad_input_change_nothing(
    stack: Stack,
) -> None:
    run, (a, b), agent = people(stack, 2)
    email = f"{a.user}@example.com"
    report = a.report(f"x{run}", email=email)
    case = report.report_case

    def decide(s: rpb.DecisionStatement, **kw: Any) -> grpc.RpcError:
        request = rpb.DecideReportCaseRequest(
            name=case,
            outcome=kw.get("outcome", rpb.REPORT_DECISION_OUTCOME_ACTION_TAKEN),
            statement=s,
            affected_uploader=kw.get(
                "uploader",
                apb.Party(
                    user_id="u",
                    locale="en",
                    contact=pb.Contact(email="u@example.com", channels=[pb.CHANNEL_EMAIL]),
                ),
            ),
            manifestly_unfounded_reports=kw.get("unfounded", []),
        )
        return rejected(lambda: agent.DecideReportCase(request))

    cases: list[tuple[rpb.DecisionStatement, dict[str, Any], str]] = [
        (statement(stack, content_date=""), {}, "statement.content_date"),
        (statement(stack, decision_ground=None), {}, "statement.decision_ground"),
        (
            statement(stack, incompatible_content_ground=""),
            {},
            "statement.incompatible_content_ground",
        ),
        (statement(stack, content_type=None), {}, "statement.content_type"),
        (statement(stack, automated_decision=None), {}, "statement.automated_decision"),
        (statement(stack, restrictions=None), {}, "statement.restrictions"),
        (statement(stack, application_date="2020-01-01"), {}, "statement.application_date"),
        (
            statement(stack, category_specification=["KEYWORD_NOPE"]),
            {},
            "statement.category_specification[0]",
        ),
        (statement(stack, territorial_scope=["China"]), {}, "statement.territorial_scope[0]"),
        (statement(stack, content_type=[0]), {}, "statement.content_type[0]"),
        (statement(stack, content_type=[99]), {}, "statement.content_type[0]"),
        (statement(stack, content_date="x"), {}, "statement.content_date"),
        (statement(stack, application_date="2020-1-01"), {}, "statement.application_date"),
        (statement(stack, content_date="2999-01-01"), {}, "statement.content_date"),
        (
            statement(stack, restrictions=rpb.Restrictions(account=rpb.DECISION_ACCOUNT_SUSPENDED)),
            {},
            "statement.restrictions.account_end_time",
        ),
        (
            statement(
                stack,
                restrictions=rpb.Restrictions(
                    visibility=[rpb.DECISION_VISIBILITY_CONTENT_REMOVED] * 2
                ),
            ),
            {},
            "statement.restrictions.visibility",
        ),
        (
            statement(
                stack,
                restrictions=rpb.Restrictions(visibility=[rpb.DECISION_VISIBILITY_UNSPECIFIED]),
            ),
            {},
            "statement.restrictions.visibility[0]",
        ),
        (
            statement(stack),
            {"outcome": rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION},
            "statement.restrictions",
        ),
        (
            statement(stack),
            {
                "uploader": apb.Party(
                    user_id="u",
                    locale="en",
                    contact=pb.Contact(email="u@e.com", channels=[cast(Any, 7)]),
                )
            },
            "affected_uploader.contact.channels",
        ),
        (statement(stack), {"uploader": apb.Party(locale="en")}, "affected_uploader.user_id"),
        (statement(stack), {"unfounded": [report.name]}, "manifestly_unfounded_reports"),
        (
            statement(stack),
            {"outcome": rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION, "unfounded": ["reports/x"]},
            "manifestly_unfounded_reports[0]",
        ),
        # Nothing sent is dropped: an end time or words with no restriction
        # of theirs, an uploader no decision names, a report named twice.
        (
            statement(
                stack,
                restrictions=rpb.Restrictions(
                    visibility=[rpb.DECISION_VISIBILITY_CONTENT_REMOVED],
                    monetary_other="ad revenue withheld",
                    provision_end_time=Timestamp(seconds=4_000_000_000),
                ),
            ),
            {},
            "statement.restrictions.monetary_other",
        ),
        (
            statement(
                stack,
                restrictions=rpb.Restrictions(
                    visibility=[rpb.DECISION_VISIBILITY_CONTENT_REMOVED],
                    provision_end_time=Timestamp(seconds=4_000_000_000),
                ),
            ),
            {},
            "statement.restrictions.provision_end_time",
        ),
        (  # applied in 10 days: restrictions take effect when decided
            statement(
                stack,
                application_date=(service_now(stack) + timedelta(days=10)).date().isoformat(),
            ),
            {},
            "statement.application_date",
        ),
        (
            statement(stack, restrictions=None),
            {"outcome": rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION},
            "affected_uploader",
        ),
        (
            statement(stack, restrictions=None),
            {
                "outcome": rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION,
                "unfounded": [report.name, report.name],
            },
            "manifestly_unfounded_reports[1]",
        ),
    ]
    for s, kw, field in cases:
        err = decide(s, **kw)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.details())
        assert field in violated_fields(err), (field, err.details())
    illegal = statement(
        stack,
        decision_ground=rpb.DECISION_GROUND_ILLEGAL_CONTENT,
        illegal_content_legal_ground="",
    )
    assert "statement.illegal_content_legal_ground" in violated_fields(decide(illegal))
    assert "statement.illegal_content_explanation" in violated_fields(decide(illegal))

    # A user reading someone else's report, or any queue RPC without the agent role.
    assert (
        rejected(lambda: b.GetReport(rpb.GetReportRequest(name=report.name))).code()
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        rejected(lambda: b.GetReportCase(rpb.GetReportCaseRequest(name=case))).code()
        == grpc.StatusCode.NOT_FOUND
    )
    for call in (
        lambda: b.ListReportCases(rpb.ListReportCasesRequest()),
        lambda: b.DecideReportCase(rpb.DecideReportCaseRequest(name=case)),
        lambda: b.GetTransparencyReport(rpb.GetTransparencyReportRequest()),
        lambda: b.SetTrustedFlagger(rpb.SetTrustedFlaggerRequest()),
        lambda: b.ListReports(rpb.ListReportsRequest(report_case=case)),
    ):
        assert rejected(call).code() == grpc.StatusCode.PERMISSION_DENIED

    # Filing: every missing or wrong field named; copyright goes to the appeals track.
    proof = b.evidence.upload(png(), "x.png")
    theirs = a.evidence.upload(png(), "y.png")

    def file(report_: rpb.Report, request_id: str = "") -> grpc.RpcError:
        return rejected(
            lambda: b.FileReport(
                rpb.FileReportRequest(request_id=request_id or uuid.uuid4().hex, report=report_)
            )
        )

    good = rpb.Report(
        target=rpb.ReportTarget(type=rpb.TARGET_TYPE_VIDEO, id=f"y{run}"),
        reason=rpb.ReportReasonRef(category="harassment", subcategory="bullying"),
        explanation="辱骂他人",
        evidence=[epb.EvidenceRef(name=proof.name)],
        good_faith_statement=True,
        contact=pb.Contact(email=f"{b.user}@example.com", channels=[pb.CHANNEL_EMAIL]),
        locale="zh-CN",
    )

    def bad(**changes: Any) -> rpb.Report:
        r = rpb.Report()
        r.CopyFrom(good)
        for key, value in changes.items():
            if value is None:
                r.ClearField(cast(Any, key))
            else:
                getattr(r, key).CopyFrom(value) if hasattr(value, "DESCRIPTOR") else setattr(
                    r, key, value
                )
        return r

    copyright_reason = rpb.ReportReasonRef(category="copyright", subcategory="x")
    expectations = [
        (bad(reason=copyright_reason), "report.reason.category", "FileAppeal"),
        (
            bad(reason=rpb.ReportReasonRef(category="harassment", subcategory="x")),
            "report.reason.subcategory",
            "",
        ),
        (bad(target=rpb.ReportTarget(type=rpb.TARGET_TYPE_VIDEO)), "report.target.id", ""),
        (
            bad(
                target=rpb.ReportTarget(
                    type=rpb.TARGET_TYPE_VIDEO, url="https://evil.example/video/1"
                )
            ),
            "report.target.url",
            "",
        ),
        (
            bad(target=rpb.ReportTarget(type=rpb.TARGET_TYPE_VIDEO, id="a b")),
            "report.target.id",
            "",
        ),
        (bad(target=rpb.ReportTarget(id="1")), "report.target.type", ""),
        (
            bad(target=rpb.ReportTarget(type=rpb.TARGET_TYPE_VIDEO, url="http://[::1/video/1")),
            "report.target.url",
            "",
        ),
        (
            bad(
                target=rpb.ReportTarget(
                    type=rpb.TARGET_TYPE_VIDEO,
                    id="other",
                    url=f"https://www.casemesh.video/video/y{run}",
                )
            ),
            "report.target.url",
            "",
        ),
        (
            bad(target=rpb.ReportTarget(type=rpb.TARGET_TYPE_VIDEO, url="javascript:alert(1)")),
            "report.target.url",
            "",
        ),
        (bad(explanation=""), "report.explanation", ""),
        (bad(evidence=None), "report.evidence", ""),
        (bad(good_faith_statement=False), "report.good_faith_statement", ""),
        (bad(locale="fr"), "report.locale", ""),
        (bad(contact=pb.Contact(channels=[pb.CHANNEL_SMS])), "report.contact.phone", ""),
    ]
    for r, field, hint in expectations:
        err = file(r)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.details())
        assert field in violated_fields(err), (field, err.details())
        assert hint in (err.details() or "")
    stolen = bad()
    del stolen.evidence[:]
    stolen.evidence.append(epb.EvidenceRef(name=theirs.name))
    assert file(stolen).code() == grpc.StatusCode.PERMISSION_DENIED
    assert file(good, request_id="bad id!").code() == grpc.StatusCode.INVALID_ARGUMENT

    # A link is read for its id; a replay returns the same report; a second
    # report of the same thing by the same person is refused, naming the first.
    linked = bad(
        target=rpb.ReportTarget(
            type=rpb.TARGET_TYPE_VIDEO, url=f"https://www.casemesh.video/@someone/video/y{run}"
        )
    )
    first = b.FileReport(rpb.FileReportRequest(request_id="once", report=linked))
    assert first.target.id == f"y{run}"
    assert b.FileReport(rpb.FileReportRequest(request_id="once", report=linked)).name == first.name
    err = file(bad(explanation="另一个说法"), request_id="once")
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = file(good)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and first.name in (err.details() or "")

    # Nothing above changed the case.
    after = agent.GetReportCase(rpb.GetReportCaseRequest(name=case))
    assert after.state == rpb.REPORT_CASE_STATE_OPEN and after.reporter_count == 1
    assert after.etag == "1"


def reports_mail(stack: Stack, email: str, template: str) -> list[Any]:
    return [m for m in stack.mail.to(email) if m["X-Casemesh-Template"] == template]


def test_an_upheld_appeal_lifts_the_restrictions_and_everyone_hears_it_once(
    stack: Stack,
) -> None:
    run, (reporter, other), agent = people(stack, 2)
    uploader = Person(stack, f"uploader-{run}")
    stranger = Person(stack, f"stranger-{run}")
    rep_email, up_email = f"{reporter.user}@example.com", f"{uploader.user}@example.com"
    report = reporter.report(f"a{run}", email=rep_email, locale="en")
    case = report.report_case
    # A decision applying in the EU: its appeal runs under the DSA.
    agent.take_action(
        stack, case, party(uploader.user, up_email, "en"), territorial_scope=["DE", "FR"]
    )

    def appeal_by(person: Person, email: str, request_id: str = "a1") -> apb.Appeal:
        return person.appeal(
            apb.FileAppealRequest(
                request_id=request_id,
                appeal=apb.Appeal(
                    kind=apb.APPEAL_KIND_DECISION_APPEAL,
                    appeal_of=case,
                    grounds="The clip is news reporting of the attack, not propaganda.",
                    filer=apb.Party(
                        legal_name="Uma",
                        locale="en",
                        contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
                    ),
                ),
            )
        )

    # "Why is my account restricted": the decision, its reasons and how to appeal.
    mine = wait_until(
        lambda: uploader.ListMyRestrictions(rpb.ListMyRestrictionsRequest()).report_cases,
        timeout=30,
    )
    assert [c.name for c in mine] == [case]
    assert mine[0].decision.incompatible_content_ground and mine[0].decision.redress
    assert mine[0].decision.appeal_deadline.seconds > 0 and not mine[0].reports
    assert not stranger.ListMyRestrictions(rpb.ListMyRestrictionsRequest()).report_cases
    err = rejected(lambda: appeal_by(stranger, f"{stranger.user}@example.com"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "appeal.appeal_of" in violated_fields(err)
    # An agent reads every case but is no party of this one: refused alike.
    err = rejected(lambda: appeal_by(agent, f"{agent.user}@example.com"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "appeal.appeal_of" in violated_fields(err)
    appeal = appeal_by(uploader, up_email)
    assert appeal.jurisdiction == "eu"
    wait_until(
        lambda: appeal.name in agent.GetReportCase(rpb.GetReportCaseRequest(name=case)).appeals,
        timeout=30,
    )
    appeals_agent = agent.appeals
    appeals_agent.DecideAppeal(
        apb.DecideAppealRequest(
            name=appeal.name,
            outcome=apb.APPEAL_OUTCOME_UPHOLD,
            reasons=apb.StatementOfReasons(
                ground="Terms §3.2 exempts news reporting", facts="Broadcast news footage."
            ),
        ),
        metadata=agent.client.metadata,
        timeout=15,
    )
    reversed_case = wait_until(
        lambda: (
            (c := agent.GetReportCase(rpb.GetReportCaseRequest(name=case))).state
            == rpb.REPORT_CASE_STATE_REVERSED
            and c
        ),
        timeout=30,
    )
    assert reversed_case.appeals == [appeal.name]
    assert not uploader.ListMyRestrictions(rpb.ListMyRestrictionsRequest()).report_cases
    mine = reporter.GetReport(rpb.GetReportRequest(name=report.name))
    assert mine.state == rpb.REPORT_STATE_REVERSED and mine.outcome.reversed
    steps = reporter.ListReportEvents(rpb.ListReportEventsRequest(name=report.name)).events
    assert [(s.type, s.state) for s in steps][-1] == (
        "ReportDecisionReversed",
        rpb.REPORT_STATE_REVERSED,
    )
    wait_until(lambda: reports_mail(stack, up_email, "report.restriction_lifted"), timeout=30)
    wait_until(lambda: reports_mail(stack, rep_email, "report.reversed"), timeout=30)
    wait_until(
        lambda: told_everything(
            stack.infra.kafka.bootstrap, stack.notifier_dsn, [up_email, rep_email]
        ),
        timeout=60,
    )
    assert len(reports_mail(stack, up_email, "report.restriction_lifted")) == 1
    assert len(reports_mail(stack, up_email, "report.statement")) == 1
    assert len(reports_mail(stack, rep_email, "report.reversed")) == 1
    # The appeal itself is told in its own words: received, then upheld.
    wait_until(lambda: reports_mail(stack, up_email, "report_appeal.upheld"), timeout=30)
    assert len(reports_mail(stack, up_email, "report_appeal.received")) == 1
    assert len(reports_mail(stack, up_email, "report_appeal.upheld")) == 1
    lifted = reports_mail(stack, up_email, "report.restriction_lifted")[0]
    assert "content removed" in lifted.get_body(("plain",)).get_content()

    # A retried filing gets its appeal, whatever the case's state now; a
    # takedown notice cannot name a report case.
    assert appeal_by(uploader, up_email).name == appeal.name
    notice = apb.FileAppealRequest(
        request_id="n1",
        appeal=apb.Appeal(kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE, appeal_of=case),
    )
    assert "appeal.appeal_of" in violated_fields(rejected(lambda: uploader.appeal(notice)))
    # An id spelt otherwise than the case's own is named as the appeal's field.
    shouted = apb.FileAppealRequest(
        request_id="u1",
        appeal=apb.Appeal(
            kind=apb.APPEAL_KIND_DECISION_APPEAL,
            appeal_of="report-cases/" + case.removeprefix("report-cases/").upper(),
        ),
    )
    assert violated_fields(rejected(lambda: uploader.appeal(shouted))) == ["appeal.appeal_of"]

    # A reporter's appeal of a no-violation decision sends the case back to review.
    other_email = f"{other.user}@example.com"
    second = other.report(f"b{run}", email=other_email)
    decide_no_violation(agent, second)
    case = second.report_case
    reopened_appeal = appeal_by(other, other_email, "a2")
    appeals_agent.DecideAppeal(
        apb.DecideAppealRequest(
            name=reopened_appeal.name,
            outcome=apb.APPEAL_OUTCOME_UPHOLD,
            reasons=apb.StatementOfReasons(ground="复核", facts="视频确有违规画面。"),
        ),
        metadata=agent.client.metadata,
        timeout=15,
    )
    wait_until(
        lambda: (
            agent.GetReportCase(rpb.GetReportCaseRequest(name=case)).state
            == rpb.REPORT_CASE_STATE_OPEN
        ),
        timeout=30,
    )
    assert (
        other.GetReport(rpb.GetReportRequest(name=second.name)).state == rpb.REPORT_STATE_SUBMITTED
    )

    # Six months after a decision the window is closed.
    late = other.report(f"c{run}", email=other_email)
    decide_no_violation(agent, late)
    case = late.report_case
    stack.advance_clock(184 * 24 * 3600)
    err = rejected(lambda: appeal_by(other, other_email, "a3"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "closed" in (err.details() or "")


def test_misuse_is_warned_then_suspended_until_the_period_ends(stack: Stack) -> None:
    run, (rep,), agent = people(stack, 1)
    email = f"{rep.user}@example.com"

    def report(i: int) -> rpb.Report:
        return rep.report(
            f"m{run}{i}", category="other", subcategory="spam", email=email, locale="en"
        )

    for i in range(2):
        decide_no_violation(agent, report(i), unfounded=True)
    wait_until(lambda: reports_mail(stack, email, "report.misuse_warning"), timeout=30)
    for i in range(2, 4):
        decide_no_violation(agent, report(i), unfounded=True)
    last = report(4)  # two after the warning: still allowed
    decide_no_violation(agent, last, unfounded=True)
    err = rejected(lambda: report(5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "REPORTING_SUSPENDED"
    until = datetime.fromisoformat(info.metadata["until"])
    assert timedelta(days=29) < until - service_now(stack) <= timedelta(days=30)
    assert until.date().isoformat() in (err.details() or "")
    wait_until(lambda: reports_mail(stack, email, "report.reporting_suspended"), timeout=30)
    assert len(reports_mail(stack, email, "report.misuse_warning")) == 1

    stack.advance_clock((until - service_now(stack)).total_seconds() + 60)
    assert report(6).state == rpb.REPORT_STATE_SUBMITTED


def read_reports_topic(
    stack: Stack, settle_s: float = 2.0
) -> list[tuple[str, dict[str, str], bytes]]:
    """Every record of the reports topic, read until nothing new came for `settle_s`."""

    async def read() -> list[tuple[str, dict[str, str], bytes]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.infra.kafka.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            parts = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            out: list[tuple[str, dict[str, str], bytes]] = []
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < settle_s:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for r in records:
                        out.append((r.key.decode(), {k: v.decode() for k, v in r.headers}, r.value))
                        quiet_since = time.monotonic()
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def figures_from_topic(
    records: list[tuple[str, dict[str, str], bytes]], start: datetime, end: datetime
) -> dict[str, Any]:
    """The transparency figures, counted from the public events alone."""
    seen: set[str] = set()
    filed: dict[str, datetime] = {}
    resolved: dict[str, datetime] = {}
    by_category: Counter[tuple[str, str]] = Counter()
    by_restriction: Counter[str] = Counter()
    counts: Counter[str] = Counter()

    def within(t: datetime) -> bool:
        return start <= t < end

    for key, headers, value in records:
        if headers["ce_id"] in seen:
            continue  # a relay may publish an event again; it is the same event
        seen.add(headers["ce_id"])
        name = headers["ce_type"].split(".")[2]
        message = getattr(rev, name).FromString(value)
        at = message.header.time.ToDatetime(tzinfo=UTC)
        match name:
            case "ReportFiled":
                filed[key] = at
                if within(at):
                    by_category[(message.category, message.source)] += 1
            case "ReportResolved":
                resolved.setdefault(key, at)
            case "ReportCaseDecided" if within(at):
                counts["decided"] += 1
                kinds = [r.type for r in message.statement.restrictions] or ["NO_VIOLATION"]
                by_restriction.update(kinds)
            case "ReportCaseVoided" if within(at):
                counts["void"] += 1
            case "ReportCaseAppealed" if within(at):
                counts["appeals"] += 1
            case "ReportCaseDecisionReversed" if within(at):
                counts["reversals"] += 1
            case "ReporterSuspended" if within(at):
                counts["suspended"] += 1
    waits = [(t - filed[k]).total_seconds() for k, t in resolved.items() if within(t)]
    return {
        "by_category": dict(by_category),
        "by_restriction": dict(by_restriction),
        "median": statistics.median(waits) if waits else 0.0,
        **{k: counts[k] for k in ("decided", "void", "appeals", "reversals", "suspended")},
    }


def figures_from_rpc(agent: Person, start: datetime, end: datetime) -> dict[str, Any]:
    request = rpb.GetTransparencyReportRequest()
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)
    r = agent.GetTransparencyReport(request)
    assert r.reports_received == sum(c.count for c in r.reports_by_category)
    return {
        "by_category": {(c.key, c.source): c.count for c in r.reports_by_category},
        "by_restriction": {c.key: c.count for c in r.decisions_by_restriction},
        "median": r.median_seconds_to_decision,
        "decided": r.cases_decided,
        "void": r.cases_void,
        "appeals": r.appeals,
        "reversals": r.reversals,
        "suspended": r.reporters_suspended,
    }


def test_transparency_figures_agree_with_the_topic_and_every_event_is_on_it(
    stack: Stack,
) -> None:
    run, reporters, agent = people(stack, 2)
    # Some of every kind of fact in this test's own window: a void case too.
    gone = reporters[0].report(f"t{run}", email=f"{reporters[0].user}@example.com")
    agent.VoidReportCase(rpb.VoidReportCaseRequest(name=gone.report_case, reason="已被上传者删除"))
    kept = reporters[1].report(f"t{run}", email=f"{reporters[1].user}@example.com")
    assert kept.report_case != gone.report_case
    assert (
        reporters[0].GetReport(rpb.GetReportRequest(name=gone.name)).state == rpb.REPORT_STATE_VOID
    )
    err = rejected(
        lambda: agent.DecideReportCase(
            rpb.DecideReportCaseRequest(
                name=gone.report_case,
                outcome=rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION,
                statement=rpb.DecisionStatement(decision_facts="x"),
            )
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    with psycopg.connect(stack.reports_dsn) as conn:
        stored = conn.execute(
            "SELECT originator_id, originator_version FROM reports_events"
        ).fetchall()
    want = {f"{oid}:{version}" for oid, version in stored}

    def complete() -> list[tuple[str, dict[str, str], bytes]] | None:
        records = read_reports_topic(stack)
        return records if want <= {h["ce_id"] for _, h, _ in records} else None

    records = wait_until(complete, timeout=60, interval=1)
    # Each aggregate's events are on the topic in order, under its key.
    versions: dict[str, list[int]] = {}
    for key, headers, _ in records:
        ident, _, version = headers["ce_id"].rpartition(":")
        assert ident == key
        if int(version) not in versions.setdefault(key, []):
            versions[key].append(int(version))
    assert all(v == sorted(v) for v in versions.values())

    # All time (the topic from offset 0) and a window in the middle.
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2999, 1, 1, tzinfo=UTC))
    times = sorted(
        getattr(rev, h["ce_type"].split(".")[2]).FromString(v).header.time.ToDatetime(tzinfo=UTC)
        for _, h, v in records
    )
    middle = (times[len(times) // 4], times[3 * len(times) // 4])
    for start, end in (everything, middle):

        def agree(s: datetime = start, e: datetime = end) -> bool:
            return same(
                figures_from_rpc(agent, s, e),
                figures_from_topic(read_reports_topic(stack, 1.0), s, e),
            )

        if not agree():
            topic, rpc = (
                figures_from_topic(records, start, end),
                figures_from_rpc(agent, start, end),
            )
            assert same(rpc, topic), (rpc, topic)
    total = figures_from_rpc(agent, *everything)
    for k in ("decided", "void", "appeals", "reversals", "suspended"):
        assert total[k] >= 1, total
    # The same figures, as an operator's Prometheus scrapes them.
    assert same(figures_from_metrics(stack.reports_metrics), total)


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal figures; the median to the microsecond (the database's float arithmetic)."""
    return {**a, "median": 0} == {**b, "median": 0} and abs(a["median"] - b["median"]) < 1e-6


def figures_from_metrics(url: str) -> dict[str, Any]:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(url, timeout=5).text)}

    def one(name: str) -> float:
        return next(s.value for s in families[name].samples if s.name.endswith("_total"))

    return {
        "by_category": {
            (s.labels["category"], s.labels["source"]): int(s.value)
            for s in families["casemesh_reports_received"].samples
            if s.name.endswith("_total")
        },
        "by_restriction": {
            s.labels["restriction"]: int(s.value)
            for s in families["casemesh_report_decisions"].samples
            if s.name.endswith("_total")
        },
        "median": families["casemesh_report_decision_median_seconds"].samples[0].value,
        "decided": int(one("casemesh_report_cases_decided")),
        "void": int(one("casemesh_report_cases_void")),
        "appeals": int(one("casemesh_report_appeals")),
        "reversals": int(one("casemesh_report_reversals")),
        "suspended": int(one("casemesh_reporters_suspended")),
    }

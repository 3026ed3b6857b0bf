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
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status

from casemesh.events.v1 import reports_pb2 as rev
from casemesh.platform.grpcutil import field_violations
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import reports_pb2_grpc as rpb_grpc
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack
from tests.e2e.test_evidence import EvidenceClient, png
from tests.support import Client, wait_until

TOPIC = "casemesh.reports.v1"


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
        kind: int = rpb.TARGET_TYPE_VIDEO,
        email: str = "",
        phone: str = "",
        locale: str = "zh-CN",
        request_id: str = "",
    ) -> rpb.Report:
        proof = self.evidence.upload(png(), "截图.png")
        channels = ([pb.CHANNEL_EMAIL] if email else []) + ([pb.CHANNEL_SMS] if phone else [])
        return self.FileReport(  # type: ignore[no-any-return]
            rpb.FileReportRequest(
                request_id=request_id or uuid.uuid4().hex,
                report=rpb.Report(
                    target=rpb.ReportTarget(type=kind, id=video),
                    reason=rpb.ReportReasonRef(category=category, subcategory=subcategory),
                    explanation="视频宣扬恐怖组织，画面中有袭击场景。",
                    evidence=[epb.EvidenceRef(name=proof.name)],
                    good_faith_statement=True,
                    contact=pb.Contact(email=email, phone=phone, channels=channels),
                    locale=locale,
                ),
            )
        )


def today(days: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def statement(**changes: Any) -> rpb.DecisionStatement:
    s = rpb.DecisionStatement(
        decision_ground=rpb.DECISION_GROUND_INCOMPATIBLE_CONTENT,
        incompatible_content_ground="社区自律公约 第 3.2 条：禁止宣扬恐怖主义",
        incompatible_content_explanation="视频展示并美化恐怖袭击。",
        incompatible_content_illegal=True,
        category_specification=["KEYWORD_TERRORIST_CONTENT"],
        content_type=[rpb.CONTENT_TYPE_VIDEO],
        content_date="2026-11-01",
        application_date=today(),
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
    end.FromDatetime(datetime.now(UTC) + timedelta(days=7))
    s.restrictions.account_end_time.CopyFrom(end)
    for key, value in changes.items():
        if value is None:
            s.ClearField(key)
        else:
            setattr(s, key, value)
    return s


def people(stack: Stack, n: int) -> tuple[str, list[Person], Person]:
    run = uuid.uuid4().hex[:6]
    reporters = [Person(stack, f"rep{i}-{run}") for i in range(n)]
    return run, reporters, Person(stack, f"agent-{run}", "agent")


def rejected(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


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
    decided = agent.DecideReportCase(
        rpb.DecideReportCaseRequest(
            name=case_name,
            outcome=rpb.REPORT_DECISION_OUTCOME_ACTION_TAKEN,
            statement=statement(),
            affected_uploader=apb.Party(
                user_id=uploader.user,
                legal_name="张三",
                locale="zh-CN",
                contact=pb.Contact(email=uploader_email, channels=[pb.CHANNEL_EMAIL]),
            ),
        )
    )
    assert decided.state == rpb.REPORT_CASE_STATE_ACTION_TAKEN
    d = decided.decision
    assert d.source_type == "SOURCE_ARTICLE_16" and d.puid == video
    assert d.category == rpb.STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY
    assert d.appeal_deadline.ToDatetime() > datetime.now() + timedelta(days=180)

    # Each reporter: a receipt, then the outcome. The uploader: the statement.
    def arrived() -> bool:
        return all(len(stack.mail.to(e)) >= 2 for e in emails) and bool(
            stack.mail.to(uploader_email)
        )

    wait_until(arrived, timeout=60)
    time.sleep(3)  # anything sent twice would have arrived by now
    for email, locale in zip(emails, ("zh-CN", "en", "zh-CN"), strict=True):
        subjects = [m["Subject"] for m in stack.mail.to(email)]
        assert len(subjects) == 2, subjects
        assert ("已处理" if locale == "zh-CN" else "action taken") in subjects[1]
    statements = stack.mail.to(uploader_email)
    assert len(statements) == 1
    body = statements[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for fact in ("社区自律公约 第 3.2 条", "content removed", "account suspended", "人工审核"):
        assert fact in body, body
    assert len(stack.sms.to(phone)) == 2

    # Reporters see the outcome on their report; nobody sees another's report.
    mine = reporters[1].GetReport(rpb.GetReportRequest(name=filed[1].name))
    assert mine.state == rpb.REPORT_STATE_ACTION_TAKEN
    assert "DECISION_VISIBILITY_CONTENT_REMOVED" in mine.outcome.restrictions
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

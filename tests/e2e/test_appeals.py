"""Copyright cases through the gateway only: a takedown notice with evidence,
a request for information, a decision, a counter-notice and the restore
deadline; each party hears what concerns them, once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp

from casemesh import topics
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack
from tests.e2e.test_evidence import EvidenceClient, png
from tests.support import (
    Client,
    error_info,
    plain_text,
    read_topic,
    rejected,
    told_everything,
    violated_fields,
    wait_until,
)

DAY = 24 * 3600


class Person:
    def __init__(self, stack: Stack, user: str, *roles: str) -> None:
        self.client = Client(stack.gateway, stack.secret, user, roles or ("user",))
        self.user = user
        self.stub = apb_grpc.AppealServiceStub(self.client._channel)
        self.evidence = EvidenceClient(self.client)

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self.stub, method)
        return lambda request: rpc(request, metadata=self.client.metadata, timeout=15)


def contact(email: str, phone: str = "") -> pb.Contact:
    channels = [pb.CHANNEL_EMAIL] + ([pb.CHANNEL_SMS] if phone else [])
    return pb.Contact(email=email, phone=phone, channels=channels)


def notice(claimant: Person, email: str, phone: str, **drop: bool) -> apb.Appeal:
    created = Timestamp()
    created.FromJsonString("2025-12-01T08:00:00Z")
    proof = claimant.evidence.upload(png(), "原创工程文件截图.png")
    copy = claimant.evidence.upload(png(), "搬运视频截图.png")
    appeal = apb.Appeal(
        kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE,
        jurisdiction="cn",
        filer=apb.Party(legal_name="晴川工作室", locale="zh-CN", contact=contact(email, phone)),
        notice=apb.TakedownNotice(
            relationship=apb.RIGHTS_RELATIONSHIP_OWNER,
            work=apb.CopyrightWork(title="《江南春》舞蹈原创视频", creation_time=created),
            originality_evidence=[epb.EvidenceRef(name=proof.name)],
            infringing_items=["https://video.example/v/7731", "content:8841"],
            infringement_evidence=[epb.EvidenceRef(name=copy.name)],
        ),
        good_faith_statement=True,
        accuracy_statement=True,
    )
    if drop.get("good_faith"):
        appeal.good_faith_statement = False
    if drop.get("items"):
        del appeal.notice.infringing_items[:]
    return appeal


def new_people(stack: Stack) -> tuple[Person, Person, Person, str, str, str]:
    run = uuid.uuid4().hex[:6]
    claimant = Person(stack, f"claimant-{run}")
    uploader = Person(stack, f"uploader-{run}")
    agent = Person(stack, f"agent-{run}", "agent")
    phone = f"+86139{int(run, 16) % 10**8:08d}"
    return (
        claimant,
        uploader,
        agent,
        f"claimant-{run}@example.com",
        phone,
        (f"uploader-{run}@example.com"),
    )


def upheld_and_countered(stack: Stack) -> tuple[apb.Appeal, Person, Person, str, str, str]:
    claimant, uploader, agent, email, phone, uploader_email = new_people(stack)
    case = claimant.FileAppeal(
        apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="notice-1")
    )
    agent.AssignAppeal(apb.AssignAppealRequest(name=case.name))
    agent.DecideAppeal(
        apb.DecideAppealRequest(
            name=case.name,
            outcome=apb.APPEAL_OUTCOME_UPHOLD,
            reasons=apb.StatementOfReasons(
                ground="《信息网络传播权保护条例》第十四条",
                facts="被投诉视频与原创视频画面一致",
            ),
            affected_uploader=apb.Party(
                user_id=uploader.user, locale="en", contact=contact(uploader_email)
            ),
        )
    )
    countered = uploader.FileCounterNotice(
        apb.FileCounterNoticeRequest(
            name=case.name,
            uploader=apb.Party(legal_name="Uma Lee", locale="en", contact=contact(uploader_email)),
            counter_notice=apb.CounterNotice(
                removed_item="https://video.example/v/7731",
                reason="I filmed this dance myself in 2024.",
            ),
            good_faith_statement=True,
            accuracy_statement=True,
        )
    )
    return countered, claimant, uploader, email, phone, uploader_email


def test_a_notice_upheld_countered_and_restored_tells_each_party_once(stack: Stack) -> None:
    claimant, uploader, agent, email, phone, uploader_email = new_people(stack)
    case = claimant.FileAppeal(
        apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="notice-1")
    )
    assert case.state == apb.APPEAL_STATE_SUBMITTED
    assert case.next_step == "REVIEW" and case.HasField("next_step_due")
    assert case.notice.originality_evidence[0].sha256  # the gateway checked it

    agent.RequestAppealInfo(
        apb.RequestAppealInfoRequest(name=case.name, message="请提供原始拍摄文件的创建时间截图。")
    )
    assert claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).state == (
        apb.APPEAL_STATE_INFO_REQUESTED
    )
    # The claimant answers once asked (a request answered before it went out
    # is not sent: the case no longer waits for it).
    wait_until(
        lambda: (
            any(m["X-Casemesh-Template"] == "appeal.info_requested" for m in stack.mail.to(email))
            and any(t["template_id"] == "appeal.info_requested" for t in stack.sms.to(phone))
        ),
        timeout=30,
    )
    # An answer that says nothing, or would change what the case is, is
    # refused, naming the field, and the request still waits.
    for bad, fields in (
        (apb.AddAppealInfoRequest(name=case.name, message=" "), ["message"]),
        (
            apb.AddAppealInfoRequest(
                name=case.name,
                message="改为美国法",
                completion=apb.Appeal(kind=apb.APPEAL_KIND_COUNTER_NOTICE, jurisdiction="us"),
            ),
            ["completion.kind", "completion.jurisdiction"],
        ),
    ):
        err = rejected(lambda bad=bad: claimant.AddAppealInfo(bad))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(err) == fields
    assert claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).state == (
        apb.APPEAL_STATE_INFO_REQUESTED
    )
    answered = claimant.AddAppealInfo(
        apb.AddAppealInfoRequest(name=case.name, message="已上传，见附件。")
    )
    assert answered.state == apb.APPEAL_STATE_SUBMITTED
    agent.AssignAppeal(apb.AssignAppealRequest(name=case.name))
    upheld = agent.DecideAppeal(
        apb.DecideAppealRequest(
            name=case.name,
            outcome=apb.APPEAL_OUTCOME_UPHOLD,
            reasons=apb.StatementOfReasons(
                ground="《信息网络传播权保护条例》第十四条", facts="被投诉视频与原创视频画面一致"
            ),
            affected_uploader=apb.Party(
                user_id=uploader.user, locale="en", contact=contact(uploader_email)
            ),
        )
    )
    assert upheld.state == apb.APPEAL_STATE_UPHELD
    assert upheld.decision_reasons.redress and upheld.decision_reasons.HasField("appeal_deadline")
    # The uploader can now see the case and answer it.
    assert uploader.GetAppeal(apb.GetAppealRequest(name=case.name)).state == (
        apb.APPEAL_STATE_UPHELD
    )
    countered = uploader.FileCounterNotice(
        apb.FileCounterNoticeRequest(
            name=case.name,
            uploader=apb.Party(legal_name="Uma Lee", locale="en", contact=contact(uploader_email)),
            counter_notice=apb.CounterNotice(
                removed_item="https://video.example/v/7731",
                reason="I filmed this dance myself in 2024.",
            ),
            good_faith_statement=True,
            accuracy_statement=True,
        )
    )
    assert countered.state == apb.APPEAL_STATE_FORWARDED_TO_CLAIMANT
    assert countered.next_step == "RESTORE"
    restore_at = countered.next_step_due.ToDatetime()
    filed_at = countered.create_time.ToDatetime()
    # cn: 15 days from the day after, the last ending at 24:00 Beijing time.
    assert 15 <= (restore_at - filed_at).total_seconds() / DAY <= 16.01

    # The content comes back once the day after that deadline has passed
    # too (the grace for recording a court action reported by it).
    stack.advance_clock(17 * DAY)
    wait_until(
        lambda: (
            claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).state
            == apb.APPEAL_STATE_RESTORED
        ),
        timeout=30,
    )

    claimant_wants = [
        "appeal.received",
        "appeal.info_requested",
        "appeal.complete",
        "appeal.upheld",
        "appeal.counter_notice_received",
        "appeal.restored",
    ]
    uploader_wants = [
        "appeal.content_removed",
        "appeal.counter_notice_forwarded",
        "appeal.restored",
    ]

    def arrived() -> bool:
        return (
            len(stack.mail.to(email)) >= 6
            and len(stack.sms.to(phone)) >= 6
            and len(stack.mail.to(uploader_email)) >= 3
        )

    wait_until(arrived, timeout=60)
    # Nothing left to send them: a message planned twice would be among those counted.
    wait_until(
        lambda: told_everything(
            stack.infra.kafka.bootstrap, stack.notifier_dsn, [email, phone, uploader_email]
        ),
        timeout=60,
    )
    assert [m["X-Casemesh-Template"] for m in stack.mail.to(email)] == claimant_wants
    assert [t["template_id"] for t in stack.sms.to(phone)] == claimant_wants
    assert [m["X-Casemesh-Template"] for m in stack.mail.to(uploader_email)] == uploader_wants
    claimant_mail = stack.mail.to(email)
    assert "版权案件已受理" in claimant_mail[0]["Subject"]
    assert "原始拍摄文件" in plain_text(claimant_mail[1])
    # The claimant's copy of the counter-notice, with the uploader's name and contact.
    copy = plain_text(claimant_mail[4])
    assert "I filmed this dance myself" in copy and "Uma Lee" in copy and uploader_email in copy
    removed = stack.mail.to(uploader_email)[0]
    assert "Your content was removed" in removed["Subject"]
    assert "第十四条" in plain_text(removed)  # the statement of reasons reaches the uploader

    history = claimant.ListAppealEvents(apb.ListAppealEventsRequest(name=case.name)).events
    assert [e.type for e in history] == [
        "AppealFiled",
        "AppealInfoRequested",
        "AppealInfoAdded",
        "AppealAssigned",
        "AppealDecided",
        "CounterNoticeFiled",
        "ContentRestored",
    ]


def test_a_notice_missing_elements_waits_for_them_and_says_which(stack: Stack) -> None:
    claimant, _, _, email, _, _ = new_people(stack)
    case = claimant.FileAppeal(
        apb.FileAppealRequest(
            appeal=notice(claimant, email, "", good_faith=True, items=True), request_id="incomplete"
        )
    )
    assert case.state == apb.APPEAL_STATE_INFO_REQUESTED
    assert list(case.missing_elements) == ["notice.infringing_items", "good_faith_statement"]
    assert case.next_step == "YOUR_INFORMATION"
    listed = [a.name for a in claimant.ListAppeals(apb.ListAppealsRequest()).appeals]
    assert case.name in listed  # accepted, never dropped
    waiting = claimant.ListAppeals(
        apb.ListAppealsRequest(states=[apb.APPEAL_STATE_INFO_REQUESTED])
    ).appeals
    assert [a.name for a in waiting] == [case.name]
    assert not claimant.ListAppeals(
        apb.ListAppealsRequest(states=[apb.APPEAL_STATE_RESTORED])
    ).appeals
    mail = wait_until(lambda: stack.mail.to(email))[0]
    assert "需要补充材料" in mail["Subject"]
    body = plain_text(mail)
    # The missing elements in words, never as field paths.
    assert "善意声明" in body and "侵权内容的链接或编号" in body, body
    assert "good_faith_statement" not in body and "notice.infringing_items" not in body

    completion = apb.Appeal(
        good_faith_statement=True, notice=apb.TakedownNotice(infringing_items=["content:8841"])
    )
    done = claimant.AddAppealInfo(apb.AddAppealInfoRequest(name=case.name, completion=completion))
    assert done.state == apb.APPEAL_STATE_SUBMITTED and not done.missing_elements
    assert done.notice.work.title == "《江南春》舞蹈原创视频"


def state_of(person: Person, name: str) -> int | None:
    """The case's state, or None while the service is restarting."""
    try:
        state: int = person.GetAppeal(apb.GetAppealRequest(name=name)).state
        return state
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return None
        raise


def appeals_events(stack: Stack, appeal_id: str) -> list[str]:
    with psycopg.connect(stack.appeals_dsn) as conn:
        rows = conn.execute(
            "SELECT topic FROM appeals_events WHERE originator_id = %s ORDER BY originator_version",
            (appeal_id,),
        ).fetchall()
    return [t.rsplit(".", 1)[-1] for (t,) in rows]


def test_a_deadline_fires_once_across_restarts_and_a_kill(stack: Stack) -> None:
    case, claimant, *_ = upheld_and_countered(stack)
    appeal_id = case.name.split("/")[1]
    sup = stack.supervisor
    sup.stop("appeals")  # down when the deadline passes: it must not be missed
    stack.advance_clock(20 * DAY)
    sup.restart("appeals")
    wait_until(lambda: state_of(claimant, case.name) == apb.APPEAL_STATE_RESTORED, timeout=60)
    sup.kill("appeals")
    sup.restart("appeals")
    sup.restart("appeals")
    wait_until(lambda: state_of(claimant, case.name) is not None, timeout=60)

    def timers() -> list[tuple[str, bool]]:
        with psycopg.connect(stack.appeals_dsn) as conn:
            return conn.execute(
                "SELECT kind, fired_at IS NOT NULL FROM appeal_timers WHERE aggregate_id = %s",
                (appeal_id,),
            ).fetchall()

    # Marked fired (in the firing's own transaction): nothing is left to fire
    # again but the case's retention, years away.
    wait_until(lambda: ("restore_after_grace", True) in timers(), timeout=60)
    assert sorted(timers()) == [
        ("decision_retention", False),
        ("restore_after_grace", True),
        ("retention", False),
    ]
    assert appeals_events(stack, appeal_id).count("Restored") == 1


def test_appeals_keep_the_foundations_guarantees(stack: Stack) -> None:
    claimant, uploader, _, email, phone, _ = new_people(stack)
    stranger = Person(stack, f"stranger-{uuid.uuid4().hex[:6]}")
    case = claimant.FileAppeal(
        apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="guarantees")
    )
    request = apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="twice")
    first = claimant.FileAppeal(request)
    assert claimant.FileAppeal(request).name == first.name  # a retry is the same case
    changed = apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="twice")
    err = rejected(lambda: claimant.FileAppeal(changed))  # same id, other evidence
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = rejected(lambda: stranger.GetAppeal(apb.GetAppealRequest(name=case.name)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rejected(
        lambda: claimant.DecideAppeal(
            apb.DecideAppealRequest(
                name=case.name,
                outcome=apb.APPEAL_OUTCOME_REJECT,
                reasons=apb.StatementOfReasons(ground="g", facts="f"),
            )
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    valid_counter = apb.FileCounterNoticeRequest(
        name=case.name,
        uploader=apb.Party(legal_name="U", locale="en", contact=contact("u@example.com")),
        counter_notice=apb.CounterNotice(removed_item="content:1", reason="mine"),
        good_faith_statement=True,
        accuracy_statement=True,
    )
    # Before a decision names them, the uploader cannot even see the case.
    err = rejected(lambda: uploader.FileCounterNotice(valid_counter))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # The claimant may not counter their own notice.
    err = rejected(lambda: claimant.FileCounterNotice(valid_counter))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    bad = notice(claimant, email, phone)
    bad.kind = apb.APPEAL_KIND_UNSPECIFIED
    bad.filer.contact.CopyFrom(pb.Contact())
    err = rejected(lambda: claimant.FileAppeal(apb.FileAppealRequest(appeal=bad, request_id="b")))
    named = violated_fields(err)
    assert "appeal.kind" in named and "appeal.filer.contact.channels" in named

    theirs = stranger.evidence.upload(png(), "not-mine.png")
    stolen = notice(claimant, email, phone)
    stolen.notice.originality_evidence.add(name=theirs.name)
    err = rejected(
        lambda: claimant.FileAppeal(apb.FileAppealRequest(appeal=stolen, request_id="s"))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    records = asyncio.run(
        read_topic(
            stack.infra.kafka.bootstrap,
            topics.APPEALS,
            PARTITIONS,
            {f"{case.name.split('/')[1]}:1"},
            30,
        )
    )
    (headers,) = [h for _, h in records if h["ce_id"] == f"{case.name.split('/')[1]}:1"][:1]
    assert headers["ce_type"] == "casemesh.appeals.AppealFiled.v1"
    assert headers["ce_source"] == "casemesh/appeals" and "traceparent" in headers


def appeal_decision(person: Person, appeal_of: str, request_id: str, filer: apb.Party) -> Any:
    """`person` appeals the decision of `appeal_of`."""
    return person.FileAppeal(
        apb.FileAppealRequest(
            request_id=request_id,
            appeal=apb.Appeal(
                kind=apb.APPEAL_KIND_DECISION_APPEAL,
                appeal_of=appeal_of,
                grounds="The dance is my own choreography; the claimant's video is later.",
                filer=filer,
            ),
        )
    )


def test_court_action_holds_the_content_and_the_court_not_an_appeal_decides(stack: Stack) -> None:
    case, claimant, uploader, email, phone, _ = upheld_and_countered(stack)
    agent = Person(stack, f"agent-{uuid.uuid4().hex[:6]}", "agent")
    held = agent.RecordCourtAction(
        apb.RecordCourtActionRequest(
            name=case.name, details="北京互联网法院 (2026) 京0491民初123号"
        )
    )
    assert held.state == apb.APPEAL_STATE_HELD
    wait_until(
        lambda: any(m["X-Casemesh-Template"] == "appeal.held" for m in stack.mail.to(email)),
        timeout=30,
    )

    # The uploader asks for the (upholding) decision to be looked at again.
    # The court decides what the counter-notice named (7731); the other item
    # the notice took down (content:8841) was never before it, and its
    # removal is appealed on the platform as any decision is.
    uploader_party = apb.Party(
        legal_name="Uma Lee", locale="en", contact=contact(f"{uploader.user}@example.com")
    )
    second_look = appeal_decision(uploader, case.name, "second-look", uploader_party)
    assert second_look.state == apb.APPEAL_STATE_SUBMITTED
    assert second_look.appeal_of == case.name

    stranger = Person(stack, f"stranger-{uuid.uuid4().hex[:6]}")
    party = apb.Party(legal_name="S", locale="en", contact=contact("s@example.com"))
    err = rejected(lambda: appeal_decision(stranger, case.name, "not-mine", party))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    fresh = claimant.FileAppeal(
        apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="undecided")
    )
    party = apb.Party(legal_name="C", locale="zh-CN", contact=contact(email))
    err = rejected(lambda: appeal_decision(claimant, fresh.name, "too-early", party))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_held_case_ends_with_the_court_outcome_and_both_parties_are_told(stack: Stack) -> None:
    case, claimant, _, email, _, uploader_email = upheld_and_countered(stack)
    agent = Person(stack, f"agent-{uuid.uuid4().hex[:6]}", "agent")
    outcome = apb.RecordCourtOutcomeRequest(
        name=case.name,
        outcome=apb.COURT_OUTCOME_CONTENT_STAYS_DOWN,
        details="北京互联网法院 (2026) 京0491民初123号：判决支持原告",
    )
    err = rejected(lambda: agent.RecordCourtOutcome(outcome))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # no court action yet
    assert error_info(err).reason == "CASE_NOT_HELD"
    agent.RecordCourtAction(apb.RecordCourtActionRequest(name=case.name, details="起诉书已送达"))
    err = rejected(lambda: claimant.RecordCourtOutcome(outcome))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    ended = agent.RecordCourtOutcome(outcome)
    assert ended.state == apb.APPEAL_STATE_UPHELD_BY_COURT
    assert ended.next_step == "" and not ended.HasField("next_step_due")
    for address in (email, uploader_email):
        wait_until(
            lambda to=address: any(
                m["X-Casemesh-Template"] == "appeal.court_upheld" for m in stack.mail.to(to)
            ),
            timeout=30,
        )
    err = rejected(lambda: agent.RecordCourtOutcome(outcome))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # it ended: recorded once
    assert claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).state == ended.state


def test_parties_sharing_an_address_each_get_their_messages_and_see_only_names(
    stack: Stack,
) -> None:
    claimant, uploader, agent, email, phone, _ = new_people(stack)
    shared = email  # the uploader uses the claimant's address (a family, an agency)
    case = claimant.FileAppeal(
        apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="shared")
    )
    agent.DecideAppeal(
        apb.DecideAppealRequest(
            name=case.name,
            outcome=apb.APPEAL_OUTCOME_UPHOLD,
            reasons=apb.StatementOfReasons(ground="第十四条", facts="画面一致"),
            affected_uploader=apb.Party(
                user_id=uploader.user,
                legal_name="Uma",
                locale="en",
                contact=contact(shared, "+8613900000001"),
            ),
        )
    )
    seen = claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).uploader
    assert seen.legal_name == "Uma" and not seen.user_id and not seen.contact.phone
    assert uploader.GetAppeal(apb.GetAppealRequest(name=case.name)).filer == apb.Party(
        legal_name="晴川工作室"
    )
    uploader.FileCounterNotice(
        apb.FileCounterNoticeRequest(
            name=case.name,
            uploader=apb.Party(legal_name="Uma", locale="en", contact=contact(shared)),
            counter_notice=apb.CounterNotice(removed_item="content:8841", reason="mine"),
            good_faith_statement=True,
            accuracy_statement=True,
        )
    )
    # Forwarded: the claimant now receives the uploader's contact with the counter-notice.
    assert claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).uploader.contact.email == shared
    wanted = {
        "appeal.received",
        "appeal.upheld",
        "appeal.content_removed",
        "appeal.counter_notice_received",
        "appeal.counter_notice_forwarded",
    }
    wait_until(lambda: {m["X-Casemesh-Template"] for m in stack.mail.to(shared)} >= wanted, 30)
    wait_until(
        lambda: told_everything(stack.infra.kafka.bootstrap, stack.notifier_dsn, [shared]),
        timeout=60,
    )
    assert sorted(m["X-Casemesh-Template"] for m in stack.mail.to(shared)) == sorted(wanted)


def test_bad_party_details_times_and_us_counter_notices_are_named(stack: Stack) -> None:
    claimant, uploader, agent, email, phone, uploader_email = new_people(stack)
    cases: list[tuple[apb.Appeal, str]] = []
    nul_name = notice(claimant, email, phone)
    nul_name.filer.legal_name = "Mallory\x00"
    cases.append((nul_name, "appeal.filer.legal_name"))
    bad_time = notice(claimant, email, phone)
    bad_time.notice.work.creation_time.seconds = 10**12
    cases.append((bad_time, "appeal.notice.work.creation_time"))
    for i, (appeal, field) in enumerate(cases):
        err = rejected(
            lambda a=appeal, n=i: claimant.FileAppeal(
                apb.FileAppealRequest(appeal=a, request_id=f"bad-{n}")
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violated_fields(err)

    us = notice(claimant, email, phone)
    us.jurisdiction = "us"
    case = claimant.FileAppeal(apb.FileAppealRequest(appeal=us, request_id="us-1"))
    err = rejected(
        lambda: agent.AssignAppeal(apb.AssignAppealRequest(name=case.name, assignee="a\x00b"))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    agent.DecideAppeal(
        apb.DecideAppealRequest(
            name=case.name,
            outcome=apb.APPEAL_OUTCOME_UPHOLD,
            reasons=apb.StatementOfReasons(ground="17 U.S.C. 512(c)", facts="identical footage"),
            affected_uploader=apb.Party(
                user_id=uploader.user, locale="en", contact=contact(uploader_email)
            ),
        )
    )
    counter = apb.FileCounterNoticeRequest(
        name=case.name,
        uploader=apb.Party(legal_name="Uma Lee", locale="en", contact=contact(uploader_email)),
        counter_notice=apb.CounterNotice(removed_item="content:8841", reason="mine"),
        good_faith_statement=True,
        accuracy_statement=True,
    )
    err = rejected(lambda: uploader.FileCounterNotice(counter))
    # What 17 U.S.C. 512(g)(3) asks of it, each named.
    assert {
        "counter_notice.consent_to_jurisdiction",
        "counter_notice.accepts_service_of_process",
        "counter_notice.signature",
        "uploader.postal_address",
        "uploader.contact.phone",
    } <= set(violated_fields(err))
    counter.counter_notice.consent_to_jurisdiction = True
    counter.counter_notice.accepts_service_of_process = True
    counter.counter_notice.signature = "Uma Lee"
    counter.uploader.postal_address = "1 Main St\nSpringfield, IL 62701\nUSA"
    counter.uploader.contact.phone = "+12025550143"
    forwarded = uploader.FileCounterNotice(counter)
    # The claimant is given the address with the uploader's contact.
    shown = claimant.GetAppeal(apb.GetAppealRequest(name=case.name))
    assert shown.uploader.postal_address.startswith("1 Main St")
    # us: not before ten whole business days (New York) after receipt.
    received = forwarded.update_time.ToDatetime(tzinfo=UTC)
    new_york = ZoneInfo("America/New_York")
    start = received.astimezone(new_york).date()
    end = forwarded.next_step_due.ToDatetime(tzinfo=UTC).astimezone(new_york).date()
    whole_days = [start + timedelta(days=i) for i in range(1, (end - start).days)]
    assert sum(d.weekday() < 5 for d in whole_days) >= 10


def test_a_filers_new_address_is_where_the_next_message_goes(stack: Stack) -> None:
    claimant, _, agent, email, phone, _ = new_people(stack)
    case = claimant.FileAppeal(
        apb.FileAppealRequest(appeal=notice(claimant, email, phone), request_id="moved")
    )
    # Its receipt goes first, to the address it was filed with (a receipt
    # still queued when the address changes follows the new one instead).
    wait_until(lambda: stack.mail.to(email), timeout=30)
    new_email = f"new-{email}"
    claimant.AddAppealInfo(
        apb.AddAppealInfoRequest(
            name=case.name,
            message="my address changed",
            completion=apb.Appeal(
                filer=apb.Party(legal_name="晴川工作室", locale="zh-CN", contact=contact(new_email))
            ),
        )
    )
    agent.RequestAppealInfo(apb.RequestAppealInfoRequest(name=case.name, message="原始文件?"))
    mail = wait_until(lambda: stack.mail.to(new_email), timeout=30)
    assert mail[0]["X-Casemesh-Template"] == "appeal.info_requested"

"""Realistic events of every kind the notifier reads (`registry.SOURCES`),
and the step each party hears of them: the sample data of every template.

The template test (tests/unit/test_what_people_receive.py) renders every
one in every locale on every channel, so a new template without a sample
here, or a new event kind without one, fails it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh_notifier import steps as told
from casemesh_notifier.labels import LOCALES, label
from casemesh_notifier.steps import Step

NOW = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
TICKET = "5f0c2a9e-7b1d-4c3e-9a8f-2d6b1e4c7a90"
APPEAL = "a3d9e1f7-2c4b-4e8a-b6d0-9f1e3c5a7b21"
REPORT_CASE = "c81e4b2a-6f3d-4a9c-8e7b-1d5f2a9c3e64"
REPORTED = "v7731"
# Other notices naming the sample notice's items, that keep them down.
OTHER_NOTICES = (
    "appeals/e2b7c4d1-5a3f-4e6b-8c9d-0f1a2b3c4d5e",
    "appeals/9d8c7b6a-1e2f-4a3b-9c4d-5e6f7a8b9c0d",
)


@dataclass(frozen=True)
class Sample:
    """One step a party hears of a sample event, and the case's subject as
    the party's record holds it, per locale."""

    message: Message
    role: str
    step: Step
    subject: Mapping[str, str]


def ts(moment: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(moment)
    return t


def contact(*channels: ev.ContactChannel.ValueType, locale: str = "zh-CN") -> ev.ContactPreferences:
    return ev.ContactPreferences(
        email="lin.qing@example.com", phone="+8613800138000", channels=channels, locale=locale
    )


def samples(written: Callable[[str], str] = str) -> list[Sample]:
    """Every sample event's steps; `written` is applied to every text a person
    wrote (requesters, filers, uploaders, reporters and agents alike), so that
    a test can mark them and look for them."""
    found: list[Sample] = []
    for message, steps, subject in _events(written):
        subjects = {locale: subject(locale) for locale in LOCALES}
        found += [Sample(message, role, step, subjects) for role, step in steps.items()]
    return found


def event_kinds(written: Callable[[str], str] = str) -> set[type[Message]]:
    """The kinds of event that have a sample (whether or not anyone hears of it)."""
    return {type(message) for message in sample_events(written)}


def sample_events(written: Callable[[str], str] = str) -> list[Message]:
    """Every sample event, whether or not anyone hears of it, in order: each
    case's from its opening."""
    return [message for message, _, _ in _events(written)]


Event = tuple[Message, dict[str, Step], Callable[[str], str]]


def _events(w: Callable[[str], str]) -> list[Event]:
    return [*_tickets(w), *_appeals(w), *_reports(w), *_codes()]


def _tickets(w: Callable[[str], str]) -> list[Event]:
    def header(status: ev.TicketStatus.ValueType, version: int) -> ev.TicketEventHeader:
        return ev.TicketEventHeader(
            ticket_id=TICKET, version=version, actor="agent-wang", time=ts(NOW), status=status
        )

    subject = w("换了手机号无法登录")
    created = ev.TicketCreated(
        header=header(ev.TICKET_STATUS_NEW, 1),
        requester="u-1001",
        category="account.login",
        subject=subject,
        description=w("旧号码已停用，收不到登录验证码。"),
        contact=contact(ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS),
        priority=3,
    )
    open_ = header(ev.TICKET_STATUS_OPEN, 4)
    events: list[tuple[Message, str]] = [
        (created, "NEW"),
        (ev.TicketAssigned(header=open_, assignee="agent-wang", priority=3), "NEW"),
        (
            ev.InfoRequested(
                header=header(ev.TICKET_STATUS_PENDING, 3),
                message=w("请提供您注册时使用的旧手机号。"),
            ),
            "OPEN",
        ),
        (ev.CommentAdded(header=open_, author="agent-wang", body=w("您好，已收到。")), "OPEN"),
        (
            ev.CommentAdded(
                header=open_, author="u-1001", by_requester=True, body=w("还是登录不了。")
            ),
            "SOLVED",
        ),
        (ev.TicketPutOnHold(header=open_, reason=w("等待运营商回复。")), "OPEN"),
        (
            ev.TicketSolved(
                header=header(ev.TICKET_STATUS_SOLVED, 5),
                resolution=w("已为您更换绑定手机号，请使用新号码登录。"),
                auto_close_time=ts(NOW + timedelta(days=4)),
            ),
            "OPEN",
        ),
        (ev.TicketReopened(header=open_, reason=w("问题又出现了。")), "SOLVED"),
        (ev.TicketClosed(header=header(ev.TICKET_STATUS_CLOSED, 7)), "SOLVED"),
        (
            ev.TicketCancelled(header=header(ev.TICKET_STATUS_CANCELLED, 2), reason=w("已解决")),
            "NEW",
        ),
        (
            ev.TicketRated(header=header(ev.TICKET_STATUS_CLOSED, 8), score=5, comment=w("很快")),
            "CLOSED",
        ),
    ]
    found: list[Event] = []
    for message, before in events:
        step = told.ticket_step(message, before)
        found.append((message, {"requester": step} if step else {}, lambda _: subject))
    return found


def _appeals(w: Callable[[str], str]) -> list[Event]:
    due = ts(NOW + timedelta(days=15))

    def header(state: str, next_step: str = "", appeal: str = APPEAL) -> aev.AppealEventHeader:
        return aev.AppealEventHeader(
            appeal_id=appeal,
            version=3,
            actor="agent-li",
            time=ts(NOW),
            state=state,
            next_step=next_step,
            next_step_due=due if next_step else None,
        )

    filer = aev.AppealParty(
        user_id="u-2002",
        legal_name=w("晴川工作室"),
        contact=contact(ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS),
    )
    uploader = aev.AppealParty(
        user_id="u-3003",
        legal_name=w("Uma Lee"),
        contact=ev.ContactPreferences(
            email="uma.lee@example.com",
            phone="+8613900139000",
            channels=[ev.CONTACT_CHANNEL_EMAIL],
            locale="en",
        ),
    )
    # A US counter-notice's uploader gives their postal address too.
    us_uploader = aev.AppealParty()
    us_uploader.CopyFrom(uploader)
    us_uploader.postal_address = w("1200 Harbor Blvd, Apt 4B, Weehawken, NJ 07086")
    reasons = aev.StatementOfReasons(
        ground=w("《信息网络传播权保护条例》第十四条"),
        facts=w("被投诉视频与原创视频画面一致。"),
        redress="如对决定有异议，可向人民法院提起诉讼。",
        appeal_deadline=due,
    )
    title = w("《江南春》舞蹈原创视频")

    def held(video: int, *notices: str) -> aev.ItemHeldElsewhere:
        return aev.ItemHeldElsewhere(
            item=f"https://video.example/v/{video}", held_by=notices or OTHER_NOTICES[:1]
        )

    def filed(head: aev.AppealEventHeader, **given: Any) -> aev.AppealFiled:
        return aev.AppealFiled(
            header=head,
            kind="TAKEDOWN_NOTICE",
            jurisdiction="cn",
            filer=filer,
            work_title=title,
            **given,
        )

    notice: list[Message] = [
        filed(header("SUBMITTED", "REVIEW"), infringing_items=["https://video.example/v/7731"]),
        filed(
            header("INFO_REQUESTED", "YOUR_INFORMATION"),
            missing_elements=["notice.infringing_items", "good_faith_statement"],
        ),
        aev.AppealAssigned(header=header("UNDER_REVIEW", "REVIEW"), assignee="agent-li"),
        aev.AppealInfoRequested(
            header=header("INFO_REQUESTED", "YOUR_INFORMATION"),
            message=w("请提供原始拍摄文件的创建时间截图。"),
            missing_elements=["notice.work.creation_time"],
        ),
        aev.AppealInfoAdded(header=header("UNDER_REVIEW", "REVIEW"), message=w("已上传，见附件。")),
        aev.AppealDecided(
            header=header("UPHELD", "COUNTER_NOTICE_OR_APPEAL"),
            outcome="UPHOLD",
            reasons=reasons,
            affected_uploader=uploader,
        ),
        aev.AppealDecided(header=header("REJECTED", "APPEAL"), outcome="REJECT", reasons=reasons),
        aev.CounterNoticeFiled(
            header=header("FORWARDED_TO_CLAIMANT", "RESTORE"),
            uploader=uploader,
            removed_item="https://video.example/v/7731",
            removed_items=["https://video.example/v/7731", "https://video.example/v/7732"],
            reason=w("I filmed this dance myself in 2024."),
            restore_time=due,
        ),
        # As published since it says when the content comes back: a day after
        # the claimant's deadline.
        aev.CounterNoticeFiled(
            header=header("FORWARDED_TO_CLAIMANT", "RESTORE"),
            uploader=uploader,
            removed_item="https://video.example/v/7731",
            removed_items=["https://video.example/v/7731"],
            reason=w("I filmed this dance myself in 2024."),
            restore_time=due,
            restores_at=ts(NOW + timedelta(days=16)),
        ),
        aev.CounterNoticeFiled(
            header=header("FORWARDED_TO_CLAIMANT", "RESTORE"),
            uploader=us_uploader,
            removed_item="https://video.example/v/7731",
            removed_items=["https://video.example/v/7731"],
            reason=w("I filmed this dance myself in 2024."),
            restore_time=due,
            restores_at=ts(NOW + timedelta(days=16)),
            consent_to_jurisdiction=True,
            accepts_service_of_process=True,
            signature=w("Uma Lee"),
        ),
        aev.CourtActionRecorded(
            header=header("HELD", "COURT"), details=w("（2026）沪0104民初123号")
        ),
        aev.CourtOutcomeRecorded(
            header=header("UPHELD_BY_COURT"),
            outcome="CONTENT_STAYS_DOWN",
            details=w("（2026）沪0104民初123号，判决支持原告。"),
        ),
        aev.CourtOutcomeRecorded(
            header=header("RESTORED"),
            outcome="CONTENT_RESTORED",
            details=w("原告撤诉。"),
            removed_item="https://video.example/v/7731",
        ),
        aev.ContentRestored(header=header("RESTORED"), removed_item="https://video.example/v/7731"),
        aev.ContentRestored(
            header=header("RESTORED"),
            restored_items=["https://video.example/v/7731"],
            outcome_of="appeals/6f1c2a9e-8d3b-4c0a-9e7f-1b2c3d4e5f60",
        ),
        aev.ContentRestored(
            header=header("UPHELD_BY_COURT"),
            restored_items=["content:8841"],
            outcome_of="appeals/6f1c2a9e-8d3b-4c0a-9e7f-1b2c3d4e5f60",
        ),
        # Another notice keeps down all, or some, of what the case let go of.
        aev.ContentRestored(header=header("RESTORED"), held_elsewhere=[held(7731)]),
        aev.ContentRestored(
            header=header("RESTORED"),
            removed_item="https://video.example/v/7731",
            restored_items=["https://video.example/v/7731"],
            held_elsewhere=[held(7732, *OTHER_NOTICES)],
        ),
        aev.ContentRestored(
            header=header("UPHELD_BY_COURT"),
            restored_items=["content:8841"],
            outcome_of="appeals/6f1c2a9e-8d3b-4c0a-9e7f-1b2c3d4e5f60",
            held_elsewhere=[held(7732)],
        ),
        aev.ContentRestored(
            header=header("RESTORED"),
            outcome_of="appeals/6f1c2a9e-8d3b-4c0a-9e7f-1b2c3d4e5f60",
            held_elsewhere=[held(7731), held(7732, OTHER_NOTICES[1])],
        ),
        aev.CourtOutcomeRecorded(
            header=header("RESTORED"),
            outcome="CONTENT_RESTORED",
            details=w("原告撤诉。"),
            held_elsewhere=[held(7731)],
        ),
        aev.CourtOutcomeRecorded(
            header=header("RESTORED"),
            outcome="CONTENT_RESTORED",
            details=w("原告撤诉。"),
            removed_item="https://video.example/v/7731",
            restored_items=["https://video.example/v/7731"],
            held_elsewhere=[held(7732)],
        ),
        aev.AppealWithdrawn(header=header("WITHDRAWN"), reason=w("已与对方和解。")),
        # The claimant withdrew the upheld notice: what it kept down comes
        # back, but what another notice keeps down.
        aev.ContentRestored(
            header=header("WITHDRAWN"),
            removed_item="https://video.example/v/7731",
            restored_items=["https://video.example/v/7731"],
        ),
        aev.ContentRestored(
            header=header("WITHDRAWN"),
            removed_item="https://video.example/v/7731",
            restored_items=["https://video.example/v/7731"],
            held_elsewhere=[held(7732)],
        ),
        aev.ContentRestored(header=header("WITHDRAWN"), held_elsewhere=[held(7731)]),
        aev.AppealAbandoned(header=header("ABANDONED")),
    ]
    # The items the notice names, as the notifier keeps them from its filing.
    taken_down = ["https://video.example/v/7731"]
    found: list[Event] = [
        (m, told.appeal_steps(m, "INFO_REQUESTED", taken_down=taken_down), lambda _: title)
        for m in notice
    ]
    # An appeal of a report decision is told in its own words.
    appealed = f"report-cases/{REPORT_CASE}"
    for m in notice:
        if isinstance(
            m,
            aev.AppealDecided
            | aev.AppealFiled
            | aev.AppealInfoRequested
            | aev.AppealInfoAdded
            | aev.AppealWithdrawn
            | aev.AppealAbandoned,
        ):
            steps = told.for_report_appeal(told.appeal_steps(m, "INFO_REQUESTED"), appealed)
            found.append((m, steps, lambda _: appealed))
    return found


def _reports(w: Callable[[str], str]) -> list[Event]:
    def header(state: str, aggregate: str = REPORT_CASE) -> rev.ReportEventHeader:
        return rev.ReportEventHeader(
            aggregate_id=aggregate, version=2, actor="agent-zhao", time=ts(NOW), state=state
        )

    deadline = ts(NOW + timedelta(days=180))
    redress = "您可在六个月内申诉，或向依法设立的争议解决机构、人民法院寻求救济。"
    reporter = contact(ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS)
    report = "9b2e7d41-3a6c-4f8e-b1d9-5c7a2e4f6b83"
    week = NOW + timedelta(days=7)
    restrictions = [
        rev.Restriction(type="DECISION_VISIBILITY_CONTENT_REMOVED"),
        rev.Restriction(type="DECISION_ACCOUNT_SUSPENDED", end_time=ts(week)),
        rev.Restriction(type="DECISION_MONETARY_OTHER", other=w("暂停直播带货权限")),
    ]
    uploader = rev.ReportParty(user_id="u-4004", legal_name=w("张三"), contact=reporter)
    on_terms = rev.StatementOfReasonsRecord(
        decision_ground="DECISION_GROUND_INCOMPATIBLE_CONTENT",
        incompatible_content_ground=w("社区自律公约 第 3.2 条"),
        incompatible_content_explanation=w("视频美化恐怖袭击。"),
        category="STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
        application_date="2026-03-02",
        decision_facts=w("三名用户举报；人工审核确认视频第 12 秒起出现袭击画面。"),
        source_type="SOURCE_ARTICLE_16",
        automated_decision="AUTOMATED_DECISION_NOT_AUTOMATED",
        puid=REPORTED,
        restrictions=restrictions,
        redress=redress,
        appeal_deadline=deadline,
    )
    illegal = rev.StatementOfReasonsRecord(
        decision_ground="DECISION_GROUND_ILLEGAL_CONTENT",
        illegal_content_legal_ground=w("《网络安全法》第十二条"),
        illegal_content_explanation=w("视频传播诈骗方法。"),
        category="STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
        decision_facts=w("自动识别后经人工复核。"),
        source_type="SOURCE_TRUSTED_FLAGGER",
        automated_detection=True,
        automated_decision="AUTOMATED_DECISION_PARTIALLY",
        puid=REPORTED,
        restrictions=[rev.Restriction(type="DECISION_VISIBILITY_CONTENT_DISABLED")],
        redress=redress,
        appeal_deadline=deadline,
    )

    def resolved(outcome: str, unfounded: bool = False, before: bool = False) -> rev.ReportResolved:
        """A report's outcome; `before`: as recorded before the reporter was
        told of automation and of the restrictions' ends."""
        taken = outcome == "ACTION_TAKEN"
        message = rev.ReportResolved(
            header=header(outcome, report),
            case_id=REPORT_CASE,
            outcome=outcome,
            restrictions=[r.type for r in restrictions] if taken else [],
            decision_facts=w("经审核，视频含有宣扬暴力的画面。"),
            manifestly_unfounded=unfounded,
            redress=redress,
            appeal_deadline=deadline,
        )
        if taken and not before:
            message.automated_detection = True
            message.automated_decision = "AUTOMATED_DECISION_PARTIALLY"
            message.restriction_terms.extend(restrictions)
        return message

    reconsidered = rev.StatementOfReasonsRecord(decision_facts=w("复核后未发现违规。"))

    def decided(
        outcome: str, statement: rev.StatementOfReasonsRecord, lifted: Any = ()
    ) -> rev.ReportCaseDecided:
        return rev.ReportCaseDecided(
            header=header(outcome),
            outcome=outcome,
            statement=statement,
            affected_uploader=uploader,
            restrictions_lifted=lifted,
        )

    standing = f"reporters/{reporter.email}"

    def reported(locale: str) -> str:
        return f"{label('target', 'VIDEO', locale)} {REPORTED}"

    about: list[tuple[Message, Callable[[str], str]]] = [
        (
            rev.ReportFiled(
                header=header("SUBMITTED", report),
                reporter="u-5005",
                contact=reporter,
                target=rev.ReportTargetRef(type="VIDEO", id=REPORTED),
                category="violence_terrorism",
                explanation=w("视频宣扬暴力。"),
                case_id=REPORT_CASE,
            ),
            reported,
        ),
        (resolved("ACTION_TAKEN"), reported),
        (resolved("ACTION_TAKEN", before=True), reported),
        (resolved("NO_VIOLATION"), reported),
        (resolved("NO_VIOLATION", unfounded=True), reported),
        (
            rev.ReportVoided(header=header("VOID", report), case_id=REPORT_CASE, reason=w("已删")),
            reported,
        ),
        (
            rev.ReportDecisionReversed(
                header=header("REVERSED", report), case_id=REPORT_CASE, appeal=f"appeals/{APPEAL}"
            ),
            reported,
        ),
        (decided("ACTION_TAKEN", on_terms), lambda _: REPORTED),
        (decided("ACTION_TAKEN", illegal), lambda _: REPORTED),
        (decided("NO_VIOLATION", reconsidered, lifted=restrictions), lambda _: REPORTED),
        (
            rev.ReportCaseDecisionReversed(
                header=header("REVERSED"),
                appeal=f"appeals/{APPEAL}",
                restrictions_lifted=restrictions[:2],
                affected_uploader=uploader,
            ),
            lambda _: REPORTED,
        ),
        (rev.ReporterWarned(header=header("WARNED", standing), contact=reporter), lambda _: ""),
        (
            rev.ReporterSuspended(
                header=header("SUSPENDED", standing), contact=reporter, until=ts(week)
            ),
            lambda _: "",
        ),
        (
            rev.ReporterSuspensionLifted(header=header("STANDING", standing), contact=reporter),
            lambda _: "",
        ),
    ]
    return [(m, told.report_steps(m), subject) for m, subject in about]


def _codes() -> list[Event]:
    issued = hev.VerificationCodeIssued(
        request="phone-changes/7c3a9e2f",
        phone="+8613800138000",
        code="482913",
        locale="zh-CN",
        purpose="phone_change_new",
        expire_time=ts(NOW + timedelta(minutes=10)),
    )
    return [(issued, {"holder": told.code_step(issued)}, lambda _: "")]

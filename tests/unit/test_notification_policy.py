"""When notifications may go out, and what the requester is told."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.backoff import backoff
from casemesh.platform.envelope import CloudEvent
from casemesh_notifier.cases import CaseParties, Planning, plan_report, plan_ticket, tell
from casemesh_notifier.labels import phone_zones
from casemesh_notifier.policy import quiet_until, quiet_until_everywhere
from casemesh_notifier.rendering import email_values, render_email, render_sms, sms_values
from casemesh_notifier.samples import samples
from casemesh_notifier.steps import Step, appeal_steps, report_steps, ticket_step
from casemesh_notifier.store import ContactChange, NewJob, Party
from tests.support import case_event


def test_quiet_hours_hold_sms_until_morning_in_the_recipients_zone() -> None:
    # 23:30 in Shanghai is 15:30 UTC.
    late = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    assert quiet_until(late, "22:00-08:00", "Asia/Shanghai") == datetime(
        2026, 3, 2, 0, 0, tzinfo=UTC
    )
    early = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 07:00 in Shanghai
    assert quiet_until(early, "22:00-08:00", "Asia/Shanghai") == datetime(
        2026, 3, 2, 0, 0, tzinfo=UTC
    )
    noon = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    assert quiet_until(noon, "22:00-08:00", "Asia/Shanghai") is None
    assert quiet_until(late, "", "Asia/Shanghai") is None
    assert quiet_until(datetime(2026, 3, 1, 13, 0, tzinfo=UTC), "12:00-14:00", "UTC") == datetime(
        2026, 3, 1, 14, 0, tzinfo=UTC
    )


def test_quiet_hours_of_a_number_of_several_zones_end_once_they_end_in_all() -> None:
    """A +7 number may be anywhere from Kaliningrad to Kamchatka: at 03:30 in
    Moscow (12:30 in Kamchatka) an SMS waits for 08:00 in Kaliningrad, the
    first moment at which it is day wherever the number may be."""
    russia = phone_zones("+79161234567")
    assert len(russia) > 10
    moscow_night = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    kaliningrad_morning = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    assert quiet_until_everywhere(moscow_night, "22:00-08:00", russia) == kaliningrad_morning
    assert quiet_until_everywhere(kaliningrad_morning, "22:00-08:00", russia) is None
    # One zone: as `quiet_until`.
    late = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    shanghai = phone_zones("+8613800138000")
    assert quiet_until_everywhere(late, "22:00-08:00", shanghai) == quiet_until(
        late, "22:00-08:00", "Asia/Shanghai"
    )
    assert quiet_until_everywhere(late, "", russia) is None
    # Always night somewhere (UTC-8, UTC, UTC+8): the first moment it is
    # night in one only.
    apart = [ZoneInfo("Etc/GMT+8"), ZoneInfo("UTC"), ZoneInfo("Etc/GMT-8")]
    at_seven = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # night in UTC and UTC-8
    assert quiet_until_everywhere(at_seven, "22:00-08:00", apart) == datetime(
        2026, 3, 2, 8, 0, tzinfo=UTC
    )
    at_two = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # night in UTC only
    assert quiet_until_everywhere(at_two, "22:00-08:00", apart) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    first = [backoff(1, base=2, cap=60, rng=rng) for _ in range(50)]
    fifth = [backoff(5, base=2, cap=60, rng=rng) for _ in range(50)]
    late = [backoff(20, base=2, cap=60, rng=rng) for _ in range(50)]
    assert all(1 <= d <= 2 for d in first)
    assert all(16 <= d <= 32 for d in fifth)
    assert all(30 <= d <= 60 for d in late)
    assert len(set(fifth)) > 40  # jitter: replicas do not retry in lockstep


def header(status: int) -> ev.TicketEventHeader:
    return ev.TicketEventHeader(ticket_id="t1", version=2, status=status)  # type: ignore[arg-type]


def test_the_requester_hears_about_their_steps_but_not_internal_notes_or_own_replies() -> None:
    open_ = header(ev.TICKET_STATUS_OPEN)
    cases = [
        (ev.TicketCreated(header=header(ev.TICKET_STATUS_NEW)), "NEW", "ticket.received"),
        (
            ev.InfoRequested(header=header(ev.TICKET_STATUS_PENDING), message="?"),
            "OPEN",
            "ticket.info_requested",
        ),
        (ev.CommentAdded(header=open_, body="hi"), "OPEN", "ticket.agent_reply"),
        (ev.CommentAdded(header=open_, body="note", internal=True), "OPEN", None),
        (ev.CommentAdded(header=open_, body="me", by_requester=True), "PENDING", None),
        (
            ev.CommentAdded(header=open_, body="still broken", by_requester=True),
            "SOLVED",
            "ticket.reopened",
        ),
        (ev.TicketSolved(header=header(ev.TICKET_STATUS_SOLVED)), "OPEN", "ticket.solved"),
        (ev.TicketReopened(header=open_), "SOLVED", "ticket.reopened"),
        (ev.TicketClosed(header=header(ev.TICKET_STATUS_CLOSED)), "SOLVED", "ticket.closed"),
        (ev.TicketAssigned(header=open_), "NEW", None),
        (ev.TicketRated(header=header(ev.TICKET_STATUS_CLOSED), score=5), "CLOSED", None),
    ]
    for message, previous, template in cases:
        step = ticket_step(message, previous)
        assert (step.template if step else None) == template, message


def test_job_ids_are_one_per_event_party_and_channel_and_tell_nothing_of_the_address() -> None:
    """A job's id is published (the notifications topic's key and subject)
    and outlives its person's erasure: a masked phone number beside an id
    derived from the number was found again by trying the masked digits."""

    def job(cause: str, party: str, channel: str, recipient: str) -> NewJob:
        return NewJob(
            cause_event_id=cause,
            case_name="tickets/t1",
            party=party,
            channel=channel,
            recipient=recipient,
            template="ticket.created",
            locale="en",
            subject="",
            body="",
            params={},
        )

    a = job("t1:1", "requester", "SMS", "+8613912345678").id
    assert a == job("t1:1", "requester", "SMS", "+8613912340000").id
    others = {
        job("t1:2", "requester", "SMS", "+8613912345678").id,
        job("t1:1", "requester", "EMAIL", "a@example.com").id,
        job("t1:1", "uploader", "SMS", "+8613912345678").id,
    }
    assert a not in others and len(others) == 3


def test_the_claimant_hears_of_completion_withdrawal_and_counter_notices() -> None:
    def header(state: str, next_step: str = "") -> aev.AppealEventHeader:
        due = Timestamp(seconds=1_800_000_000) if next_step else None
        return aev.AppealEventHeader(
            appeal_id="a1", state=state, next_step=next_step, next_step_due=due
        )

    added = aev.AppealInfoAdded(header=header("SUBMITTED", "REVIEW"), message="见附件")
    # Completing what was asked for: a receipt, with when the review is due.
    assert appeal_steps(added, "INFO_REQUESTED")["filer"].template == "appeal.complete"
    # New contact details on a case under review: nothing to acknowledge.
    assert appeal_steps(added, "SUBMITTED") == {}
    # Still incomplete: the case keeps waiting, nothing new to say.
    partial = aev.AppealInfoAdded(
        header=header("INFO_REQUESTED", "YOUR_INFORMATION"), missing_elements=["grounds"]
    )
    assert appeal_steps(partial, "INFO_REQUESTED") == {}
    withdrawn = appeal_steps(aev.AppealWithdrawn(header=header("WITHDRAWN")), "SUBMITTED")
    assert {r: s.template for r, s in withdrawn.items()} == {"filer": "appeal.withdrawn"}

    countered = appeal_steps(
        aev.CounterNoticeFiled(
            header=header("FORWARDED_TO_CLAIMANT", "RESTORE"),
            uploader=aev.AppealParty(
                legal_name="Uma Lee",
                contact=ev.ContactPreferences(email="uma@example.com", phone="+8613900139000"),
            ),
            removed_item="content:8841",
            reason="mine",
        ),
        "UPHELD",
    )
    copy = countered["filer"]
    assert copy.template == "appeal.counter_notice_received"
    assert copy.values["uploader"] == {
        "name": "Uma Lee",
        "email": "uma@example.com",
        "phone": "+8613900139000",
        "address": "",
    }
    assert copy.values["text"] == "mine" and copy.values["removed_items"] == ["content:8841"]
    assert copy.sms == {}  # none of it in the SMS
    assert countered["uploader"].template == "appeal.counter_notice_forwarded"


def test_the_claimants_copy_of_a_counter_notice_names_every_item_it_answers_for() -> None:
    items = ["content:8841", "content:8842"]
    header = aev.AppealEventHeader(
        appeal_id="a1", state="FORWARDED_TO_CLAIMANT", next_step="RESTORE"
    )
    filed = aev.CounterNoticeFiled(
        header=header, removed_item=items[0], removed_items=items, reason="mine"
    )
    copy = appeal_steps(filed, "UPHELD")["filer"]
    for locale in ("en", "zh-CN"):
        values = email_values(copy, "A-1", "Dance video")
        text = render_email(copy.template, locale, ZoneInfo("Asia/Shanghai"), values).text
        assert all(item in text for item in items), text
    # Published before a counter-notice could name several: its one item.
    older = aev.CounterNoticeFiled(header=header, removed_item=items[0], reason="mine")
    assert appeal_steps(older, "UPHELD")["filer"].values["removed_items"] == items[:1]


def test_both_parties_hear_how_the_court_action_ended() -> None:
    def told(state: str, outcome: str) -> dict[str, str]:
        header = aev.AppealEventHeader(appeal_id="a1", state=state)
        ended = aev.CourtOutcomeRecorded(header=header, outcome=outcome, details="判决书")
        return {role: step.template for role, step in appeal_steps(ended, "HELD").items()}

    stays_down = told("UPHELD_BY_COURT", "CONTENT_STAYS_DOWN")
    assert stays_down == {"filer": "appeal.court_upheld", "uploader": "appeal.court_upheld"}
    restored = told("RESTORED", "CONTENT_RESTORED")
    assert restored == {"filer": "appeal.court_restored", "uploader": "appeal.court_restored"}


def test_the_backoff_stays_at_its_cap_however_many_tries() -> None:
    # A provider out of reach for days: tries are counted without end.
    assert 450 <= backoff(5000, base=2.0, cap=900.0) <= 900


def test_both_parties_hear_why_the_content_came_back() -> None:
    """After the counter-notice's window, or because an appeal was upheld:
    each is told as it was (the first text speaks of the window)."""
    header = aev.AppealEventHeader(appeal_id="a1", state="RESTORED")
    after_window = aev.ContentRestored(header=header, removed_item="https://v.example/1")
    on_appeal = aev.ContentRestored(header=header, outcome_of="appeals/a2")
    for message, template in (
        (after_window, "appeal.restored"),
        (on_appeal, "appeal.restored_on_appeal"),
    ):
        steps = appeal_steps(message, "UPHELD")
        assert {role: s.template for role, s in steps.items()} == {
            "filer": template,
            "uploader": template,
        }


def test_an_appeal_upheld_while_a_court_holds_the_rest_says_what_it_brought_back() -> None:
    """A notice took down two videos; the counter-notice named one, which a
    court holds; the uploader's appeal for the other is upheld: both parties
    read, by e-mail and by SMS, that the items the counter-notice did not
    name came back, and the court's are the court's, not that "the content"
    was restored."""
    back = "https://v.example/2"
    zone = ZoneInfo("Asia/Shanghai")
    for state in ("HELD", "UPHELD_BY_COURT", "RESTORED"):
        header = aev.AppealEventHeader(appeal_id="a1", state=state)
        message = aev.ContentRestored(header=header, outcome_of="appeals/a2", restored_items=[back])
        court_holds = state != "RESTORED"
        for role, step in appeal_steps(message, state).items():
            for locale, partly, wholly, sms_partly, sms_wholly in (
                (
                    "en",
                    "a court's to decide",
                    "the content has been restored",
                    "items the court is not deciding",
                    "the content restored",
                ),
                ("zh-CN", "由法院裁决", "涉及的内容已恢复", "法院未审理的内容", "涉及的内容已恢复"),
            ):
                text = render_email(
                    step.template, locale, zone, email_values(step, "A-1", "Dance video")
                ).text
                assert (partly in text, wholly in text) == (court_holds, not court_holds), (
                    role,
                    locale,
                    text,
                )
                assert back in text
                sms = render_sms(step.template, locale, zone, sms_values(step, "A-1", False))
                assert (sms_partly in sms, sms_wholly in sms) == (court_holds, not court_holds), (
                    role,
                    locale,
                    sms,
                )


def test_both_parties_hear_which_items_came_back() -> None:
    """A notice took down two videos; a counter-notice answered for one,
    which alone came back after the window (or by a court): each party's
    e-mail names it, not "the content" as if all of it was back."""
    header = aev.AppealEventHeader(appeal_id="a1", state="RESTORED")
    back, down = "https://v.example/1", "https://v.example/2"
    for message in (
        aev.ContentRestored(header=header, removed_item=back, restored_items=[back]),
        aev.ContentRestored(header=header, outcome_of="appeals/a2", restored_items=[back]),
        aev.CourtOutcomeRecorded(
            header=header, outcome="CONTENT_RESTORED", removed_item=back, restored_items=[back]
        ),
    ):
        for role, step in appeal_steps(message, "UPHELD").items():
            for locale in ("en", "zh-CN"):
                values = email_values(step, "A-1", "Dance video")
                text = render_email(step.template, locale, ZoneInfo("Asia/Shanghai"), values).text
                assert back in text and down not in text, (role, locale, text)
    # One published before events listed them names its item, or nothing.
    older = aev.ContentRestored(header=header, outcome_of="appeals/a2")
    step = appeal_steps(older, "UPHELD")["filer"]
    text = render_email(step.template, "en", ZoneInfo("UTC"), email_values(step, "A-1", "")).text
    assert "Restored item" not in text and "has been restored" in text


def test_the_final_decision_on_an_appeal_invites_no_further_appeal() -> None:
    """A decision on an appeal is final on the platform: nothing is due after
    it, and its message names no date to appeal by (not today's, as a
    missing date would read)."""
    header = aev.AppealEventHeader(appeal_id="a9", state="REJECTED")
    decided = aev.AppealDecided(
        header=header,
        outcome="REJECT",
        reasons=aev.StatementOfReasons(
            ground="著作权法", facts="原决定无误。", redress="可向法院起诉。"
        ),
    )
    step = appeal_steps(decided, "UNDER_REVIEW")["filer"]
    assert step.due is None
    shanghai = ZoneInfo("Asia/Shanghai")
    for locale in ("zh-CN", "en"):
        email = render_email(step.template, locale, shanghai, email_values(step, "A-9", "案件"))
        sms = render_sms(step.template, locale, shanghai, sms_values(step, "A-9", False))
        for text in (email.text, sms):
            assert "前申诉" not in text and "appeal until" not in text, text
            assert "Appeal by" not in text, text
        assert "可向法院起诉。" in email.text


def test_a_reporter_told_of_a_reversal_hears_whether_their_report_is_reviewed_again() -> None:
    """Back in review, the outcome is to come; not reviewed again (the video
    reported again since, and reviewed under that report), nothing is."""

    def told(state: str) -> str:
        header = rev.ReportEventHeader(aggregate_id="r1", state=state)
        reversed_ = rev.ReportDecisionReversed(header=header, appeal="appeals/a1")
        step = report_steps(reversed_)["reporter"]
        values = email_values(step, "R-1", "视频 7731")
        return render_email(step.template, "en", ZoneInfo("Asia/Shanghai"), values).text

    assert "we will tell you the outcome" in told("SUBMITTED")
    assert "not reviewed again" in told("REVERSED")
    assert "we will tell you the outcome" not in told("REVERSED")


def _decided(outcome: str, *, uploader: bool = False, outcome_of: str = "") -> aev.AppealDecided:
    """A decision that opens a window to appeal (`next_step_due`), with the
    redress that speaks of it."""
    header = aev.AppealEventHeader(
        appeal_id="a1",
        state="UPHELD" if outcome == "UPHOLD" else "REJECTED",
        next_step="COUNTER_NOTICE_OR_APPEAL" if uploader else "APPEAL",
        next_step_due=Timestamp(seconds=1_788_000_000),
    )
    return aev.AppealDecided(
        header=header,
        outcome=outcome,
        reasons=aev.StatementOfReasons(
            ground="著作权法", facts="同一支舞", redress="如不服本决定，可在申诉期限内提出申诉。"
        ),
        affected_uploader=aev.AppealParty(user_id="ursula") if uploader else None,
        outcome_of=outcome_of,
    )


def _told(step: Step, locale: str) -> str:
    """The e-mail and the SMS `step` sends in `locale`."""
    shanghai = ZoneInfo("Asia/Shanghai")
    email = render_email(step.template, locale, shanghai, email_values(step, "A-1", "Dance"))
    return email.text + render_sms(step.template, locale, shanghai, sms_values(step, "A-1", False))


def test_only_the_party_a_decision_went_against_is_told_they_may_appeal_it() -> None:
    """The claimant of an upheld notice, and the filer of an upheld
    counter-notice, won: no date to appeal by, nor the other party's redress
    (which speaks of appealing); the uploader and a rejected filer get both."""
    for won in (_decided("UPHOLD", uploader=True), _decided("UPHOLD")):
        filer = appeal_steps(won, "UNDER_REVIEW")["filer"]
        assert (filer.template, filer.due) == ("appeal.upheld", None)
        for locale in ("en", "zh-CN"):
            text = _told(filer, locale)
            assert "同一支舞" in text
            for never in ("appeal until", "Appeal by", "前申诉", "申诉期限", "Redress", "救济途径"):
                assert never not in text, text
    removed = appeal_steps(_decided("UPHOLD", uploader=True), "UNDER_REVIEW")["uploader"]
    assert removed.due is not None and "申诉期限" in _told(removed, "zh-CN")
    lost = appeal_steps(_decided("REJECT"), "UNDER_REVIEW")["filer"]
    assert lost.due is not None
    assert "You may appeal until" in _told(lost, "en") and "申诉期限" in _told(lost, "en")


def test_a_notice_upheld_on_the_claimants_appeal_tells_the_claimant_once() -> None:
    """The claimant hears of it from their appeal's decision; on the notice,
    only the uploader whose content it removes is told (with their window)."""
    steps = appeal_steps(_decided("UPHOLD", uploader=True, outcome_of="appeals/a2"), "REJECTED")
    assert {role: s.template for role, s in steps.items()} == {"uploader": "appeal.content_removed"}
    assert steps["uploader"].due is not None


def test_a_text_given_a_number_abroad_tells_the_time_there() -> None:
    """An uploader's text about a decision says by when they may appeal, in
    their number's time, naming no zone: 23:59 for their Shanghai number.
    Their contact corrected to a London number before it goes, it says
    15:59; to a Russian one (a number of many zones) the Shanghai time,
    saying so; to another Chinese number it is as it was. It still points
    to the e-mail they also get."""
    now = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    decision = next(s.step for s in samples() if s.step.template == "report.statement")
    step = dataclasses.replace(decision, due=datetime(2026, 3, 16, 15, 59, tzinfo=UTC))
    uploader = Party(
        role="uploader",
        locale="en",
        email="wu@example.com",
        phone="+8613800138000",
        channels=["EMAIL", "SMS"],
        subject="",
        status="",
        user_id="users/wu",
    )
    event = CloudEvent("rc:2", "casemesh/reports", "t", "report-cases/rc", now, b"", "rc")
    planning = Planning(now, ZoneInfo("Asia/Shanghai"))
    jobs = tell(
        event, "report-cases/rc", "c81e4b2a", {"uploader": step}, {"uploader": uploader}, planning
    )
    [text] = [job for job in jobs if job.channel == "SMS"]
    assert "Appeal by 16 Mar 23:59." in text.body and text.params["due"] == "16 Mar 23:59"

    def moved_to(phone: str) -> NewJob:
        change = ContactChange(
            "report-cases/rc", "uploader", "users/wu", "users/wu", "wu@example.com", phone
        )
        moved = change.follow(text, now)
        assert moved is not None and moved.recipient == phone
        assert "Reasons in your e-mail." in moved.body
        return moved

    london = moved_to("+447911123456")
    assert "Appeal by 16 Mar 15:59." in london.body and london.params["due"] == "16 Mar 15:59"
    russia = moved_to("+79161234567")
    assert "Appeal by 16 Mar 23:59 GMT+08:00." in russia.body
    assert russia.params["due"] == "16 Mar 23:59 GMT+08:00"
    assert moved_to("+8613900139000").body == text.body
    # Back from London to a Chinese number: Shanghai's time again.
    back = ContactChange(
        "report-cases/rc", "uploader", "users/wu", "users/wu", "", "+8613900139000"
    )
    assert back.follow(london, now) == dataclasses.replace(text, recipient="+8613900139000")
    # A text this release cannot write again (a template since needing what
    # its params lack) keeps its words, and still goes to the new number.
    unwritable = dataclasses.replace(text, params={**text.params, "due_at": "not a time"})
    kept = ContactChange(
        "report-cases/rc", "uploader", "users/wu", "users/wu", "", "+447911123456"
    ).follow(unwritable, now)
    assert kept is not None and (kept.recipient, kept.body) == ("+447911123456", text.body)


def test_a_reporters_warning_is_not_dropped_by_the_next_measures_contact() -> None:
    """DSA Art. 23(1): a reporter is warned before being suspended. Each
    measure names them with the contact of the report just counted: a
    warning by SMS (held for the night, or planned in the same batch) still
    goes when the suspension comes with a report given with an e-mail only;
    a new number takes it there."""
    standing = "reporters/r-1"
    by_sms = ev.ContactPreferences(
        phone="+8613800138000", channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN"
    )
    by_email = ev.ContactPreferences(
        email="rui@example.com", channels=[ev.CONTACT_CHANNEL_EMAIL], locale="zh-CN"
    )
    elsewhere = ev.ContactPreferences(
        phone="+8613900139000", channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN"
    )

    def planned(suspended_with: ev.ContactPreferences) -> list[NewJob]:
        until = Timestamp()
        until.FromDatetime(datetime(2026, 3, 9, 4, 0, tzinfo=UTC))
        header = rev.ReportEventHeader(aggregate_id="r-1", actor="system")
        warned = rev.ReporterWarned(header=header, reporter="u-7", contact=by_sms)
        warned.header.version, warned.header.state = 1, "WARNED"
        suspended = rev.ReporterSuspended(
            header=header, reporter="u-7", contact=suspended_with, until=until
        )
        suspended.header.version, suspended.header.state = 2, "SUSPENDED"
        book = CaseParties({})
        at = Planning(now=datetime(2026, 3, 2, 15, 0, tzinfo=UTC), zone=ZoneInfo("Asia/Shanghai"))
        jobs: list[NewJob] = []
        for message in (warned, suspended):
            event = case_event("reports", standing, message.header.version, message)
            book.at = event.time
            planned = plan_report(book, event, message, at)
            jobs = book.follow(jobs) + planned
        return jobs

    told = [(j.template, j.channel, j.recipient) for j in planned(by_email)]
    assert told == [
        ("report.misuse_warning", "SMS", "+8613800138000"),
        ("report.reporting_suspended", "EMAIL", "rui@example.com"),
    ]
    told = [(j.template, j.channel, j.recipient) for j in planned(elsewhere)]
    assert told == [
        ("report.misuse_warning", "SMS", "+8613900139000"),
        ("report.reporting_suspended", "SMS", "+8613900139000"),
    ]


def test_a_request_answered_in_the_same_batch_is_not_sent_but_a_later_one_is() -> None:
    """Heard in one batch: an agent asks for the order number, the requester
    replies with it, the agent asks for a screenshot. Only the screenshot
    is asked for; what the ticket asked before the batch is cancelled."""
    contact = ev.ContactPreferences(
        phone="+8613800138000", channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN"
    )

    def at(version: int, status: int, message: Any) -> Any:
        message.header.CopyFrom(
            ev.TicketEventHeader(ticket_id="t1", version=version, status=status)  # type: ignore[arg-type]
        )
        return message

    events = [
        at(1, ev.TICKET_STATUS_NEW, ev.TicketCreated(requester="u-1", contact=contact)),
        at(2, ev.TICKET_STATUS_PENDING, ev.InfoRequested(message="订单号？")),
        at(3, ev.TICKET_STATUS_OPEN, ev.CommentAdded(by_requester=True, body="20260302")),
        at(4, ev.TICKET_STATUS_PENDING, ev.InfoRequested(message="截图？")),
    ]
    book = CaseParties({})
    planning = Planning(now=datetime(2026, 3, 2, 4, 0, tzinfo=UTC), zone=ZoneInfo("Asia/Shanghai"))
    jobs: list[NewJob] = []
    for message in events:
        event = case_event("tickets", "tickets/t1", message.header.version, message)
        book.at = event.time
        planned = plan_ticket(book, event, message, planning)
        jobs = book.unasked(book.follow(jobs)) + planned
    assert [(j.template, j.cause_event_id) for j in jobs] == [
        ("ticket.received", "t1:1"),
        ("ticket.info_requested", "t1:4"),
    ]
    assert book.answered() == ["tickets/t1"]

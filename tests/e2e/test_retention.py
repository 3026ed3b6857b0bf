"""Retention: a case that ended and is past its type's retention period has
its personal data erased by a timer, by destroying the case's own keys; the
person's other cases, and everyone else's, stay as they were."""

from __future__ import annotations

import uuid

import grpc
import psycopg
import pytest

from casemesh.platform.personal import ERASED
from casemesh.rules import retention
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.test_appeals import Person, notice
from tests.e2e.test_erasure import dumps, found_in
from tests.e2e.test_evidence import stored_objects
from tests.e2e.test_reports import Person as Reporting
from tests.e2e.test_reports import decide_no_violation, people, reports_mail
from tests.support import open_ticket, told_everything, wait_until

DAY = 24 * 3600


def test_cases_past_their_retention_period_are_erased_and_her_open_one_is_not(
    stack: Stack,
) -> None:
    """Zoe's ticket is closed, her copyright notice withdrawn, and the video
    she reported found to break no rule; once past their retention periods
    they read as erased everywhere, her ticket still open reads as it was,
    and none takes a change."""
    run, mark = uuid.uuid4().hex[:8], uuid.uuid4().hex[:10]
    zoe, agent = Person(stack, f"zoe-{run}"), Person(stack, f"agent-{run}", "agent")
    email, phone = f"zoe.{run}@example.com", f"+86139{uuid.uuid4().int % 10**8:08d}"
    subject, words = f"Cannot log in {mark}s", f"My old number {mark}d is gone"
    done = open_ticket(zoe.client, subject, words, email)
    kept = open_ticket(zoe.client, f"Upload fails {mark}k", f"Since Monday {mark}m", email)
    agent.client.SolveTicket(pb.SolveTicketRequest(name=done.name, resolution="Number changed."))
    zoe.client.CloseTicket(pb.CloseTicketRequest(name=done.name))
    filed = notice(zoe, email, phone)
    studio, title = f"Zoe Studio {mark}n", f"Spring dance {mark}t"
    filed.filer.legal_name, filed.notice.work.title = studio, title
    appeal = zoe.FileAppeal(apb.FileAppealRequest(appeal=filed, request_id=uuid.uuid4().hex))
    zoe.WithdrawAppeal(apb.WithdrawAppealRequest(name=appeal.name))
    reporting, moderator = Reporting(stack, zoe.user), Reporting(stack, agent.user, "agent")
    scene, video = f"Violent scene at second {mark}e", f"v{run}"
    report = reporting.report(video, email=email, explanation=scene)
    decide_no_violation(moderator, report)
    stored_proof = moderator.evidence.get(report.evidence[0].name).sha256
    assert stored_proof in stored_objects(stack.evidence_dir)
    # She was told of each; the notifier keeps what it sent, in clear.
    bootstrap = stack.infra.kafka.bootstrap
    wait_until(lambda: told_everything(bootstrap, stack.notifier_dsn, [email, phone]), 90)
    assert "casemesh_notifier" in found_in(dumps(stack), [subject, title])
    assert "casemesh_reports" in found_in(dumps(stack), [scene])
    # What it told her of her report names the video (the subject of its
    # messages): the notifier keeps that with her address until it expires.
    assert "casemesh_notifier" in found_in(dumps(stack), [video])

    # The longest period, which also outlasts a report case's window for an
    # appeal and its own period after it.
    longest = max(retention.period(t) for t in ("tickets", "appeals", "reports"))
    stack.advance_clock(longest.total_seconds() + DAY)

    def ticket_steps() -> list[str]:
        request = pb.ListTicketEventsRequest(name=done.name)
        return [e.type for e in agent.client.ListTicketEvents(request).events]

    def appeal_steps() -> list[str]:
        request = apb.ListAppealEventsRequest(name=appeal.name)
        return [e.type for e in agent.ListAppealEvents(request).events]

    wait_until(lambda: ticket_steps()[-1] == "TicketExpired", timeout=60, interval=0.5)
    wait_until(lambda: appeal_steps()[-1] == "AppealExpired", timeout=60, interval=0.5)

    def report_steps() -> list[str]:
        request = rpb.ListReportEventsRequest(name=report.name)
        return [e.type for e in moderator.ListReportEvents(request).events]

    wait_until(lambda: report_steps()[-1] == "ReportExpired", timeout=60, interval=0.5)
    got = zoe.client.GetTicket(pb.GetTicketRequest(name=done.name))
    assert (got.subject, got.description, got.contact.email) == (ERASED,) * 3
    assert got.status == pb.TICKET_STATUS_CLOSED  # the case itself stays
    assert ticket_steps() == ["TicketCreated", "TicketSolved", "TicketClosed", "TicketExpired"]
    got_appeal = zoe.GetAppeal(apb.GetAppealRequest(name=appeal.name))
    assert (got_appeal.filer.legal_name, got_appeal.notice.work.title) == (ERASED, ERASED)
    assert got_appeal.filer.contact.phone == ERASED
    assert got_appeal.state == apb.APPEAL_STATE_WITHDRAWN
    got_report = reporting.GetReport(rpb.GetReportRequest(name=report.name))
    assert (got_report.explanation, got_report.contact.email) == (ERASED, ERASED)
    assert got_report.state == rpb.REPORT_STATE_NO_VIOLATION
    assert report_steps() == ["ReportFiled", "ReportResolved", "ReportExpired"]
    # The proof her report held is deleted, record and bytes.
    [proof] = report.evidence
    wait_until(lambda: stored_proof not in stored_objects(stack.evidence_dir), 60, interval=0.5)
    with pytest.raises(grpc.RpcError) as gone:
        moderator.evidence.get(proof.name)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    # Their words are in no database and no notification any more; her open
    # ticket is as it was, in the list (the case index) too.
    mine = [subject, words, studio, title, scene]
    try:
        wait_until(lambda: not found_in(dumps(stack), mine), timeout=60, interval=1)
    except AssertionError:
        raise AssertionError(f"still in clear: {found_in(dumps(stack), mine)}") from None
    assert "casemesh_notifier" not in found_in(dumps(stack), [video])
    other = zoe.client.GetTicket(pb.GetTicketRequest(name=kept.name))
    assert (other.subject, other.contact.email) == (kept.subject, email)
    listed = {t.name: t.subject for t in zoe.client.ListTickets(pb.ListTicketsRequest()).tickets}
    assert listed == {done.name: ERASED, kept.name: kept.subject}
    # An expired ticket takes no change any more.
    with pytest.raises(grpc.RpcError) as refused:
        zoe.client.RateTicket(pb.RateTicketRequest(name=done.name, score=5, comment="thanks"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_the_contact_a_reporter_was_warned_at_is_forgotten_a_period_after_the_warning(
    stack: Stack,
) -> None:
    """A reporter warned for manifestly unfounded reports: once the standing
    period after the warning has run out, the notifier keeps her address for
    the standing no more; her reports, whose own periods run longer, still
    carry it."""
    run, (rep,), agent = people(stack, 1)
    email = f"{rep.user}@example.com"
    reports = [
        rep.report(f"w{run}{i}", category="other", subcategory="spam", email=email, locale="en")
        for i in range(2)
    ]
    for report in reports:
        decide_no_violation(agent, report, unfounded=True)
    wait_until(lambda: reports_mail(stack, email, "report.misuse_warning"), timeout=30)

    def standing_addresses() -> list[tuple[str, str]]:
        with psycopg.connect(stack.notifier_dsn) as conn:
            rows = conn.execute(
                "SELECT p.email, j.recipient FROM case_parties AS p"
                " JOIN notification_jobs AS j ON j.case_name = p.case_name"
                " WHERE p.case_name LIKE 'reporters/%%' AND p.user_id = %s",
                (rep.user,),
            ).fetchall()
            return [(e, r) for e, r in rows]

    assert standing_addresses() == [(email, email)]
    stack.advance_clock(retention.period("reporters").total_seconds() + DAY)
    wait_until(lambda: standing_addresses() == [("", "")], timeout=60, interval=0.5)
    got = rep.GetReport(rpb.GetReportRequest(name=reports[0].name))
    assert got.contact.email == email

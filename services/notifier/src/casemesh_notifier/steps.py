"""What each party of a case hears about an event: a step, that is a template
with its text and due date, per party role. Pure functions of the event.

The roles: a ticket's `requester`; a copyright case's `filer` and, once a
decision or counter-notice names them, its `uploader`; a report's
`reporter`; a report case's `uploader`; a reporter's standing, the
`reporter`; a one-time code's `holder`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh_notifier.labels import restriction_lines, statement_text


@dataclass(frozen=True)
class Step:
    """Something a party should hear about: a template and its parameters."""

    template: str
    text: str = ""
    due: datetime | None = None


def ticket_step(message: Message, previous_status: str) -> Step | None:
    """Which step of a ticket's journey (if any) this event tells the requester about."""
    match message:
        case ev.TicketCreated():
            return Step("ticket.received")
        case ev.InfoRequested():
            return Step("ticket.info_requested", message.message)
        case ev.CommentAdded() if not message.internal and not message.by_requester:
            return Step("ticket.agent_reply", message.body)
        case ev.CommentAdded() if message.by_requester and previous_status == "SOLVED":
            # The requester's reply reopened a solved ticket: confirm it is open again.
            return Step("ticket.reopened")
        case ev.TicketSolved():
            return Step("ticket.solved", message.resolution)
        case ev.TicketReopened():
            return Step("ticket.reopened")
        case ev.TicketClosed():
            return Step("ticket.closed")
    return None


def appeal_steps(message: Any) -> dict[str, Step]:
    """What each party of a copyright case hears about this event."""
    due = (
        message.header.next_step_due.ToDatetime(UTC)
        if (message.header.HasField("next_step_due"))
        else None
    )
    match message:
        case aev.AppealFiled() if message.missing_elements:
            return {
                "filer": Step(
                    "appeal.info_requested",
                    "\n".join(f"- {m}" for m in message.missing_elements),
                    due,
                )
            }
        case aev.AppealFiled():
            return {"filer": Step("appeal.received", due=due)}
        case aev.AppealInfoRequested():
            return {"filer": Step("appeal.info_requested", message.message, due)}
        case aev.AppealDecided():
            reasons = (
                f"{message.reasons.ground}\n{message.reasons.facts}\n{message.reasons.redress}"
            )
            template = "appeal.upheld" if message.outcome == "UPHOLD" else "appeal.rejected"
            steps = {"filer": Step(template, reasons, due)}
            if message.HasField("affected_uploader"):
                steps["uploader"] = Step("appeal.content_removed", reasons, due)
            return steps
        case aev.CounterNoticeFiled():
            return {
                "filer": Step("appeal.counter_notice_received", message.reason, due),
                "uploader": Step("appeal.counter_notice_forwarded", due=due),
            }
        case aev.ContentRestored():
            return {"filer": Step("appeal.restored"), "uploader": Step("appeal.restored")}
        case aev.CourtActionRecorded():
            return {"filer": Step("appeal.held"), "uploader": Step("appeal.held")}
        case aev.AppealAbandoned():
            return {"filer": Step("appeal.abandoned")}
    return {}


REPORT_APPEAL_TEMPLATES = frozenset(
    {
        "appeal.received",
        "appeal.info_requested",
        "appeal.upheld",
        "appeal.rejected",
        "appeal.abandoned",
    }
)


def for_report_appeal(steps: dict[str, Step], filer_subject: str) -> dict[str, Step]:
    """An appeal of a report decision is told in its own words (the filer's
    case subject is the appealed `report-cases/…`)."""
    if not filer_subject.startswith("report-cases/"):
        return steps
    return {
        role: replace(step, template="report_" + step.template)
        if step.template in REPORT_APPEAL_TEMPLATES
        else step
        for role, step in steps.items()
    }


def report_steps(message: Any) -> dict[str, Step]:
    """What each party of a report, its case or a reporter's standing hears."""
    match message:
        case rev.ReportFiled():
            return {"reporter": Step("report.received")}
        case rev.ReportResolved():
            template = {
                "ACTION_TAKEN": "report.action_taken",
                "NO_VIOLATION": "report.unfounded"
                if message.manifestly_unfounded
                else "report.no_violation",
            }[message.outcome]
            text = message.decision_facts
            if message.restrictions:
                text += "\n\n" + "\n".join(
                    "- " + r.replace("DECISION_", "").replace("_", " ").lower()
                    for r in message.restrictions
                )
            return {
                "reporter": Step(
                    template,
                    f"{text}\n\n{message.redress}",
                    message.appeal_deadline.ToDatetime(UTC),
                )
            }
        case rev.ReportVoided():
            return {"reporter": Step("report.void", message.reason)}
        case rev.ReportDecisionReversed():
            return {"reporter": Step("report.reversed")}
        case rev.ReportCaseDecided() if (
            message.HasField("affected_uploader") and message.outcome != "ACTION_TAKEN"
        ):
            # A new decision after an appeal: what the earlier one imposed is lifted.
            lifted = restriction_lines(message.restrictions_lifted)
            return {"uploader": Step("report.restriction_lifted", lifted)} if lifted else {}
        case rev.ReportCaseDecided() if message.HasField("affected_uploader"):
            return {
                "uploader": Step(
                    "report.statement",
                    statement_text(message.statement, message.affected_uploader.contact.locale),
                    message.statement.appeal_deadline.ToDatetime(UTC),
                )
            }
        case rev.ReportCaseDecisionReversed() if message.restrictions_lifted:
            return {
                "uploader": Step(
                    "report.restriction_lifted", restriction_lines(message.restrictions_lifted)
                )
            }
        case rev.ReporterWarned():
            return {"reporter": Step("report.misuse_warning")}
        case rev.ReporterSuspended():
            return {
                "reporter": Step("report.reporting_suspended", due=message.until.ToDatetime(UTC))
            }
        case rev.ReporterSuspensionLifted():
            return {"reporter": Step("report.suspension_lifted")}
    return {}


def code_step(message: hev.VerificationCodeIssued) -> Step:
    """A one-time code tells its holder the code and until when it holds."""
    return Step("verification.code", message.code, message.expire_time.ToDatetime(UTC))

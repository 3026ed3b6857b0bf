"""The case events the notifier reads: each CloudEvent type
(`casemesh.<source>.<Message>.v1`) names its protobuf message, and each
message the plan of its kind of case (`cases.py`) that turns it into jobs.
Which step each party hears is decided in `steps.py`. Any other type is
consumed and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh_notifier.cases import (
    CaseParties,
    Planning,
    plan_appeal,
    plan_code,
    plan_report,
    plan_ticket,
)
from casemesh_notifier.store import NewJob

Plan = Callable[[CaseParties, CloudEvent, Any, Planning], list[NewJob]]
# The case an event concerns, whose parties its plan reads ("": none).
CaseOf = Callable[[CloudEvent, Any], str]


@dataclass(frozen=True)
class Source:
    """The events of one service that the notifier reads, their plan, and
    the case each concerns."""

    name: str
    plan: Plan
    messages: tuple[type[Message], ...]
    case: CaseOf


SOURCES = (
    Source(
        "tickets",
        plan_ticket,
        (
            ev.TicketCreated,
            ev.TicketAssigned,
            ev.CommentAdded,
            ev.InfoRequested,
            ev.TicketPutOnHold,
            ev.TicketSolved,
            ev.TicketReopened,
            ev.TicketClosed,
            ev.TicketCancelled,
            ev.TicketRated,
        ),
        lambda event, message: f"tickets/{message.header.ticket_id}",
    ),
    Source(
        "appeals",
        plan_appeal,
        (
            aev.AppealFiled,
            aev.AppealAssigned,
            aev.AppealInfoRequested,
            aev.AppealInfoAdded,
            aev.AppealDecided,
            aev.CounterNoticeFiled,
            aev.CourtActionRecorded,
            aev.CourtOutcomeRecorded,
            aev.ContentRestored,
            aev.AppealWithdrawn,
            aev.AppealAbandoned,
        ),
        lambda event, message: f"appeals/{message.header.appeal_id}",
    ),
    Source(
        "reports",
        plan_report,
        (
            rev.ReportFiled,
            rev.ReportResolved,
            rev.ReportVoided,
            rev.ReportDecisionReversed,
            rev.ReportCaseDecided,
            rev.ReportCaseDecisionReversed,
            rev.ReporterWarned,
            rev.ReporterSuspended,
            rev.ReporterSuspensionLifted,
        ),
        lambda event, message: event.subject,
    ),
    Source("helpcenter", plan_code, (hev.VerificationCodeIssued,), lambda event, message: ""),
)

MESSAGES: dict[str, type[Message]] = {
    f"casemesh.{source.name}.{cls.DESCRIPTOR.name}.v1": cls
    for source in SOURCES
    for cls in source.messages
}
SOURCE_OF: dict[type[Message], Source] = {
    cls: source for source in SOURCES for cls in source.messages
}

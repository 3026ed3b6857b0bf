"""The case events the notifier reads: each CloudEvent type
(`casemesh.<source>.<Message>.v1`) names its protobuf message, and each
message the plan of its kind of case (`cases.py`) that turns it into jobs.
Which step each party hears is decided in `steps.py`. Any other type is
consumed and ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from google.protobuf.message import Message

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh_notifier.cases import Planning, plan_appeal, plan_code, plan_report, plan_ticket

Plan = Callable[
    [psycopg.AsyncConnection[Any], CloudEvent, Any, Planning], Awaitable[list[uuid.UUID]]
]


@dataclass(frozen=True)
class Source:
    """The events of one service that the notifier reads, and their plan."""

    name: str
    plan: Plan
    messages: tuple[type[Message], ...]


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
            aev.ContentRestored,
            aev.AppealWithdrawn,
            aev.AppealAbandoned,
        ),
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
    ),
    Source("helpcenter", plan_code, (hev.VerificationCodeIssued,)),
)

MESSAGES: dict[str, type[Message]] = {
    f"casemesh.{source.name}.{cls.DESCRIPTOR.name}.v1": cls
    for source in SOURCES
    for cls in source.messages
}
PLANS: dict[type[Message], Plan] = {
    cls: source.plan for source in SOURCES for cls in source.messages
}

"""What each event of the three case topics says about its case."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.envelope import CloudEvent, EnvelopeError, message_class
from casemesh_casequeue.model import Observation
from casemesh_casequeue.sla import ServiceLevels

TOPICS = (topics.TICKETS, topics.APPEALS, topics.REPORTS)

TICKET_OPEN = {"NEW": False, "OPEN": False, "PENDING": True, "ON_HOLD": True}
APPEAL_OPEN = {"SUBMITTED": False, "UNDER_REVIEW": False, "INFO_REQUESTED": True}
REPORT_OPEN = {"OPEN": False, "IN_REVIEW": False}


def observe(event: CloudEvent, levels: ServiceLevels) -> Observation | None:
    """The observation an event makes, or None for events that concern no case
    in the queue (a report's own stream, a reporter's standing, …)."""
    kind = message_class(event.type)
    if kind is None:  # set aside before any handler sees it, as `message` would
        raise EnvelopeError(f"no Casemesh event has the type {event.type!r}")
    # The proto file a message comes from names the service that published it;
    # a message is decoded only once it is known to concern a case.
    published_by = kind.DESCRIPTOR.file
    if published_by is tev.DESCRIPTOR:
        return _ticket(kind.FromString(event.data))
    if published_by is aev.DESCRIPTOR:
        return _appeal(kind.FromString(event.data), levels)
    if published_by is rev.DESCRIPTOR and event.subject.startswith("report-cases/"):
        return _report_case(kind.FromString(event.data), levels)
    return None


def _at(header: Any) -> Any:
    return header.time.ToDatetime(tzinfo=UTC)


def _ticket(m: Any) -> Observation | None:
    h = m.header
    status = tev.TicketStatus.Name(h.status).removeprefix("TICKET_STATUS_")
    extra: dict[str, Any] = {}
    match m:
        case tev.TicketCreated():
            extra = {"created": True, "category": m.category, "priority": m.priority or 2}
        case tev.TicketAssigned():
            extra = {"priority": m.priority or None}
        case tev.CommentAdded() if not m.internal and not m.by_requester:
            extra = {"responded": True}
        case tev.InfoRequested() | tev.TicketSolved():
            # What the requester hears from an agent (not a hold, not a note).
            extra = {"responded": True}
    return Observation(
        name=f"tickets/{h.ticket_id}",
        type="ticket",
        version=h.version,
        at=_at(h),
        status=status,
        open=status in TICKET_OPEN,
        waiting=TICKET_OPEN.get(status, False),
        **extra,
    )


def _appeal(m: Any, levels: ServiceLevels) -> Observation | None:
    h = m.header
    extra: dict[str, Any] = {}
    match m:
        case aev.AppealFiled():
            # An appeal of a report decision is trust and safety's, not copyright's.
            kind = "report_decision" if m.appeal_of.startswith("report-cases/") else m.kind
            extra = {
                "created": True,
                "category": kind.lower(),
                "priority": levels.appeal_priority,
            }
        case aev.AppealInfoRequested() | aev.AppealDecided():
            extra = {"responded": True}
    return Observation(
        name=f"appeals/{h.appeal_id}",
        type="appeal",
        version=h.version,
        at=_at(h),
        status=h.state,
        open=h.state in APPEAL_OPEN,
        waiting=APPEAL_OPEN.get(h.state, False),
        **extra,
    )


def _report_case(m: Any, levels: ServiceLevels) -> Observation | None:
    h = m.header
    extra: dict[str, Any] = {}
    match m:
        case rev.ReportCaseOpened():
            extra = {
                "created": True,
                "category": m.category,
                "lane": m.lane,
                "priority": levels.priority_of_report(m.lane, m.base_priority),
            }
        case rev.ReportAddedToCase():
            extra = {"extra": {"base_priority": m.base_priority}}
        case rev.ReportCaseDecided() | rev.ReportCaseVoided():
            extra = {"responded": True}
    return Observation(
        name=f"report-cases/{h.aggregate_id}",
        type="report",
        version=h.version,
        at=_at(h),
        status=h.state,
        open=h.state in REPORT_OPEN,
        waiting=False,
        **extra,
    )

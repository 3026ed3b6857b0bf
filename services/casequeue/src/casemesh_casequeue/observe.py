"""What each event of the three case topics says about its case."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.envelope import CloudEvent, EnvelopeError, message_class
from casemesh.platform.logging import get_logger
from casemesh_casequeue.model import Observation
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)

TOPICS = (topics.TICKETS, topics.APPEALS, topics.REPORTS)

# Each state a case can be in: open (and whether it waits on the person, its
# clocks paused), or closed. A state in neither (one a newer producer added)
# keeps the case open, logged: an agent sees a case that may be done rather
# than never sees one that is not. A test holds these to the public enums.
TICKET_OPEN = {"NEW": False, "OPEN": False, "PENDING": True, "ON_HOLD": True}
TICKET_CLOSED = frozenset({"SOLVED", "CLOSED", "CANCELLED"})
APPEAL_OPEN = {"SUBMITTED": False, "UNDER_REVIEW": False, "INFO_REQUESTED": True}
APPEAL_CLOSED = frozenset(
    {
        "UPHELD",
        "REJECTED",
        "WITHDRAWN",
        "ABANDONED",
        # The claimant's to act on (court action or not), then the court's.
        "FORWARDED_TO_CLAIMANT",
        "RESTORED",
        "HELD",
        "UPHELD_BY_COURT",
    }
)
REPORT_OPEN = {"OPEN": False, "IN_REVIEW": False}
REPORT_CLOSED = frozenset({"ACTION_TAKEN", "NO_VIOLATION", "VOID", "REVERSED"})


def _openness(
    name: str, state: str, open_states: dict[str, bool], closed: frozenset[str]
) -> tuple[bool, bool]:
    """Whether a case in `state` is open, and waits on its person."""
    if state in open_states:
        return True, open_states[state]
    if state not in closed:
        log.warning("queue.unknown_state", case=name, state=state)
        return True, False
    return False, False


def observe(event: CloudEvent, levels: ServiceLevels) -> Observation | None:
    """The observation an event makes, or None for events that concern no case
    in the queue (a report's own stream, a reporter's standing, …) or change
    nothing of one (a closed report case's next round opening)."""
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
    if h.status in tev.TicketStatus.values():
        status = tev.TicketStatus.Name(h.status).removeprefix("TICKET_STATUS_")
    else:  # a status added after this service was built
        status = f"STATUS_{h.status}"
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
    name = f"tickets/{h.ticket_id}"
    is_open, waiting = _openness(name, status, TICKET_OPEN, TICKET_CLOSED)
    return Observation(
        name=name,
        type="ticket",
        version=h.version,
        at=_at(h),
        status=status,
        open=is_open,
        waiting=waiting,
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
                "appeal_of": decided_case(m.appeal_of),
            }
        case aev.AppealAssigned() | aev.AppealInfoRequested() | aev.AppealDecided():
            # The filer sees their case go under review (UNDER_REVIEW), as they
            # see a request for more or the decision. Most appeals need nothing
            # more from the filer: counted to the decision, their first-response
            # target would stand in for their longer resolution target.
            extra = {"responded": True}
    name = f"appeals/{h.appeal_id}"
    extra["parties"] = _appeal_parties(m)
    is_open, waiting = _openness(name, h.state, APPEAL_OPEN, APPEAL_CLOSED)
    return Observation(
        name=name,
        type="appeal",
        version=h.version,
        at=_at(h),
        status=h.state,
        open=is_open,
        waiting=waiting,
        **extra,
    )


def _appeal_parties(m: Any) -> tuple[str, ...]:
    """The parties an appeals event names: those the appeals service
    refuses its work on the case (OWN_CASE: nobody decides their own case,
    DSA Art. 20(6)), its filer and its uploader, who are parties to the
    appeals of its decision too. Their user ids travel clear (their names
    and contacts are sealed)."""
    match m:
        case aev.AppealFiled() | aev.AppealInfoAdded():
            return (m.filer.user_id,)
        case aev.AppealDecided():
            return (m.affected_uploader.user_id,)
        case aev.CounterNoticeFiled():
            return (m.uploader.user_id,)
    return ()


def decided_case(appeal_of: str) -> str:
    """The decided case an appeal names, in the one spelling the appeals
    service keys a decision's appeals by (a report case's id is taken in
    any form of its UUID): '' for none."""
    prefix, _, ident = appeal_of.partition("/")
    try:
        return f"{prefix}/{uuid.UUID(ident)}"
    except ValueError:
        return appeal_of


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
        case rev.ReportCaseSucceeded():
            # The next round is a case of its own (its ReportCaseOpened); this
            # one, closed, stays as it is.
            return None
        case rev.ReportCaseAssigned() | rev.ReportCaseDecided() | rev.ReportCaseVoided():
            # No one waits on a report case for an answer: its reporters hear
            # only the outcome. What its first-response target (an hour for
            # child safety) measures is how long it waits for an agent to take
            # it into review; counted to the decision instead, it would be a
            # resolution target shorter than the case's own.
            extra = {"responded": True}
    name = f"report-cases/{h.aggregate_id}"
    extra["parties"] = _report_case_parties(m)
    is_open, waiting = _openness(name, h.state, REPORT_OPEN, REPORT_CLOSED)
    return Observation(
        name=name,
        type="report",
        version=h.version,
        at=_at(h),
        status=h.state,
        open=is_open,
        waiting=waiting,
        **extra,
    )


def _report_case_parties(m: Any) -> tuple[str, ...]:
    """The parties a report case's event names: those the reports service
    refuses its work on the case (OWN_CASE), its reporters and the uploader
    a decision named. (A case opened before ReportCaseOpened named its first
    reporter has them only once they appeal: until then a claim may give
    them the case, which the reports service refuses them.)"""
    match m:
        case rev.ReportCaseOpened():
            return (m.first_reporter,) if m.first_reporter else ()
        case rev.ReportAddedToCase():
            return (m.reporter,)
        case rev.ReportCaseAppealed():
            # Only a party appeals (a reporter or the uploader named).
            return (m.appellant,)
        case rev.ReportCaseDecided() | rev.ReportCaseDecisionReversed():
            return (m.affected_uploader.user_id,)
    return ()

"""Retention: a report case that ended keeps its personal data (its reports'
explanations, contacts and file names, the uploader its decision named) for
the period `retention.toml` gives report cases, counted from when it ended
(`ReportCase.ended_at`); then its timer (`casemesh.platform.timers`) records
the case and its reports expired and destroys their case keys
(`CaseApplication.expire_case`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from casemesh.platform.logging import get_logger
from casemesh.platform.timers import Deadline
from casemesh_reports.base import ReportsBase
from casemesh_reports.domain import AbuseReport, ReportCase, decision_end

log = get_logger(__name__)

# The kind of deadline in the timers table (`report_timers`), with the end it
# counts from: `retention@<end, ISO 8601>`.
RETENTION = "retention"


class Retention(ReportsBase):
    # The events after which a case may have ended.
    deadline_events = (ReportCase.Decided, ReportCase.CaseVoided, ReportCase.DecisionReversed)

    def deadlines_of(self, domain_event: Any) -> list[Deadline]:
        """The retention deadline an event sets, from the event alone: a
        decision's window for an appeal closing, a voiding, a reversal that
        did not reopen the case. The deadline names the end it counts from;
        whether the case still ended then is checked when it fires."""
        match domain_event:
            case ReportCase.Decided():
                end = decision_end(domain_event.statement, domain_event.at)
            case ReportCase.CaseVoided():
                end = domain_event.at
            case ReportCase.DecisionReversed() if not domain_event.reopen:
                end = domain_event.at
            case _:
                return []
        kind = f"{RETENTION}@{end.isoformat()}"
        return [Deadline(str(domain_event.originator_id), kind, end + self.retain_for)]

    def fire(self, deadline: Deadline) -> None:
        name, _, end = deadline.kind.partition("@")
        if name != RETENTION or not end:
            raise ValueError(f"unknown deadline kind {deadline.kind!r}")
        self.expire(UUID(deadline.aggregate_id), datetime.fromisoformat(end), deadline.due)

    def expire(self, case_id: UUID, end: datetime, due: datetime) -> bool:
        """Expires the case and its reports once `due` has come, if the end
        it counts from still stands: a reporter's appeal that reopened the
        case, a new decision or a later reversal moved its end since, and
        their own deadlines stand instead. The period is the one the
        deadline was scheduled with. A case recorded expired before (a crash
        came before its keys were destroyed) has its keys destroyed again."""
        case: ReportCase | None = self._get(ReportCase, case_id)
        if case is None or self.clock.now() < due:
            return False
        if not case.expired and (not case.has_ended() or case.ended_at() != end):
            return False
        reports: list[AbuseReport] = [self.repository.get(UUID(r["id"])) for r in case.reports]
        if not case.expired and not all(r.has_ended() for r in reports):
            log.warning("report_case.not_expirable", case_id=str(case_id), why="a report is open")
            return False
        return self.expire_case(case, reports)

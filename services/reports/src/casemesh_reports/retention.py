"""Retention: a report case that ended keeps its personal data (its reports'
explanations, contacts and file names, the uploader its decision named) for
the period `retention.toml` gives report cases, counted from when it ended
(`ReportCase.ended_at`); then its timer (`casemesh.platform.timers`) records
the case and its reports expired and destroys their case keys
(`CaseApplication.expire_case`).

A reporter's standing keeps the contact its measures (a warning, a
suspension, its lifting) were sent to for the period `retention.toml` gives
`reporters`, counted from when the last measure ended; then the timer
records the standing's record expired and destroys that record's case keys
(`Reporter.expire_record`). The standing and what it counted stay."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from uuid import UUID

from casemesh.platform.logging import get_logger
from casemesh.platform.timers import Deadline, UnknownDeadlineKind
from casemesh_reports.base import ReportsBase
from casemesh_reports.domain import AbuseReport, ReportCase, Reporter, decision_end

log = get_logger(__name__)

# The kind of deadline in the timers table (`report_timers`), with the end it
# counts from: `retention@<end, ISO 8601>`.
RETENTION = "retention"
# The kind of a reporter's standing's deadline, with the end of the measure
# it counts from: `standing@<end, ISO 8601>`.
STANDING = "standing"


class Retention(ReportsBase):
    # The events after which a case may have ended, or a measure will end.
    deadline_events = (
        ReportCase.Decided,
        ReportCase.CaseVoided,
        ReportCase.DecisionReversed,
        Reporter.Warned,
        Reporter.Suspended,
        Reporter.SuspensionLifted,
    )

    def deadlines_of(self, domain_event: Any) -> list[Deadline]:
        """The retention deadline an event sets, from the event alone: a
        decision's window for an appeal closing, a voiding, a reversal that
        did not reopen the case; a reporter's measure ending. The deadline
        names the end it counts from; whether the case still ended then (the
        measure was still the last) is checked when it fires."""
        match domain_event:
            case ReportCase.Decided():
                end = decision_end(domain_event.statement, domain_event.at)
            case ReportCase.CaseVoided():
                end = domain_event.at
            case ReportCase.DecisionReversed() if not domain_event.reopen:
                end = domain_event.at
            case Reporter.Warned() | Reporter.SuspensionLifted():
                return self._standing_deadline(domain_event, domain_event.at)
            case Reporter.Suspended():
                return self._standing_deadline(domain_event, domain_event.until)
            case _:
                return []
        kind = f"{RETENTION}@{end.isoformat()}"
        return [Deadline(str(domain_event.originator_id), kind, end + self.retain_for)]

    def _standing_deadline(self, domain_event: Any, end: datetime) -> list[Deadline]:
        """A measure's: the standing's record expires the standing period
        after the measure ends, unless a later measure came."""
        kind = f"{STANDING}@{end.isoformat()}"
        return [Deadline(str(domain_event.originator_id), kind, end + self.standing_retain_for)]

    def fire(self, deadline: Deadline) -> None:
        name, _, end = deadline.kind.partition("@")
        if name not in (RETENTION, STANDING) or not end:
            raise UnknownDeadlineKind(deadline.kind)
        expire = self.expire if name == RETENTION else self.expire_standing
        expire(UUID(deadline.aggregate_id), datetime.fromisoformat(end), deadline.due)

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

    def expire_standing(self, standing_id: UUID, end: datetime, due: datetime) -> bool:
        """Erases the contact a reporter's measures were sent to once `due`
        has come, if the last measure still ended at `end` (a later one has
        its own deadline): records the standing's record expired, then
        destroys that record's case keys. A record recorded expired before
        (a crash came before its keys were destroyed) has its keys
        destroyed again, whatever came after. A standing whose last measure
        came before standings had records is left as it is (logged
        `case.not_expirable`): its contact was sealed under the reporter's
        key alone, which only erasing the reporter destroys (as are the
        contacts of such measures before a record's: a record's expiry
        erases its own)."""
        standing: Reporter | None = self._get(Reporter, standing_id)
        if standing is None or self.clock.now() < due:
            return False
        name = f"reporters/{standing_id}"
        if standing.expired_end == end:
            return self.erase_sealed(name, [standing], None, within=UUID(standing.expired_record))
        if standing.measured_until != end:
            return False  # a later measure has its own deadline
        if not standing.record:  # its measures came before standings had records
            log.warning("case.not_expirable", case=name, why="contact sealed without a record")
            return False
        record = UUID(standing.record)
        mark = functools.partial(standing.expire_record, end)
        return self.erase_sealed(name, [standing], mark, within=record)

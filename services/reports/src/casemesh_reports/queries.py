"""What the reports service answers without changing anything: a report or
a case as its party or an agent may see it, pages of the read model (a
reporter's reports, the agents' triage queue), the restrictions in effect on
a user and every case that named them, a reporter's standing, and the
transparency figures. Lists read the view, after waiting briefly for it to
catch up with the caller's own writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from casemesh.platform.caseindex import Page
from casemesh.platform.cases import page_after, paged
from casemesh.platform.errors import InvalidArgument, NotFound, PermissionDenied
from casemesh.platform.grpcutil import resource_id
from casemesh.platform.identity import Identity
from casemesh.platform.paging import document_bytes, fitting, page_size_of
from casemesh_reports.base import AGENT_WORK, ReportsBase
from casemesh_reports.domain import OPEN_CASE, AbuseReport, ReportCase, Reporter
from casemesh_reports.events import public_name
from casemesh_reports.views import (
    QueueQuery,
    ReportsQuery,
    decode_queue_token,
    encode_queue_token,
)


@dataclass(frozen=True)
class ReportStep:
    """One step of a report, as its reporter sees it (not who took it)."""

    sequence: int
    type: str
    time: datetime
    state: str


class Queries(ReportsBase):
    def get_report(self, who: Identity, ident: str) -> AbuseReport:
        report: AbuseReport | None = self._get(AbuseReport, UUID(ident))
        if report is None or not (who.is_agent or report.reporter == who.subject):
            raise NotFound(f"reports/{ident} not found")
        return report

    def report_history(self, who: Identity, ident: str) -> list[ReportStep]:
        """Every step of a report its reporter (or an agent) may see, oldest
        first, with the state after each."""
        self.get_report(who, ident)
        steps, report = [], None
        for event in self.repository.event_store.get(UUID(ident)):
            report = cast(Any, event).mutate(report)
            steps.append(
                ReportStep(
                    sequence=event.originator_version,
                    type=public_name(event, report),
                    time=cast(Any, event).timestamp,
                    state=report.state.value,
                )
            )
        return steps

    def list_reports(
        self, who: Identity, page_size: int, page_token: str, case_name: str
    ) -> Page[dict[str, Any]]:
        limit = page_size_of(page_size)
        after = page_after(page_token)
        case_id = None
        if case_name:
            if not who.is_agent:
                raise PermissionDenied("listing a case's reports needs the agent role")
            case_id = resource_id(case_name, "report-cases", "report_case")
        self._caught_up()
        docs = self.view.reports(
            ReportsQuery(
                reporter=None if who.is_agent else who.subject,
                case_id=case_id,
                after=after,
                limit=limit + 1,
            )
        )
        return paged(docs, limit)

    def get_case(self, who: Identity, ident: str) -> ReportCase:
        return self.load_visible(who, ident)

    def list_cases(
        self,
        who: Identity,
        page_size: int,
        page_token: str,
        lane: str,
        states: list[str],
        category: str,
    ) -> Page[dict[str, Any]]:
        self.require_agent(who, AGENT_WORK)
        limit = page_size_of(page_size)
        try:
            after = decode_queue_token(page_token)
        except ValueError:
            raise InvalidArgument.field("page_token", "is not a token this API gave") from None
        if category and category not in self.taxonomy.categories:
            raise InvalidArgument.field("category", "is not a reason category")
        self._caught_up()
        docs = self.view.cases(
            QueueQuery(
                lane=lane,
                states=states or [s.value for s in OPEN_CASE],
                category=category,
                after=after,
                limit=limit + 1,
            )
        )
        token = ""
        # Cut short past PAGE_BYTES, as every case list is (a case names up
        # to a thousand of its reports).
        kept = fitting((document_bytes(d) for d in docs), limit)
        if len(docs) > kept:
            docs = docs[:kept]
            last = docs[-1]
            token = encode_queue_token(
                last["ordinary"], datetime.fromisoformat(last["rank_time"]), last["id"]
            )
        return Page(docs, token)

    def my_restrictions(self, who: Identity) -> list[dict[str, Any]]:
        """The cases whose decisions restrict the caller now: not lifted, and
        with a restriction that has no end or has not ended yet."""
        self._caught_up()
        return self.view.restricting(who.subject, self.clock.now())

    def my_cases(self, who: Identity, page_size: int, page_token: str) -> Page[dict[str, Any]]:
        """Every case whose decision named the caller as the affected
        uploader, in effect or not, newest first."""
        limit = page_size_of(page_size)
        after = page_after(page_token)
        self._caught_up()
        return paged(self.view.naming_uploader(who.subject, after, limit + 1), limit)

    def my_standing(self, who: Identity) -> Reporter | None:
        """The caller's standing as a reporter (None: nothing ever counted)."""
        found: Reporter | None = self._get(Reporter, Reporter.create_id(who.subject))
        return found

    def transparency(
        self, who: Identity, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        self.require_agent(who, AGENT_WORK)
        if start and end and start >= end:
            raise InvalidArgument.field("end_time", "must be after start_time")
        self._caught_up()
        return self.view.transparency(start, end)

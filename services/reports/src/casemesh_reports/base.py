"""What every use case of the reports application shares: its construction
(clock, policy, the read model its lists are read from),
who may see a case, and loading and saving aggregates. The use cases
(`filing`, `decisions`, `flaggers`, `queries`) extend `ReportsBase`;
`application.Reports` joins them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Unpack
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.utils import EnvType

from casemesh.platform.cases import CaseApplication, CaseOptions
from casemesh.platform.clock import Clock
from casemesh.platform.errors import Aborted
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.rules import retention
from casemesh_reports.domain import PERSONAL, ReportCase
from casemesh_reports.policy import ReportsPolicy
from casemesh_reports.views import MemoryReportsView, ReportsViewLike

log = get_logger(__name__)

AGENT_WORK = "work report cases"


class ReportsBase(CaseApplication[ReportCase]):
    """The clock, the policy and the retention periods it is constructed with, the read model
    (`view`: made by `open_view` from the application, which `open_reports`
    gives to keep it in the service's database; without one, in memory), and
    the loading and saving every use case does."""

    # A decision saves the case with its reports: a report joining the case
    # at the same moment loses it the race.
    race_hint = " (a new report may have joined it)"
    # Stored sealed when constructed with a sealer (`domain.PERSONAL`).
    personal_fields = PERSONAL

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Clock,
        policy: ReportsPolicy,
        link_hosts: tuple[str, ...] = (),
        open_view: Callable[[Application[Any]], ReportsViewLike] | None = None,
        retain_for: timedelta | None = None,
        standing_retain_for: timedelta | None = None,
        **options: Unpack[CaseOptions],
    ) -> None:
        super().__init__(env, **options)
        self.clock = clock
        self.policy = policy
        # How long an ended case keeps its personal data (`retention`).
        self.retain_for = retention.period("reports") if retain_for is None else retain_for
        # How long a reporter's standing keeps the contact of its record's
        # measures, after the last of them ended.
        self.standing_retain_for = (
            retention.period("reporters") if standing_retain_for is None else standing_retain_for
        )
        self.taxonomy = policy.taxonomy
        self.link_hosts = link_hosts
        if open_view is not None:
            self.view: ReportsViewLike = open_view(self)
        elif isinstance(self.recorder, POPOApplicationRecorder):
            self.view = MemoryReportsView(policy.taxonomy.triage)
        else:  # a view in memory would forget what the stored events say
            raise RuntimeError("a reports view kept in the database is handed in by open_reports")

    def visible_to(self, case: ReportCase, who: Identity) -> bool:
        return who.subject in case_parties(case)

    def forget_in_view(
        self,
        person: str,
        render: Callable[[Any], dict[str, Any] | None],
        *,
        lately: bool = True,
    ) -> int:
        """After `person` was erased: drops their keys from this process's
        memory, then renders again (`render`) the view's documents that may
        hold their text: their reports, those reports' cases, the cases
        naming them as the uploader. Returns how many. Idempotent. Not
        `lately`, no key is dropped (as `CaseApplication.forget_person`)."""
        if lately:
            self.forget_keys(person)
        aggregates: list[Any] = [self.repository.get(ident) for ident in self.view.naming(person)]
        for aggregate in aggregates:
            self.view.rewrite(aggregate, render(aggregate))
        return len(aggregates)

    def _get(self, cls: type[Any], ident: UUID) -> Any:
        try:
            found: Any = self.repository.get(ident)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, cls) else None

    def _save_or_abort(self, *aggregates: Aggregate) -> None:
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise Aborted(
                "someone changed the case at the same moment (a new report may have "
                "joined it); read it again and retry",
                reason="CONCURRENT_CHANGE",
            ) from None

    def _caught_up(self) -> None:
        try:
            self.view.wait(self.name, self.recorder.max_notification_id(), timeout=3.0)
        except TimeoutError:
            log.warning("reports_view.lagging")


def case_parties(case: ReportCase) -> list[str]:
    """Users who may read a case: its reporters and, once named, the uploader."""
    found = list(case.reporters)
    if case.uploader and case.uploader.get("user_id"):
        found.append(case.uploader["user_id"])
    return found

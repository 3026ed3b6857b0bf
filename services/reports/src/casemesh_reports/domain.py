"""Aggregates of the reports service.

- `AbuseReport`: one user's report. SUBMITTED → ACTION_TAKEN / NO_VIOLATION
  when its case is decided, VOID when the target disappears; a reversal on
  appeal makes it REVERSED (restrictions lifted) or SUBMITTED again (the case
  is reviewed anew).
- `ReportCase`: every open report on one target and reason category. OPEN →
  IN_REVIEW → ACTION_TAKEN / NO_VIOLATION, or VOID. Its id is derived from
  the target, the category and a round number: once a case is decided, the
  next report on the same target opens the next round, and the round before
  records it (`Succeeded`), so that an appeal upheld at the same moment does
  not reopen it beside the new one.
- `Reporter`: a reporter's standing (manifestly unfounded reports, warning,
  suspension). The contact it told them on is kept for the standing
  retention period after its last measure ended (`Reporter.expire_record`).
- `TrustedFlagger`: one entry of the agent-managed trusted-flagger list.

A report case and its reports expire together (`ExpiringCase`) when the
case's retention period, counted from when it ended (`ReportCase.ended_at`),
runs out.

A decision's statement of reasons is a value of its own (`statement.py`):
`ReportCase.decide` takes it checked and records it as a dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import KW_ONLY, InitVar, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from eventsourcing.domain import Aggregate, event

from casemesh.platform.acts import Act, ReasonedAct
from casemesh.platform.errors import FailedPrecondition
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.ids import derived_id
from casemesh.platform.personal import PersonalEvent, PersonalFields
from casemesh_reports.policy import Misuse
from casemesh_reports.statement import StatementOfReasons

NAMESPACE = uuid.UUID("5c0e8f0a-7d7b-4d7e-9a3c-2b1f6a8e4d21")


class ReportState(StrEnum):
    """One report, as its reporter follows it."""

    SUBMITTED = "SUBMITTED"  # waiting for its case's decision
    ACTION_TAKEN = "ACTION_TAKEN"  # the case found a violation
    NO_VIOLATION = "NO_VIOLATION"  # the case found none
    VOID = "VOID"  # the target disappeared before a decision
    REVERSED = "REVERSED"  # an appeal reversed the decision, not reviewed anew


class CaseState(StrEnum):
    """The case that gathers the reports of one target, category and round."""

    OPEN = "OPEN"  # in the queue, nobody on it
    IN_REVIEW = "IN_REVIEW"  # a moderator holds it
    ACTION_TAKEN = "ACTION_TAKEN"  # decided: restrictions imposed
    NO_VIOLATION = "NO_VIOLATION"  # decided: nothing to act on
    VOID = "VOID"  # closed without a decision: the target is gone
    REVERSED = "REVERSED"  # an appeal against the decision succeeded


OPEN_CASE = frozenset({CaseState.OPEN, CaseState.IN_REVIEW})
DECIDED_CASE = frozenset({CaseState.ACTION_TAKEN, CaseState.NO_VIOLATION})


def _reporter_named(state: dict[str, Any]) -> None:
    """Standing events recorded before they named the reporter (and before
    their contact was sealed) name nobody: their contact stays as it was."""
    state["user_id"] = ""


def _no_record(state: dict[str, Any]) -> None:
    """Standing events recorded before a standing's records had keys of
    their own were sealed under the reporter's key alone."""
    state["record"] = ""


def _lifted_without_record(state: dict[str, Any]) -> None:
    """A lifting recorded before records, which said when by its timestamp
    alone (the wall clock's when it was stored, not the service's clock)."""
    _no_record(state)
    state["at"] = state["timestamp"]


def target_key(target: dict[str, str]) -> str:
    return f"{target['type']}:{target['id']}"


@dataclass(eq=False, repr=False)
class AbuseReport(ExpiringCase):
    @staticmethod
    def create_id(reporter: str, request_id: str) -> uuid.UUID:
        return derived_id(NAMESPACE, "report", reporter, request_id)

    class Filed(Aggregate.Created):
        reporter: str
        request_id: str
        request_fingerprint: str
        target: dict[str, str]
        category: str
        subcategory: str
        explanation: str
        evidence: list[dict[str, str]]
        contact: dict[str, Any]
        source: str
        case_id: str
        filed_at: datetime | None

    # Filed records the report's opening fields; `__post_init__` derives the rest.
    # When it was filed, by the service's clock (None: a report filed before
    # that was recorded, whose Filed event's time tells). Ahead of the
    # keyword-only fields: the library requires each of those, default or not.
    filed_at: InitVar[datetime | None] = None
    _: KW_ONLY
    # Who filed it, under which request (a retried filing must match it).
    reporter: str
    request_id: str
    request_fingerprint: str
    # What is reported, and why.
    target: dict[str, str]
    category: str
    subcategory: str
    explanation: str
    evidence: list[dict[str, str]]
    # How the reporter hears back; where the report came from; its case.
    contact: dict[str, Any]
    source: str
    case_id: str

    def __post_init__(self, filed_at: datetime | None) -> None:
        self.received_at: datetime = filed_at or self.created_on
        self.state = ReportState.SUBMITTED
        self.outcome: dict[str, Any] | None = None
        self.decided_at: datetime | None = None

    def has_ended(self) -> bool:
        """Resolved, voided or reversed: only its case reviewed anew reopens it."""
        return self.state is not ReportState.SUBMITTED

    def resolve(self, *, actor: str, outcome: dict[str, Any], at: datetime) -> None:
        if self.state is not ReportState.SUBMITTED:
            raise FailedPrecondition(
                f"report {self.id} is already {self.state.value}", reason="REPORT_ALREADY_RESOLVED"
            )
        self._resolved(actor=actor, outcome=outcome, at=at)

    class Resolved(Aggregate.Event):
        actor: str
        outcome: dict[str, Any]
        at: datetime

    @event(Resolved)
    def _resolved(self, actor: str, outcome: dict[str, Any], at: datetime) -> None:
        self.state = ReportState(outcome["outcome"])
        self.outcome = outcome
        if self.decided_at is None:
            self.decided_at = at

    class Voided(ReasonedAct):
        """A report set aside without a decision on the content."""

    @event(Voided)
    def void(self, *, actor: str, reason: str) -> None:
        self.state = ReportState.VOID
        self.outcome = {"outcome": "VOID", "reason": reason}

    class Reversed(Aggregate.Event):
        actor: str
        appeal: str
        lifted: list[str]
        reopened: bool

    @event(Reversed)
    def reverse(self, *, actor: str, appeal: str, lifted: list[str], reopened: bool) -> None:
        self.state = ReportState.SUBMITTED if reopened else ReportState.REVERSED
        if self.outcome is not None:
            self.outcome = {**self.outcome, "reversed": True, "appeal": appeal}


class Reversal(NamedTuple):
    """What an upheld appeal changed: the restrictions it lifted, whether the
    case went back to review, and whether the decision it appealed still
    stood (and so is reversed: its reports' outcomes and the misuse it
    counted with it), reopened or not."""

    lifted: list[dict[str, Any]]
    reopened: bool
    overturned: bool


@dataclass(eq=False, repr=False)
class ReportCase(ExpiringCase):
    @staticmethod
    def create_id(target: dict[str, str], category: str, round_no: int) -> uuid.UUID:
        return derived_id(NAMESPACE, "case", target_key(target), category, round_no)

    class Opened(Aggregate.Created):
        target: dict[str, str]
        category: str
        round_no: int
        lane: str
        severity: int
        dsa_category: str
        first_report: dict[str, Any]
        base_priority: float

    # Opened records the case's opening fields; `__post_init__` derives the rest.
    _: KW_ONLY
    # What the case is about (once it is decided, the next report opens round + 1).
    target: dict[str, str]
    category: str
    round_no: int
    # How it is triaged: its review lane, how grave, the DSA category.
    lane: str
    severity: int
    dsa_category: str
    first_report: InitVar[dict[str, Any]]
    base_priority: float

    def __post_init__(self, first_report: dict[str, Any]) -> None:
        self.reports: list[dict[str, Any]] = [first_report]
        self.first_report_at: datetime = first_report["at"]
        # Since when it waits for review, which its priority grows with: its
        # first report, or its reopening (the time it spent decided was no
        # waiting).
        self.waiting_since: datetime = first_report["at"]
        self.state = CaseState.OPEN
        self.assignee = ""
        self.decision: dict[str, Any] | None = None
        self.decisions: list[dict[str, Any]] = []
        self.uploader: dict[str, Any] | None = None
        # Restrictions the decisions imposed that are still in effect.
        self.in_effect: list[dict[str, Any]] = []
        self.void_reason = ""
        self.voided_at: datetime | None = None
        self.appeals: dict[str, dict[str, Any]] = {}
        # The next round's case, once a report opened it ("": none yet, or a
        # round stored before rounds recorded it: `Decisions.reverse`).
        self.next_case_id = ""

    @property
    def reporters(self) -> list[str]:
        return sorted({r["reporter"] for r in self.reports})

    @property
    def trusted(self) -> bool:
        return any(r.get("trusted") for r in self.reports)

    def has_ended(self) -> bool:
        return self.state not in OPEN_CASE

    def ended_at(self) -> datetime | None:
        """When the case ended, which its retention period counts from: when
        it was voided or reversed, or, decided, when its window for an
        appeal closed (decisions recorded without one: when made). None
        while it is open."""
        if self.state is CaseState.VOID:
            return self.voided_at
        if self.state is CaseState.REVERSED:
            reversals: list[datetime] = [a["reversed_at"] for a in self.appeals.values()]
            return max(at for at in reversals if at is not None)
        if self.state in DECIDED_CASE and self.decision is not None:
            return decision_end(self.decision["statement"], self.decision["at"])
        return None

    def report_of(self, reporter: str) -> str | None:
        return next((r["id"] for r in self.reports if r["reporter"] == reporter), None)

    def _still_open(self, refusal: str) -> None:
        """Refuses a change only an open case takes, with the message `refusal`
        (its `{state}`: the state the case is in)."""
        if self.state not in OPEN_CASE:
            raise FailedPrecondition(refusal.format(state=self.state.value), reason="CASE_CLOSED")

    def add_report(self, *, report: dict[str, Any], base_priority: float) -> None:
        self._still_open("the case is {state}; it takes no more reports")
        self._report_added(report=report, base_priority=base_priority)

    class ReportAdded(Aggregate.Event):
        report: dict[str, Any]
        base_priority: float

    @event(ReportAdded)
    def _report_added(self, report: dict[str, Any], base_priority: float) -> None:
        self.reports.append(report)
        self.base_priority = base_priority

    def assign(self, *, actor: str, assignee: str) -> None:
        self._still_open("the case is {state} and can no longer be assigned")
        self._assigned(actor=actor, assignee=assignee)

    class Assigned(Aggregate.Event):
        actor: str
        assignee: str

    @event(Assigned)
    def _assigned(self, actor: str, assignee: str) -> None:
        self.assignee = assignee
        self.state = CaseState.IN_REVIEW

    def decide(
        self,
        *,
        actor: str,
        outcome: str,
        statement: StatementOfReasons,
        uploader: dict[str, Any] | None,
        unfounded: list[str],
        at: datetime,
    ) -> None:
        self._still_open("the case is {state}; it has been decided")
        kept = {r.type for r in statement.restrictions}
        self._decided(
            actor=actor,
            outcome=outcome,
            statement=statement.to_dict(),
            uploader=uploader,
            report_ids=[],  # (see `Decided`)
            unfounded=unfounded,
            # A new decision after a reopen: what the earlier one imposed and
            # this one does not is lifted.
            lifted=[r for r in self.in_effect if r["type"] not in kept],
            at=at,
        )

    # `report_ids` is left empty: the case's reports are the case's at its
    # version, and a video reported by tens of thousands would make the
    # decision too large to store. Decisions stored before listed them; the
    # field stays, so that a replica of that release reads these too (a
    # rolling update runs both).
    class Decided(Aggregate.Event):
        actor: str
        outcome: str
        statement: dict[str, Any]
        uploader: dict[str, Any] | None
        report_ids: list[str]
        unfounded: list[str]
        lifted: list[dict[str, Any]]
        at: datetime

    @event(Decided)
    def _decided(
        self,
        actor: str,
        outcome: str,
        statement: dict[str, Any],
        uploader: dict[str, Any] | None,
        report_ids: list[str],
        unfounded: list[str],
        lifted: list[dict[str, Any]],
        at: datetime,
    ) -> None:
        self.decision = {
            "outcome": outcome,
            "statement": statement,
            "unfounded": unfounded,
            "at": at,
            "by": actor,
        }
        self.decisions.append(self.decision)
        # The uploader stays a party once a decision named them.
        self.uploader = uploader or self.uploader
        self.in_effect = list(statement.get("restrictions", []))
        self.state = CaseState(outcome)

    def void(self, *, actor: str, reason: str, at: datetime) -> None:
        self._still_open("the case is {state}; only an open case closes as void")
        if any(
            not r.get("end_time") or datetime.fromisoformat(r["end_time"]) > at
            for r in self.in_effect
        ):
            # Reopened on appeal, its earlier decision's restrictions hold until
            # a new decision: a void would leave them for good, unappealable
            # (one whose end has passed is over whatever comes).
            raise FailedPrecondition(
                "the case's earlier decision still restricts its uploader until it is"
                " decided again; decide it (a decision of no violation lifts them)",
                reason="RESTRICTIONS_IN_EFFECT",
            )
        self._voided(actor=actor, reason=reason, at=at)

    class CaseVoided(Aggregate.Event):
        actor: str
        reason: str
        at: datetime

    @event(CaseVoided)
    def _voided(self, actor: str, reason: str, at: datetime) -> None:
        self.void_reason = reason
        self.voided_at = at
        self.state = CaseState.VOID

    def record_next_round(self, *, next_case_id: str) -> None:
        """Records that a report opened the next round of this target and
        category (`next_case_id`), saved with that round: this one is never
        reviewed anew after it, so an upheld appeal saved at the same moment
        fails its version check on this case, and reads it again. Only a
        closed case has a next round, and only one."""
        if self.state in OPEN_CASE:
            raise FailedPrecondition(
                f"the case is {self.state.value}; a new report joins it", reason="CASE_NOT_ENDED"
            )
        if self.next_case_id:
            raise FailedPrecondition(
                f"the next round is report-cases/{self.next_case_id}", reason="NEXT_ROUND_OPENED"
            )
        self._succeeded(next_case_id=next_case_id)

    class Succeeded(Aggregate.Event):
        """The next round of the case's target and category opened."""

        next_case_id: str

    @event(Succeeded)
    def _succeeded(self, next_case_id: str) -> None:
        self.next_case_id = next_case_id

    def lodge_appeal(self, *, appeal: str, appellant: str, at: datetime) -> bool:
        """Records an appeal of the decision (once per appeal), after the
        case expired too: it carries nothing personal, and one lodged in time
        may be decided late."""
        if appeal in self.appeals:
            return False
        self._appealed(actor=appellant, appeal=appeal, at=at)
        return True

    class Appealed(Aggregate.Event):
        actor: str
        appeal: str
        at: datetime

    @event(Appealed)
    def _appealed(self, actor: str, appeal: str, at: datetime) -> None:
        # The decision it appeals: the one standing when it was filed (`at`),
        # however late it was heard; worked out again on every replay.
        self.appeals[appeal] = {
            "by": actor,
            "at": at,
            "reversed_at": None,
            "decision": sum(1 for d in self.decisions if d["at"] <= at),
        }

    def reverse(self, *, appeal: str, at: datetime, reported_since: bool) -> Reversal | None:
        """An upheld appeal: what it changed (`Reversal`), or None when it was
        applied before. The affected uploader's appeal lifts what is in
        effect; a reporter's appeal sends a decided case back to review for a
        new decision (what was imposed stays until then). An upheld appeal
        that finds nothing left to change is still recorded: so is one of a
        decision replaced since it was lodged (another appeal reopened the
        case, and a new decision stands, which it did not appeal). An expired
        case still has what it imposed lifted, but is not reviewed anew: the
        reports' words are gone. Nor is a case whose target was reported
        since in a later round (`next_case_id`, or `reported_since`: a round
        stored before rounds recorded their next one, whose next round was
        found): that round is its review, and one target and category never
        has two cases open."""
        record = self.appeals.get(appeal)
        if record is not None and record["reversed_at"] is not None:
            return None
        by_uploader = bool(
            record and self.uploader and record["by"] == self.uploader.get("user_id")
        )
        standing = record is None or record.get("decision", len(self.decisions)) == len(
            self.decisions
        )
        lifted: list[dict[str, Any]] = list(self.in_effect) if by_uploader and standing else []
        reopen = (
            standing
            and not by_uploader
            and self.state in DECIDED_CASE
            and not self.expired
            and not (self.next_case_id or reported_since)
        )
        # A reporter's appeal of a no-violation decision not reviewed anew
        # still overturns it (its reports no longer count against them); one
        # of a decision that took action, asking for more, changes nothing
        # unless the case is reviewed anew.
        cleared = not by_uploader and self.state is CaseState.NO_VIOLATION
        # A decision is overturned once: after another appeal of it did (a
        # second reporter's of a no-violation decision not reviewed anew, or
        # the uploader's lifting what a case reopened still imposed), this
        # one may still lift, but reverses nothing more.
        overturned = standing and bool(lifted or reopen or cleared) and not self._overturned()
        self._reversed(
            actor="system",
            appeal=appeal,
            lifted=lifted,
            reopen=reopen,
            at=at,
            overturned=overturned,
        )
        return Reversal(lifted, reopen, overturned=overturned)

    def _overturned(self) -> bool:
        """Whether an upheld appeal already overturned the decision standing."""
        standing = len(self.decisions)
        return any(a.get("overturned_decision") == standing for a in self.appeals.values())

    class DecisionReversed(Aggregate.Event):
        actor: str
        appeal: str
        lifted: list[dict[str, Any]]
        reopen: bool
        at: datetime
        # Whether the upheld appeal changed anything (one of a decision
        # replaced since, or asking for more after a new round, did not).
        # Recorded before it was: counted as one that did.
        overturned: bool = True

    @event(DecisionReversed)
    def _reversed(
        self,
        actor: str,
        appeal: str,
        lifted: list[dict[str, Any]],
        reopen: bool,
        at: datetime,
        overturned: bool = True,
    ) -> None:
        record = self.appeals.setdefault(appeal, {"by": "", "at": at, "reversed_at": None})
        record["reversed_at"] = at
        record["overturned"] = overturned
        if overturned:
            # Which decision it overturned (its number), worked out on every replay.
            record["overturned_decision"] = len(self.decisions)
        if lifted:
            self.in_effect = []
            if self.state is CaseState.ACTION_TAKEN:
                self.state = CaseState.REVERSED
        if reopen:
            self.state = CaseState.OPEN
            self.assignee = ""
            self.waiting_since = at


def decision_reversed_at(appeal: dict[str, Any]) -> datetime | None:
    """When an appeal of the case reversed its decision: None unless it was
    upheld and changed something (the transparency figures' reversals)."""
    return appeal["reversed_at"] if appeal.get("overturned", True) else None


@dataclass(eq=False, repr=False)
class Reporter(Aggregate):
    """A reporter's standing. Created by their first manifestly unfounded report."""

    @staticmethod
    def create_id(user_id: str) -> uuid.UUID:
        return derived_id(NAMESPACE, "reporter", user_id)

    # A count says when its report was judged manifestly unfounded (`at`,
    # which the window counts from) and when it was filed (`filed_at`). One
    # recorded before counts said when (None) is taken as filed when judged,
    # which leaves the standing as it stood: each count since the last
    # measure was judged after it.
    class FirstMisuseCounted(Aggregate.Created):
        user_id: str
        report_id: str
        at: datetime
        filed_at: datetime | None

    # FirstMisuseCounted records the reporter's opening fields; `__post_init__` derives the rest.
    # Ahead of the keyword-only fields: the library requires each of those,
    # default or not.
    filed_at: InitVar[datetime | None] = None
    _: KW_ONLY
    user_id: str
    report_id: InitVar[str]
    at: InitVar[datetime]

    def __post_init__(self, filed_at: datetime | None, report_id: str, at: datetime) -> None:
        # Counted within the window, measures or not: which of them count
        # towards the next measure depends on the measures that hold
        # (`counting`), and a measure lifted gives back the counts it used.
        self.unfounded: list[dict[str, Any]] = [
            {"report_id": report_id, "at": at, "filed_at": filed_at or at}
        ]
        # Every report ever counted (and not withdrawn): each counts once.
        self.counted: list[str] = [report_id]
        self.warned_at: datetime | None = None
        # The reports the warning was given for and that still count.
        self.warned_for: list[str] = []
        self.suspended_until: datetime | None = None
        self.suspensions: list[dict[str, Any]] = []
        self.contact: dict[str, Any] = {}
        # The record the contacts of its measures are sealed under (a case
        # key's case: `PERSONAL`), from the first measure until the
        # standing retention period after the last one ran out; "": none.
        self.record = ""
        # When the last measure ended: a warning when given, a suspension
        # when it ran out or was lifted (None: none yet).
        self.measured_until: datetime | None = None
        # The last record whose retention ran out (its contacts erased), and
        # the end it counted from.
        self.expired_record = ""
        self.expired_end: datetime | None = None

    def standing_at(self, at: datetime) -> str:
        """The standing's state at `at`, as events name it: a suspension that
        ran out or was lifted leaves it WARNED."""
        if self.suspended(at) is not None:
            return "SUSPENDED"
        return "WARNED" if self.warned_at is not None else "COUNTED"

    def suspended(self, now: datetime) -> datetime | None:
        if self.suspended_until is not None and now < self.suspended_until:
            return self.suspended_until
        return None

    def count_unfounded(
        self,
        *,
        report_id: str,
        at: datetime,
        filed_at: datetime | None = None,
        contact: dict[str, Any],
        rule: Misuse,
    ) -> None:
        """Counts the report filed at `filed_at` (None: when judged) and
        judged manifestly unfounded at `at`, once, and takes the measure it
        leads to."""
        if report_id in self.counted:
            return
        self._misuse_counted(
            report_id=report_id, at=at, filed_at=filed_at or at, window_days=rule.window_days
        )
        self.apply_rule(at=at, contact=contact, rule=rule)

    def apply_rule(self, *, at: datetime, contact: dict[str, Any], rule: Misuse) -> None:
        """A warning first; after it, a suspension (DSA Art. 23)."""
        counting = self.counting()
        if self.warned_at is None and len(counting) >= rule.warn_after:
            self._warned(at=at, contact=contact, user_id=self.user_id, record=self._record())
        elif self.warned_at is not None and len(counting) >= rule.suspend_after:
            self._suspended(
                user_id=self.user_id,
                at=at,
                until=at + timedelta(days=rule.suspension_days),
                contact=contact,
                reports=[u["report_id"] for u in counting],
                record=self._record(),
            )

    def counting(self) -> list[dict[str, Any]]:
        """The counts that go towards the next measure: towards a warning,
        every one; once warned, only those of reports filed since the
        warning and since the last suspension (not lifted) began. A report
        filed before them still counts on the reporter's record, however
        late it was judged, but suspends nobody: a suspension is for
        reporting on after a warning could have changed what they do, and
        one running is not renewed by reports filed before it began (DSA
        Art. 23(1)). One filed at the very moment of a measure counts as
        filed after it, unless that measure was taken for it: the reports a
        measure that holds was taken for are used up by it. Those of a
        suspension lifted are not (only the reversed one stopped counting),
        and count towards the next."""
        if self.warned_at is None:
            return list(self.unfounded)
        held = [s for s in self.suspensions if not s.get("lifted")]
        since = max([self.warned_at, *(s["at"] for s in held)])
        used = {*self.warned_for, *(r for s in held for r in s["reports"])}
        return [u for u in self.unfounded if u["filed_at"] >= since and u["report_id"] not in used]

    def _record(self) -> str:
        """The standing's current record; a new one after a record expired."""
        return self.record or str(uuid.uuid4())

    def withdraw(self, *, report_id: str, now: datetime) -> bool:
        """A decision that judged the report unfounded was reversed on appeal:
        it no longer counts, and a suspension it led to ends."""
        if report_id not in self.counted:
            return False
        before = self.suspended(now)
        self._misuse_withdrawn(report_id=report_id)
        # Told (and its record ended) only once no suspension holds: lifting
        # a later one while an earlier one, on reports that still count, runs
        # on changes when it ends, not that they may report.
        if before is not None and self.suspended(now) is None:
            self._suspension_lifted(
                until=before,
                contact=self.contact,
                user_id=self.user_id,
                record=self._record(),
                at=now,
            )
        return True

    def expire_record(self, end: datetime) -> None:
        """Records that the standing retention period after the last
        measure, which ended at `end`, ran out: the application destroys
        the record's case keys once this is saved, so that the contact its
        measures were sent to reads as erased. The standing and its counts
        stay; a later measure starts a new record."""
        if not self.record:
            raise FailedPrecondition("no measure is sealed under a record", reason="NO_RECORD")
        if self.measured_until != end:
            raise FailedPrecondition(
                "the standing's last measure did not end then", reason="STANDING_MOVED"
            )
        self._record_expired(end=end, record=self.record)

    class RecordExpired(Aggregate.Event):
        """The standing retention period after the last measure ran out."""

        end: datetime
        record: str

    @event(RecordExpired)
    def _record_expired(self, end: datetime, record: str) -> None:
        self.contact = {}
        self.record = ""
        self.expired_end, self.expired_record = end, record

    class MisuseCounted(Aggregate.Event):
        report_id: str
        at: datetime
        window_days: int
        # As FirstMisuseCounted's (absent: recorded before counts said).
        filed_at: datetime | None = None

    @event(MisuseCounted)
    def _misuse_counted(
        self, report_id: str, at: datetime, window_days: int, filed_at: datetime | None = None
    ) -> None:
        since = at - timedelta(days=window_days)
        self.unfounded = [u for u in self.unfounded if u["at"] >= since]
        self.unfounded.append({"report_id": report_id, "at": at, "filed_at": filed_at or at})
        self.counted.append(report_id)

    # The standing events that hold the reporter's contact name the reporter
    # (v2), whose key seals it, and the standing's record (v3), whose case
    # key seals it too (`PERSONAL`).
    class Warned(Aggregate.Event):
        user_id: str
        at: datetime
        contact: dict[str, Any]
        record: str
        class_version = 3
        upcast_v1_v2 = staticmethod(_reporter_named)
        upcast_v2_v3 = staticmethod(_no_record)

    @event(Warned)
    def _warned(self, user_id: str, at: datetime, contact: dict[str, Any], record: str) -> None:
        self.warned_at = at
        self.warned_for = [u["report_id"] for u in self.unfounded]
        self.contact = contact
        self.record = record
        self.measured_until = at

    class Suspended(Aggregate.Event):
        user_id: str
        at: datetime
        until: datetime
        contact: dict[str, Any]
        reports: list[str]
        record: str
        class_version = 3
        upcast_v1_v2 = staticmethod(_reporter_named)
        upcast_v2_v3 = staticmethod(_no_record)

    @event(Suspended)
    def _suspended(
        self,
        user_id: str,
        at: datetime,
        until: datetime,
        contact: dict[str, Any],
        reports: list[str],
        record: str,
    ) -> None:
        self.suspended_until = until
        self.suspensions.append({"at": at, "until": until, "reports": reports})
        self.contact = contact
        self.record = record
        self.measured_until = until

    class MisuseWithdrawn(Aggregate.Event):
        report_id: str

    @event(MisuseWithdrawn)
    def _misuse_withdrawn(self, report_id: str) -> None:
        self.counted.remove(report_id)
        self.unfounded = [u for u in self.unfounded if u["report_id"] != report_id]
        # A suspension one of whose reports no longer counts is lifted; the
        # others hold to their own ends.
        for suspension in self.suspensions:
            if report_id in suspension["reports"]:
                suspension["lifted"] = True
        self.suspended_until = max(
            (s["until"] for s in self.suspensions if not s.get("lifted")), default=None
        )
        # A warning every report of which was reversed was never deserved: the
        # next unfounded reports warn again before any suspension (DSA Art. 23).
        if report_id in self.warned_for:
            self.warned_for.remove(report_id)
            # (One suspended since keeps it: their suspension followed it.)
            ever_suspended = any(not s.get("lifted") for s in self.suspensions)
            if not self.warned_for and not ever_suspended:
                self.warned_at = None

    class SuspensionLifted(Aggregate.Event):
        user_id: str
        until: datetime
        contact: dict[str, Any]
        record: str
        at: datetime
        class_version = 3
        upcast_v1_v2 = staticmethod(_reporter_named)
        upcast_v2_v3 = staticmethod(_lifted_without_record)

    @event(SuspensionLifted)
    def _suspension_lifted(
        self, user_id: str, until: datetime, contact: dict[str, Any], record: str, at: datetime
    ) -> None:
        # The suspension lifted was marked so as its report was withdrawn
        # (MisuseWithdrawn comes first); one still running holds to its end.
        running = [s["until"] for s in self.suspensions if not s.get("lifted") and s["until"] > at]
        self.suspended_until = max(running, default=None)
        self.record = record
        self.measured_until = at


@dataclass(eq=False, repr=False)
class TrustedFlagger(Aggregate):
    @staticmethod
    def create_id(user_id: str) -> uuid.UUID:
        return derived_id(NAMESPACE, "flagger", user_id)

    class Designated(Aggregate.Created):
        user_id: str
        display_name: str
        areas: list[str]
        actor: str

    # Designated records the entry's opening fields; `__post_init__` derives the rest.
    _: KW_ONLY
    user_id: str
    display_name: str
    areas: list[str]
    actor: InitVar[str]

    def __post_init__(self, actor: str) -> None:
        self.active = True

    class Changed(Aggregate.Event):
        display_name: str
        areas: list[str]
        actor: str

    @event(Changed)
    def change(self, *, display_name: str, areas: list[str], actor: str) -> None:
        self.display_name = display_name
        self.areas = list(areas)
        self.active = True

    def remove(self, *, actor: str) -> None:
        if self.active:
            self._removed(actor=actor)

    class Removed(Act):
        """The flagger is trusted no longer."""

    @event(Removed)
    def _removed(self, actor: str) -> None:
        self.active = False

    def covers(self, category: str) -> bool:
        return self.active and category in self.areas


def decision_end(statement: Mapping[str, Any], at: datetime) -> datetime:
    """When a decided case ends: its window for an appeal closes (`at`, the
    decision's time, for a statement recorded without one)."""
    deadline = statement.get("appeal_deadline")
    return datetime.fromisoformat(deadline) if deadline else at


def _uploader(state: Mapping[str, Any]) -> object:
    """The affected uploader a decision names (an action taken names them,
    with their account; a no-violation decision names nobody)."""
    return (state.get("uploader") or {}).get("user_id")


_CONTACT = ("contact.email", "contact.phone")
# A report's personal fields, and a decision's (its affected uploader's).
REPORTERS = ("explanation", *_CONTACT, "evidence[].name")
_UPLOADERS = ("uploader.legal_name", *(f"uploader.{p}" for p in _CONTACT))

# Whose words and contacts each event holds, sealed in the event store and on
# the topic with that person's key (erasing the person erases them); a
# report's and a decision's under the key of their report case too (its
# retention erases them: `ExpiringCase`).
# - A report: the reporter's explanation, how to reach them, the names of the
#   evidence they attached.
# - A decision: the affected uploader's legal name and contact, under their
#   account. Its statement of reasons is the agent's wording and stays clear:
#   it goes to every party and, under the DSA (Art. 24(5)), to the public
#   transparency database, so it must name nobody; the same facts are copied
#   into each report's outcome, and stay clear there too. The trusted
#   flaggers it names as its source are entities whose names are public.
# - A reporter's warning, suspension and its lifting: the contact they are
#   told on, under the reporter and the standing's record (its retention
#   erases it: `Reporter.expire_record`; events recorded before they named
#   the reporter kept it clear, and read as they are; those recorded before
#   records, under the reporter alone).
# - A report's request fingerprint (a hash of what it said, which a retry
#   is compared with), as every sealed event's (`FINGERPRINTS`).
# Not sealed: ids, enum values, the reported item (its id and link), a case's
# reporters (who is a party, compared and queried), a trusted flagger's
# display name (an organisation's, listed publicly), agents' reasons for
# voiding a case.
PERSONAL = PersonalFields(
    {
        AbuseReport.Filed: PersonalEvent("reporter", REPORTERS, case="case_id"),
        ReportCase.Decided: PersonalEvent(_uploader, _UPLOADERS, case="originator_id"),
        Reporter.Warned: PersonalEvent("user_id", _CONTACT, case="record"),
        Reporter.Suspended: PersonalEvent("user_id", _CONTACT, case="record"),
        Reporter.SuspensionLifted: PersonalEvent("user_id", _CONTACT, case="record"),
    }
)
# What of them the aggregates themselves keep, erased when their case expires.
AbuseReport.kept_personal = PersonalEvent("reporter", REPORTERS)
ReportCase.kept_personal = PersonalEvent(_uploader, _UPLOADERS)

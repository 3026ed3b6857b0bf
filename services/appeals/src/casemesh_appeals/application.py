"""The appeals application: commands and queries on copyright cases.

Deadlines come from the jurisdiction's policy and the clock (an input); they
are recorded on the events, scheduled by the timer and fired as ordinary,
idempotent commands.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Unpack, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.utils import EnvType, get_topic

from casemesh.platform.caseindex import CaseRow, Page
from casemesh.platform.cases import CaseApplication, CaseOptions, Retry, open_indexed
from casemesh.platform.clock import Clock
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
    own_case,
)
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.grpcutil import resource_id
from casemesh.platform.history import EventEntry, entry_basics
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.platform.paging import page_size_of, sequence_after, steps_page
from casemesh.platform.personal.mapper import leaving_sealed
from casemesh.platform.relay import StreamFollower
from casemesh.platform.timers import Deadline, UnknownDeadlineKind
from casemesh.rules import retention, territories
from casemesh.rules import tickets as rules
from casemesh_appeals.domain import (
    APPEAL_OF,
    COMPLAINTS,
    NAMES_NO_UPLOADER,
    OPEN,
    PERSONAL,
    REQUIRED_IN,
    CopyrightAppeal,
    Kind,
    State,
    Step,
    lacking,
    merge,
    missing_elements,
    removed_items,
)
from casemesh_appeals.policy import JurisdictionPolicy
from casemesh_appeals.reasons import StatementOfReasons
from casemesh_appeals.takedowns import AppealCaseIndex, notices_naming

log = get_logger(__name__)

# The longest texts the contract takes: the filer's own words (answers, and
# the notice's and counter-notice's texts); an agent's (a request for
# information, a court action's or outcome's details).
TEXT_LIMIT = 5000
AGENT_TEXT_LIMIT = 2000
# The most items a list of the case holds (evidence, infringing items); a
# counter-notice names as many removed items at most, `removed_item` among
# them.
LIST_LIMIT = 50
TOO_MANY_ITEMS = f"at most {LIST_LIMIT} items"
TOO_MANY_REMOVED = f"at most {LIST_LIMIT} items in all, removed_item among them"
# The longest item a case names (one a notice takes down, one a
# counter-notice asks back): a URL or a content id, not prose. Every event a
# counter-notice filed as a case publishes repeats all its items, and a
# stored event holds at most 512 KiB (`eventstore.MAX_EVENT_BYTES`, its
# record on the topic about twice that): 50 items this long, of 4-byte
# characters, are 400 KiB.
ITEM_LIMIT = 2048
TOO_LONG_ITEM = f"must be at most {ITEM_LIMIT:,} characters (a URL or a content id)"
# Where a case's content names items (`named_items`).
ITEMS = ("notice.infringing_items", "counter_notice.removed_item", "counter_notice.removed_items")
# How far ahead of ours a filer's clock may run: a work they date "now" is
# not refused for it.
CLOCK_SKEW = timedelta(days=1)
AGENT_WORK = "work copyright cases"
# Decisions of the reports service are appealed on this track too.
REPORT_CASES = "report-cases/"
# How many appeals one party may file of one decision (withdrawn or decided,
# each leaves room for another within the window). Filing one reads every
# earlier round, and each is a case in the agents' queue: rounds filed and
# withdrawn without end would make each filing slower and flood the queue.
# A real dispute takes one or two.
MAX_APPEAL_ROUNDS = 20
EVIDENCE_PATHS = (
    ("notice", "originality_evidence"),
    ("notice", "infringement_evidence"),
    ("counter_notice", "evidence"),
)
# The longest postal address and signature a party gives (as their legal name).
PARTY_TEXT_LIMIT = 500
# Why a counter-notice lacking an element its jurisdiction's law requires
# (`REQUIRED_IN`) is refused when it answers a notice, by the element; the
# uploader's details are named `uploader.…` there.
LAW_REQUIRES = {
    "counter_notice.consent_to_jurisdiction": (
        "a US counter-notice consents to a federal court's jurisdiction (17 U.S.C. 512(g)(3)(D))"
    ),
    "counter_notice.accepts_service_of_process": (
        "a US counter-notice states that the uploader accepts service of process from the"
        " claimant (17 U.S.C. 512(g)(3)(D))"
    ),
    "counter_notice.signature": (
        "a US counter-notice carries the uploader's signature (17 U.S.C. 512(g)(3)(A))"
    ),
    "filer.postal_address": (
        "a US counter-notice gives the uploader's address (17 U.S.C. 512(g)(3)(D))"
    ),
    "filer.contact.phone": (
        "a US counter-notice gives the uploader's telephone number (17 U.S.C. 512(g)(3)(D))"
    ),
}
# The events that set a notice's items (`Appeals.overlaps` reads those the
# case index has not taken yet), and how many it reads at a time.
NAMING_EVENTS = (get_topic(CopyrightAppeal.Filed), get_topic(CopyrightAppeal.InfoAdded))
NAMING_BATCH = 500


@dataclass(frozen=True)
class AppealDraft:
    request_id: str
    kind: str
    jurisdiction: str
    filer: dict[str, Any]
    content: dict[str, Any]
    appeal_of: str = ""


@dataclass(frozen=True)
class Overlap:
    """Another notice that keeps down `items`, some of those a change to a
    notice concerns (`Appeals.overlaps`)."""

    notice: CopyrightAppeal
    items: list[str]


@dataclass(frozen=True)
class HistoryEntry(EventEntry):
    state: str
    text: str
    next_step_due: datetime | None


# Stored event class → the name shown in history and used on the topic.
PUBLIC_NAMES: dict[type[Any], str] = {
    CopyrightAppeal.Filed: "AppealFiled",
    CopyrightAppeal.Assigned: "AppealAssigned",
    CopyrightAppeal.InfoRequested: "AppealInfoRequested",
    CopyrightAppeal.InfoAdded: "AppealInfoAdded",
    CopyrightAppeal.Decided: "AppealDecided",
    CopyrightAppeal.CounterNoticeFiled: "CounterNoticeFiled",
    CopyrightAppeal.CourtActionRecorded: "CourtActionRecorded",
    CopyrightAppeal.Restored: "ContentRestored",
    CopyrightAppeal.RestoredOnAppeal: "ContentRestored",
    CopyrightAppeal.UpheldOnAppeal: "AppealDecided",
    CopyrightAppeal.CourtOutcomeRecorded: "CourtOutcomeRecorded",
    CopyrightAppeal.Withdrawn: "AppealWithdrawn",
    CopyrightAppeal.RestoredOnWithdrawal: "ContentRestored",
    CopyrightAppeal.Abandoned: "AppealAbandoned",
    CopyrightAppeal.OverlapChanged: "TakedownOverlapChanged",
    ExpiringCase.Expired: "AppealExpired",
}


def appeal_id_from_name(name: str, field_name: str = "name") -> str:
    return resource_id(name, "appeals", field_name)


class DeadlineKind(StrEnum):
    """An appeal's deadlines, by the kind stored in its timers table."""

    ABANDON = "abandon"  # the filer did not send the information asked for
    # A forwarded counter-notice brings the content back: at the claimant's
    # deadline (cases forwarded before the grace after it), or once the grace
    # has run too. That one is a kind of its own: a release from before the
    # grace, rolled back to, passes over a kind it does not know and leaves
    # it due (`UnknownDeadlineKind`), where it would mark fired a restore it
    # found not due, and the content would stay down for good.
    RESTORE = "restore"
    RESTORE_AFTER_GRACE = "restore_after_grace"
    # An ended case's personal data is erased: one withdrawn, abandoned,
    # restored or upheld by a court (which cannot change again), or one
    # decided, its window for a counter-notice or an appeal closed unused (it
    # is still decided then).
    RETENTION = "retention"
    DECISION_RETENTION = "decision_retention"


class Appeals(CaseApplication[CopyrightAppeal]):
    """On PostgreSQL, open with `open_appeals`; constructed bare, it runs in
    memory (the application tests)."""

    name = "appeals"
    case_type = CopyrightAppeal
    collection = "appeals"
    ascii_fingerprints = True
    personal_fields = PERSONAL
    race_hint = " (or a notice naming one of its items changed with it)"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Clock,
        policies: dict[str, JurisdictionPolicy],
        default_jurisdiction: str = "cn",
        retain_for: timedelta | None = None,
        **options: Unpack[CaseOptions],
    ) -> None:
        super().__init__(env, **options)
        self.clock = clock
        self.retain_for = retention.period("appeals") if retain_for is None else retain_for
        self.policies = policies
        self.default_jurisdiction = default_jurisdiction
        # For the timer, which reads events with their personal texts sealed,
        # and for the look-up of a notice's items (`overlaps`).
        self._sealed = leaving_sealed(self.mapper)
        self._follower = StreamFollower(self, mapper=self._sealed)

    def visible_to(self, case: CopyrightAppeal, who: Identity) -> bool:
        return who.subject in parties(case)

    # -- filing and the filer's commands --------------------------------

    def file(
        self,
        who: Identity,
        draft: AppealDraft,
        report_decision_until: str | None = None,
        report_decision_scope: str | None = None,
    ) -> CopyrightAppeal:
        """Files a case. For an appeal of a report decision the gateway vouches
        for the decision's appeal deadline ("" when there is none to appeal)
        and its territorial scope (country codes joined by commas, "" for
        everywhere; None from a gateway that does not say)."""
        # A retry gets its case, window or not, and whatever limits came in
        # since an earlier release filed it (an item of 3,000 characters).
        earlier = self._earlier_appeals(who, draft)
        try:
            existing = self._filed_before(who, draft, earlier)
        except AlreadyExists:
            # Another filing under the request id: its bad fields are named
            # first, as for any filing.
            self._check_draft(draft)
            raise
        if existing is not None:
            return existing
        self._check_draft(draft)
        kind = Kind(draft.kind)
        if kind is Kind.DECISION_APPEAL:
            return self._file_appeal(
                who, draft, earlier, report_decision_until, report_decision_scope
            )
        jurisdiction = draft.jurisdiction or self.default_jurisdiction
        case = CopyrightAppeal(**self._opening(who, draft, kind, jurisdiction))
        return self._save_filed(case, draft)

    def _earlier_appeals(self, who: Identity, draft: AppealDraft) -> list[CopyrightAppeal]:
        """For an appeal, the caller's earlier appeals of the decision it
        names (`_appeals_of`); none for another filing, or for an appeal
        naming no decided case (refused when it is checked)."""
        if draft.kind != Kind.DECISION_APPEAL:
            return []
        try:
            decision = decision_name(draft.appeal_of)
        except InvalidArgument:
            return []
        return self._appeals_of(who.subject, decision)

    def _filed_before(
        self, who: Identity, draft: AppealDraft, earlier: list[CopyrightAppeal]
    ) -> CopyrightAppeal | None:
        """The case an earlier call with this request id filed: an appeal's
        own round among `earlier` first, since its request id is its own
        within the decision, and a notice or counter-notice filed later
        under it is a case of its own that must not answer its retry; then
        the case filed under the request id alone (any other kind, or an
        appeal filed before appeals took their rounds). A different filing
        under it is ALREADY_EXISTS."""
        mine = next((a for a in earlier if a.request_id == draft.request_id), None)
        if mine is not None:
            return self.replayed(mine.id, draft) or mine
        return self.replayed(CopyrightAppeal.create_id(who.subject, draft.request_id), draft)

    def _check_draft(self, draft: AppealDraft) -> None:
        """Refuses a filing with bad fields, naming each (INVALID_ARGUMENT)."""
        v = Violations()
        if not rules.REQUEST_ID.match(draft.request_id):
            v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
        if draft.kind not in Kind.__members__:
            v.add("appeal.kind", "must be TAKEDOWN_NOTICE, COUNTER_NOTICE or DECISION_APPEAL")
        jurisdiction = draft.jurisdiction or self.default_jurisdiction
        if jurisdiction not in self.policies:
            v.add("appeal.jurisdiction", f"must be one of {', '.join(sorted(self.policies))}")
        check_party(v, draft.filer, "appeal.filer")
        if draft.kind == Kind.DECISION_APPEAL and not draft.appeal_of:
            v.add("appeal.appeal_of", "names the case whose decision is appealed")
        if draft.appeal_of and draft.kind != Kind.DECISION_APPEAL:
            v.add("appeal.appeal_of", "only a DECISION_APPEAL names a decided case")
        self._check_texts(v, draft.content, "appeal")
        check_items(v, draft.content, "appeal")
        check_creation_time(v, draft.content, "appeal", self.clock.now())
        check_infringing_items(v, draft.content, "appeal")
        if isinstance(draft.content.get("counter_notice"), dict):
            # Filed without one, it is a missing element (asked for).
            check_removed_items(v, draft.content["counter_notice"], "appeal.counter_notice")
            check_signature(v, draft.content["counter_notice"], "appeal.counter_notice")
        if draft.kind in Kind.__members__:
            check_parts(v, Kind(draft.kind), draft.content, "appeal")
        v.raise_if_any()

    def _file_appeal(
        self,
        who: Identity,
        draft: AppealDraft,
        earlier: list[CopyrightAppeal],
        report_decision_until: str | None,
        report_decision_scope: str | None,
    ) -> CopyrightAppeal:
        """An appeal of a decision, the caller's next round of appeals of it
        (`CopyrightAppeal.appeal_id`) after `earlier` (none of them its
        retry, `_filed_before`): refused while their previous one is still
        open (APPEAL_PENDING), even filed at the same moment on another
        replica; one decided or withdrawn leaves the way open to another
        within the window, up to `MAX_APPEAL_ROUNDS` (TOO_MANY_APPEALS)."""
        decision = decision_name(draft.appeal_of)
        theirs = self._check_appealable(
            who, draft.appeal_of, report_decision_until, report_decision_scope
        )
        _refuse_if_pending(earlier, draft.appeal_of)
        if len(earlier) >= MAX_APPEAL_ROUNDS:
            raise FailedPrecondition(
                f"you have filed {MAX_APPEAL_ROUNDS} appeals of {draft.appeal_of}, the most"
                " one party may file of a decision",
                reason="TOO_MANY_APPEALS",
                metadata=APPEAL_OF,
            )
        jurisdiction = draft.jurisdiction or self.default_jurisdiction
        # An appeal of a case's decision runs under that case's law: its
        # outcome sets the case's next deadlines and redress.
        if theirs is not None and theirs != jurisdiction:
            if draft.jurisdiction:
                raise InvalidArgument.field(
                    "appeal.jurisdiction", f"must be {theirs}, the appealed case's (or left empty)"
                )
            jurisdiction = theirs
        opening = self._opening(who, draft, Kind.DECISION_APPEAL, jurisdiction)
        appeal = CopyrightAppeal.lodge(len(earlier) + 1, decision, **opening)
        return self._save_round(appeal, draft)

    def _save_round(self, appeal: CopyrightAppeal, draft: AppealDraft) -> CopyrightAppeal:
        """Saves the appeal in its round: another appeal that took the round
        at the same moment (on another replica, say) is open, and this one is
        refused (APPEAL_PENDING); a concurrent retry of the same request
        answers with its appeal, one of another under the same request id is
        ALREADY_EXISTS."""
        try:
            filed = self._save_filed(appeal, draft)
        except AlreadyExists:
            filed = self.repository.get(appeal.id)
            if filed.request_id == draft.request_id:
                raise
        if filed.request_id != draft.request_id:
            _refuse_if_pending([filed], draft.appeal_of)
            raise Aborted(
                "another appeal of yours of this decision was filed at the same moment;"
                " read your appeals and retry",
                reason="CONCURRENT_CHANGE",
            )
        return filed

    def _opening(
        self, who: Identity, draft: AppealDraft, kind: Kind, jurisdiction: str
    ) -> dict[str, Any]:
        """The fields a case is filed with (`CopyrightAppeal.Filed`)."""
        policy = self.policies[jurisdiction]
        content = {
            **draft.content,
            "filer": {**draft.filer, "user_id": who.subject},
            "appeal_of": draft.appeal_of,
        }
        missing = missing_elements(kind, content, jurisdiction)
        return {
            "filer_id": who.subject,
            "request_id": draft.request_id,
            "request_fingerprint": self.fingerprint(draft),
            "kind": kind,
            "jurisdiction": jurisdiction,
            "content": content,
            "missing": missing,
            "next_step": Step.YOUR_INFORMATION if missing else Step.REVIEW,
            "next_step_due": policy.due(
                policy.info_response if missing else policy.review, self.clock.now()
            ),
        }

    def _save_filed(self, case: CopyrightAppeal, draft: AppealDraft) -> CopyrightAppeal:
        """Saves the new case (`create`): a concurrent retry of the same
        request that won the race answers with its case."""
        case = self.create(case, draft)
        log.info("appeal.filed", appeal_id=str(case.id), kind=case.kind.value, missing=case.missing)
        return case

    def _appeals_of(self, filer: str, decision: str) -> list[CopyrightAppeal]:
        """The appeals `filer` filed of `decision`, by round, first first
        (at most `MAX_APPEAL_ROUNDS`: no more are filed since there was a
        cap; a party who filed more before it is answered TOO_MANY_APPEALS
        on a retry of a later round, and its pending check sees round 20,
        not their last)."""
        found: list[CopyrightAppeal] = []
        while len(found) < MAX_APPEAL_ROUNDS:
            ident = CopyrightAppeal.appeal_id(filer, decision, len(found) + 1)
            try:
                found.append(self.repository.get(ident))
            except AggregateNotFoundError:
                break
        return found

    def _check_appealable(
        self,
        who: Identity,
        appeal_of: str,
        report_decision_until: str | None,
        report_decision_scope: str | None,
    ) -> str | None:
        """Refuses an appeal of a case with no decision open to the caller's
        appeal (`CopyrightAppeal.require_appealable_by`); returns the appealed
        case's jurisdiction (for a report decision, the one of its territorial
        scope, `report_jurisdiction`)."""
        if appeal_of.startswith(REPORT_CASES):
            # A decision of the reports service: the gateway checked with that
            # service that the caller is a party, and passed on the deadline.
            if not report_decision_until:
                raise FailedPrecondition(
                    f"{appeal_of} has no decision to appeal",
                    reason="NO_DECISION_TO_APPEAL",
                    metadata=APPEAL_OF,
                )
            until = datetime.fromisoformat(report_decision_until)
            if self.clock.now() > until:
                raise FailedPrecondition(
                    f"the appeal window for {appeal_of} closed at {until.isoformat()}",
                    reason="APPEAL_WINDOW_CLOSED",
                    metadata=APPEAL_OF,
                )
            return report_jurisdiction(report_decision_scope)
        decided = self.load_visible(who, appeal_id_from_name(appeal_of, "appeal.appeal_of"))
        decided.require_appealable_by(who.subject, self.clock.now())
        return decided.jurisdiction

    def add_info(
        self,
        who: Identity,
        ident: str,
        message: str,
        completion: dict[str, Any],
        etag: str,
        request_id: str = "",
    ) -> CopyrightAppeal:
        v = Violations()
        message = rules.text(v, "message", message, limit=TEXT_LIMIT, required=False)
        self._check_texts(v, completion, "completion")
        if isinstance(completion.get("counter_notice"), dict):
            check_signature(v, completion["counter_notice"], "completion.counter_notice")
        check_creation_time(v, completion, "completion", self.clock.now())
        # One already in the case sent again adds nothing (`merge`).
        check_infringing_items(v, completion, "completion")
        # A text that says nothing (white space or invisible characters alone)
        # is as if not sent: it answers nothing and completes nothing.
        message, completion = rules.said(message), said_only(completion)
        if not message and not carries_anything(completion):
            v.add("message", "send a message or elements to complete")
        v.raise_if_any()

        def add(a: CopyrightAppeal) -> None:
            parts = Violations()
            check_parts(parts, a.kind, completion, "completion")
            # What the case will hold: a list sent adds to the case's (50
            # items sent three times would be 150), and what the completion
            # leaves unset stays as the case has it (a new legal name alone
            # keeps the filer's language and channels).
            held = merge(a.content, completion)
            check_lists(parts, a.content, held, completion, "completion")
            holds = [item for _, item in named_items(a.content)]
            check_items(parts, completion, "completion", held=holds)
            if isinstance(completion.get("counter_notice"), dict):
                before = a.content.get("counter_notice") or {}
                check_removed_count(
                    parts,
                    before,
                    held.get("counter_notice") or {},
                    adding_field(before, completion["counter_notice"], "completion.counter_notice"),
                )
            if "filer" in completion:
                check_completed_party(
                    parts,
                    a.content.get("filer") or {},
                    held["filer"],
                    completion["filer"],
                    "completion.filer",
                )
            parts.raise_if_any()
            policy = self.policies[a.jurisdiction]
            a.add_info(
                actor=who.subject,
                message=message,
                completion=completion,
                review_due=policy.due(policy.review, self.clock.now()),
                info_due=policy.due(policy.info_response, self.clock.now()),
            )

        return self.change_under(
            who, ident, etag, request_id, add, "add_info", message=message, completion=completion
        )

    def withdraw(
        self, who: Identity, ident: str, reason: str, request_id: str = ""
    ) -> CopyrightAppeal:
        """Withdraws the caller's case (`CopyrightAppeal.withdraw`): an upheld
        notice's content comes back with it, but the items another notice
        keeps down, which note it (`noted`)."""
        reason = self.require_text("reason", reason, TEXT_LIMIT, required=False)

        def withdraw(a: CopyrightAppeal) -> list[CopyrightAppeal]:
            releasing = a.withdrawal_releases() if a.filer_id == who.subject else []
            overlaps = self.overlaps(a, releasing)
            a.withdraw(actor=who.subject, reason=reason, held_elsewhere=held_by(overlaps))
            return self.noted(a, overlaps, keeps_down=False)

        return self.change_under(who, ident, "", request_id, withdraw, "withdraw", reason=reason)

    def file_counter_notice(
        self,
        who: Identity,
        ident: str,
        uploader: dict[str, Any],
        counter_notice: dict[str, Any],
        good_faith: bool,
        accuracy: bool,
        request_id: str = "",
    ) -> CopyrightAppeal:
        v = Violations()
        check_party(v, uploader, "uploader")
        check_signature(v, counter_notice, "counter_notice")
        if not rules.says_something(uploader.get("legal_name") or ""):
            v.add("uploader.legal_name", "is required for a counter-notice")
        if not check_removed_items(v, counter_notice, "counter_notice"):
            v.add("counter_notice.removed_item", "is required for a counter-notice")
        if not rules.says_something(counter_notice.get("reason") or ""):
            v.add("counter_notice.reason", "is required for a counter-notice")
        if not good_faith:
            v.add("good_faith_statement", "a counter-notice is made in good faith")
        if not accuracy:
            v.add("accuracy_statement", "a counter-notice states its accuracy")
        # Its items are the notice's (`CopyrightAppeal.file_counter_notice`),
        # as long as the notice had them: not checked for length here.
        self._check_texts(v, {"counter_notice": counter_notice}, "")
        arguments = {
            "uploader": uploader,
            "counter_notice": counter_notice,
            "good_faith": good_faith,
            "accuracy": accuracy,
        }
        # A retry gets its first answer, whatever limits came in since an
        # earlier release took it (51 items in all).
        try:
            retry = Retry.of(request_id, who, "file_counter_notice", **arguments)
            earlier = self.changed_before(who, ident, retry)
        except (InvalidArgument, NotFound, AlreadyExists):
            # A malformed request id, no such case, another change under the
            # id: the counter-notice's bad fields are named first.
            v.raise_if_any()
            raise
        if earlier is not None:
            return earlier
        v.raise_if_any()

        def counter(a: CopyrightAppeal) -> None:
            policy = self.policies[a.jurisdiction]
            refuse_lacking_law(a.jurisdiction, uploader, counter_notice)
            deadline = policy.due(policy.restore_after, self.clock.now())
            a.file_counter_notice(
                actor=who.subject,
                uploader={**uploader, "user_id": who.subject},
                counter_notice=counter_notice,
                restore_due=deadline,
                now=self.clock.now(),
                # Kept, as the parties are told it: a grace changed since
                # (or another replica's) does not move it.
                restores_at=policy.court_action_until(deadline),
            )

        return self.change(who, ident, "", counter, retry)

    # -- agents -----------------------------------------------------------

    def assign(
        self, who: Identity, ident: str, assignee: str, request_id: str = ""
    ) -> CopyrightAppeal:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        assignee = rules.assignee(v, assignee)
        v.raise_if_any()

        def assign(a: CopyrightAppeal) -> None:
            # Handing one's own case to a colleague is what a party should do.
            self._refuse_own_case(assignee or who.subject, a, by=who.subject)
            a.assign(actor=who.subject, assignee=assignee or who.subject)

        return self.change_under(
            who, ident, "", request_id, assign, "assign", assignee=assignee.strip()
        )

    def request_info(
        self, who: Identity, ident: str, message: str, etag: str = "", request_id: str = ""
    ) -> CopyrightAppeal:
        """Asks the filer for more, from `etag`'s reading of the case: had the
        filer sent what was missing since, asking again (and abandoning the
        case if they ignore it) would answer a case the agent has not seen."""
        self.require_agent(who, AGENT_WORK)
        message = self.require_text("message", message, AGENT_TEXT_LIMIT)

        def ask(a: CopyrightAppeal) -> None:
            self._refuse_own_case(who.subject, a)
            policy = self.policies[a.jurisdiction]
            a.request_info(
                actor=who.subject,
                message=message,
                due=policy.due(policy.info_response, self.clock.now()),
            )

        return self.change_under(who, ident, etag, request_id, ask, "request_info", message=message)

    def decide(
        self,
        who: Identity,
        ident: str,
        uphold: bool | None,
        reasons: dict[str, Any],
        uploader: dict[str, Any] | None,
        etag: str,
        request_id: str = "",
    ) -> CopyrightAppeal:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        if uphold is None:
            v.add("outcome", "must be UPHOLD or REJECT")
        statement = StatementOfReasons.check(v, reasons)
        if uploader:
            check_party(v, uploader, "affected_uploader")
            if not uploader.get("user_id"):
                v.add("affected_uploader.user_id", "is required")
        v.raise_if_any()
        assert statement is not None

        def decide(a: CopyrightAppeal) -> list[CopyrightAppeal]:
            # Upholding an appeal of a notice's decision reverses it on the
            # notice, in the same transaction (`reverse_on_appeal`).
            notice = self._appealed_notice(a)
            # Naming themselves the uploader, they would decide on their own content.
            named = (uploader or {}).get("user_id")
            self._refuse_own_case(who.subject, a, notice, also=[named] if named else [])
            appealed = notice if uphold else None
            refused = Violations()
            upholds_notice = uphold and a.kind is Kind.TAKEDOWN_NOTICE
            if uploader and not upholds_notice and appealed is None:
                # Only upholding a notice removes someone's content: named on
                # another kind, they would be told of a removal that never
                # was; on a rejection, dropped unsaid while the agent believed
                # them named.
                refused.add("affected_uploader", NAMES_NO_UPLOADER)
            if a.kind in COMPLAINTS and statement.automated_decision:
                refused.add(
                    "reasons.automated_decision",
                    f"a {a.kind.value} is a complaint against a decision: a person decides it,"
                    " not automated means alone (DSA Art. 20(6))",
                )
            refused.raise_if_any()
            # The decision's next deadline and redress are the appealed
            # notice's law, whatever the outcome (an appeal filed before
            # appeals took their notice's jurisdiction may carry another).
            governed = notice if notice is not None else a
            policy = self.policies[governed.jurisdiction]
            deadline = policy.appeal_deadline(self.clock.now())
            # Redress is for the party the decision goes against, in their
            # language: the uploader whose content an upheld notice removes,
            # else the filer.
            against = uploader if uphold and uploader else a.content["filer"]
            locale = against.get("locale", "en")
            completed = statement.completed(
                redress=policy.redress.get(locale, ""), appeal_deadline=deadline
            )
            if a.kind is Kind.DECISION_APPEAL:
                # Final on the platform: its filer is told of redress beyond it
                # (the notice it reverses gets the statement above).
                own = statement.completed(
                    redress=policy.final_redress.get(a.content["filer"].get("locale", "en"), ""),
                    appeal_deadline=None,
                )
            else:
                own = completed
            a.decide(
                actor=who.subject,
                uphold=bool(uphold),
                reasons=own,
                uploader=uploader if a.kind is Kind.TAKEDOWN_NOTICE else None,
            )
            # A notice upheld takes its items down: the other notices keeping
            # one down note it (`noted`).
            noted = self.noted(a, self.overlaps(a, a.keeps_down()), keeps_down=True)
            if appealed is None:
                return noted
            overlaps = self.overlaps(appealed, appealed.still_down())
            followed = appealed.reverse_on_appeal(
                actor=who.subject,
                appeal=f"appeals/{a.id}",
                appellant=a.filer_id,
                reasons=completed,
                uploader=uploader or None,
                held_elsewhere=held_by(overlaps),
            )
            if uploader and followed != "UPHELD":
                raise InvalidArgument.field(
                    "affected_uploader",
                    "only upholding a claimant's appeal of a notice's rejection names the uploader",
                )
            if followed == "RESTORED":
                released = set(appealed.restored_on_appeal)
                noted += self.noted(appealed, within(overlaps, released), keeps_down=False)
            elif followed == "UPHELD":
                noted += self.noted(appealed, overlaps, keeps_down=True)
            return [appealed, *noted] if followed else noted

        return self.change_under(
            who,
            ident,
            etag,
            request_id,
            decide,
            "decide",
            uphold=uphold,
            reasons=reasons,
            uploader=uploader,
        )

    def _appealed_notice(self, a: CopyrightAppeal) -> CopyrightAppeal | None:
        """The case of this service whose decision `a` appeals, or None."""
        appeal_of = str(a.content.get("appeal_of") or "")
        if a.kind is not Kind.DECISION_APPEAL or not appeal_of.startswith("appeals/"):
            return None
        appealed: CopyrightAppeal = self.repository.get(UUID(appeal_of.removeprefix("appeals/")))
        return appealed

    def _refuse_own_case(
        self,
        agent: str,
        a: CopyrightAppeal,
        appealed: CopyrightAppeal | None = None,
        *,
        by: str = "",
        also: list[str] | None = None,
    ) -> None:
        """Refuses (PERMISSION_DENIED, OWN_CASE) work on the case by `agent`
        when they are a party to it: its filer, its uploader, or a party to
        the decision it appeals (`appealed`, read here when not given; of a
        report decision, those known here: `_appealed_too`), or one of
        `also`. Deciding one's own case is no review (DSA Art. 20(6)).
        `by` is the agent giving them the case: when that is someone else,
        the refusal names the party it would go to."""
        if appealed is None:
            appealed = self._appealed_notice(a)
        concerned = {*parties(a), *(parties(appealed) if appealed else []), *(also or [])}
        if agent not in concerned and not self._appealed_too(agent, a):
            return
        of = "this case (its filer, the uploader or the claimant) or to the decision it appeals"
        raise own_case(agent, by, of)

    def _appealed_too(self, agent: str, a: CopyrightAppeal) -> bool:
        """Whether `agent` appealed the report decision `a` appeals as well,
        which the gateway let them do only as a party to it (a reporter or
        the uploader). Of a report case's parties this service knows no
        others: the gateway vouches for the decision's window and scope, not
        for who reported the content or uploaded it."""
        appeal_of = str(a.content.get("appeal_of") or "")
        if a.kind is not Kind.DECISION_APPEAL or not appeal_of.startswith(REPORT_CASES):
            return False
        # Their first round is enough to tell: the rounds run from 1.
        first = CopyrightAppeal.appeal_id(agent, decision_name(appeal_of), 1)
        return first in self.repository

    def record_court_action(
        self,
        who: Identity,
        ident: str,
        details: str,
        evidence: list[dict[str, str]],
        request_id: str = "",
    ) -> CopyrightAppeal:
        self.require_agent(who, AGENT_WORK)
        details = self.require_text("details", details, AGENT_TEXT_LIMIT)

        def record(a: CopyrightAppeal) -> None:
            self._refuse_own_case(who.subject, a)
            a.record_court_action(
                actor=who.subject,
                details=details,
                now=self.clock.now(),
                until=restores_at(a, self.policies),
                evidence=evidence,
            )

        return self.change_under(
            who,
            ident,
            "",
            request_id,
            record,
            "record_court_action",
            details=details,
            evidence=evidence,
        )

    def record_court_outcome(
        self,
        who: Identity,
        ident: str,
        content_stays_down: bool | None,
        details: str,
        evidence: list[dict[str, str]],
        request_id: str = "",
    ) -> CopyrightAppeal:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        if content_stays_down is None:
            v.add("outcome", "must be CONTENT_STAYS_DOWN or CONTENT_RESTORED")
        details = rules.text(v, "details", details, limit=AGENT_TEXT_LIMIT)
        v.raise_if_any()

        def record(a: CopyrightAppeal) -> list[CopyrightAppeal]:
            self._refuse_own_case(who.subject, a)
            restoring = a.restoring() if a.state is State.HELD and not content_stays_down else []
            overlaps = self.overlaps(a, restoring)
            a.record_court_outcome(
                actor=who.subject,
                content_stays_down=bool(content_stays_down),
                details=details,
                evidence=evidence,
                held_elsewhere=held_by(overlaps),
            )
            return self.noted(a, overlaps, keeps_down=False)

        return self.change_under(
            who,
            ident,
            "",
            request_id,
            record,
            "record_court_outcome",
            content_stays_down=content_stays_down,
            details=details,
            evidence=evidence,
        )

    # -- other notices of the same items -------------------------------------

    def overlaps(self, notice: CopyrightAppeal, items: Collection[str]) -> list[Overlap]:
        """The other notices that keep any of `items` down now
        (`CopyrightAppeal.keeps_down`), each with those of them it keeps
        down, as the store holds them now. Candidates are the notices the
        case index lists any of the items for (`takedowns`), and those
        whose filing or completion naming one it has not taken yet
        (`_naming_since`): none is missed however far behind it runs. Its
        position is read before it: a notice it takes meanwhile is found
        twice, never missed."""
        if not items:
            return []
        reached = self.index.max_tracking_id(self.name) or 0
        named = set(notices_naming(self.index, items)) | self._naming_since(reached, items)
        found = []
        for ident in sorted(named - {str(notice.id)}):
            other: CopyrightAppeal = self.repository.get(UUID(ident))
            kept = [item for item in other.keeps_down() if item in items]
            if kept:
                found.append(Overlap(other, kept))
        return found

    def _naming_since(self, reached: int, items: Collection[str]) -> set[str]:
        """The ids of the notices that named any of `items` in an event
        stored after notification `reached` (their filing, or information
        added), read with their personal texts left sealed."""
        wanted, found = set(items), set[str]()
        start = reached + 1
        while True:
            batch = self.recorder.select_notifications(start, NAMING_BATCH, topics=NAMING_EVENTS)
            for notification in batch:
                named = vars(self._sealed.to_domain_event(notification))
                content = named.get("content") or named.get("completion") or {}
                if wanted.intersection(infringing_items(content)):
                    found.add(str(notification.originator_id))
            if len(batch) < NAMING_BATCH:
                return found
            start = batch[-1].id + 1

    @staticmethod
    def noted(
        notice: CopyrightAppeal, overlaps: list[Overlap], *, keeps_down: bool
    ) -> list[CopyrightAppeal]:
        """Records on each of `overlaps` that `notice` now keeps down the
        items they share too (`keeps_down`), or let them go
        (`CopyrightAppeal.note_overlap`); returns them, to be saved with it
        in one transaction: another change to one of those items at the
        same moment records on the same cases, and one of the two is
        refused (tried again, it sees the other). An expired notice is left
        out: nothing changes it again, and it keeps its items down for
        good."""
        found = []
        for overlap in overlaps:
            if overlap.notice.expired:
                continue
            overlap.notice.note_overlap(
                notice=f"appeals/{notice.id}", items=overlap.items, keeps_down=keeps_down
            )
            found.append(overlap.notice)
        return found

    # -- deadlines ----------------------------------------------------------

    def deadlines_of(self, domain_event: Any) -> list[Deadline]:
        """The deadlines the case has right after an event: an unanswered
        request abandons the case; a forwarded counter-notice restores the
        content once the claimant's deadline and the grace after it have
        passed (`restores_at`, as recorded when it was forwarded); an ended
        case keeps its personal data for its retention period
        (`casemesh.rules.retention`)."""
        appeal = self._follower(domain_event)
        found = []
        kinds = {
            Step.YOUR_INFORMATION: DeadlineKind.ABANDON,
            Step.RESTORE: DeadlineKind.RESTORE_AFTER_GRACE,
        }
        kind = kinds.get(Step(appeal.next_step))
        due = appeal.next_step_due
        if kind is DeadlineKind.RESTORE_AFTER_GRACE:
            due = restores_at(appeal, self.policies)
        if kind is not None and due is not None:
            found.append(Deadline(str(appeal.id), kind, due))
        ended = appeal.ended_at(domain_event.timestamp)
        if ended is not None and not appeal.expired:
            kind = DeadlineKind.RETENTION if appeal.finished else DeadlineKind.DECISION_RETENTION
            found.append(Deadline(str(appeal.id), kind, ended + self.retain_for))
        return found

    def fire(self, deadline: Deadline) -> Deadline | None:
        """Issues the deadline's command (idempotent); a retention deadline
        of a decision whose window has moved since (a notice upheld on
        appeal after its rejection), or a restore one of another time than
        the case's (`restores_at`), returns the one it has now instead."""
        appeal: CopyrightAppeal = self.repository.get(UUID(deadline.aggregate_id))
        now = self.clock.now()
        others: list[CopyrightAppeal] = []
        match deadline.kind:
            case DeadlineKind.RESTORE | DeadlineKind.RESTORE_AFTER_GRACE:
                until = restores_at(appeal, self.policies)
                changed = False
                if appeal.restore_is_due(now=now, due=deadline.due, until=until):
                    overlaps = self.overlaps(appeal, appeal.restoring())
                    changed = appeal.restore_if_due(
                        now=now, due=deadline.due, until=until, held_elsewhere=held_by(overlaps)
                    )
                    others = self.noted(appeal, overlaps, keeps_down=False)
                stands = appeal.restore_stands(due=deadline.due, until=until)
                if not changed and until is not None and not stands:
                    # Scheduled under another grace: the case's own time.
                    return Deadline(deadline.aggregate_id, DeadlineKind.RESTORE_AFTER_GRACE, until)
            case DeadlineKind.ABANDON:
                changed = appeal.abandon_if_due(now=now, due=deadline.due)
            case DeadlineKind.RETENTION | DeadlineKind.DECISION_RETENTION:
                # The end it counts from still stands: a finished case's
                # always; a decided one's while it is still decided (a
                # counter-notice since moved its end), and until its window
                # has closed (a decision made since opened a new one). A
                # finished case's period is the one it was scheduled with.
                standing = appeal.finished == (deadline.kind == DeadlineKind.RETENTION)
                ended = appeal.ended_at(appeal.modified_on)
                if standing and not appeal.finished and ended is not None:
                    due = ended + self.retain_for
                    if now < due:
                        return Deadline(deadline.aggregate_id, deadline.kind, due)
                if standing and ended is not None and now >= deadline.due:
                    self.expire_case(appeal)
                return None
            case _:
                raise UnknownDeadlineKind(deadline.kind)
        if changed:
            # An IntegrityError (another notice of its items changed at the
            # same moment) leaves the deadline due: fired again.
            self.save(appeal, *others)
            log.info("appeal.deadline_fired", appeal_id=deadline.aggregate_id, kind=deadline.kind)
        return None

    # -- queries --------------------------------------------------------------

    def get(self, who: Identity, ident: str) -> CopyrightAppeal:
        return self.load_visible(who, ident)

    def list_appeals(
        self, who: Identity, page_size: int, page_token: str, states: list[str] | None = None
    ) -> Page[dict[str, Any]]:
        return self.page_cases(who, states or [], page_size, page_token)

    def history(
        self, who: Identity, ident: str, page_size: int = 0, page_token: str = ""
    ) -> Page[HistoryEntry]:
        """The case's steps, a page at a time (`page_token`: the sequence of
        the last step the page before held). A party sees the other party's
        steps by role (`filer`, `uploader`) and without their words (what
        the filer added or why they withdrew), as the case shows only the
        other's name."""
        limit = page_size_of(page_size, most=200, default=200)
        after = sequence_after(page_token)
        case = self.load_visible(who, ident)
        roles = {case.filer_id: "filer"}
        if case.uploader and case.uploader.get("user_id"):
            roles[case.uploader["user_id"]] = "uploader"
        hidden = {} if who.is_agent else {k: v for k, v in roles.items() if k != who.subject}
        entries = []
        appeal: Any = None
        for e in self.repository.event_store.get(UUID(ident)):
            e = cast(Any, e)
            appeal = e.mutate(appeal)
            attrs = vars(e)
            text = attrs.get("message") or attrs.get("reason") or attrs.get("details") or ""
            if isinstance(e, CopyrightAppeal.Decided | CopyrightAppeal.UpheldOnAppeal):
                text = attrs["reasons"].get("facts", "")
            basics = entry_basics(e, PUBLIC_NAMES, creator="filer_id")
            if basics["sequence"] <= after:
                continue
            if basics["actor"] in hidden:
                basics["actor"], text = hidden[basics["actor"]], ""
            entries.append(
                HistoryEntry(
                    **basics,
                    state=State(appeal.state).value,
                    text=str(text),
                    next_step_due=appeal.next_step_due,
                )
            )
        return steps_page(entries, limit)

    # -- helpers ----------------------------------------------------------------

    @staticmethod
    def _check_texts(v: Violations, content: dict[str, Any], prefix: str) -> None:
        """Refuses each text of `content` that breaks the text rules, and each
        list longer than LIST_LIMIT, by its path. An item longer than
        ITEM_LIMIT is left to `check_items`, which knows the items the case
        holds already; a counter-notice's signature to `check_signature`."""

        def walk(value: Any, path: str, element: str) -> None:
            if isinstance(value, dict):
                for k, item in value.items():
                    walk(item, f"{path}.{k}" if path else k, f"{element}.{k}" if element else k)
            elif isinstance(value, list):
                if len(value) > LIST_LIMIT:
                    v.add(path, TOO_MANY_ITEMS)
                for i, item in enumerate(value):
                    walk(item, f"{path}[{i}]", element)
            elif isinstance(value, str):
                if element in ITEMS and len(value.strip()) > ITEM_LIMIT:
                    return
                if element == "counter_notice.signature":
                    return  # a name, on one line (`check_signature`)
                rules.text(v, path, value, limit=TEXT_LIMIT, required=False)

        walk(content, prefix, "")


# The part of a filing that belongs to each kind of case: a case of another
# kind carrying one would show (and act on) what nobody filed, such as a
# counter-notice on a notice before its uploader answered.
PARTS = {
    "notice": Kind.TAKEDOWN_NOTICE,
    "counter_notice": Kind.COUNTER_NOTICE,
    "grounds": Kind.DECISION_APPEAL,
}


def decision_name(appeal_of: str) -> str:
    """The decided case `appeal_of` names (`appeals/{id}` or
    `report-cases/{id}`), in its one spelling: the key of its appeals'
    rounds. Another name is INVALID_ARGUMENT naming `appeal.appeal_of`."""
    try:
        if appeal_of.startswith(REPORT_CASES):
            return REPORT_CASES + str(UUID(appeal_of.removeprefix(REPORT_CASES)))
        return "appeals/" + appeal_id_from_name(appeal_of, "appeal.appeal_of")
    except (ValueError, InvalidArgument):
        raise InvalidArgument.field(
            "appeal.appeal_of", "must be appeals/{id} or report-cases/{id}"
        ) from None


def report_jurisdiction(scope: str | None) -> str | None:
    """The jurisdiction an appeal of a report decision applying in `scope`
    runs under: the EU's wherever the decision applies in a member state
    (its users are owed the DSA's window and out-of-court redress, Art. 21),
    mainland China's where it applies there alone; None (the service's
    default) for any other scope, or when the gateway did not say."""
    if scope is None:
        return None
    countries = [c for c in scope.split(",") if c]
    if territories.reaches_the_eu(countries):
        return "eu"
    return "cn" if territories.jurisdiction(countries) == "cn" else None


def _refuse_if_pending(earlier: list[CopyrightAppeal], appeal_of: str) -> None:
    """Refuses another appeal while one of the same party of the same
    decision is still open: both decided, they could end opposite ways."""
    pending = next((a for a in earlier if a.state in OPEN), None)
    if pending is not None:
        raise FailedPrecondition(
            f"your appeal appeals/{pending.id} of {appeal_of} is still open: add to it, or"
            " withdraw it, rather than appealing again",
            reason="APPEAL_PENDING",
            metadata=APPEAL_OF,
        )


def carries_anything(content: Any) -> bool:
    """Whether `content` (a completion) holds any value that is not empty."""
    if isinstance(content, dict):
        return any(carries_anything(value) for value in content.values())
    return content not in (None, "", [], False)


def said_only(content: Any) -> Any:
    """`content` with each text that says nothing (white space or invisible
    characters alone) emptied, and left out of its list: as if not sent."""
    if isinstance(content, dict):
        return {key: said_only(value) for key, value in content.items()}
    if isinstance(content, list):
        return [item for item in map(said_only, content) if item != ""]
    if isinstance(content, str):
        return rules.said(content)
    return content


def check_removed_items(v: Violations, counter_notice: dict[str, Any], prefix: str) -> bool:
    """Refuses an empty or repeated entry of a counter-notice's
    `removed_items` (naming it), and more than LIST_LIMIT items in all;
    whether it names any removed item."""
    named = listed_once(
        v,
        counter_notice.get("removed_items"),
        f"{prefix}.removed_items",
        empty="names no item: give its URL or content id, or leave it out",
    )
    check_removed_count(v, {}, counter_notice, f"{prefix}.removed_items")
    return bool(named) or rules.says_something(counter_notice.get("removed_item") or "")


def check_removed_count(
    v: Violations, before: dict[str, Any], after: dict[str, Any], field_name: str
) -> None:
    """Refuses a counter-notice (`after`) naming more than LIST_LIMIT items
    in all, its `removed_item` counted with its `removed_items`, naming
    `field_name`: each event of a counter-notice filed as a case publishes
    them all. A list over the cap alone is TOO_MANY_ITEMS already; one
    naming no more than the case did (`before`: none for a new one) is not
    refused, as `check_lists` lets a case be sent what it holds."""
    count = len(removed_items(after))
    listed = len(after.get("removed_items") or [])
    if listed <= LIST_LIMIT < count and count > len(removed_items(before)):
        v.add(field_name, TOO_MANY_REMOVED)


def adding_field(before: dict[str, Any], sent: dict[str, Any], prefix: str) -> str:
    """The field of a counter-notice completed with `sent` that names an
    item the case's (`before`) did not, for a refusal of too many items in
    all to name: its `removed_items`, or its `removed_item` when that one
    alone does (the list sent holds only items the case names, or none)."""
    named = set(removed_items(before))
    if sent.get("removed_item") and all(item in named for item in sent.get("removed_items") or []):
        return f"{prefix}.removed_item"
    return f"{prefix}.removed_items"


def named_items(content: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The items `content` names (`ITEMS`), each with its path
    (`prefix.notice.infringing_items[0]`)."""
    found: list[tuple[str, Any]] = []
    for element in ITEMS:
        part, name = element.split(".")
        holder = content.get(part)
        value = holder.get(name) if isinstance(holder, dict) else None
        path = f"{prefix}.{element}" if prefix else element
        if isinstance(value, list):
            found += [(f"{path}[{i}]", item) for i, item in enumerate(value)]
        elif value is not None:
            found.append((path, value))
    return found


def check_items(
    v: Violations, content: dict[str, Any], prefix: str, *, held: Collection[Any] = ()
) -> None:
    """Refuses each item `content` names that is longer than ITEM_LIMIT,
    naming it. One the case holds (`held`), let in by an earlier release, is
    not: sent again it adds nothing. The items a counter-notice answering a
    notice names are that notice's, however long it let them be
    (`CopyrightAppeal.file_counter_notice`), and are not checked here."""
    for path, item in named_items(content, prefix):
        if isinstance(item, str) and len(item.strip()) > ITEM_LIMIT and item.strip() not in held:
            v.add(path, TOO_LONG_ITEM)


def check_infringing_items(v: Violations, content: dict[str, Any], prefix: str) -> None:
    """Refuses an entry of a notice's `infringing_items` listed before it
    (naming it, as `check_removed_items` does): each item is taken down, and
    comes back, once."""
    notice = content.get("notice")
    items = notice.get("infringing_items") if isinstance(notice, dict) else None
    listed_once(v, items, f"{prefix}.notice.infringing_items")


def listed_once(v: Violations, items: Any, field_name: str, *, empty: str = "") -> set[str]:
    """Refuses an entry of the list `items` (`field_name`) listed before it,
    naming it (`field_name[i]`), and, given `empty`, one that names no item,
    with that text; the items it names. An item is compared as it is kept:
    spaces around it are not part of it."""
    seen: set[str] = set()
    for i, item in enumerate(items if isinstance(items, list) else []):
        key = item.strip() if isinstance(item, str) else item
        if empty and not (isinstance(key, str) and rules.says_something(key)):
            v.add(f"{field_name}[{i}]", empty)
        elif key in seen:
            v.add(f"{field_name}[{i}]", "names an item listed before it")
        elif isinstance(key, str):
            seen.add(key)
    return seen


def check_creation_time(v: Violations, content: dict[str, Any], prefix: str, now: datetime) -> None:
    """Refuses a claimed work's creation time later than `now` (give or
    take `CLOCK_SKEW`), naming it: a work is created before it is claimed,
    and a notice dated in the future would be complete in name only."""
    notice = content.get("notice")
    work = notice.get("work") if isinstance(notice, dict) else None
    value = work.get("creation_time") if isinstance(work, dict) else None
    if not value:
        return
    field_name = f"{prefix}.notice.work.creation_time"
    try:
        created = datetime.fromisoformat(str(value))
    except ValueError:
        v.add(field_name, "must be a time, such as 2026-01-01T00:00:00Z")
        return
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if created > now + CLOCK_SKEW:
        v.add(field_name, "must not be later than now: a work is created before it is claimed")


def check_parts(v: Violations, kind: Kind, content: dict[str, Any], prefix: str) -> None:
    """Refuses the parts `content` carries that a case of `kind` has none of."""
    for part, owner in PARTS.items():
        if content.get(part) and kind is not owner:
            v.add(f"{prefix}.{part}", f"only a {owner.value} has one, not a {kind.value}")


def check_lists(
    v: Violations, before: dict[str, Any], held: dict[str, Any], sent: dict[str, Any], prefix: str
) -> None:
    """Refuses each list `sent` (a completion) sets that the case would then
    hold more than LIST_LIMIT items of (`held`, the completion merged into
    `before`), by its path: the cap is on what the case holds, not on one
    call. A list it leaves as long as it was is not refused: a case an
    earlier release let past the cap may still be sent what it holds."""
    for key, value in sent.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict):
            check_lists(v, before.get(key) or {}, held.get(key) or {}, value, path)
        elif isinstance(value, list):
            count, was = len(held.get(key) or []), len(before.get(key) or [])
            if count > LIST_LIMIT and count > was:
                v.add(path, TOO_MANY_ITEMS)


def check_completed_party(
    v: Violations,
    before: dict[str, Any],
    after: dict[str, Any],
    sent: dict[str, Any],
    prefix: str,
) -> None:
    """Checks the party a completion leaves the case holding (`after`: the one
    it had, `before`, with `sent` laid over it), naming only what the sender
    answers for: a field they set, or one their values make wrong (SMS
    chosen, no phone anywhere). A value the case held already, let through
    by an earlier release's rules (an e-mail address with a zero-width space
    after it), is not refused here: the filer never sent it, and could not
    otherwise send their legal name alone."""
    set_here = set_fields(sent, prefix)
    # A channel chosen answers for the address it sends to: EMAIL chosen with
    # the stored e-mail unusable is refused, naming the e-mail.
    chosen = (sent.get("contact") or {}).get("channels") or []
    set_here |= {f"{prefix}.contact.{ADDRESS_OF[c]}" for c in chosen if c in ADDRESS_OF}
    held = {(f.field, f.description) for f in party_faults(before, prefix)}
    for fault in party_faults(after, prefix):
        if fault.field in set_here or (fault.field, fault.description) not in held:
            v.add(fault.field, fault.description)


def check_party(v: Violations, party: dict[str, Any], prefix: str) -> None:
    """A named party of a case (`rules.check_party`), and their postal
    address, when given: a text of lines."""
    rules.check_party(v, party, prefix)
    address = party.get("postal_address") or ""
    rules.text(v, f"{prefix}.postal_address", address, limit=PARTY_TEXT_LIMIT, required=False)


def check_signature(v: Violations, counter_notice: dict[str, Any], prefix: str) -> None:
    """A counter-notice's signature, when given: a name, on one line."""
    signature = counter_notice.get("signature") or ""
    rules.text(
        v,
        f"{prefix}.signature",
        signature,
        limit=PARTY_TEXT_LIMIT,
        required=False,
        single_line=True,
    )


def refuse_lacking_law(
    jurisdiction: str, uploader: dict[str, Any], counter_notice: dict[str, Any]
) -> None:
    """Refuses a counter-notice to a notice under `jurisdiction` that lacks
    an element its law requires (`REQUIRED_IN`: a US one's signature,
    address, telephone number, consent to jurisdiction and acceptance of
    service), naming each (INVALID_ARGUMENT), as a counter-notice filed as a
    case of its own waits for them (`missing_elements`)."""
    v = Violations()
    content = {"filer": uploader, "counter_notice": counter_notice}
    for element in lacking(content, REQUIRED_IN.get((Kind.COUNTER_NOTICE, jurisdiction), ())):
        v.add(element.replace("filer.", "uploader.", 1), LAW_REQUIRES[element])
    v.raise_if_any()


# The contact field each channel sends to.
ADDRESS_OF = {"EMAIL": "email", "SMS": "phone"}


def party_faults(party: dict[str, Any], prefix: str) -> list[FieldViolation]:
    """What `check_party` finds wrong with `party`, field by field."""
    found = Violations()
    check_party(found, party, prefix)
    try:
        found.raise_if_any()
    except InvalidArgument as refused:
        return refused.violations
    return []


def set_fields(content: dict[str, Any], prefix: str) -> set[str]:
    """The paths of the values `content` sets (those `merge` lays over the
    case: an empty one leaves it as it was)."""
    found: set[str] = set()
    for key, value in content.items():
        if isinstance(value, dict):
            found |= set_fields(value, f"{prefix}.{key}")
        elif value not in (None, "", [], False):
            found.add(f"{prefix}.{key}")
    return found


def restores_at(
    appeal: CopyrightAppeal, policies: dict[str, JurisdictionPolicy]
) -> datetime | None:
    """When a forwarded case's content comes back: the claimant's deadline
    (`next_step_due`) and the grace after it, until which an agent may
    record the court action they reported by the deadline. The time
    recorded when the counter-notice was forwarded, so that every replica
    keeps what the parties were told whatever its policy file says since;
    for one forwarded before it was recorded, the time under its
    jurisdiction's policy as it is now
    (`JurisdictionPolicy.court_action_until`). None for a case that is not
    forwarded."""
    if appeal.state is not State.FORWARDED_TO_CLAIMANT or appeal.next_step_due is None:
        return None
    if appeal.restores_at is not None:
        return appeal.restores_at
    return policies[appeal.jurisdiction].court_action_until(appeal.next_step_due)


def held_by(overlaps: list[Overlap]) -> dict[str, list[str]]:
    """Each item the `overlaps` keep down, with the notices that do
    (`appeals/{id}`)."""
    held: dict[str, list[str]] = {}
    for overlap in overlaps:
        for item in overlap.items:
            held.setdefault(item, []).append(f"appeals/{overlap.notice.id}")
    return held


def within(overlaps: list[Overlap], items: Collection[str]) -> list[Overlap]:
    """The `overlaps` as far as they concern `items`."""
    kept = [Overlap(o.notice, [item for item in o.items if item in items]) for o in overlaps]
    return [overlap for overlap in kept if overlap.items]


def infringing_items(content: Any) -> list[str]:
    """The infringing items a notice's content (or a completion of it) lists."""
    notice = content.get("notice") if isinstance(content, dict) else None
    items = notice.get("infringing_items") if isinstance(notice, dict) else None
    return [item for item in items if isinstance(item, str)] if isinstance(items, list) else []


def parties(appeal: CopyrightAppeal) -> list[str]:
    """Users who may see the case: the filer and, once named, the uploader."""
    found = [appeal.filer_id]
    if appeal.uploader and appeal.uploader.get("user_id"):
        found.append(appeal.uploader["user_id"])
    return found


def open_appeals(
    database_url: str,
    *,
    clock: Clock,
    policies: dict[str, JurisdictionPolicy],
    default_jurisdiction: str = "cn",
    pool_size: int = 10,
    **options: Unpack[CaseOptions],
) -> Appeals:
    """Appeals on PostgreSQL, its case index beside the events
    (`open_indexed`), each notice's items looked up in it (`AppealCaseIndex`)."""
    bound = partial(
        Appeals,
        clock=clock,
        policies=policies,
        default_jurisdiction=default_jurisdiction,
        **options,
    )
    return open_indexed(
        database_url, "appeal_cases", bound, pool_size=pool_size, index=AppealCaseIndex
    )


@dataclass(frozen=True)
class RowSource:
    """Renders a case for the index with the API's own view."""

    render: Callable[[CopyrightAppeal], dict[str, Any]] = field(repr=False)

    def __call__(self, appeal: CopyrightAppeal) -> CaseRow:
        return CaseRow(
            str(appeal.id),
            parties(appeal),
            State(appeal.state).value,
            appeal.created_on,
            appeal.version,
            self.render(appeal),
        )

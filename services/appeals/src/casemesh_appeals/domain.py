"""The CopyrightAppeal aggregate: one copyright case from filing to its end.

A takedown notice: SUBMITTED (or INFO_REQUESTED when legal elements are
missing) → UNDER_REVIEW → UPHELD (content actioned) or REJECTED. After UPHELD
the uploader may answer with a counter-notice naming the removed items it
answers for (one or several): FORWARDED_TO_CLAIMANT → RESTORED (those items)
when the window passes (the claimant's deadline, and a grace after it in
which an agent may still record a court action reported by then), or HELD
when the claimant shows court action in time, until an agent records how the
action ended: UPHELD_BY_COURT (the content stays down) or RESTORED.
A counter-notice or an appeal of a decision is decided UPHELD or REJECTED;
the decision on an appeal is final on the platform (nothing follows it).
Only the party a decision went against may appeal it, one appeal at a time,
and only while upholding the appeal could still reverse it: once a court is
seized of the case, only for the removed items its counter-notice did not
name (the court decides those it named).
The filer may withdraw an open case, and the claimant an upheld notice whose
content is down on the platform's decision (UPHELD or FORWARDED_TO_CLAIMANT,
not HELD: a court is seized), which brings it back; a request for
information unanswered in time ABANDONs it. Every event records the next
step and its due date, which the service computes from the jurisdiction's
policy (time is an input). A case that ended (`ended_at`) expires when its
retention period runs out: its personal fields are erased (their case keys
destroyed) and it accepts nothing more.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from casemesh.platform.acts import Act, ReasonedAct
from casemesh.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.ids import derived_id
from casemesh.platform.personal import PersonalEvent, PersonalFields
from casemesh.rules.tickets import says_something
from casemesh_appeals.reasons import StatementOfReasons

NAMESPACE = uuid.UUID("9d4b6c1a-5e0f-4b7a-8c21-3f6e2d9a1b44")


class Kind(StrEnum):
    TAKEDOWN_NOTICE = "TAKEDOWN_NOTICE"
    COUNTER_NOTICE = "COUNTER_NOTICE"
    DECISION_APPEAL = "DECISION_APPEAL"


class State(StrEnum):
    SUBMITTED = "SUBMITTED"
    INFO_REQUESTED = "INFO_REQUESTED"
    UNDER_REVIEW = "UNDER_REVIEW"
    UPHELD = "UPHELD"
    REJECTED = "REJECTED"
    WITHDRAWN = "WITHDRAWN"
    ABANDONED = "ABANDONED"
    FORWARDED_TO_CLAIMANT = "FORWARDED_TO_CLAIMANT"
    RESTORED = "RESTORED"
    HELD = "HELD"
    UPHELD_BY_COURT = "UPHELD_BY_COURT"


OPEN = frozenset({State.SUBMITTED, State.INFO_REQUESTED, State.UNDER_REVIEW})
# Cases that ended for good, with nothing more to happen (but for a RESTORED
# or UPHELD_BY_COURT notice's items its counter-notice did not name, which an
# upheld appeal of its uploader may still bring back: `down_on_platform`).
FINISHED = frozenset({State.WITHDRAWN, State.ABANDONED, State.RESTORED, State.UPHELD_BY_COURT})
# A notice upheld, its content down and no court seized (a counter-notice may
# be pending): an upheld appeal of the uploader restores it (as it does what a
# RESTORED notice's counter-notice left down). Once the claimant shows court
# action, the court decides what the counter-notice named.
CONTENT_DOWN = frozenset({State.UPHELD, State.FORWARDED_TO_CLAIMANT})
# A notice whose counter-notice's items a court holds: its case is held for
# the court action, or the court kept them down.
BEFORE_COURT = frozenset({State.HELD, State.UPHELD_BY_COURT})
# The states of a notice whose decision took its content down, some of which
# it may still keep down (`keeps_down`; all of it may have come back since:
# RESTORED).
TOOK_DOWN = CONTENT_DOWN | BEFORE_COURT | {State.RESTORED}
# Decided cases, which the party a decision went against may appeal within
# the window (`require_appealable_by` says when they may not).
DECIDED = frozenset(
    {
        State.UPHELD,
        State.REJECTED,
        State.FORWARDED_TO_CLAIMANT,
        State.RESTORED,
        State.HELD,
        State.UPHELD_BY_COURT,
    }
)

# How much a filer may add to their case. Every command, retry and page of
# history reads the whole case (no snapshots): one flooded with additions
# would get slower for everyone who works it. A real case takes a handful.
MAX_INFO_ADDED = 200

# Why an uploader named on a decision other than upholding a notice (or an
# appeal of its rejection, which upholds it) is refused.
NAMES_NO_UPLOADER = "only upholding a TAKEDOWN_NOTICE, or an appeal of its rejection, names one"
# Refusals of an appeal name the field that says which decision it appeals.
APPEAL_OF = {"field": "appeal.appeal_of"}
# Complaints against a decision: the uploader's counter-notice against a
# removal, a party's appeal. A person decides them, never automated means
# alone (DSA Art. 20(6)).
COMPLAINTS = frozenset({Kind.COUNTER_NOTICE, Kind.DECISION_APPEAL})


class Step(StrEnum):
    """What happens next, as the parties are told."""

    REVIEW = "REVIEW"
    YOUR_INFORMATION = "YOUR_INFORMATION"
    COUNTER_NOTICE_OR_APPEAL = "COUNTER_NOTICE_OR_APPEAL"
    APPEAL = "APPEAL"
    RESTORE = "RESTORE"
    COURT = "COURT"
    NONE = ""


# The legal elements each kind of case must contain (paths into its content).
REQUIRED: dict[Kind, tuple[str, ...]] = {
    Kind.TAKEDOWN_NOTICE: (
        "filer.legal_name",
        "notice.relationship",
        "notice.work.title",
        "notice.work.creation_time",
        "notice.originality_evidence",
        "notice.infringing_items",
        "notice.infringement_evidence",
        "good_faith_statement",
        "accuracy_statement",
    ),
    Kind.COUNTER_NOTICE: (
        "filer.legal_name",
        "counter_notice.removed_item",
        "counter_notice.reason",
        "good_faith_statement",
        "accuracy_statement",
    ),
    Kind.DECISION_APPEAL: ("grounds",),
}
# Those a jurisdiction's law adds: a US counter-notice (17 U.S.C. 512(g)(3))
# carries its uploader's signature (A), their address and telephone number,
# their consent to a federal court's jurisdiction and their statement that
# they accept service of process from the claimant (D), filed as its own
# case as when it answers a notice (`Appeals.file_counter_notice`, which
# names the uploader's details `uploader.…`). Asked of a case when it is
# filed: one filed complete before stays so (`CopyrightAppeal._missing_from`).
REQUIRED_IN: dict[tuple[Kind, str], tuple[str, ...]] = {
    (Kind.COUNTER_NOTICE, "us"): (
        "counter_notice.consent_to_jurisdiction",
        "counter_notice.accepts_service_of_process",
        "counter_notice.signature",
        "filer.postal_address",
        "filer.contact.phone",
    ),
}


def _lookup(content: dict[str, Any], path: str) -> Any:
    value: Any = content
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _given(value: Any) -> bool:
    """Whether an element holds something: a text one can see (not only white
    space or invisible characters), a list with such an item, a yes."""
    if isinstance(value, str):
        return says_something(value)
    if isinstance(value, list):
        return any(_given(item) for item in value)
    return bool(value)


def missing_elements(kind: Kind, content: dict[str, Any], jurisdiction: str = "") -> list[str]:
    """The legal elements a case of `kind` under `jurisdiction` lacks."""
    return lacking(content, REQUIRED[kind] + REQUIRED_IN.get((kind, jurisdiction), ()))


def lacking(content: dict[str, Any], elements: tuple[str, ...]) -> list[str]:
    """Those of `elements` (paths into a case's content) `content` lacks."""
    return [path for path in elements if not _given(_element(content, path))]


def _element(content: dict[str, Any], path: str) -> Any:
    # A counter-notice names its removed item, or several.
    if path == "counter_notice.removed_item":
        return removed_items(content.get("counter_notice") or {})
    return _lookup(content, path)


def removed_items(counter_notice: Mapping[str, Any]) -> list[str]:
    """The removed items a counter-notice names: its `removed_item`, then
    each of its `removed_items` (one filed before a counter-notice could
    name several has only the first), each once."""
    named = [counter_notice.get("removed_item") or "", *(counter_notice.get("removed_items") or [])]
    return list(dict.fromkeys(item for item in named if item))


# A party's details are set, not added to: the channels a filer sends are
# the ones they want (sending EMAIL alone gives up SMS).
PARTIES = frozenset({"filer"})


def merge(
    content: dict[str, Any], completion: dict[str, Any], *, add_to_lists: bool = True
) -> dict[str, Any]:
    """`content` with the non-empty values of `completion` laid over it. A
    list of the case's elements completes the one `content` has: its
    entries not there yet are added, in order (evidence sent later is more
    evidence, not instead). A party's list, or any not `add_to_lists`,
    replaces it (as information added before was read:
    `CopyrightAppeal.InfoAdded`)."""
    merged = dict(content)
    for key, value in completion.items():
        if isinstance(value, dict):
            adds = add_to_lists and key not in PARTIES
            merged[key] = merge(merged.get(key) or {}, value, add_to_lists=adds)
        elif value in (None, "", [], False):
            continue
        elif isinstance(value, list) and add_to_lists:
            held = list(merged.get(key) or [])
            merged[key] = held + [item for item in value if item not in held]
        else:
            merged[key] = value
    return merged


def _restore_unrecorded(state: dict[str, Any]) -> None:
    """Counter-notices forwarded before their restore time was recorded did
    not say it: theirs is the policy's as it is now (`restores_at`)."""
    state["restores_at"] = None


def _lists_replaced(state: dict[str, Any]) -> None:
    """Information added before a completion's lists added to the case's
    replaced them: read as it was then."""
    state["add_to_lists"] = False


def _held_nowhere(state: dict[str, Any]) -> None:
    """Content restored before other notices' takedowns were looked at
    recorded none: read as it was published, every item back."""
    state["held_elsewhere"] = {}


def _of(items: list[str], held_elsewhere: Mapping[str, list[str]] | None) -> dict[str, list[str]]:
    """The entries of `held_elsewhere` (item → the other cases keeping it
    down) for `items`, those a change lets go of."""
    held = held_elsewhere or {}
    return {item: list(held[item]) for item in items if held.get(item)}


@dataclass(eq=False, repr=False)
class CopyrightAppeal(ExpiringCase):
    @staticmethod
    def create_id(filer_id: str, request_id: str) -> uuid.UUID:
        return derived_id(NAMESPACE, filer_id, request_id)

    @classmethod
    def lodge(cls, round_no: int, appeal_of: str, **filed: Any) -> CopyrightAppeal:
        """A new appeal (`Filed` with `filed`) of the decision of `appeal_of`,
        its filer's `round_no`-th (`appeal_id`)."""
        ident = cls.appeal_id(filed["filer_id"], appeal_of, round_no)
        return cls._create(cls.Filed, id=ident, **filed)

    @staticmethod
    def appeal_id(filer_id: str, appeal_of: str, round_no: int) -> uuid.UUID:
        """The id of the `round_no`-th appeal (from 1) by `filer_id` of the
        decision of `appeal_of`: two appeals filed at once take the same round,
        and only one is stored, so a party never has two open at a time."""
        return derived_id(NAMESPACE, "appeal", filer_id, appeal_of, round_no)

    class Filed(Aggregate.Created):
        filer_id: str
        request_id: str
        request_fingerprint: str
        kind: Kind
        jurisdiction: str
        content: dict[str, Any]
        missing: list[str]
        next_step: Step
        next_step_due: datetime

    # Filed records the case's opening fields; `__post_init__` derives the rest.
    _: KW_ONLY
    filer_id: str
    request_id: str
    request_fingerprint: str
    kind: Kind
    jurisdiction: str
    content: dict[str, Any]
    missing: list[str]
    next_step: Step
    next_step_due: datetime | None

    def __post_init__(self) -> None:
        # Replayed from the store, the enums come back as their strings.
        self.kind = Kind(self.kind)
        self.next_step = Step(self.next_step)
        self.state = State.INFO_REQUESTED if self.missing else State.SUBMITTED
        self.assignee = ""
        self.uploader: dict[str, Any] | None = None
        self.decision: dict[str, Any] | None = None
        self.counter_notice: dict[str, Any] | None = None
        # When a forwarded counter-notice's content comes back, as recorded
        # when it was forwarded (None: forwarded before it was recorded).
        self.restores_at: datetime | None = None
        self.court_action = ""
        # The upheld appeal that restored the content (`appeals/{id}`), if one did.
        self.restored_by_appeal = ""
        # The items the notice took down that came back since, and those of
        # them the upheld appeal brought back (derived from the events: a
        # counter-notice's restored when its window passed or by the court,
        # an appeal's the rest).
        self.restored_items: list[str] = []
        self.restored_on_appeal: list[str] = []
        # Of the items it let go of, those another notice still kept down
        # then, with those notices (`appeals/{id}`): they did not come back.
        self.held_elsewhere: dict[str, list[str]] = {}
        # How many times its filer added information (`MAX_INFO_ADDED`).
        self.info_added = 0

    # -- the filer -------------------------------------------------------

    def add_info(
        self,
        *,
        actor: str,
        message: str,
        completion: dict[str, Any],
        review_due: datetime,
        info_due: datetime | None = None,
    ) -> None:
        """The filer's answer. Still missing elements, the case waits for them:
        until `info_due` (a new response period) if the answer completed some,
        else until the time it waited for before (an answer that completes
        nothing does not keep a case open for ever)."""
        self._require_filer(actor, "add information")
        self._require_open("take more information")
        if self.info_added >= MAX_INFO_ADDED:
            raise FailedPrecondition(
                f"this case takes no more information (at most {MAX_INFO_ADDED} additions);"
                " withdraw it and file a new one with everything it needs",
                reason="APPEAL_TOO_LONG",
            )
        missing = self._missing_from(merge(self.content, completion))
        if missing:
            progressed = info_due is not None and len(missing) < len(self.missing)
            due = info_due if progressed else self.next_step_due
            state, step = State.INFO_REQUESTED, Step.YOUR_INFORMATION
        else:
            state = State.UNDER_REVIEW if self.assignee else State.SUBMITTED
            # Already up for review, it keeps its date: more words from the
            # filer do not move the review back.
            step = Step.REVIEW
            due = self.next_step_due if self.next_step is Step.REVIEW else review_due
        self._info_added(actor, message, completion, missing, state, step, due, True)

    def _missing_from(self, content: dict[str, Any]) -> list[str]:
        """The elements `content` lacks under the rules the case was filed
        under: those of its kind, and those its jurisdiction's law adds
        (`REQUIRED_IN`) that it was asked for then (still `missing`). A case
        filed complete before its law added one (a US counter-notice without
        consent to jurisdiction) stays complete: more evidence sent to it
        does not make it wait, nor its review date become one that abandons
        it."""
        asked = set(REQUIRED[self.kind]) | set(self.missing)
        law = missing_elements(self.kind, content, self.jurisdiction)
        return [path for path in law if path in asked]

    class InfoAdded(Aggregate.Event):
        actor: str
        message: str
        completion: dict[str, Any]
        missing: list[str]
        state: State
        next_step: Step
        next_step_due: datetime | None
        add_to_lists: bool
        class_version = 2
        upcast_v1_v2 = staticmethod(_lists_replaced)

    @event(InfoAdded)
    def _info_added(
        self,
        actor: str,
        message: str,
        completion: dict[str, Any],
        missing: list[str],
        state: State,
        next_step: Step,
        next_step_due: datetime | None,
        add_to_lists: bool,
    ) -> None:
        self.content = merge(self.content, completion, add_to_lists=add_to_lists)
        self.missing = list(missing)
        self.info_added += 1
        self._moved(state, next_step, next_step_due)

    def withdraw(
        self,
        *,
        actor: str,
        reason: str,
        held_elsewhere: Mapping[str, list[str]] | None = None,
    ) -> None:
        """The filer withdraws their case: an open one, or a takedown notice
        upheld while its content is down on the platform's decision
        (`CONTENT_DOWN`: a counter-notice may be forwarded), whose content
        then comes back (`withdrawal_releases`) but for the items another
        notice keeps down (`held_elsewhere`: item → those notices); the
        restore a forwarded counter-notice waits for finds nothing left to
        do. Not once a court is seized of it (HELD): the court action ends
        it, as an agent records."""
        self._require_filer(actor, "withdraw it")
        releasing = self.withdrawal_releases()
        if self.state is State.HELD:
            raise FailedPrecondition(
                "the case is HELD for the court action: it ends with the court's outcome, not"
                " a withdrawal",
                reason="CASE_BEFORE_COURT",
            )
        if self.state not in OPEN:
            if not releasing:
                self._require_open("be withdrawn")
            self.require_not_expired()
        self._withdrawn(actor=actor, reason=reason)
        if releasing:
            self._restored_on_withdrawal(
                actor=actor, items=releasing, held_elsewhere=_of(releasing, held_elsewhere)
            )

    def withdrawal_releases(self) -> list[str]:
        """The items withdrawing the case now lets go of: an upheld notice's
        still down while no court holds any of them (`CONTENT_DOWN`); none
        for a case of another kind or in another state."""
        if self.kind is not Kind.TAKEDOWN_NOTICE or self.state not in CONTENT_DOWN:
            return []
        return self.still_down()

    class Withdrawn(ReasonedAct):
        """The case withdrawn by whoever filed it."""

    @event(Withdrawn)
    def _withdrawn(self, actor: str, reason: str) -> None:
        self._moved(State.WITHDRAWN, Step.NONE, None)

    class RestoredOnWithdrawal(Aggregate.Event):
        """The content the notice kept down let go of, its claimant having
        withdrawn it (right after `Withdrawn`): `items` come back but those
        another notice still kept down (`held_elsewhere`)."""

        actor: str
        items: list[str]
        held_elsewhere: dict[str, list[str]]

    @event(RestoredOnWithdrawal)
    def _restored_on_withdrawal(
        self, actor: str, items: list[str], held_elsewhere: dict[str, list[str]]
    ) -> None:
        self._came_back(items, held_elsewhere)

    def file_counter_notice(
        self,
        *,
        actor: str,
        uploader: dict[str, Any],
        counter_notice: dict[str, Any],
        restore_due: datetime,
        now: datetime,
        restores_at: datetime | None = None,
    ) -> None:
        """The uploader's counter-notice, forwarded to the claimant: they have
        until `restore_due` to report court action, and the content comes
        back at `restores_at` (that deadline and the grace after it) unless
        an agent records the action before then."""
        if self.kind is not Kind.TAKEDOWN_NOTICE or self.state is not State.UPHELD:
            raise FailedPrecondition(
                "a counter-notice answers an upheld takedown notice; this case is "
                f"a {self.kind.value.lower()} in state {self.state.value}",
                reason="NOT_AN_UPHELD_NOTICE",
            )
        if self.uploader is None or actor != self.uploader.get("user_id"):
            raise PermissionDenied("only the uploader of the removed content may counter it")
        self.require_not_expired()
        # The window the decision gave, as for an appeal of it: once it closed
        # the case has ended (`ended_at`), and its retention runs.
        if self.next_step_due is not None and now > self.next_step_due:
            raise FailedPrecondition(
                f"the window for a counter-notice closed at {self.next_step_due.isoformat()}",
                reason="COUNTER_NOTICE_WINDOW_CLOSED",
            )
        # It restores what it names: only items the notice took down.
        taken_down = (self.content.get("notice") or {}).get("infringing_items") or []
        named = [("counter_notice.removed_item", counter_notice.get("removed_item") or "")]
        named += [
            (f"counter_notice.removed_items[{i}]", item)
            for i, item in enumerate(counter_notice.get("removed_items") or [])
        ]
        v = Violations()
        for path, item in named:
            if item and item not in taken_down:
                v.add(path, "names no item the notice took down (its infringing_items)")
        if not removed_items(counter_notice):
            v.add("counter_notice.removed_item", "is required for a counter-notice")
        v.raise_if_any()
        self._counter_notice_filed(
            actor=actor,
            uploader=uploader,
            counter_notice=counter_notice,
            restore_due=restore_due,
            restores_at=restores_at,
        )

    class CounterNoticeFiled(Aggregate.Event):
        actor: str
        uploader: dict[str, Any]
        counter_notice: dict[str, Any]
        restore_due: datetime
        restores_at: datetime | None
        # v2: when the content comes back, as the policy was when it was
        # forwarded (a grace changed since does not move it); None in events
        # forwarded before it was kept.
        class_version = 2
        upcast_v1_v2 = staticmethod(_restore_unrecorded)

    @event(CounterNoticeFiled)
    def _counter_notice_filed(
        self,
        actor: str,
        uploader: dict[str, Any],
        counter_notice: dict[str, Any],
        restore_due: datetime,
        restores_at: datetime | None,
    ) -> None:
        self.uploader = uploader
        self.counter_notice = counter_notice
        self.restores_at = restores_at
        self._moved(State.FORWARDED_TO_CLAIMANT, Step.RESTORE, restore_due)

    # -- agents ----------------------------------------------------------

    def assign(self, *, actor: str, assignee: str) -> None:
        """An agent takes the case (or hands it to another). What comes next,
        and by when, stays as the filer was told: the review's date runs from
        when the case came up for review, not from whoever holds it."""
        self._require_open("be assigned")
        state = State.UNDER_REVIEW if self.state is State.SUBMITTED else self.state
        self._assigned(
            actor=actor,
            assignee=assignee,
            state=state,
            next_step=self.next_step,
            next_step_due=self.next_step_due,
        )

    class Assigned(Aggregate.Event):
        actor: str
        assignee: str
        state: State
        next_step: Step
        next_step_due: datetime | None

    @event(Assigned)
    def _assigned(
        self,
        actor: str,
        assignee: str,
        state: State,
        next_step: Step,
        next_step_due: datetime | None,
    ) -> None:
        self.assignee = assignee
        self._moved(state, next_step, next_step_due)

    def request_info(self, *, actor: str, message: str, due: datetime) -> None:
        if self.state not in (State.SUBMITTED, State.UNDER_REVIEW):
            raise FailedPrecondition(
                "information can be requested while the case is reviewed; "
                f"it is {self.state.value}",
                reason="CASE_NOT_IN_REVIEW",
            )
        self._info_requested(actor=actor, message=message, next_step_due=due)

    class InfoRequested(Aggregate.Event):
        actor: str
        message: str
        next_step_due: datetime

    @event(InfoRequested)
    def _info_requested(self, actor: str, message: str, next_step_due: datetime) -> None:
        self._moved(State.INFO_REQUESTED, Step.YOUR_INFORMATION, next_step_due)

    def decide(
        self,
        *,
        actor: str,
        uphold: bool,
        reasons: StatementOfReasons,
        uploader: dict[str, Any] | None,
    ) -> None:
        """Uphold or reject the case with a completed statement of reasons;
        its appeal deadline is the next step's due time. The decision on an
        appeal is final on the platform: its statement gives no appeal
        deadline, and nothing is due after it."""
        final = self.kind is Kind.DECISION_APPEAL
        if (reasons.appeal_deadline is None) != final:
            raise ValueError(
                "a decision on an appeal gives no appeal deadline"
                if final
                else "a decision records a completed statement of reasons"
            )
        if self.state is State.INFO_REQUESTED:
            raise FailedPrecondition(
                "the case waits for information"
                + (f": {', '.join(self.missing)}" if self.missing else ""),
                reason="CASE_WAITS_FOR_INFORMATION",
            )
        if self.state not in (State.SUBMITTED, State.UNDER_REVIEW):
            raise FailedPrecondition(
                f"the case is {self.state.value} and already decided", reason="CASE_ALREADY_DECIDED"
            )
        upholds_notice = uphold and self.kind is Kind.TAKEDOWN_NOTICE
        if upholds_notice and not uploader:
            raise InvalidArgument.field(
                "affected_uploader", "upholding a notice names the uploader of the content"
            )
        if uploader and not upholds_notice:
            raise InvalidArgument.field("affected_uploader", NAMES_NO_UPLOADER)
        if final:
            step = Step.NONE
        elif uphold and self.kind is Kind.TAKEDOWN_NOTICE:
            step = Step.COUNTER_NOTICE_OR_APPEAL
        else:
            step = Step.APPEAL
        self._decided(
            actor=actor,
            outcome="UPHOLD" if uphold else "REJECT",
            state=State.UPHELD if uphold else State.REJECTED,
            next_step=step,
            next_step_due=reasons.appeal_deadline,
            reasons=reasons.to_dict(),
            uploader=uploader,
        )

    class Decided(Aggregate.Event):
        actor: str
        outcome: str
        state: State
        next_step: Step
        next_step_due: datetime | None
        reasons: dict[str, Any]
        uploader: dict[str, Any] | None

    @event(Decided)
    def _decided(
        self,
        actor: str,
        outcome: str,
        state: State,
        next_step: Step,
        next_step_due: datetime | None,
        reasons: dict[str, Any],
        uploader: dict[str, Any] | None,
    ) -> None:
        self.decision = {"outcome": outcome, "reasons": reasons, "appeal_deadline": next_step_due}
        self.uploader = uploader
        self._moved(state, next_step, next_step_due)

    # -- appeals of this case's decision (DSA Art. 20) ----------------------

    def require_appealable_by(self, appellant: str, now: datetime) -> None:
        """Refuses an appeal by `appellant` of this case's decision that could
        never be upheld to any effect: of a case not decided yet; of a
        decision on an appeal, or a notice an appeal restored (final on the
        platform); of a notice held for, or decided by, a court, unless items
        its counter-notice did not name are down still (the court's outcome
        stands for those it named; the others were never before it, and the
        appeal is for them: `down_on_platform`); by a party the decision did
        not go against (the claimant of an upheld notice, the filer of an
        upheld case); of a notice all of whose content is back up already (a
        counter-notice that named only some leaves the rest to appeal); after
        its window closed. Each refusal names the field `appeal.appeal_of`."""
        name = f"appeals/{self.id}"
        if self.state not in DECIDED or self.decision is None:
            raise FailedPrecondition(
                f"{name} has no decision to appeal yet",
                reason="NO_DECISION_TO_APPEAL",
                metadata=APPEAL_OF,
            )
        # One decided before decisions on appeals were final, which told its
        # parties they may appeal it, still may be, until its deadline.
        if self.kind is Kind.DECISION_APPEAL and self.next_step is not Step.APPEAL:
            raise FailedPrecondition(
                f"{name} is an appeal, and the decision on an appeal is final",
                reason="APPEAL_DECISION_FINAL",
                metadata=APPEAL_OF,
            )
        if self.restored_by_appeal:
            raise FailedPrecondition(
                f"{name} had its content restored on appeal, and the decision on an appeal"
                " is final",
                reason="APPEAL_DECISION_FINAL",
                metadata=APPEAL_OF,
            )
        if self._before_court():
            raise FailedPrecondition(
                f"{name} is before a court (it is {self.state.value}): the court's outcome"
                " stands, not the platform's decision",
                reason="DECISION_BEFORE_COURT",
                metadata=APPEAL_OF,
            )
        if appellant != self.decided_against():
            raise FailedPrecondition(
                f"the decision on {name} did not go against you: only the party it went"
                " against may appeal it",
                reason="DECISION_NOT_AGAINST_APPELLANT",
                metadata=APPEAL_OF,
            )
        if self.kind is Kind.TAKEDOWN_NOTICE and not self._reversible_by(appellant):
            raise FailedPrecondition(
                f"{name} is {self.state.value}: upholding an appeal would change nothing",
                reason="NOTHING_TO_REVERSE",
                metadata=APPEAL_OF,
            )
        deadline = self.decision["appeal_deadline"]
        if now > deadline:
            raise FailedPrecondition(
                f"the appeal window for {name} closed at {deadline}",
                reason="APPEAL_WINDOW_CLOSED",
                metadata=APPEAL_OF,
            )

    def decided_against(self) -> str:
        """The user the decision went against ("" before one, or when it went
        its filer's way on a case that has no other party here): a notice
        upheld, its uploader; any case rejected, its filer."""
        if self.decision is None:
            return ""
        if self.decision["outcome"] == "REJECT":
            return self.filer_id
        if self.kind is Kind.TAKEDOWN_NOTICE:
            return str((self.uploader or {}).get("user_id") or "")
        return ""

    def still_down(self) -> list[str]:
        """The items the notice took down that have not come back since (by
        its counter-notice, a court or an appeal), in the notice's order,
        each once (an earlier release let a notice list one twice)."""
        taken_down = (self.content.get("notice") or {}).get("infringing_items") or []
        return [item for item in dict.fromkeys(taken_down) if item not in self.restored_items]

    def keeps_down(self) -> list[str]:
        """The items this case keeps down now: a notice's that its decision
        took down and it has not let go of since (`still_down`); none for a
        notice not upheld (open, rejected, withdrawn) or a case of another
        kind. Another notice naming one of them that lets go of it does not
        bring it back (`held_elsewhere`)."""
        if self.kind is not Kind.TAKEDOWN_NOTICE or self.state not in TOOK_DOWN:
            return []
        return self.still_down()

    def came_back(self) -> list[str]:
        """The items the notice let go of that came back (no other notice
        kept them down then), in the order it let go of them."""
        return [item for item in self.restored_items if item not in self.held_elsewhere]

    def note_overlap(self, *, notice: str, items: list[str], keeps_down: bool) -> None:
        """Records that `notice`, another notice naming `items` this one
        keeps down, now keeps them down too (`keeps_down`) or let them go.
        Saved in the same transaction as that notice's change, it makes two
        such changes to one item at once conflict (the version of a case
        both record on): of two notices letting go of an item together,
        each believing the other still holds it, one is refused and, tried
        again, brings it back; a restoration and a new takedown of the item
        at the same moment cannot both pass unseen by each other. It
        changes nothing else here."""
        self.require_not_expired()
        self._overlap_changed(actor="system", notice=notice, items=items, keeps_down=keeps_down)

    class OverlapChanged(Aggregate.Event):
        """Another notice (`notice`, `appeals/{id}`) started keeping down
        `items` this one keeps down too (`keeps_down`), or let them go."""

        actor: str
        notice: str
        items: list[str]
        keeps_down: bool

    @event(OverlapChanged)
    def _overlap_changed(self, actor: str, notice: str, items: list[str], keeps_down: bool) -> None:
        # The notice's own takedown is as it was: what the other one does
        # is recorded on the other one.
        pass

    def down_on_platform(self) -> list[str]:
        """The items still down that the platform's decision alone keeps
        down, which an upheld appeal of the uploader restores: all of
        `still_down` but, while a court holds them (the case HELD or
        UPHELD_BY_COURT), those the counter-notice named. The court action
        answered the counter-notice: the items it did not name were never
        before the court."""
        held = removed_items(self.counter_notice or {}) if self.state in BEFORE_COURT else []
        return [item for item in self.still_down() if item not in held]

    def _content_down(self) -> bool:
        """Whether content the notice took down is down on the platform's
        decision alone: all of it while upheld (a counter-notice may be
        pending); once a court holds what the counter-notice named, or it
        came back (after the window, or by a court), what the counter-notice
        did not name (`down_on_platform`)."""
        if self.state in CONTENT_DOWN:
            return True
        return self.state in BEFORE_COURT | {State.RESTORED} and bool(self.down_on_platform())

    def _before_court(self) -> bool:
        """Whether all that the notice still keeps down is a court's to
        decide, not the platform's: a court was seized of the case and
        nothing is down but what the counter-notice named (held for court
        action, or kept down by the court), or nothing is down at all (the
        court restored it). Items the counter-notice did not name, while
        down, leave the decision open to appeal for them."""
        return bool(self.court_action) and not self.down_on_platform()

    def _reversible_by(self, appellant: str) -> bool:
        """Whether an upheld appeal of `appellant` reverses this notice now:
        its uploader's while content is down on the platform's decision
        (`_content_down`), its claimant's while it is rejected."""
        named = (self.uploader or {}).get("user_id")
        if self._content_down():
            return appellant == named
        return self.state is State.REJECTED and appellant == self.filer_id

    def reverse_on_appeal(
        self,
        *,
        actor: str,
        appeal: str,
        appellant: str,
        reasons: StatementOfReasons,
        uploader: dict[str, Any] | None,
        held_elsewhere: Mapping[str, list[str]] | None = None,
    ) -> str:
        """The decision reversed by the upheld appeal `appeal` of
        `appellant`: an upheld notice whose uploader appealed has its content
        restored (the case ends RESTORED); a rejected notice whose claimant
        appealed is upheld, naming `uploader` (required then), as by
        `decide`, its counter-notice window running from now. Returns what
        followed: "RESTORED" or "UPHELD"; "" for a case of another kind, for
        which the appeal's own decision is the outcome, and for an uploader's
        appeal of a notice whose content all came back meanwhile (after their
        counter-notice, say, or its claimant withdrawing it): what the appeal
        asked for stands, and nothing more follows. A counter-notice that
        restored only some of it leaves the rest to the appeal, which
        restores that; so does one whose items a court holds, and the case
        stays as the court left it (HELD or UPHELD_BY_COURT; "RESTORED" is
        returned all the same: what the appeal restored came back). A notice
        all of whose content still down went before a court since the appeal
        was filed refuses it: upheld, the appeal would tell its filer of a
        reversal that never happened. Items it lets go of that another
        notice keeps down (`held_elsewhere`: item → those notices) stay down
        by that one, and are recorded so (`RestoredOnAppeal`)."""
        if self.kind is not Kind.TAKEDOWN_NOTICE:
            return ""
        uploader_id = (self.uploader or {}).get("user_id")
        came_back = self.state is State.RESTORED and not self.court_action
        if (
            (came_back or self.state is State.WITHDRAWN)
            and appellant == uploader_id
            and not self.still_down()
        ):
            return ""
        if not self._reversible_by(appellant):
            raise FailedPrecondition(
                f"appeals/{self.id} is {self.state.value} now: upholding this appeal would"
                " change nothing",
                reason="NOTHING_TO_REVERSE",
            )
        if self._content_down():
            released = self.down_on_platform()
            self._restored_on_appeal(
                actor=actor, appeal=appeal, held_elsewhere=_of(released, held_elsewhere)
            )
            return State.RESTORED.value
        if not uploader:
            raise InvalidArgument.field(
                "affected_uploader",
                "upholding an appeal of a rejected notice names the uploader of the content",
            )
        if reasons.appeal_deadline is None:
            raise ValueError("a decision records a completed statement of reasons")
        self._upheld_on_appeal(
            actor=actor,
            appeal=appeal,
            next_step_due=reasons.appeal_deadline,
            reasons=reasons.to_dict(),
            uploader=uploader,
        )
        return State.UPHELD.value

    class RestoredOnAppeal(Aggregate.Event):
        """The content restored: the uploader's appeal of the notice's
        decision was upheld. It brings back what the platform's decision
        alone kept down (`restored_on_appeal`, `down_on_platform`): every
        item the notice took down, or those a counter-notice did not name
        (restored before, or held by a court, the items it named). The case
        becomes RESTORED, or stays HELD or UPHELD_BY_COURT while a court
        holds the items the counter-notice named. Those of them another
        notice still kept down (`held_elsewhere`) did not come back."""

        actor: str
        appeal: str
        # v2: the items let go of that other notices still kept down, each
        # with those notices; none in events recorded before.
        held_elsewhere: dict[str, list[str]]
        class_version = 2
        upcast_v1_v2 = staticmethod(_held_nowhere)

    @event(RestoredOnAppeal)
    def _restored_on_appeal(
        self, actor: str, appeal: str, held_elsewhere: dict[str, list[str]]
    ) -> None:
        # Worked out from the stream, not recorded: one stored before a
        # counter-notice could restore part of the content found all of it
        # down, and reads as restoring all, as it did (none was stored while
        # a court held items: it was refused then).
        self.restored_on_appeal = self.down_on_platform()
        self._came_back(self.restored_on_appeal, held_elsewhere)
        self.restored_by_appeal = appeal
        if self.state not in BEFORE_COURT:
            self._moved(State.RESTORED, Step.NONE, None)

    class UpheldOnAppeal(Aggregate.Event):
        """The notice upheld after all: the claimant's appeal of its
        rejection was upheld."""

        actor: str
        appeal: str
        next_step_due: datetime
        reasons: dict[str, Any]
        uploader: dict[str, Any]

    @event(UpheldOnAppeal)
    def _upheld_on_appeal(
        self,
        actor: str,
        appeal: str,
        next_step_due: datetime,
        reasons: dict[str, Any],
        uploader: dict[str, Any],
    ) -> None:
        self.decision = {"outcome": "UPHOLD", "reasons": reasons, "appeal_deadline": next_step_due}
        self.uploader = uploader
        self._moved(State.UPHELD, Step.COUNTER_NOTICE_OR_APPEAL, next_step_due)

    def record_court_action(
        self,
        *,
        actor: str,
        details: str,
        now: datetime,
        until: datetime | None,
        evidence: list[dict[str, str]],
    ) -> None:
        """A court action the claimant reported by the case's deadline
        (`next_step_due`, as both parties were told), recorded by an agent
        before `until`: the deadline and the grace after it, when the
        content comes back (`restore_if_due`; None: the deadline
        itself). The claimant's ticket, opened hours before the deadline,
        may well be answered after it."""
        if self.state is not State.FORWARDED_TO_CLAIMANT:
            raise FailedPrecondition(
                f"court action holds a forwarded counter-notice; the case is {self.state.value}",
                reason="COUNTER_NOTICE_NOT_FORWARDED",
            )
        closes = until or self.next_step_due
        assert closes is not None
        if now >= closes:
            raise FailedPrecondition(
                f"the window for recording court action closed at {closes.isoformat()}",
                reason="COURT_ACTION_WINDOW_CLOSED",
            )
        self._court_action_recorded(actor=actor, details=details, evidence=evidence)

    class CourtActionRecorded(Aggregate.Event):
        actor: str
        details: str
        evidence: list[dict[str, str]]

    @event(CourtActionRecorded)
    def _court_action_recorded(
        self, actor: str, details: str, evidence: list[dict[str, str]]
    ) -> None:
        self.court_action = details
        self._moved(State.HELD, Step.COURT, None)

    def record_court_outcome(
        self,
        *,
        actor: str,
        content_stays_down: bool,
        details: str,
        evidence: list[dict[str, str]],
        held_elsewhere: Mapping[str, list[str]] | None = None,
    ) -> None:
        """How the court action ended. Restored, the counter-notice's items
        come back but those another notice keeps down (`held_elsewhere`:
        item → those notices), which stay down by that one."""
        if self.state is not State.HELD:
            raise FailedPrecondition(
                "a court outcome ends a case held for court action;"
                f" the case is {self.state.value}",
                reason="CASE_NOT_HELD",
            )
        outcome = "CONTENT_STAYS_DOWN" if content_stays_down else "CONTENT_RESTORED"
        held = {} if content_stays_down else _of(self.restoring(), held_elsewhere)
        self._court_outcome_recorded(
            actor=actor, outcome=outcome, details=details, evidence=evidence, held_elsewhere=held
        )

    class CourtOutcomeRecorded(Aggregate.Event):
        """How the court action ended: the content stays down for good
        (`CONTENT_STAYS_DOWN`) or is restored (`CONTENT_RESTORED`), but for
        the items another notice still kept down (`held_elsewhere`)."""

        actor: str
        outcome: str
        details: str
        evidence: list[dict[str, str]]
        # v2: as on `RestoredOnAppeal`.
        held_elsewhere: dict[str, list[str]]
        class_version = 2
        upcast_v1_v2 = staticmethod(_held_nowhere)

    @event(CourtOutcomeRecorded)
    def _court_outcome_recorded(
        self,
        actor: str,
        outcome: str,
        details: str,
        evidence: list[dict[str, str]],
        held_elsewhere: dict[str, list[str]],
    ) -> None:
        ended = State.UPHELD_BY_COURT if outcome == "CONTENT_STAYS_DOWN" else State.RESTORED
        if ended is State.RESTORED:
            self._came_back(removed_items(self.counter_notice or {}), held_elsewhere)
        self._moved(ended, Step.NONE, None)

    # -- deadlines (fired by the timer; idempotent) -----------------------

    def restore_stands(self, *, due: datetime, until: datetime | None) -> bool:
        """Whether a timer's restore deadline `due` is the case's own:
        `until`, the claimant's deadline and the grace after it
        (`record_court_action`), or, for a case forwarded before its restore
        time was recorded (`restores_at`), the claimant's deadline itself
        (`next_step_due`): one forwarded before there was a grace has its
        timer row there, and no other, and its parties were told the content
        comes back then. A row of any other time does not stand (an older
        release's timer, during a rollout, scheduling a case this release
        forwarded at the deadline would cut its grace short)."""
        return due == until or (self.restores_at is None and due == self.next_step_due)

    def restore_is_due(self, *, now: datetime, due: datetime, until: datetime | None) -> bool:
        """Whether the content of a forwarded case comes back now: the
        timer's deadline `due` is its own (`restore_stands`) and has passed."""
        if self.state is not State.FORWARDED_TO_CLAIMANT or now < due:
            return False
        return self.restore_stands(due=due, until=until)

    def restore_if_due(
        self,
        *,
        now: datetime,
        due: datetime,
        until: datetime | None,
        held_elsewhere: Mapping[str, list[str]] | None = None,
    ) -> bool:
        """Restores the content of a forwarded case when it is due
        (`restore_is_due`), but the items another notice keeps down
        (`held_elsewhere`: item → those notices), which stay down by that
        one."""
        if not self.restore_is_due(now=now, due=due, until=until):
            return False
        self._restored(actor="system", held_elsewhere=_of(self.restoring(), held_elsewhere))
        return True

    def restoring(self) -> list[str]:
        """The items a counter-notice's restoration lets go of (after its
        window, or by a court): those it named that are still down."""
        named = removed_items(self.counter_notice or {})
        return [item for item in self.still_down() if item in named]

    class Restored(Act):
        """The content restored, no court action having been recorded in
        time; but the items another notice still kept down
        (`held_elsewhere`)."""

        # v2: as on `RestoredOnAppeal`.
        held_elsewhere: dict[str, list[str]]
        class_version = 2
        upcast_v1_v2 = staticmethod(_held_nowhere)

    @event(Restored)
    def _restored(self, actor: str, held_elsewhere: dict[str, list[str]]) -> None:
        self._came_back(removed_items(self.counter_notice or {}), held_elsewhere)
        self._moved(State.RESTORED, Step.NONE, None)

    def abandon_if_due(self, *, now: datetime, due: datetime) -> bool:
        if self.state is not State.INFO_REQUESTED or self.next_step_due != due or now < due:
            return False
        self._abandoned(actor="system")
        return True

    class Abandoned(Act):
        """The case closed, the information asked for having not come in time."""

    @event(Abandoned)
    def _abandoned(self, actor: str) -> None:
        self._moved(State.ABANDONED, Step.NONE, None)

    # -- retention ----------------------------------------------------------

    def ended_at(self, last_change: datetime) -> datetime | None:
        """When the case ended, given when it last changed (`last_change`);
        None while something may still happen to it. A withdrawn, abandoned
        or restored case, or one upheld by a court, ended then; a decided
        one when its window for a counter-notice or an appeal closes (a
        counter-notice before then moves it on), a decided appeal (final,
        with no window) then; a held one (until its court outcome is
        recorded) and an open or forwarded one have not."""
        if self.state in FINISHED:
            return last_change
        if self.state in (State.UPHELD, State.REJECTED):
            return last_change if self.next_step_due is None else self.next_step_due
        return None

    @property
    def finished(self) -> bool:
        """Withdrawn, abandoned, restored or upheld by a court: its end can
        never move."""
        return self.state in FINISHED

    def has_ended(self) -> bool:
        return self.ended_at(self.modified_on) is not None

    # -- helpers -----------------------------------------------------------

    def _came_back(
        self, items: list[str], held_elsewhere: Mapping[str, list[str]] | None = None
    ) -> None:
        """Lets go of `items`: the notice keeps them down no more, and they
        come back but those another notice still keeps down
        (`held_elsewhere`)."""
        self.restored_items += [item for item in items if item not in self.restored_items]
        self.held_elsewhere.update({k: list(v) for k, v in (held_elsewhere or {}).items()})

    def _moved(self, state: State, next_step: Step, due: datetime | None) -> None:
        self.state = State(state)
        self.next_step = Step(next_step)
        self.next_step_due = due

    def _require_open(self, what: str) -> None:
        if self.state not in OPEN:
            raise FailedPrecondition(
                f"the case is {self.state.value} and can no longer {what}", reason="CASE_CLOSED"
            )

    def _require_filer(self, actor: str, what: str) -> None:
        if actor != self.filer_id:
            raise PermissionDenied(f"only the person who filed the case may {what}")


def _named_uploader(state: Mapping[str, Any]) -> object:
    """The uploader an agent named when upholding a notice (none on a reject)."""
    return (state.get("uploader") or {}).get("user_id")


# The party's own details: legal name, e-mail, phone and postal address
# (their user id and channels are not personal text; the locale is a
# setting).
_PARTY = ("legal_name", "contact.email", "contact.phone", "postal_address")
# What the filer writes in a case's content (its elements): the work's title,
# the names of the files they attach, a counter-notice's reason and
# signature, an appeal's grounds. The URLs or ids of the items concerned stay clear (the service and
# its consumers act on them), as do dates and the statements' yes/no.
_CONTENT = (
    *(f"filer.{path}" for path in _PARTY),
    "notice.work.title",
    "notice.originality_evidence[].name",
    "notice.infringement_evidence[].name",
    "counter_notice.reason",
    "counter_notice.signature",
    "counter_notice.evidence[].name",
    "grounds",
)

# The personal texts the case itself keeps (erased when it expires).
CopyrightAppeal.kept_personal = PersonalEvent(
    "filer_id",
    (
        *(f"content.{path}" for path in _CONTENT),
        *(f"uploader.{path}" for path in _PARTY),
        "counter_notice.reason",
        "counter_notice.signature",
        "counter_notice.evidence[].name",
    ),
)

# Whose words and contacts each event holds, sealed in the event store and on
# the topic with that person's key (erasing the person erases them). The
# filer's own: their details and what they wrote in the case (at filing, in
# information they add, in withdrawing it). The uploader's own: the details
# an agent named them with when upholding a notice, and their counter-notice
# (details, reason, signature, evidence names). Agents' own texts (the statement of
# reasons, a request for information, the court action and its outcome they
# record, and their evidence) are not sealed.
PERSONAL = PersonalFields(
    {
        CopyrightAppeal.Filed: PersonalEvent(
            "filer_id", tuple(f"content.{path}" for path in _CONTENT)
        ),
        CopyrightAppeal.InfoAdded: PersonalEvent(
            "actor", ("message", *(f"completion.{path}" for path in _CONTENT))
        ),
        CopyrightAppeal.Withdrawn: PersonalEvent("actor", ("reason",)),
        CopyrightAppeal.CounterNoticeFiled: PersonalEvent(
            "actor",
            (
                *(f"uploader.{path}" for path in _PARTY),
                "counter_notice.reason",
                "counter_notice.signature",
                "counter_notice.evidence[].name",
            ),
        ),
        CopyrightAppeal.Decided: PersonalEvent(
            _named_uploader, tuple(f"uploader.{path}" for path in _PARTY)
        ),
        CopyrightAppeal.UpheldOnAppeal: PersonalEvent(
            _named_uploader, tuple(f"uploader.{path}" for path in _PARTY)
        ),
    },
    # Each case under a key of its own too: its retention erases it alone.
    per_case=True,
)

"""The Ticket aggregate: a user's support case from receipt to a rated outcome.

NEW → OPEN (acknowledged or assigned) → PENDING (waiting for the requester) /
ON_HOLD (waiting on a third party) → SOLVED → CLOSED. A requester's reply moves
PENDING or ON_HOLD back to OPEN and reopens a SOLVED ticket; CLOSED and
CANCELLED are final; a rating is accepted once an outcome, when SOLVED or
CLOSED (a ticket reopened and solved again may be rated again). A
final ticket expires when its retention period runs out: its personal
fields are erased (their case keys destroyed) and it accepts nothing more.
Invariants are checked in each command method before its event is triggered.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from eventsourcing.domain import Aggregate, event

from casemesh.platform.acts import Act, ReasonedAct
from casemesh.platform.errors import FailedPrecondition, PermissionDenied
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.ids import derived_id
from casemesh.platform.personal import PersonalEvent, PersonalFields

NAMESPACE = uuid.UUID("5f0f5a2e-8a57-4f6e-9f53-0b6c0b7a7a11")


class Status(StrEnum):
    NEW = "NEW"  # no agent has taken it yet
    OPEN = "OPEN"  # an agent works on it
    PENDING = "PENDING"  # waiting for the requester's answer
    ON_HOLD = "ON_HOLD"  # waiting for someone else (another team, a partner)
    SOLVED = "SOLVED"  # answered; the requester may still reopen it
    CLOSED = "CLOSED"  # final: solved and no longer reopenable
    CANCELLED = "CANCELLED"  # final: withdrawn by the requester


FINAL = frozenset({Status.CLOSED, Status.CANCELLED})
UNSOLVED = frozenset({Status.NEW, Status.OPEN, Status.PENDING, Status.ON_HOLD})

# How long a ticket may grow, by comments. Every command, retry and page of
# history reads the whole ticket (no snapshots), so one flooded by 10,000-
# character comments at the rate allowed would get slower for everyone who
# works it. No real ticket nears these: a long one has a few dozen comments.
# Its requester's are capped below the whole, so that agents can still reply
# to a ticket its requester flooded; status changes are never capped.
MAX_REQUESTER_COMMENTS = 500
MAX_EVENTS = 1000


def _no_evidence(state: dict[str, Any]) -> None:
    """Events recorded before evidence existed had none."""
    state["evidence"] = []


def _closing_unknown(state: dict[str, Any]) -> None:
    """Events recorded before a solve kept its closing time did not say it."""
    state["closes_at"] = None


def reads_notes(who: str, is_agent: bool, requester: str) -> bool:
    """Whether `who` reads the internal notes of `requester`'s ticket: an
    agent, on a ticket not of their own (the notes are about its requester)."""
    return is_agent and who != requester


@dataclass(eq=False, repr=False)
class Ticket(ExpiringCase):
    @staticmethod
    def create_id(requester: str, request_id: str) -> uuid.UUID:
        """The ticket's id, from who asked and their request id: a retried
        create lands on the same stream."""
        return derived_id(NAMESPACE, requester, request_id)

    class Created(Aggregate.Created):
        requester: str
        request_id: str
        request_fingerprint: str
        category: str
        subject: str
        description: str
        locale: str
        contact: dict[str, Any]
        priority: int
        evidence: list[dict[str, str]]
        # v2: evidence references ({"name", "sha256"}) attached at opening.
        class_version = 2
        upcast_v1_v2 = staticmethod(_no_evidence)

    class CommentAdded(Aggregate.Event):
        actor: str
        body: str
        by_requester: bool
        internal: bool
        status: str
        evidence: list[dict[str, str]]
        # v2: evidence references attached to the comment.
        class_version = 2
        upcast_v1_v2 = staticmethod(_no_evidence)

    class Solved(Aggregate.Event):
        actor: str
        resolution: str
        assignee: str
        closes_at: datetime | None
        # v2: when the ticket closes by itself unless its requester replies
        # first, as the service was set when it was solved (what the
        # requester is told); None in events solved before it was kept.
        class_version = 2
        upcast_v1_v2 = staticmethod(_closing_unknown)

    # Created records the ticket's opening fields; `__post_init__` derives the rest.
    _: KW_ONLY
    # Who asked, under which request (a retried create must match it).
    requester: str
    request_id: str
    request_fingerprint: str
    # What they asked, in which language they are answered, how they hear back.
    category: str
    subject: str
    description: str
    locale: str
    contact: dict[str, Any]
    priority: int
    evidence: list[dict[str, str]]

    def __post_init__(self) -> None:
        self.status = Status.NEW
        self.assignee = ""
        self.resolution = ""
        self.rating: dict[str, Any] | None = None
        # The agents' internal notes, kept from the requester, who is shown
        # the ticket as if they were not there (`shown_version`, `shown_on`):
        # how many, the version of the latest, and, while the latest events
        # are notes, when the event before them was made.
        self.notes = 0
        self.note_version = 0
        self.before_notes_on: datetime | None = None
        self.requester_comments = 0

    @property
    def shown_version(self) -> int:
        """The ticket's version as its requester is shown it: its events but
        the internal notes."""
        return self.version - self.notes

    @property
    def shown_on(self) -> datetime:
        """When the last event its requester is shown was made."""
        if self.note_version == self.version and self.before_notes_on is not None:
            return self.before_notes_on
        return self.modified_on

    def sees_notes(self, who: str, is_agent: bool) -> bool:
        """Whether `who` reads its internal notes (`reads_notes`)."""
        return reads_notes(who, is_agent, self.requester)

    # -- agents ---------------------------------------------------------

    def assign(self, *, actor: str, assignee: str, priority: int | None = None) -> None:
        self._require_not_final("assigned")
        if self.status is Status.SOLVED:
            raise FailedPrecondition(
                "a solved ticket must be reopened before it is reassigned", reason="TICKET_SOLVED"
            )
        status = Status.OPEN if self.status is Status.NEW else self.status
        self._assigned(
            actor=actor, assignee=assignee, priority=priority or self.priority, status=status
        )

    class Assigned(Aggregate.Event):
        actor: str
        assignee: str
        priority: int
        status: Status

    @event(Assigned)
    def _assigned(self, actor: str, assignee: str, priority: int, status: Status) -> None:
        self.assignee = assignee
        self.priority = priority
        self.status = Status(status)

    def request_info(self, *, actor: str, message: str) -> None:
        self._require_unsolved("ask the requester for information")
        self._info_requested(actor=actor, message=message, assignee=self.assignee or actor)

    class InfoRequested(Aggregate.Event):
        actor: str
        message: str
        assignee: str

    @event(InfoRequested)
    def _info_requested(self, actor: str, message: str, assignee: str) -> None:
        self.status = Status.PENDING
        self.assignee = assignee

    def put_on_hold(self, *, actor: str, reason: str) -> None:
        self._require_unsolved("put on hold")
        self._put_on_hold(actor=actor, reason=reason, assignee=self.assignee or actor)

    class PutOnHold(Aggregate.Event):
        actor: str
        reason: str
        assignee: str

    @event(PutOnHold)
    def _put_on_hold(self, actor: str, reason: str, assignee: str) -> None:
        self.status = Status.ON_HOLD
        self.assignee = assignee

    def solve(self, *, actor: str, resolution: str, closes_at: datetime | None = None) -> None:
        """`closes_at`: when it closes by itself unless its requester replies
        first (the application's setting decides; None: not said)."""
        if self.status is Status.SOLVED:
            raise FailedPrecondition("the ticket is already solved", reason="TICKET_ALREADY_SOLVED")
        self._require_unsolved("solved")
        self._solved(
            actor=actor,
            resolution=resolution,
            assignee=self.assignee or actor,
            closes_at=closes_at,
        )

    @event(Solved)
    def _solved(
        self, actor: str, resolution: str, assignee: str, closes_at: datetime | None
    ) -> None:
        self.status = Status.SOLVED
        self.resolution = resolution
        self.assignee = assignee

    # -- requester and agents -------------------------------------------

    def add_comment(
        self,
        *,
        actor: str,
        body: str,
        by_requester: bool,
        internal: bool,
        evidence: list[dict[str, str]] | None = None,
    ) -> None:
        if self.status in FINAL:
            raise FailedPrecondition(
                f"the ticket is {self.status.value.lower()}; open a new ticket instead",
                reason="TICKET_FINAL",
            )
        if by_requester and internal:
            # An agent's own ticket too: notes are about a requester, kept from them.
            raise PermissionDenied(
                "an internal note cannot be written on a ticket you opened",
                reason="INTERNAL_NOTE_ON_OWN_TICKET",
            )
        self._require_room_for_comment(by_requester)
        status = self.status
        if by_requester and self.status in (Status.PENDING, Status.ON_HOLD, Status.SOLVED):
            status = Status.OPEN
        elif not by_requester and not internal and self.status is Status.NEW:
            status = Status.OPEN  # an agent's public reply acknowledges the ticket
        self._comment_added(actor, body, by_requester, internal, status, list(evidence or []))

    @event(CommentAdded)
    def _comment_added(
        self,
        actor: str,
        body: str,
        by_requester: bool,
        internal: bool,
        status: Status,
        evidence: list[dict[str, str]],
    ) -> None:
        if self.status is Status.SOLVED and Status(status) is not Status.SOLVED:
            # Reopened by the requester's reply, as by `reopen`.
            self._outcome_undone()
        self.status = Status(status)
        if by_requester:
            self.requester_comments += 1
        if internal:
            # (Applied before the ticket takes this event's version and time.)
            if self.note_version != self.version:  # the event before was shown
                self.before_notes_on = self.modified_on
            self.notes += 1
            self.note_version = self.version + 1

    def reopen(self, *, actor: str, reason: str) -> None:
        self._require_in({Status.SOLVED}, "only a solved ticket can be reopened")
        self._reopened(actor=actor, reason=reason)

    class Reopened(ReasonedAct):
        """A solved ticket opened again."""

    @event(Reopened)
    def _reopened(self, actor: str, reason: str) -> None:
        self.status = Status.OPEN
        self._outcome_undone()

    def _outcome_undone(self) -> None:
        """Reopened: the resolution is gone, and with it what the rating
        rated (it stays in the history); the next outcome is rated anew."""
        self.resolution = ""
        self.rating = None

    def close(self, *, actor: str) -> None:
        self._require_in({Status.SOLVED}, "only a solved ticket can be closed")
        self._closed(actor=actor)

    class Closed(Act):
        """A solved ticket closed for good."""

    @event(Closed)
    def _closed(self, actor: str) -> None:
        self.status = Status.CLOSED

    # -- requester ------------------------------------------------------

    def cancel(self, *, actor: str, reason: str) -> None:
        self._require_in(UNSOLVED, "only an unsolved ticket can be cancelled")
        self._cancelled(actor=actor, reason=reason)

    class Cancelled(ReasonedAct):
        """An unsolved ticket given up by its requester."""

    @event(Cancelled)
    def _cancelled(self, actor: str, reason: str) -> None:
        self.status = Status.CANCELLED

    def rate(self, *, actor: str, score: int, comment: str) -> None:
        self._require_in({Status.SOLVED, Status.CLOSED}, "a ticket can be rated once it is solved")
        self.require_not_expired()
        if self.rating is not None:
            raise FailedPrecondition(
                "this ticket has already been rated", reason="TICKET_ALREADY_RATED"
            )
        self._rated(actor=actor, score=score, comment=comment)

    class Rated(Aggregate.Event):
        actor: str
        score: int
        comment: str

    @event(Rated)
    def _rated(self, actor: str, score: int, comment: str) -> None:
        self.rating = {"score": score, "comment": comment}

    # -- retention (`ExpiringCase`) --------------------------------------

    def has_ended(self) -> bool:
        return self.status in FINAL

    # -- invariants -----------------------------------------------------

    def _require_in(self, allowed: Collection[Status], rule: str) -> None:
        """Refuses the command unless the ticket is in one of `allowed`,
        telling `rule` and the status it is in."""
        if self.status not in allowed:
            raise FailedPrecondition(
                f"{rule}; this one is {self.status.value}", reason="TICKET_STATUS_NOT_ALLOWED"
            )

    def _require_not_final(self, what: str) -> None:
        if self.status in FINAL:
            raise FailedPrecondition(
                f"the ticket is {self.status.value.lower()} and can no longer be {what}",
                reason="TICKET_FINAL",
            )

    def _require_room_for_comment(self, by_requester: bool) -> None:
        """Refuses a comment past the ticket's length (`MAX_EVENTS`), or past
        what its requester may write on it (`MAX_REQUESTER_COMMENTS`)."""
        if by_requester and self.requester_comments >= MAX_REQUESTER_COMMENTS:
            raise FailedPrecondition(
                f"this ticket takes no more comments from you (at most"
                f" {MAX_REQUESTER_COMMENTS}); open a new ticket to go on",
                reason="TICKET_TOO_LONG",
            )
        if self.version >= MAX_EVENTS:
            raise FailedPrecondition(
                f"this ticket takes no more comments (at most {MAX_EVENTS} changes);"
                " open a new ticket to go on",
                reason="TICKET_TOO_LONG",
            )

    def _require_unsolved(self, what: str) -> None:
        if self.status not in UNSOLVED:
            raise FailedPrecondition(
                f"a {self.status.value.lower()} ticket cannot be {what}"
                if what.endswith("ed")
                else f"cannot {what} on a {self.status.value.lower()} ticket",
                reason="TICKET_SOLVED_OR_FINAL",
            )


# The texts a ticket opens with, all the requester's own.
_OPENING = ("subject", "description", "contact.email", "contact.phone", "evidence[].name")

# Whose words and contacts each event holds, sealed in the event store and on
# the topic with that person's key (erasing the person erases them). The
# requester's own: what they asked, how to reach them, the names of the files
# they attached, what they said when cancelling, rating or reopening. A
# comment is sealed under its author, requester or agent alike: an event's
# paths cannot depend on who wrote it. Agents' own texts on other events
# (resolution, request for information, hold reason) are not sealed.
PERSONAL = PersonalFields(
    {
        Ticket.Created: PersonalEvent("requester", _OPENING),
        Ticket.CommentAdded: PersonalEvent("actor", ("body", "evidence[].name")),
        Ticket.Reopened: PersonalEvent("actor", ("reason",)),
        Ticket.Cancelled: PersonalEvent("actor", ("reason",)),
        Ticket.Rated: PersonalEvent("actor", ("comment",)),
    },
    # Each ticket under a key of its own too: its retention erases it alone.
    per_case=True,
)
# What of it the ticket itself keeps: the opening texts and the rating's words.
Ticket.kept_personal = PersonalEvent("requester", (*_OPENING, "rating.comment"))

"""The tickets application: commands and queries on Ticket aggregates.

Every command loads the ticket, checks who may do what, calls one domain
method and saves. Optimistic concurrency on the aggregate version decides
races: the loser gets Aborted and may retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Unpack, cast
from uuid import UUID

from eventsourcing.utils import EnvType

from casemesh.platform.caseindex import CaseRow, Page
from casemesh.platform.cases import CaseApplication, CaseOptions, open_indexed
from casemesh.platform.clock import Clock, SystemClock
from casemesh.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from casemesh.platform.identity import Identity, subject_fault
from casemesh.platform.logging import get_logger
from casemesh.platform.paging import page_size_of, sequence_after, steps_page
from casemesh.platform.timers import Deadline, UnknownDeadlineKind
from casemesh.rules import retention
from casemesh.rules import tickets as validation
from casemesh.rules.tickets import BY_ID, check_evidence
from casemesh_tickets.domain import PERSONAL, Status, Ticket
from casemesh_tickets.views import HistoryEntry, TicketView, history_entry

log = get_logger(__name__)


class DeadlineKind(StrEnum):
    """A ticket's deadlines, by the kind stored in its timers table."""

    AUTO_CLOSE = "auto_close"  # a solved ticket closes by itself
    RETENTION = "retention"  # a closed or cancelled ticket's personal data is erased


@dataclass(frozen=True)
class NewTicket:
    """What a user sends to open a ticket; `request_id` makes a retry land on
    the same ticket."""

    request_id: str
    category: str
    subject: str
    description: str
    locale: str
    contact: dict[str, Any]
    # References the gateway checked: [{"name": "evidence/…", "sha256": "…"}].
    evidence: list[dict[str, str]] = field(default_factory=list)


class Tickets(CaseApplication[Ticket]):
    """On PostgreSQL, open with `open_tickets`; constructed bare, it runs in
    memory (the application tests)."""

    name = "tickets"
    case_type = Ticket
    collection = "tickets"
    noun = "ticket"
    personal_fields = PERSONAL
    deadline_events = (Ticket.Solved, Ticket.Closed, Ticket.Cancelled)

    @property
    def deadlines_rechecked(self) -> dict[str, timedelta]:
        """A solved ticket's time to close follows `auto_close_after`: started
        with a shorter one, the timer closes at once what is past it now (the
        deadlines due later than it allows: set under a longer one)."""
        return {DeadlineKind.AUTO_CLOSE: self.auto_close_after}

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        clock: Clock | None = None,
        auto_close_after: timedelta = timedelta(days=4),
        retain_for: timedelta | None = None,
        **options: Unpack[CaseOptions],
    ) -> None:
        super().__init__(env, **options)
        self.clock: Clock = clock or SystemClock()
        self.auto_close_after = auto_close_after
        self.retain_for = retention.period("tickets") if retain_for is None else retain_for

    def visible_to(self, case: Ticket, who: Identity) -> bool:
        return case.requester == who.subject

    # -- deadlines ------------------------------------------------------

    def deadlines_of(self, domain_event: Any) -> list[Deadline]:
        """A solved ticket closes by itself after a while (help desks use 4
        days); a closed or cancelled one keeps its personal data for its
        retention period (`casemesh.rules.retention`)."""
        ident = str(domain_event.originator_id)
        if isinstance(domain_event, Ticket.Solved):
            due = self._closing(domain_event.timestamp)
            return [Deadline(ident, DeadlineKind.AUTO_CLOSE, due)]
        if isinstance(domain_event, Ticket.Closed | Ticket.Cancelled):
            due = domain_event.timestamp + self.retain_for
            return [Deadline(ident, DeadlineKind.RETENTION, due)]
        return []

    def fire(self, deadline: Deadline) -> Deadline | None:
        """Runs the deadline's command. A kind this release does not know (a
        newer release's, rolled back) is left to a release that does."""
        if deadline.kind == DeadlineKind.AUTO_CLOSE:
            return self.auto_close(deadline)
        if deadline.kind == DeadlineKind.RETENTION:
            self.expire(deadline)
            return None
        raise UnknownDeadlineKind(deadline.kind)

    def expire(self, deadline: Deadline) -> None:
        """Erases a closed or cancelled ticket's personal data once its
        retention period ran out (`expire_case`); idempotent."""
        ticket: Ticket = self.repository.get(UUID(deadline.aggregate_id))
        if ticket.has_ended() and self.clock.now() >= deadline.due:
            self.expire_case(ticket)

    def auto_close(self, deadline: Deadline) -> Deadline | None:
        """Closes the ticket if it is still solved, and its last solve is
        `auto_close_after` old (as set now); idempotent. Not yet (a reopen
        and a new solve since, a longer setting than when the deadline was
        set, or a deadline rechecked before its time): the deadline of its
        last solve, to be scheduled instead (the same deadline: it stands)."""
        ticket: Ticket = self.repository.get(UUID(deadline.aggregate_id))
        if ticket.status is not Status.SOLVED:
            return None
        due = self._closes_at(ticket)
        if self.clock.now() < due:
            return Deadline(deadline.aggregate_id, DeadlineKind.AUTO_CLOSE, due)
        ticket.close(actor="system")
        self.save(ticket)  # a lost race raises: the deadline stays due
        log.info("ticket.auto_closed", ticket_id=deadline.aggregate_id)
        return None

    def _require_not_over(self, ticket: Ticket) -> None:
        """Past its time to close, a solved ticket is over even before the
        timer closes it (a timer late after an outage, say): its requester
        opens a new one, as for a closed ticket."""
        if ticket.status is Status.SOLVED and self.clock.now() >= self._closes_at(ticket):
            raise FailedPrecondition(
                "the ticket was solved too long ago to reopen; open a new ticket instead",
                reason="TICKET_FINAL",
            )

    def _closes_at(self, ticket: Ticket) -> datetime:
        """When a solved ticket closes by itself: its last solve and
        `auto_close_after` (as set now)."""
        solved = max(
            e.timestamp
            for e in self.repository.event_store.get(ticket.id)
            if isinstance(e, Ticket.Solved)
        )
        return self._closing(solved)

    def _closing(self, solved_at: datetime) -> datetime:
        """When a ticket solved at `solved_at` closes by itself, as the
        service is set now."""
        return solved_at + self.auto_close_after

    # -- commands -------------------------------------------------------

    def create_ticket(self, who: Identity, new: NewTicket) -> TicketView:
        v = Violations()
        fields = {k: v for k, v in vars(new).items() if k != "evidence"}
        validation.check_new_ticket(v, **fields, prefix="ticket.")
        check_evidence(v, new.evidence, "ticket.evidence")
        v.raise_if_any()
        # No read first: a retry's Created event is refused by the store, and
        # `create` then answers with the ticket the first call made.
        fresh = Ticket(
            requester=who.subject,
            request_id=new.request_id,
            request_fingerprint=self.fingerprint(new),
            category=new.category,
            subject=new.subject.strip(),
            description=new.description.strip(),
            locale=new.locale,
            contact=new.contact,
            priority=int(BY_ID[new.category].default_priority),
            evidence=new.evidence,
        )
        ticket = self.create(fresh, new)
        if ticket is fresh:
            log.info("ticket.created", ticket_id=str(ticket.id), category=new.category)
        return TicketView.of(ticket)

    def assign(
        self,
        who: Identity,
        ticket_id: str,
        assignee: str,
        priority: int | None,
        etag: str,
        request_id: str = "",
    ) -> TicketView:
        self.require_agent(who, "assign tickets")
        v = Violations()
        assignee = validation.assignee(v, assignee)
        # Someone a token could name (an agent's user id), by the same rule
        # (once the text's own checks, so far the only ones, passed).
        if assignee and not v and (fault := subject_fault(assignee)):
            v.add("assignee", fault)
        if priority is not None and priority not in (1, 2, 3, 4):
            v.add("priority", "must be from 1 (low) to 4 (urgent)")
        v.raise_if_any()
        assignee = assignee or who.subject
        return TicketView.of(
            self.run(
                who,
                ticket_id,
                etag,
                request_id,
                Ticket.assign,
                assignee=assignee,
                priority=priority,
            )
        )

    def request_info(
        self, who: Identity, ticket_id: str, message: str, etag: str, request_id: str = ""
    ) -> TicketView:
        self.require_agent(who, "request information")
        message = self.require_text("message", message, validation.LIMITS["text"])
        return TicketView.of(
            self.run(who, ticket_id, etag, request_id, Ticket.request_info, message=message)
        )

    def put_on_hold(
        self, who: Identity, ticket_id: str, reason: str, etag: str, request_id: str = ""
    ) -> TicketView:
        self.require_agent(who, "put tickets on hold")
        reason = self.require_text("reason", reason, validation.LIMITS["text"], required=False)
        return TicketView.of(
            self.run(who, ticket_id, etag, request_id, Ticket.put_on_hold, reason=reason)
        )

    def solve(
        self, who: Identity, ticket_id: str, resolution: str, etag: str, request_id: str = ""
    ) -> TicketView:
        self.require_agent(who, "solve tickets")
        resolution = self.require_text("resolution", resolution, validation.LIMITS["text"])

        def solve(t: Ticket) -> None:
            # Kept on the event, so that its requester is told when, the same
            # on every replay; not part of the retry's fingerprint.
            closes_at = self._closing(self.clock.now())
            t.solve(actor=who.subject, resolution=resolution, closes_at=closes_at)

        return TicketView.of(
            self.change_under(
                who, ticket_id, etag, request_id, solve, "solve", resolution=resolution
            )
        )

    def add_comment(
        self,
        who: Identity,
        ticket_id: str,
        body: str,
        internal: bool,
        etag: str,
        evidence: list[dict[str, str]] | None = None,
        request_id: str = "",
    ) -> TicketView:
        body = self.require_text("body", body, validation.LIMITS["body"])
        v = Violations()
        check_evidence(v, evidence or [], "evidence")
        v.raise_if_any()
        if internal and not who.is_agent:
            raise PermissionDenied("only agents may write internal notes")

        def comment(t: Ticket) -> None:
            if t.requester == who.subject:  # which would reopen a solved ticket
                self._require_not_over(t)
            elif evidence and not internal:
                # Files are shown to their uploader and agents only: the
                # requester would be shown names they cannot open.
                raise InvalidArgument.field(
                    "evidence",
                    "an agent's files cannot be shown to the requester:"
                    " attach them to an internal note, or send them another way",
                )
            t.add_comment(
                actor=who.subject,
                body=body,
                by_requester=t.requester == who.subject,
                internal=internal,
                evidence=evidence,
            )

        return TicketView.of(
            self.change_under(
                who,
                ticket_id,
                etag,
                request_id,
                comment,
                "add_comment",
                body=body,
                internal=internal,
                evidence=evidence or [],
            )
        )

    def reopen(
        self, who: Identity, ticket_id: str, reason: str, etag: str, request_id: str = ""
    ) -> TicketView:
        reason = self.require_text("reason", reason, validation.LIMITS["text"], required=False)

        def reopen(t: Ticket) -> None:
            self._require_not_over(t)
            t.reopen(actor=who.subject, reason=reason)

        return TicketView.of(
            self.change_under(who, ticket_id, etag, request_id, reopen, "reopen", reason=reason)
        )

    def close_ticket(
        self, who: Identity, ticket_id: str, etag: str, request_id: str = ""
    ) -> TicketView:
        return TicketView.of(self.run(who, ticket_id, etag, request_id, Ticket.close))

    def cancel(
        self, who: Identity, ticket_id: str, reason: str, etag: str, request_id: str = ""
    ) -> TicketView:
        reason = self.require_text("reason", reason, validation.LIMITS["text"], required=False)

        def cancel(t: Ticket) -> None:
            if t.requester != who.subject:
                raise PermissionDenied("only the requester may cancel a ticket")
            t.cancel(actor=who.subject, reason=reason)

        return TicketView.of(
            self.change_under(who, ticket_id, etag, request_id, cancel, "cancel", reason=reason)
        )

    def rate(
        self, who: Identity, ticket_id: str, score: int, comment: str, request_id: str = ""
    ) -> TicketView:
        if not 1 <= score <= 5:
            raise InvalidArgument.field("score", "must be from 1 to 5")
        comment = self.require_text("comment", comment, validation.LIMITS["text"], required=False)

        def rate(t: Ticket) -> None:
            if t.requester != who.subject:
                raise PermissionDenied("only the requester may rate a ticket")
            t.rate(actor=who.subject, score=score, comment=comment)

        return TicketView.of(
            self.change_under(
                who, ticket_id, "", request_id, rate, "rate", score=score, comment=comment
            )
        )

    # -- queries --------------------------------------------------------

    def version_shown(self, case: Ticket, who: Identity) -> int:
        """Its requester's etag names the version they are shown (internal
        notes aside): a note written since they read it is no change to them."""
        return case.version if case.sees_notes(who.subject, who.is_agent) else case.shown_version

    def get_ticket(self, who: Identity, ticket_id: str) -> TicketView:
        return TicketView.of(self.load_visible(who, ticket_id))

    def list_tickets(
        self, who: Identity, statuses: list[str], page_size: int, page_token: str
    ) -> Page[TicketView]:
        page = self.page_cases(who, statuses, page_size, page_token)
        return Page([self._listed(d) for d in page.items], page.next_token)

    def _listed(self, row: dict[str, Any]) -> TicketView:
        """A ticket as its index row has it; a row indexed before rows kept
        what its requester is shown (`TicketView.shown_version`) is read from
        the ticket instead, until the ticket changes and its row is written
        anew (else its requester would get an etag they could not reply
        under)."""
        if "shown_version" not in row:
            return TicketView.of(self.repository.get(UUID(row["id"])))
        return TicketView.from_json(row)

    def search_tickets(
        self, who: Identity, search: TicketSearch, page_size: int, page_token: str
    ) -> Page[TicketView]:
        """Agents only: every ticket that matches each filter set."""
        self.require_agent(who, "search tickets")
        v = Violations()
        if search.category and search.category not in BY_ID:
            v.add("category", f"unknown category {search.category!r}; see ListTicketCategories")
        text = validation.text(v, "text", search.text, limit=200, required=False, single_line=True)
        for name in ("requester", "assignee"):
            validation.text(
                v, name, getattr(search, name), limit=128, required=False, single_line=True
            )
        v.raise_if_any()
        matches = {f: value for f, value in search.fields().items() if value}
        page = self.find_cases(
            search.requester or None,
            search.statuses,
            page_size,
            page_token,
            matches=matches,
            text=text,
            text_fields=("subject", "description"),
        )
        return Page([self._listed(d) for d in page.items], page.next_token)

    def history(
        self, who: Identity, ticket_id: str, page_size: int, page_token: str
    ) -> Page[HistoryEntry]:
        limit = page_size_of(page_size, most=200, default=50)
        after = sequence_after(page_token)
        # Whose it is, from its first event: the events are read below.
        shown = self.load_visible(who, ticket_id, version=1)
        # Internal notes are the agents' about a requester: an agent reading
        # a ticket of their own reads it as its requester. Who does not read
        # them is shown the others numbered without them, so that no gap in
        # the sequence tells that one was written.
        notes = shown.sees_notes(who.subject, who.is_agent)
        entries: list[HistoryEntry] = []
        ticket: Any = None
        for domain_event in self.repository.event_store.get(UUID(ticket_id)):
            ticket = cast(Any, domain_event).mutate(ticket)
            entry = history_entry(domain_event, ticket)
            if entry.internal and not notes:
                continue
            if not notes:
                entry = replace(entry, sequence=ticket.shown_version)
            if entry.sequence > after:
                entries.append(entry)
            if len(entries) > limit:
                # One past the page tells that more follow; the events after
                # it are neither revealed nor replayed.
                break
        return steps_page(entries, limit, PAGE_TEXT_BYTES)


# The text a page of history carries at most (as UTF-8): 200 entries of
# 10,000 Chinese characters would be about 6 MB, past the 4 MiB a gRPC
# client takes by default. A page is then cut short, as AIP-158 allows.
PAGE_TEXT_BYTES = 1024 * 1024


def open_tickets(
    database_url: str,
    pool_size: int = 5,
    *,
    clock: Clock | None = None,
    auto_close_after: timedelta = timedelta(days=4),
    **options: Unpack[CaseOptions],
) -> Tickets:
    """Tickets on PostgreSQL, its case index beside the events (`open_indexed`)."""
    bound = partial(Tickets, clock=clock, auto_close_after=auto_close_after, **options)
    return open_indexed(database_url, "ticket_cases", bound, pool_size=pool_size)


@dataclass(frozen=True)
class TicketSearch:
    """What an agent looks for; empty filters match every ticket."""

    requester: str = ""
    category: str = ""
    statuses: list[str] = field(default_factory=list)
    assignee: str = ""
    text: str = ""

    def fields(self) -> dict[str, str]:
        """The filters on the case document's own fields."""
        return {"category": self.category, "assignee": self.assignee}


def case_row(ticket: Ticket) -> CaseRow:
    """How a ticket appears in the case index."""
    view = TicketView.of(ticket)
    return CaseRow(
        view.id, [view.requester], view.status, view.create_time, view.version, view.to_json()
    )

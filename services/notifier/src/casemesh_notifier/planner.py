"""From case events to notification jobs, exactly once in effect.

A batch of events (those the consumer received together) is planned in ONE
transaction, the caller's, with a handful of statements whatever its size:
record every event id as consumed (a redelivered event stops there and
changes nothing); read and lock the parties of the cases the rest concern;
let the plan of each event's kind of case (`registry.py`, `cases.py`), in
the batch's order, update those parties (contact preferences as carried by
the events, last status) and render its jobs in memory; then write the
parties back and add the jobs (unique per event id × party × channel ×
recipient, `store.py`). The Kafka offsets are committed only after this
transaction.

A party an event names anew with other contacts (`cases.py`: a filer who
gave up SMS or corrected an address, a decision naming another uploader)
takes what was planned for them before that event along, and only that: the
batch's jobs of earlier events as each event is planned, the jobs of earlier
batches before the batch's own are added (`store.follow_contact_changes`).
A message for the person the party was, or on a channel they no longer
want, is cancelled (one of the batch's own is never added); the others go
to their new address. A redelivered change stops at the consumed record
like any event, and the statements change nothing the second time.

A case an event ends (a ticket cancelled, a copyright case withdrawn:
`cases.ENDED`) asks nothing more of its parties: its requests not yet sent
("we need more information by …"), the batch's own too, are cancelled once
the batch's jobs are added (`store.cancel_requests`).

The batch's messages are revealed before they are planned, with one key
look-up for them all (`reveal_messages_async`): the personal fields the
owning service sealed (a ticket's subject, its requester's contacts) are
read in the clear, an erased person's as `ERASED`, and nobody is told at an
erased address. A field that cannot be revealed is never planned with
(`Planner._readable`).

A `PersonErased` (casemesh.privacy.v1) in the batch makes this process forget
the person's keys before anything of the batch is revealed, and, once the
batch's jobs are added, scrubs the person's clear data and cancels their
unsent jobs (`erasures.py`), those the batch added included. The parties
of an erased person that the erasure blanked keep no address and are told
nothing again, whatever a later event carries, and nothing written before
the erasure tells them however late it is heard (`erased_people` keeps its
time); a case they open after it, its contacts sealed with the key they
have since, is told as any. An address sealed under a key the erasure
destroyed is erased whenever it was written (a process still holding the
key sealed and read it after the erasure's time): the party rows and jobs
keep the id of the key their address was sealed under (`key_id`), and the
key database, not this process's memory, says which keys are erased, when
the erasure is heard and when a case of an erased person is planned after
it (`erased_keys`). Their words in another's e-mail (an agent's
reply to a requester: `Step.words_of`) written before the erasure are
scrubbed by it, and never planned again however late they are heard.
A `TicketExpired`, an `AppealExpired`, a `ReportCaseExpired` or a
`ReportExpired` (the case's retention period ran out) scrubs that case's
clear data and cancels its unsent jobs the same way, after the batch's
jobs are added; its people's
other cases are untouched. A `ReporterContactExpired` does so for the
reporter's standing (`reporters/<id>`); a measure of the standing later in
the same batch is planned after it, as any (the batch is then planned in
parts, each with its own look-up and statements).

A `PhoneChangeVerified` (casemesh.helpcenter.v1: a user proved a new number)
gives the user's party rows and unsent SMS jobs that name the old number the
new one (`phone_changes.py`), once the rest of the batch is planned and its
erasures and expiries heard, the batch's changes in the order they were
verified. It is kept (for the help centre's `phone_changes` period, or
until the user's erasure): the rows and jobs of the cases of every later
batch that give a number its user changed away from give their number now,
whatever contact the event carries (`follow_numbers`). Its numbers come
sealed under the user's key (clear in changes published before the help
centre sealed them). A change written before its user's erasure is not
followed: their numbers of then are erased; nor one whose numbers read as
erased (the user's key is gone, their erasure on its way).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import psycopg
from google.protobuf.message import Message
from opentelemetry import trace

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.consuming import NotYet, Place
from casemesh.platform.envelope import CloudEvent, type_of
from casemesh.platform.logging import get_logger
from casemesh.platform.personal import (
    AsyncSealer,
    RevealedMessage,
    UnknownDataKey,
    UnknownMasterKey,
    reveal_messages_async,
)
from casemesh_notifier import store
from casemesh_notifier.cases import CaseParties, Planning
from casemesh_notifier.erasures import CANCELLED, forget_cases, forget_people, keys_recorded
from casemesh_notifier.metrics import OUTCOMES
from casemesh_notifier.phone_changes import follow_numbers, follow_phone_change
from casemesh_notifier.policy import SUPERSEDED_TEMPLATES
from casemesh_notifier.registry import MESSAGES, SOURCE_OF, Source

log = get_logger(__name__)
M = TypeVar("M", bound=Message)

ERASURE = type_of(PersonErased)
PHONE_CHANGE = type_of(hev.PhoneChangeVerified)
# A case whose retention ran out; the event's subject names the case, as
# the notifier names it (`tickets/<id>`, `appeals/<id>`, `report-cases/<id>`,
# and `reports/<id>` for each of a report case's reports), or the reporter's
# standing (`reporters/<id>`) whose measures' contact it erased.
EXPIRIES = frozenset(
    type_of(m)
    for m in (
        tev.TicketExpired,
        aev.AppealExpired,
        rev.ReportExpired,
        rev.ReportCaseExpired,
        rev.ReporterContactExpired,
    )
)


@dataclass
class Planner:
    """Plans the notifications of a batch of events. `personal` reveals the
    events' personal fields; `replies`: whether ticket e-mails can be answered
    by e-mail (their signature says so, or that replies are not read)."""

    personal: AsyncSealer
    consumer: str = "notifier"
    time_zone: str = "Asia/Shanghai"
    replies: bool = False
    _zone: ZoneInfo = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._zone = ZoneInfo(self.time_zone)

    async def plan_batch(
        self,
        conn: psycopg.AsyncConnection[Any],
        events: Sequence[tuple[CloudEvent, Place]],
        now: datetime,
        spans: Mapping[str, trace.Span] | None = None,
    ) -> dict[str, list[uuid.UUID]]:
        """Plans the jobs for the events, in their order, in the caller's
        transaction; returns the new job ids by the id of the event that
        caused them (none for a redelivered or uninteresting event). What is
        said of one event is said in its span from `spans` (its consumer
        span, by event id), so it carries the trace that caused it. The
        caller wakes the senders (`store.wake_senders`), once for the
        transaction."""

        def about(event: CloudEvent) -> AbstractContextManager[Any]:
            span = spans.get(event.id) if spans else None
            return trace.use_span(span, end_on_exit=False) if span else nullcontext()

        # A phone change takes the turn alone too: a case event planned
        # beside it could add a job to the old number after it looked.
        alone = any(event.type in (ERASURE, PHONE_CHANGE) for event, _ in events)
        await store.take_turn_with_erasures(conn, erasing=alone)
        first = await store.record_consumed(
            conn, self.consumer, [(event.id, place) for event, place in events]
        )
        decoded: list[tuple[CloudEvent, Message, Source]] = []
        erasures: list[tuple[CloudEvent, str]] = []
        # Each expiry, with how many case events came before it.
        expiries: list[tuple[CloudEvent, str, int]] = []
        changes: list[tuple[CloudEvent, hev.PhoneChangeVerified]] = []
        for event, _ in events:
            with about(event):
                if event.id not in first:
                    log.info("event.duplicate", event_id=event.id, type=event.type)
                    continue
                first.discard(event.id)  # the same event twice in one batch is planned once
                if event.type == ERASURE:
                    erasures.append((event, self.forget(event)))
                    continue
                if event.type == PHONE_CHANGE:
                    changes.append((event, self.phone_change(event)))
                    continue
                if event.type in EXPIRIES:
                    if not event.subject:
                        raise ValueError(f"{event.id}: an expiry names no case")
                    expiries.append((event, event.subject, len(decoded)))
                    continue
                cls = MESSAGES.get(event.type)
                if cls is None:
                    log.info("event.ignored", event_id=event.id, type=event.type)
                    continue
                decoded.append((event, cls.FromString(event.data), SOURCE_OF[cls]))

        async def forget_erased() -> None:
            for event, person in erasures:
                with about(event):
                    keys = await self.erased_keys(await keys_recorded(conn, [person]))
                    forgotten = await forget_people(
                        conn, [person], event.id, now, event.time, erased_keys=keys
                    )
                    log.info("person.forgotten", event_id=event.id, **dataclasses.asdict(forgotten))

        async def forget_expired(event: CloudEvent, case: str) -> None:
            with about(event):
                forgotten = await forget_cases(conn, [case])
                log.info("case.forgotten", event_id=event.id, **dataclasses.asdict(forgotten))

        # The batch is planned whole, then its erasures and expiries heard,
        # except an expiry whose case a later event of the batch names again
        # (a standing's next measure): the events before it are planned and
        # it is heard (after the erasures, whose people's addresses its party
        # rows may hold), and the rest is planned after that.
        by_event: dict[str, list[uuid.UUID]] = {}
        done, late = 0, []
        for event, case, at in expiries:
            if not any(later.subject == case for later, _, _ in decoded[at:]):
                late.append((event, case))
                continue
            if at > done:
                by_event.update(await self._plan(conn, decoded[done:at], now, about))
                done = at
            await forget_erased()
            await forget_expired(event, case)
        if len(decoded) > done:
            by_event.update(await self._plan(conn, decoded[done:], now, about))
        await forget_erased()
        for event, case in late:
            await forget_expired(event, case)
        await self._follow(conn, changes, about)
        return by_event

    @staticmethod
    def phone_change(event: CloudEvent) -> hev.PhoneChangeVerified:
        """The change a `PhoneChangeVerified` carries; one that names no user
        or no number fails (the event is set aside)."""
        change = hev.PhoneChangeVerified.FromString(event.data)
        if not (change.user_id and change.old_phone and change.new_phone):
            raise ValueError(f"{event.id}: a PhoneChangeVerified lacks its user or a number")
        return change

    async def _follow(
        self,
        conn: psycopg.AsyncConnection[Any],
        changes: list[tuple[CloudEvent, hev.PhoneChangeVerified]],
        about: Callable[[CloudEvent], AbstractContextManager[Any]],
    ) -> None:
        """Follows the batch's phone changes, in the order they were verified
        (a user's two changes, A to B then B to C, may come from different
        partitions), except those written before their user's erasure
        (this batch's included, heard by now)."""
        if not changes:
            return
        erased = await store.erased_among(conn, {change.user_id for _, change in changes})
        # The numbers come sealed under the user's key (clear in changes
        # published before they were), revealed with one key look-up.
        revealed = await reveal_messages_async(self.personal, [c for _, c in changes])
        clear = [(event, found) for (event, _), found in zip(changes, revealed, strict=True)]
        for event, found in sorted(clear, key=lambda c: c[0].time):
            with about(event):
                change = self._readable(event, found)
                if change.user_id in erased:
                    when = erased[change.user_id]  # None: recorded before its time was kept
                    if when is None or event.time <= when:
                        log.info("phone_change.before_erasure", event_id=event.id)
                        continue
                if found.erased:
                    # The user's key is gone: their erasure is on its way.
                    log.info("phone_change.erased", event_id=event.id)
                    continue
                followed = await follow_phone_change(
                    conn, change.user_id, change.old_phone, change.new_phone, event.time
                )
                log.info("phone_change.followed", event_id=event.id, **dataclasses.asdict(followed))

    def forget(self, event: CloudEvent) -> str:
        """The person a `PersonErased` names, forgotten by this process's
        sealer at once: no key of theirs it holds is used again (for the
        rest of a batch either)."""
        person = PersonErased.FromString(event.data).person
        if not person:
            raise ValueError(f"{event.id}: a PersonErased names no person")
        self.personal.forget(person)
        return person

    async def erased_keys(self, key_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Those of these data keys that the key database records as erased.
        Asked of the database itself, not of this process's memory: a key
        held here may have been erased since, and this process hears of it
        only later (`forget`)."""
        if not key_ids:
            return set()
        store = self.personal.sealer.keys.store
        found = await asyncio.to_thread(store.find, sorted(key_ids))
        return {key_id for key_id in key_ids if key_id in found and found[key_id] is None}

    async def _plan(
        self,
        conn: psycopg.AsyncConnection[Any],
        decoded: list[tuple[CloudEvent, Message, Source]],
        now: datetime,
        about: Callable[[CloudEvent], AbstractContextManager[Any]],
    ) -> dict[str, list[uuid.UUID]]:
        """Plans the decoded case events (`plan_batch`)."""
        # Every personal field of the batch revealed with one key look-up.
        revealed = await reveal_messages_async(self.personal, [m for _, m, _ in decoded])
        # Each event in the clear, beside it as published (`CaseParties.key_of`).
        todo: list[tuple[CloudEvent, Message, Source, Message]] = []
        for (event, sealed, source), clear in zip(decoded, revealed, strict=True):
            with about(event):
                todo.append((event, self._readable(event, clear), source, sealed))
        cases = {source.case(event, message) for event, message, source, _ in todo} - {""}
        book = CaseParties(await store.lock_parties(conn, cases) if cases else {})
        at = Planning(now, self._zone, self.replies)
        jobs: list[store.NewJob] = []
        for event, message, source, sealed in todo:
            with about(event):
                book.at, book.sealed = event.time, sealed
                planned = source.plan(book, event, message, at)
                # What the batch planned before this event goes where it says
                # now, and is not asked any more if it took its case out of
                # waiting for an answer.
                jobs = book.unasked(book.follow(jobs)) + planned
        # An erased person is told nothing of what was written before their
        # erasure: not in a case the erasure blanked (whatever a later event
        # carries: contacts in clear, or read with a key this process still
        # held), not in a case first heard of since from events written
        # before it (a topic behind the privacy topic), nor by a one-time
        # code issued before it. A case they opened since is told as any.
        # Nor is anyone sent a copy of their words written before it (an
        # agent's reply read in clear: written before sealing, or with a key
        # this process still held), as their erasure leaves one planned
        # before it: not sent.
        erased = await store.erased_among(
            conn,
            (book.user_ids() | {j.user_id for j in jobs} | {j.words_of for j in jobs}) - {""},
        )
        if erased:
            issued = {event.id: event.time for event, _, _, _ in todo}
            first: dict[str, datetime] = {}
            for event, message, source, _ in todo:
                name = source.case(event, message)
                first[name] = min(first.get(name, event.time), event.time)

            def before_erasure(user: str, at: datetime | None) -> bool:
                when = erased[user]  # None: recorded before its time was kept
                return at is not None and (when is None or at <= when)

            # Nor at an address sealed under a key their erasure destroyed,
            # whenever it was written: this process read it with the key
            # still in memory (`erased_keys`).
            held = book.keys_of(erased) | {j.key_id for j in jobs if j.user_id in erased}
            dead = await self.erased_keys({key for key in held if key is not None})
            gone = (
                book.blanked_for(erased)
                | book.sealed_under(erased, dead)
                | {
                    (case, role)
                    for case, role, user in book.parties_of(erased)
                    if before_erasure(user, first.get(case))
                }
            )
            book.forget(gone)
            jobs = [
                job
                for job in jobs
                if not book.erased(job, gone)
                and job.key_id not in dead
                and not (
                    job.user_id in erased
                    and before_erasure(job.user_id, issued[job.cause_event_id])
                )
                and not (job.words_of in erased and before_erasure(job.words_of, job.written_at))
            ]
        await store.save_parties(conn, book.changed())
        # Before the batch's jobs are added: only jobs of earlier events follow.
        followed = await store.follow_contact_changes(conn, book.contact_changes())
        for _, channel in followed.cancelled:
            OUTCOMES.labels(channel, CANCELLED).inc()
        if followed.cancelled or followed.readdressed:
            log.info(
                "contacts.followed",
                cancelled=len(followed.cancelled),
                readdressed=followed.readdressed,
            )
        # What the cases the batch took out of waiting asked before it (not
        # the batch's own: a request after the answer stands).
        answered = await store.cancel_requests(
            conn, book.answered(), why="its case no longer waits for an answer"
        )
        for _, channel in answered:
            OUTCOMES.labels(channel, CANCELLED).inc()
        created = set(await store.add_jobs(conn, jobs, now))
        # Not to a number its user has since changed away from.
        users = book.user_ids() | {j.user_id for j in jobs} - {""}
        moved = await follow_numbers(conn, users, cases)
        if moved.parties or moved.jobs:
            log.info("phone_change.followed_later", **dataclasses.asdict(moved))
        newer = [j.id for j in jobs if j.template in SUPERSEDED_TEMPLATES and j.id in created]
        if newer:
            for _, channel in await store.cancel_superseded(conn, newer):
                OUTCOMES.labels(channel, CANCELLED).inc()
        # What an ended case still asked of its parties (the batch's own too).
        for _, channel in await store.cancel_requests(conn, book.ended()):
            OUTCOMES.labels(channel, CANCELLED).inc()
        by_event: dict[str, list[uuid.UUID]] = {}
        for job in jobs:
            if job.id in created:
                by_event.setdefault(job.cause_event_id, []).append(job.id)
        return by_event

    def _readable(self, event: CloudEvent, revealed: RevealedMessage[M]) -> M:
        """The message with its personal fields in the clear; an erased
        person's read `ERASED` (no address: nobody is told). A field that
        cannot be read is never planned with: a key this process cannot get
        yet (`UnknownDataKey`, `UnknownMasterKey`) pauses the consumer until
        it can (`NotYet`); an altered token fails the event, which is set
        aside."""
        if revealed.erased:
            log.info("event.erased_fields", event_id=event.id, fields=list(revealed.erased))
        for path, error in revealed.unreadable.items():
            log.error("event.unreadable_field", event_id=event.id, field=path, error=str(error))
            if isinstance(error, UnknownDataKey | UnknownMasterKey):
                raise NotYet(f"{event.id}: {path}: {error}") from error
            raise error
        return revealed.message

    async def plan(
        self,
        conn: psycopg.AsyncConnection[Any],
        event: CloudEvent,
        *,
        topic: str,
        partition: int,
        offset: int,
        now: datetime,
    ) -> list[uuid.UUID]:
        """Plans one event alone (`plan_batch`); returns its new job ids."""
        planned = await self.plan_batch(conn, [(event, Place(topic, partition, offset, 0))], now)
        return planned.get(event.id, [])

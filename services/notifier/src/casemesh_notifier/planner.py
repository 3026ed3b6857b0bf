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

Each message is revealed before it is planned (`reveal_message_async`): the
personal fields the owning service sealed (a ticket's subject, its
requester's contacts) are read in the clear, an erased person's as `ERASED`.
A field that cannot be revealed reads `UNREADABLE` and is logged; the event
is planned anyway (retrying would not make it readable).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from google.protobuf.message import Message

from casemesh.platform.consuming import NotYet, Place
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh.platform.personal import (
    AsyncSealer,
    UnknownDataKey,
    UnknownMasterKey,
    reveal_message_async,
)
from casemesh_notifier import store
from casemesh_notifier.cases import CaseParties, Planning
from casemesh_notifier.registry import MESSAGES, SOURCE_OF, Source

log = get_logger(__name__)


class Planner:
    def __init__(
        self,
        personal: AsyncSealer,
        consumer: str = "notifier",
        time_zone: str = "Asia/Shanghai",
        replies: bool = False,
    ) -> None:
        """`personal` reveals the events' personal fields; `replies`: whether
        ticket e-mails can be answered by e-mail (their signature says so, or
        that replies are not read)."""
        self._personal = personal
        self._consumer = consumer
        self._zone = ZoneInfo(time_zone)
        self._replies = replies

    async def plan_batch(
        self,
        conn: psycopg.AsyncConnection[Any],
        events: Sequence[tuple[CloudEvent, Place]],
        now: datetime,
    ) -> dict[str, list[uuid.UUID]]:
        """Plans the jobs for the events, in their order, in the caller's
        transaction; returns the new job ids by the id of the event that
        caused them (none for a redelivered or uninteresting event). The
        caller wakes the senders (`store.wake_senders`), once for the
        transaction."""
        first = await store.record_consumed(
            conn, self._consumer, [(event.id, place) for event, place in events]
        )
        todo: list[tuple[CloudEvent, Message, Source]] = []
        for event, _ in events:
            if event.id not in first:
                log.info("event.duplicate", event_id=event.id, type=event.type)
                continue
            first.discard(event.id)  # the same event twice in one batch is planned once
            cls = MESSAGES.get(event.type)
            if cls is None:
                log.info("event.ignored", event_id=event.id, type=event.type)
                continue
            message = await self._revealed(event, cls.FromString(event.data))
            todo.append((event, message, SOURCE_OF[cls]))
        if not todo:
            return {}
        cases = {source.case(event, message) for event, message, source in todo} - {""}
        book = CaseParties(await store.lock_parties(conn, cases) if cases else {})
        at = Planning(now, self._zone, self._replies)
        jobs = [job for e, m, source in todo for job in source.plan(book, e, m, at)]
        await store.save_parties(conn, book.changed())
        created = set(await store.add_jobs(conn, jobs, now))
        by_event: dict[str, list[uuid.UUID]] = {}
        for job in jobs:
            if job.id in created:
                by_event.setdefault(job.cause_event_id, []).append(job.id)
        return by_event

    async def _revealed(self, event: CloudEvent, message: Message) -> Message:
        """The message with its personal fields in the clear (one key look-up
        for all of them, none when its people's keys are in memory); an
        erased person's read `ERASED` (no address: nobody is told). A field
        that cannot be read is never planned with: a key this process cannot
        get yet (`UnknownDataKey`, `UnknownMasterKey`) pauses the consumer
        until it can (`NotYet`); an altered token fails the event, which is
        set aside."""
        revealed = await reveal_message_async(self._personal, message)
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

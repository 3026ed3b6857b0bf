"""Erasing a person: their data keys destroyed and the erasure recorded for
the topic, in one transaction of the key database.

The record is a row of `personal_erasures`, an outbox (`postgres.ERASURES`) whose rows
the privacy service publishes on casemesh.privacy.v1 as `PersonErased`; so
the keys are never gone without the services being told, nor the services
told of keys still there. A request id is answered once: a retry returns the
first erasure and adds no row (`erase_person`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.personal.postgres import ERASURES, erase_keys, lock_person

# Event ids of erasures, from their request ids.
_NAMESPACE = uuid.UUID("0c7f6d64-6f3a-4a43-9b1c-6a1f4e0f3a52")


class RequestReused(ValueError):
    """The request id was already used to erase another person."""


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure as recorded (and published)."""

    person: str
    erased_by: str
    reason: str
    erase_time: datetime
    # How many data keys of the person it destroyed (0: none was left).
    erased_keys: int
    # Whether this call made it (False: a retry answered with the first).
    new: bool = True

    def message(self) -> PersonErased:
        event = PersonErased(
            person=self.person,
            erased_by=self.erased_by,
            reason=self.reason,
            erased_keys=self.erased_keys,
        )
        event.erase_time.FromDatetime(self.erase_time)
        return event


def _reused(request_id: str) -> RequestReused:
    return RequestReused(
        f"request_id {request_id!r} was used for another erasure (another person, admin or reason)"
    )


def erase_person(
    pool: ConnectionPool[Any],
    *,
    request_id: str,
    person: str,
    erased_by: str,
    reason: str,
    now: datetime | Callable[[], datetime],
) -> Erasure:
    """Destroys every data key of `person` and records the erasure for the
    topic, at once; `RequestReused` if `request_id` was used for another
    erasure (of someone else, by another admin or for another reason).

    `now` is the erase time, or the clock to read it from (the privacy
    service's), which is read once the person's lock is held."""
    event_id = str(uuid.uuid5(_NAMESPACE, request_id))
    with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        lock_person(cur, person)
        cur.execute(
            "SELECT person, payload, created_at FROM personal_erasures WHERE event_id = %s",
            (event_id,),
        )
        earlier = cur.fetchone()
        if earlier is not None:
            first = PersonErased.FromString(bytes(earlier["payload"]))
            # A retry is the same erasure asked again: same person, admin and reason.
            if (earlier["person"], first.erased_by, first.reason) != (person, erased_by, reason):
                raise _reused(request_id)
            return Erasure(
                person,
                first.erased_by,
                first.reason,
                earlier["created_at"],
                first.erased_keys,
                new=False,
            )
        # Read under the person's lock, not before waiting for it: a key of
        # theirs made meanwhile, destroyed too, was made before the erase
        # time. (What a process still holding a key seals with it after
        # that time can still look newer than the erasure: readers that keep
        # what came after it as the person's anew go by the key too, as the
        # notifier does.)
        at = now() if callable(now) else now
        erasure = Erasure(person, erased_by, reason, at, erase_keys(cur, person))
        message = erasure.message()
        try:
            cur.execute(
                "INSERT INTO personal_erasures (event_id, person, ce_type, payload, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (event_id, person, ERASURES.type_of(message), message.SerializeToString(), at),
            )
        except psycopg.errors.UniqueViolation:
            # The same id at the same moment for someone else (each call held
            # its own person's lock): the other came first.
            raise _reused(request_id) from None
        cur.execute("SELECT pg_notify(%s, '')", (ERASURES.table,))
        return erasure

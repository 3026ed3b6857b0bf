"""A service hearing of erasures (casemesh.privacy.v1, `PersonErased`).

A case service's event store needs nothing: the erased person's fields there
are sealed with keys that are gone. Two things of its own still hold them in
the clear, and its `forget_person` mends both (`CaseApplication`'s, the
reports application's `forget_in_view`):

- the unwrapped keys this process keeps in memory (`DataKeys.forget`);
- its read model, which keeps the text agents list and search: the rows of
  the person's cases are rendered again, now with their fields erased.

The help centre and the evidence service forget what they keep in clear the
same way (their own `forget_person`).

`ErasureFollower` runs that for each erasure, beside the service's API, in
one consumer group per service (each erasure is handled once, and again
after a crash before its offset was committed: forgetting twice is
harmless), then once more a little later in a second group of the
service's (`again_group`), and every process of a service that holds keys
drops the person's keys on hearing it in a group of its own.

An erasure heard long after it was written (a group new or reset, or whose
offsets expired while the service was stopped: each reads the whole topic
again) is forgotten still, its rows rendered again, but drops no key: no
process holds one of the person's from before it by then, and dropping
them refuses the person for a while (`PERSON_ERASED_MEANWHILE`), who may
have come back since.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from casemesh import topics
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.caseindex import KEEP_REVEALED_S
from casemesh.platform.consuming import ConsumerThread, Later, NotYet, Place, Subscription
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh.platform.personal import PersonalDataError
from casemesh.platform.personal.settings import PersonalDataSettings

log = get_logger(__name__)

# When a service renders an erased person's rows a second time, at the least,
# and past what another replica may still reveal (`again_after`).
AGAIN_S = 30.0
DEFAULT_KEY_CACHE_S: float = PersonalDataSettings.model_fields["key_cache_seconds"].default


def erasure_group(service: str) -> str:
    """The consumer group in which `service` hears erasures."""
    return f"casemesh-{service}-erasures"


def again_group(service: str) -> str:
    """The consumer group in which `service` forgets each erased person a
    second time, a while after the first."""
    return f"{erasure_group(service)}-again"


class Hearing(Protocol):
    """The settings of a process that hears erasures."""

    service_name: str
    kafka_bootstrap: str


class ErasureFollower(ConsumerThread):
    """A worker (`serve_servicer`'s) that calls `forget(person)` (in a worker
    thread; none for a process that only reads) for each erased person, in
    the service's group, and again `again_after` seconds after the erasure
    came (a row another replica rendered meanwhile, with a key it still
    held, is rendered once more): by default past the longest that replica
    may hold the key (`key_cache_seconds`) or a case it created revealed
    (`KEEP_REVEALED_S`), so that nothing it writes after the second pass is
    in the clear. The second pass has a group of its own (`again_group`),
    whose offset passes an erasure only once it is done: a replica stopped
    or gone before then leaves it to the next one, not undone. Given
    `drop_keys`, the process also hears each erasure in a group of its own
    (new at each start, so it reads every erasure again: one written longer
    ago than a key may stay in memory is passed over) and drops the
    person's keys from its memory at once. For an erasure written that long
    ago, the service's groups call `forget_late` instead of `forget` (its
    rows rendered again, its keys left alone; `forget` itself if not given,
    for a service whose forgetting drops no key). The service's name
    (`cfg.service_name`) names it in logs and its groups."""

    def __init__(
        self,
        cfg: Hearing,
        forget: Callable[[str], int] | None,
        drop_keys: Callable[[str], None] | None = None,
        *,
        again_after: float | None = None,
        forget_at: Callable[[str, datetime], int] | None = None,
        forget_late: Callable[[str], int] | None = None,
    ) -> None:
        # A process that holds keys has the setting; one that does not, the
        # default of those that do. Past this after an erasure was written,
        # nothing of the person's is left in any process's memory.
        held = float(getattr(cfg, "key_cache_seconds", DEFAULT_KEY_CACHE_S))
        self._held_for = max(held, KEEP_REVEALED_S) + AGAIN_S
        if again_after is None:
            again_after = self._held_for
        super().__init__(f"{cfg.service_name}-erasures", cfg.kafka_bootstrap)
        self._service = cfg.service_name
        # `forget_at(person, erase_time)` instead of `forget`: for a service
        # that keeps what the person gives it after their erasure.
        if forget_at is None and forget is not None:
            forget_at = _untimed(forget)
        self._forget, self._drop_keys, self._again_after = forget_at, drop_keys, again_after
        self._forget_late = forget_at if forget_late is None else _untimed(forget_late)
        # When this process first read each erasure waiting for its second
        # pass (by where it sits): the wait is counted from then at the
        # latest, whatever time the record says it was written.
        self._first_read: dict[tuple[str, int, int], float] = {}

    def subscriptions(self) -> list[Subscription]:
        # The service's group, and this process's own.
        name, group = f"{self._service}-erasures", erasure_group(self._service)
        wanted = []
        if self._forget is not None:
            # Its lag measured: an erasure it cannot apply (a key it cannot
            # unwrap, a database refusing) holds it back, which an alert sees.
            wanted.append(Subscription(name, group, [topics.PRIVACY], self._handle, lag=True))
            # Its lag is not measured: it waits behind each erasure by design.
            again = Subscription(
                f"{name}-again", again_group(self._service), [topics.PRIVACY], self._again
            )
            wanted.append(again)
        if self._drop_keys is not None:
            mine = f"{group}.keys.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
            wanted.append(Subscription(f"{name}-keys", mine, [topics.PRIVACY], self._drop))
        return wanted

    async def _handle(self, event: CloudEvent, place: Place) -> None:
        erased = _erased(event)
        if erased is None:
            return
        person, at = erased
        cases = await self._forget_now(person, at, self._lately(place))
        log.info("person.forgotten", person=person, cases=cases)

    async def _again(self, event: CloudEvent, place: Place) -> None:
        """The second pass: read again (`Later`) until `again_after` has
        passed since the erasure was written to the topic, or since this
        process first read it (a clock ahead of ours waits no longer)."""
        erased = _erased(event)
        if erased is None:
            return
        where, now = (place.topic, place.partition, place.offset), time.time()
        # Those another replica took over meanwhile (a rebalance) go too.
        for stale in [w for w, t in self._first_read.items() if t < now - 2 * self._again_after]:
            del self._first_read[stale]
        first = self._first_read.setdefault(where, now)
        written = place.timestamp_ms / 1000 if place.timestamp_ms > 0 else first
        due = min(written, first) + self._again_after
        if now < due:
            raise Later(due - now)
        self._first_read.pop(where, None)
        person, at = erased
        # Lately or not as when first heard: the second pass of an erasure
        # heard lately drops their keys as the first did.
        cases = await self._forget_now(person, at, self._lately(place, first))
        log.info("person.forgotten_again", person=person, cases=cases)

    async def _forget_now(self, person: str, at: datetime, lately: bool = True) -> int:
        """Forgets the person (`forget`), or, for an erasure written long
        ago, renders their rows again without dropping a key (`forget_late`)."""
        forget = self._forget if lately else self._forget_late
        assert forget is not None  # subscribed only then
        try:
            return await asyncio.to_thread(forget, person, at)
        except PersonalDataError as exc:
            # A case this process cannot read (a master key missing from its
            # secret, a stored key or token altered): read the erasure again
            # until it can, never skip it, or the person's rows that were
            # rendered stay in the clear; the lag shows the wait.
            raise NotYet(repr(exc)) from exc

    async def _drop(self, event: CloudEvent, place: Place) -> None:
        """Drops the erased person's keys, for an erasure written lately: one
        written longer ago than this process may keep a key in memory (its
        group is new at each start, and reads every erasure there has been)
        has nothing of theirs left here to drop."""
        erased = _erased(event)
        if erased is not None and self._drop_keys is not None and self._lately(place):
            self._drop_keys(erased[0])

    def _lately(self, place: Place, heard: float | None = None) -> bool:
        """Whether the erasure at `place` was written lately when this
        process heard it (now, if not given): a process may still hold a
        key of the person's from before it, or a case it created revealed.
        One without a time counts as written then."""
        if heard is None:
            heard = time.time()
        written = place.timestamp_ms / 1000 if place.timestamp_ms > 0 else heard
        return heard - written <= self._held_for


def _erased(event: CloudEvent) -> tuple[str, datetime] | None:
    """Who was erased, and when (the erasure's time; the event's if unset)."""
    message = event.message_if(PersonErased)
    if not isinstance(message, PersonErased):
        return None
    at = message.erase_time.ToDatetime(UTC) if message.HasField("erase_time") else event.time
    return message.person, at


def _untimed(forget: Callable[[str], int]) -> Callable[[str, datetime], int]:
    def forgetting(person: str, at: datetime) -> int:
        return forget(person)

    return forgetting

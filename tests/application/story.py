"""What the application tests share: who acts, a clock they move, the
applications on the library's in-memory store, a reader of its keys
started afresh, and what a case recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pytest
from eventsourcing.application import Application

from casemesh.platform.errors import AlreadyExists
from casemesh.platform.identity import Identity
from casemesh.platform.personal import DataKeys, Sealer

T = TypeVar("T")

ALICE = Identity("alice", frozenset({"user"}))
BOB = Identity("bob", frozenset({"user"}))
AGENT = Identity("li", frozenset({"agent"}))


def in_memory() -> dict[str, str]:
    """The library's in-memory store, whatever the environment says."""
    return {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def afresh(sealer: Sealer) -> Sealer:
    """A sealer over the same key store with no key in memory: a process
    started afresh (a read model rebuilt, a relay)."""
    return Sealer(DataKeys(sealer.keys.store, sealer.keys.masters))


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) -> None:
        self.now_at = start

    def now(self) -> datetime:
        return self.now_at

    def now_is(self, moment: datetime) -> None:
        self.now_at = moment

    def advance(self, **delta: float) -> None:
        self.now_at += timedelta(**delta)


def reads_back(app: Application[Any], monkeypatch: pytest.MonkeyPatch) -> list[UUID]:
    """The ids of the aggregates `app`'s repository is asked for from now on
    (until `monkeypatch` undoes it), in order."""
    asked: list[UUID] = []
    get = app.repository.get

    def counted(ident: UUID, **kwargs: Any) -> Any:
        asked.append(ident)
        return get(ident, **kwargs)

    monkeypatch.setattr(app.repository, "get", counted)
    return asked


def events_of(app: Application[Any], ident: str | UUID) -> list[type[Any]]:
    """The classes of the events a case recorded, in order."""
    return [type(e) for e in app.repository.event_store.get(UUID(str(ident)))]


def last_event(app: Application[Any], ident: str | UUID) -> Any:
    """The latest event a case recorded (what a timer schedules from)."""
    return list(app.repository.event_store.get(UUID(str(ident))))[-1]


def sent_again(
    app: Application[Any], ident: str | UUID, change: Callable[[str, str], T]
) -> tuple[T, T]:
    """A change to a case under a request id sent twice, its first answer lost,
    then another change under the same id: `change(request_id, how)` makes it
    ("first") or the other ("other"). What the two sends answered; the case
    recorded one event, and the other change was refused naming the id."""
    before = events_of(app, ident)
    first = change("x1", "first")
    again = change("x1", "first")
    recorded = events_of(app, ident)
    assert len(recorded) == len(before) + 1
    with pytest.raises(AlreadyExists, match="request_id 'x1'") as refused:
        change("x1", "other")
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert events_of(app, ident) == recorded
    return first, again

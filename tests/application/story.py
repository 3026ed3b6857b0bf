"""What the application tests share: who acts, a clock they move, the
applications on the library's in-memory store, and what a case recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from casemesh.platform.identity import Identity

ALICE = Identity("alice", frozenset({"user"}))
BOB = Identity("bob", frozenset({"user"}))
AGENT = Identity("li", frozenset({"agent"}))


def in_memory() -> dict[str, str]:
    """The library's in-memory store, whatever the environment says."""
    return {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class FakeClock:
    def __init__(self, start: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) -> None:
        self.now_at = start

    def now(self) -> datetime:
        return self.now_at

    def now_is(self, moment: datetime) -> None:
        self.now_at = moment

    def advance(self, **delta: float) -> None:
        self.now_at += timedelta(**delta)


def events_of(app: Application[Any], ident: str | UUID) -> list[str]:
    """The names of the events a case recorded, in order."""
    return [type(e).__name__ for e in app.repository.event_store.get(UUID(str(ident)))]


def last_event(app: Application[Any], ident: str | UUID) -> Any:
    """The latest event a case recorded (what a timer schedules from)."""
    return list(app.repository.event_store.get(UUID(str(ident))))[-1]

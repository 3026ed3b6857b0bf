"""A case's history as the case services list it: one entry per stored event,
with what every entry tells (which event, who, when) and the service's own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class EventEntry:
    sequence: int  # the case's version right after the event
    type: str  # the public name of the event
    actor: str
    time: datetime


def entry_basics(domain_event: Any, public_names: dict[str, str], creator: str) -> dict[str, Any]:
    """An EventEntry's fields for `domain_event`; an event without an actor
    (the creation) is the act of the one in its attribute `creator`."""
    kind = type(domain_event).__name__
    attrs = vars(domain_event)
    return {
        "sequence": domain_event.originator_version,
        "type": public_names.get(kind, kind),
        "actor": attrs.get("actor") or attrs.get(creator, ""),
        "time": domain_event.timestamp,
    }

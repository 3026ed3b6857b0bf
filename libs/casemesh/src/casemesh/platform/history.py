"""What a case's stored event tells of itself (which version, who, when), as
the case services list it in a case's history (one entry per event, with the
service's own fields) and as the header of its public event carries it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from google.protobuf.timestamp_pb2 import Timestamp

from casemesh.platform.grpcutil import to_timestamp


@dataclass(frozen=True)
class EventEntry:
    sequence: int  # the case's version right after the event
    type: str  # the public name of the event
    actor: str
    time: datetime


class EntryBasics(TypedDict):
    sequence: int
    type: str
    actor: str
    time: datetime


def entry_basics(
    domain_event: Any, public_names: Mapping[type[Any], str], creator: str
) -> EntryBasics:
    """An EventEntry's fields for `domain_event` (`public_names`: the public
    name of each event class; `creator`: see `actor_of`)."""
    kind = type(domain_event)
    return EntryBasics(
        sequence=domain_event.originator_version,
        type=public_names.get(kind, kind.__name__),
        actor=actor_of(domain_event, creator),
        time=domain_event.timestamp,
    )


def actor_of(domain_event: Any, creator: str) -> str:
    """Who acted: the event's actor, or for the creation the one in its
    attribute `creator`."""
    attrs = vars(domain_event)
    actor: str = attrs.get("actor") or attrs.get(creator, "")
    return actor


class HeaderBasics(TypedDict):
    version: int
    actor: str
    time: Timestamp | None


def header_basics(domain_event: Any, creator: str) -> HeaderBasics:
    """A public event header's version, actor (`creator`: see `actor_of`) and time."""
    return HeaderBasics(
        version=domain_event.originator_version,
        actor=actor_of(domain_event, creator),
        time=to_timestamp(domain_event.timestamp),
    )


def carried(attributes: dict[str, Any], *names: str) -> dict[str, Any]:
    """The stored event's `names`, for the public message's fields of the same
    names (`ev.TicketCreated(header=…, **carried(vars(e), "subject", …))`)."""
    return {name: attributes[name] for name in names}

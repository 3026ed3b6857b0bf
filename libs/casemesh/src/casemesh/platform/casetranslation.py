"""The relay's translation as the case services with one aggregate (tickets,
appeals) make it: resources named after the service, and the header fields
every public event carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.history import actor_of
from casemesh.platform.relay import EventTranslator


def case_translator(
    service: str, public_names: dict[str, str], render: Callable[[Any, Any], Message]
) -> Callable[[Callable[[Any], Any]], EventTranslator]:
    """`Translator(after)`: the service's events as `<service>/{id}`, each
    rendered given `after(event)` (what `render` needs of the case right after it)."""

    def translator(after: Callable[[Any], Any]) -> EventTranslator:
        return EventTranslator(
            service=service,
            collection=service,
            public_names=public_names,
            render=render,
            after=after,
        )

    return translator


def header_basics(domain_event: Any, creator: str) -> dict[str, Any]:
    """An event header's version, actor (`creator`: see `actor_of`) and time."""
    return {
        "version": domain_event.originator_version,
        "actor": actor_of(domain_event, creator),
        "time": to_timestamp(domain_event.timestamp),
    }

"""CloudEvents in Kafka binary mode: the envelope every Casemesh event travels in.

Headers `ce_specversion`, `ce_id` (`<aggregate id>:<version>`, the dedupe key),
`ce_source`, `ce_type` (`casemesh.<service>.<Message>.v1`), `ce_subject`,
`ce_time`, `content-type`, plus `traceparent`. The value is the protobuf message.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from types import ModuleType

from google.protobuf.message import Message

from casemesh.events.v1 import (
    appeals_pb2,
    casequeue_pb2,
    helpcenter_pb2,
    notifications_pb2,
    privacy_pb2,
    reports_pb2,
    tickets_pb2,
)

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: bytes
    key: str
    # Trace context (`traceparent`, `tracestate`) of the action that caused it.
    trace_headers: tuple[tuple[str, str], ...] = ()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", self.id),
            ("ce_source", self.source),
            ("ce_type", self.type),
            ("ce_subject", self.subject),
            ("ce_time", self.time.isoformat()),
            ("content-type", CONTENT_TYPE),
            *self.trace_headers,
        ]
        return [(k, v.encode()) for k, v in headers]

    def message(self) -> Message:
        """The protobuf message the event carries, decoded as the class its
        `ce_type` names (`message_class`). A type no Casemesh service
        publishes raises EnvelopeError: consumers set such a record aside
        before any handler sees it."""
        cls = message_class(self.type)
        if cls is None:
            raise EnvelopeError(f"no Casemesh event has the type {self.type!r}")
        return cls.FromString(self.data)

    def message_if(self, *wanted: builtins.type[Message]) -> Message | None:
        """The message decoded only when its class is one of `wanted`, else
        None: a consumer decodes only what it acts on, so a message it
        ignores cannot fail it."""
        cls = message_class(self.type)
        return cls.FromString(self.data) if cls is not None and cls in wanted else None


class EnvelopeError(ValueError):
    pass


def parse(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> CloudEvent:
    h = {k: v.decode() for k, v in headers}
    missing = [n for n in ("ce_id", "ce_type", "ce_source", "ce_time") if n not in h]
    if missing or h.get("ce_specversion") != SPEC_VERSION:
        raise EnvelopeError(f"not a CloudEvents 1.0 binary-mode record (missing {missing})")
    trace = tuple((k, h[k]) for k in ("traceparent", "tracestate") if k in h)
    return CloudEvent(
        id=h["ce_id"],
        source=h["ce_source"],
        type=h["ce_type"],
        subject=h.get("ce_subject", ""),
        time=datetime.fromisoformat(h["ce_time"]),
        data=value,
        key=(key or b"").decode(),
        trace_headers=trace,
    )


# `casemesh.<service>.<Message>.v1`: the service names the proto file of the message.
_TYPE = re.compile(r"casemesh\.([a-z]+)\.([A-Za-z0-9]+)\.v1")
_MODULES: dict[str, ModuleType] = {
    "tickets": tickets_pb2,
    "appeals": appeals_pb2,
    "reports": reports_pb2,
    "casequeue": casequeue_pb2,
    "notifications": notifications_pb2,
    "helpcenter": helpcenter_pb2,
    "privacy": privacy_pb2,
}


def message_class(ce_type: str) -> type[Message] | None:
    """The protobuf message a `ce_type` names (`casemesh.tickets.TicketSolved.v1`:
    `TicketSolved` of `casemesh/events/v1/tickets.proto`); None for a type no
    Casemesh service publishes."""
    match = _TYPE.fullmatch(ce_type)
    module = _MODULES.get(match.group(1)) if match else None
    cls = getattr(module, match.group(2), None) if match and module else None
    return cls if isinstance(cls, type) and issubclass(cls, Message) else None


def type_of(message: type[Message] | Message) -> str:
    """The `ce_type` of a message of `casemesh.events.v1`, the inverse of
    `message_class`: `TicketSolved` of tickets.proto is
    `casemesh.tickets.TicketSolved.v1`."""
    descriptor = message.DESCRIPTOR
    service = PurePosixPath(descriptor.file.name).stem
    if _MODULES.get(service) is None or descriptor.file.package != "casemesh.events.v1":
        raise ValueError(f"{descriptor.full_name} is not an event message of casemesh.events.v1")
    return f"casemesh.{service}.{descriptor.name}.v1"

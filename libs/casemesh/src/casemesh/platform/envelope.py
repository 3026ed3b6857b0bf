"""CloudEvents in Kafka binary mode: the envelope every Casemesh event travels in.

Headers `ce_specversion`, `ce_id` (`<aggregate id>:<version>`, the dedupe key),
`ce_source`, `ce_type` (`casemesh.<service>.<Message>.v1`), `ce_subject`,
`ce_time`, `content-type`, plus `traceparent`. The value is the protobuf message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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

"""The field rules written in the protos (`buf.validate` annotations, with
Casemesh's own rules defined once in `casemesh/v1/field_rules.proto`), applied
by the protovalidate library and told to the caller in Casemesh's words.

A client can read the same annotations and check before it sends; the gateway
answers with the `google.rpc.BadRequest` field violations it always gave: the
field's path (`ticket.subject`) and a description. Casemesh's rules carry that
description in the proto (`message`); the library's standard rules are worded
here (`WORDING`). Each field is named once, for the first rule it breaks in the
order empty, too long, anything else, as the hand-written checks did.

Rules the annotations cannot express (a known category, an e-mail address and
the channels that need it) stay in `checks.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from protovalidate.internal.rules import Violation

from casemesh.platform.errors import Violations

# One validator per process: it compiles a message type's rules once, on first use.
_validator = protovalidate.Validator()  # type: ignore[no-untyped-call]


# Rules whose message the gateway words itself, as it always has: the library's
# standard rules, and a rule of ours whose message depends on its value.
WORDING: dict[str, Callable[[Any], str]] = {
    "required": lambda _: "is required",
    "string.max_len": lambda n: f"must be at most {n} characters",
    "string.in": lambda values: f"must be one of {', '.join(values)}",
    # casemesh.v1.resource: its message cannot name the collection the field gives
    "resource_name": lambda collection: f"must be {collection}/{{id}}",
}

# Which rule a field is named for when it breaks several.
_FIRST = {"required": 0, "not_blank": 0, "string.max_len": 1}


def warm(services: Iterable[ServiceDescriptor]) -> None:
    """Compiles the rules of every request these services take now, so that a rule
    the library cannot compile stops the gateway at start-up rather than failing
    a call, and the first calls do not wait for it."""
    for service in services:
        for method in service.methods:
            _validator.collect_violations(GetMessageClass(method.input_type)())


async def check_off_loop(request: Message, v: Violations) -> None:
    """`check` in a worker thread: the library evaluates its rules in Python (CEL),
    a few milliseconds a request and more for a large one, which would hold up
    every other call on the gateway's event loop."""
    await asyncio.to_thread(check, request, v)


def check(request: Message, v: Violations) -> None:
    """Adds a violation for each field of `request` that breaks an annotated rule."""
    try:
        broken = _validator.collect_violations(request)
    except (ValueError, OverflowError):
        # The library cannot read a timestamp outside the range protobuf allows
        # (years 1 to 9999); such a request is refused naming it instead.
        bad = list(_bad_timestamps(request, ""))
        if not bad:
            raise
        for path in bad:
            v.add(path, "is not a valid timestamp (years 1 to 9999)")
        return
    named: dict[str, tuple[int, str]] = {}
    for violation in broken:
        if _fits_trimmed(violation):
            continue
        path = _path(violation)
        rank = _FIRST.get(violation.proto.rule_id, 2)
        if path not in named or rank < named[path][0]:
            named[path] = (rank, _description(request, violation))
    for path, (_, description) in named.items():
        v.add(path, description)


def _fits_trimmed(violation: Violation) -> bool:
    """A text too long only by the spaces around it: the services keep it
    trimmed, so it is measured trimmed, as the checks always did."""
    value = violation.field_value
    return (
        violation.proto.rule_id == "string.max_len"
        and isinstance(value, str)
        and isinstance(violation.rule_value, int)
        and len(value.strip()) <= violation.rule_value
    )


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_FIRST_SECOND, _LAST_SECOND = -62_135_596_800, 253_402_300_799


def _bad_timestamps(message: Message, prefix: str) -> Iterator[str]:
    """The paths of the timestamps in `message` protobuf does not allow."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        items = value if field.is_repeated else [value]
        for i, item in enumerate(items):
            at = f"{path}[{i}]" if field.is_repeated else path
            if isinstance(item, Timestamp):
                if not _FIRST_SECOND <= item.seconds <= _LAST_SECOND or not (
                    0 <= item.nanos < 1_000_000_000
                ):
                    yield at
            else:
                yield from _bad_timestamps(item, f"{at}.")


def _path(violation: Violation) -> str:
    parts = []
    for element in violation.proto.field.elements:
        part = element.field_name
        if element.HasField("index"):
            part += f"[{element.index}]"
        parts.append(part)
    return ".".join(parts)


def _description(request: Message, violation: Violation) -> str:
    rule_id = violation.proto.rule_id
    if rule_id == "int32.gte_lte":
        bounds = _rules(request, violation).int32
        return f"must be from {bounds.gte} to {bounds.lte}"
    words = WORDING.get(rule_id)
    return words(violation.rule_value) if words else violation.proto.message


def _rules(request: Message, violation: Violation) -> validate_pb2.FieldRules:
    """The annotation of the field a violation names (for rules with two bounds,
    of which the violation carries one)."""
    descriptor: Any = request.DESCRIPTOR
    field: Any = None
    for element in violation.proto.field.elements:
        field = descriptor.fields_by_number[element.field_number]
        descriptor = field.message_type
    rules: validate_pb2.FieldRules = field.GetOptions().Extensions[validate_pb2.field]
    return rules

"""The field rules written in the protos (`buf.validate` annotations, with
Casemesh's own rules defined once in `casemesh/v1/field_rules.proto`), applied
by the protovalidate library (its native engine: microseconds for a request of
usual size; a large one is checked in a worker thread) and told to the caller
in Casemesh's words.

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
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from protobuf import Oneof
from protovalidate import FieldPathElementPb as FieldPathElement
from protovalidate import Violation

from casemesh.platform.errors import Violations
from casemesh.platform.personal.messages import token_paths
from casemesh.rules.tickets import SEALED_FORM
from casemesh.v1 import field_rules_pb2

# One validator per process: it compiles a message type's rules once, on first use.
_validator = protovalidate.Validator()


# Rules whose message the gateway words itself, as it always has, from the
# rule's value: the library's standard rules (the violation carries their value).
WORDING: dict[str, Callable[[Any], str]] = {
    "required": lambda _: "is required",
    "string.max_len": lambda n: f"must be at most {n} characters",
    "string.in": lambda values: f"must be one of {', '.join(values)}",
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


# A request larger than this is checked in a worker thread: thousands of
# repeated items take the library (and the timestamp walk) milliseconds, which
# would hold up every other call on the gateway's event loop.
OFF_LOOP_BYTES = 64 * 1024


async def check_async(request: Message, v: Violations) -> None:
    """`check`, on the event loop for a request of usual size, else in a thread."""
    if request.ByteSize() > OFF_LOOP_BYTES:
        await asyncio.to_thread(check, request, v)
    else:
        check(request, v)


def check(request: Message, v: Violations) -> None:
    """Adds a violation for each field of `request` that breaks an annotated rule,
    and for each timestamp outside the range protobuf allows (years 1 to 9999),
    which the library lets through."""
    named: dict[str, tuple[int, str]] = {}
    for violation in _validator.collect_violations(request):
        if _fits_trimmed(violation):
            continue
        path = _path(violation)
        rank = _FIRST.get(violation.proto.rule_id, 2)
        if path not in named or rank < named[path][0]:
            named[path] = (rank, _description(request, violation))
    for path, (_, description) in named.items():
        v.add(path, description)
    # No client has a token (the services reveal what they answer); one kept
    # in the clear would stall each consumer revealing its event.
    for path in token_paths(request):
        if path not in named:
            v.add(path, SEALED_FORM)
    if _may_hold_timestamps(request.DESCRIPTOR):
        for path in _bad_timestamps(request, ""):
            v.add(path, "is not a valid timestamp (years 1 to 9999)")


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


@functools.cache
def _may_hold_timestamps(descriptor: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can hold a timestamp, at any depth."""
    if descriptor.full_name == Timestamp.DESCRIPTOR.full_name:
        return True
    seen = seen | {descriptor.full_name}
    return any(
        f.message_type is not None
        and f.message_type.full_name not in seen
        and _may_hold_timestamps(f.message_type, seen)
        for f in descriptor.fields
    )


def _bad_timestamps(message: Message, prefix: str) -> Iterator[str]:
    """The paths of the timestamps in `message` protobuf does not allow."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if (
            field.message_type is None
            or field.message_type.GetOptions().map_entry
            or not _may_hold_timestamps(field.message_type)
        ):
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
    for element in _elements(violation):
        match element.subscript:
            case Oneof(field="index", value=index):
                parts.append(f"{element.field_name}[{index}]")
            case _:
                parts.append(element.field_name)
    return ".".join(parts)


def _elements(violation: Violation) -> list[FieldPathElement]:
    """The path, field by field, to the field a violation names."""
    path = violation.proto.field
    return path.elements if path is not None else []


def _description(request: Message, violation: Violation) -> str:
    rule_id = violation.proto.rule_id
    if rule_id == "int32.gte_lte":
        bounds = _rules(request, violation).int32
        return f"must be from {bounds.gte} to {bounds.lte}"
    # Rules of ours whose message depends on their value, which the library does
    # not give for such (predefined) rules: read from the field's annotation.
    if rule_id == "version":  # casemesh.v1.version: its value says what 0 means
        meaning = _rules(request, violation).int32.Extensions[field_rules_pb2.version]
        return f"must be a version number (0: {meaning})"
    if rule_id == "resource_name":  # casemesh.v1.resource: the collection it names
        collection = _rules(request, violation).string.Extensions[field_rules_pb2.resource]
        return f"must be {collection}/{{id}}"
    words = WORDING.get(rule_id)
    return words(violation.rule_value) if words else violation.proto.message


def _rules(request: Message, violation: Violation) -> validate_pb2.FieldRules:
    """The annotation of the field a violation names (for rules with two bounds,
    of which the violation carries one)."""
    descriptor: Any = request.DESCRIPTOR
    field: Any = None
    for element in _elements(violation):
        field = descriptor.fields_by_number[element.field_number]
        descriptor = field.message_type
    rules: validate_pb2.FieldRules = field.GetOptions().Extensions[validate_pb2.field]
    return rules

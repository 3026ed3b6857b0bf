"""Where a request that does not parse goes wrong. A client can send bytes that
are no message of the type a call takes (a string that is not UTF-8, a length
running past the end, a cut-off number); it hears which field, as with any
other bad input, instead of a parser's complaint about the whole message."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from casemesh.platform.errors import FieldViolation

_VARINT, _FIXED64, _LENGTH, _GROUP_START, _GROUP_END, _FIXED32 = range(6)
_PACKABLE_VARINTS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_ENUM,
}
# Deeper than any message of ours nests; the parser refuses deeper ones too.
_MAX_DEPTH = 64
# An enum's values are numbered with 32-bit signed integers.
_ENUM_LOWEST, _ENUM_PAST = -(2**31), 2**31
_ENUM_NUMBER = re.compile("-?[0-9]+")


class _Fault(Exception):
    def __init__(self, field: str, description: str) -> None:
        super().__init__(field, description)
        self.violation = FieldViolation(field, description)


def first_fault(descriptor: Any, data: bytes) -> FieldViolation:
    """The first thing wrong in `data` read as a message of `descriptor` (a
    message descriptor), by field path ("" when no field can be told)."""
    try:
        _read(descriptor, memoryview(data), "", 0)
    except _Fault as fault:
        return fault.violation
    # The parser refused something this reading does not look for.
    return FieldViolation("", f"is not a valid {descriptor.full_name} message")


def _varint(data: memoryview, pos: int, field: str) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _Fault(field, "is cut short: the message ends inside a number")


def _read(descriptor: Any, data: memoryview, prefix: str, depth: int) -> None:
    """Reads every field of one message; raises _Fault at the first fault."""
    if depth > _MAX_DEPTH:
        raise _Fault(prefix.rstrip("."), "is nested too deeply")
    seen: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos, prefix.rstrip("."))
        number, wire_type = tag >> 3, tag & 7
        field = descriptor.fields_by_number.get(number) if descriptor else None
        path = prefix.rstrip(".")
        if field is not None:
            path = f"{prefix}{field.name}"
            if field.is_repeated:
                path += f"[{seen.get(number, 0)}]"
                seen[number] = seen.get(number, 0) + 1
        if number == 0:
            raise _Fault(path, "holds a field numbered 0")
        if wire_type == _VARINT:
            _, pos = _varint(data, pos, path)
        elif wire_type in (_FIXED64, _FIXED32):
            pos += 8 if wire_type == _FIXED64 else 4
            if pos > len(data):
                raise _Fault(path, "is cut short: the message ends inside a number")
        elif wire_type == _LENGTH:
            length, pos = _varint(data, pos, path)
            if pos + length > len(data):
                raise _Fault(path, "runs past the end of the message")
            _read_value(field, data[pos : pos + length], path, depth)
            pos += length
        elif wire_type == _GROUP_START:
            pos = _skip_group(data, pos, number, path, depth)
        else:
            raise _Fault(path, f"is of wire type {wire_type}, which does not exist")


def _read_value(field: Any, value: memoryview, path: str, depth: int) -> None:
    if field is None:
        return
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            str(value, "utf-8")
        except UnicodeDecodeError:
            raise _Fault(path, "is not valid UTF-8") from None
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _read(field.message_type, value, f"{path}.", depth + 1)
    elif field.is_repeated and field.type in _PACKABLE_VARINTS:
        pos = 0
        while pos < len(value):
            _, pos = _varint(value, pos, path)


def _skip_group(data: memoryview, pos: int, number: int, path: str, depth: int) -> int:
    """Past the end of a group (an old encoding, kept only as unknown fields)."""
    while pos < len(data):
        tag, pos = _varint(data, pos, path)
        if tag & 7 == _GROUP_END:
            if tag >> 3 != number:
                raise _Fault(path, "ends a group it did not start")
            return pos
        if depth > _MAX_DEPTH:
            raise _Fault(path, "is nested too deeply")
        if tag & 7 == _GROUP_START:
            pos = _skip_group(data, pos, tag >> 3, path, depth + 1)
        elif tag & 7 == _VARINT:
            _, pos = _varint(data, pos, path)
        elif tag & 7 in (_FIXED64, _FIXED32):
            pos += 8 if tag & 7 == _FIXED64 else 4
        elif tag & 7 == _LENGTH:
            length, pos = _varint(data, pos, path)
            pos += length
        else:
            raise _Fault(path, f"is of wire type {tag & 7}, which does not exist")
        if pos > len(data):
            break
    raise _Fault(path, "runs past the end of the message")


def unknown_enum_names(descriptor: Any, value: object) -> list[FieldViolation]:
    """Each enum value in `value` (a request in proto JSON, as parsed by
    `json.loads`, read as a message of `descriptor`) given by a name the enum
    does not have, or by a number that is not a whole one of 32 bits. A parser
    that ignores unknown fields, as ours do, drops such a name without a word:
    a misspelt `PRIORITY_URGENTT` would leave the priority as it was, and a
    misspelt status filter list every case."""
    found: list[FieldViolation] = []
    _enum_names(descriptor, value, "", 0, found)
    return found


def _enum_names(
    descriptor: Any, value: object, prefix: str, depth: int, found: list[FieldViolation]
) -> None:
    # Well-known types have JSON forms of their own, with no enum of ours in them.
    if not isinstance(value, dict) or descriptor.full_name.startswith("google.protobuf."):
        return
    if depth > _MAX_DEPTH:
        return
    by_name = {f.json_name: f for f in descriptor.fields} | dict(descriptor.fields_by_name)
    for key, item in value.items():
        field = by_name.get(key)
        if field is None:
            continue  # unknown: ignored, as in the binary encoding
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            if isinstance(item, dict):
                for k, v in item.items():
                    _value(inner, v, f"{path}[{k}]", depth, found)
        elif field.is_repeated and isinstance(item, list):
            for i, v in enumerate(item):
                _value(field, v, f"{path}[{i}]", depth, found)
        else:
            _value(field, item, path, depth, found)


def _value(field: Any, item: object, path: str, depth: int, found: list[FieldViolation]) -> None:
    if field.enum_type is not None:
        if not _enum_item(field.enum_type, item):
            names = ", ".join(v.name for v in field.enum_type.values)
            found.append(FieldViolation(path, f"{_shown(item)} is not one of {names}"))
    elif field.message_type is not None:
        _enum_names(field.message_type, item, f"{path}.", depth + 1, found)


def _enum_item(enum: Any, item: object) -> bool:
    """Whether `item` may stand for a value of `enum`. The parser reads a
    JSON number with `int()`: `true` would be the value numbered 1, 3.9 the
    one numbered 3, -0.5 none at all (a priority kept as it was), and an
    infinite one (1e400) crashes it. It keeps the low 32 bits of a whole
    number past them: 4294967300 would be the value numbered 4. So a number
    must be a whole one of 32 bits; other kinds (an object, a list, null)
    are left to the parser, which refuses or ignores them as it does for any
    field."""
    if isinstance(item, str):
        return _enum_value(enum, item)
    if isinstance(item, bool):
        return False
    if isinstance(item, float):
        return math.isfinite(item) and item.is_integer() and _ENUM_LOWEST <= item < _ENUM_PAST
    if isinstance(item, int):
        return _ENUM_LOWEST <= item < _ENUM_PAST
    return True


def _shown(item: object) -> str:
    """A value the client sent, as it may have written it."""
    if isinstance(item, str):
        return repr(item[:60])
    return json.dumps(item)


def _enum_value(enum: Any, name: str) -> bool:
    """Whether proto JSON reads `name` as a value of `enum`: one of its names,
    or a number of 32 bits written as a string. Such a number is an optional
    minus and ASCII digits; `int()`, which the parser reads it with, would
    also take spaces around it, a plus, underscores and the digits of other
    scripts (" 1", "1_0", an Arabic-Indic five)."""
    if name in enum.values_by_name:
        return True
    if not _ENUM_NUMBER.fullmatch(name):
        return False
    try:
        return _ENUM_LOWEST <= int(name) < _ENUM_PAST
    except ValueError:  # more digits than int() reads
        return False

"""A batch's columns sent to PostgreSQL as arrays in binary form, for
statements that take a batch as one array a column (`unnest(%s::text[], …)`).

psycopg's own array dumping looks at every value's type to choose its
dumper: for the event store's appends and the notifier's planning it cost
more client time than the rest of each statement. A column here is built
once from values of one known type, each written as PostgreSQL's binary
protocol writes it, and handed over by a dumper that only names the type.

    await conn.execute(
        "SELECT * FROM unnest(%s::uuid[], %s::text[])",
        (uuids(ids), texts(names, conn.info.encoding)),
    )

`None` stands for NULL in the columns that take it (`texts`, `byteas`,
`timestamptzs`); `jsonbs` writes a None as JSON `null`.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from psycopg import adapters
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

BIGINT, INT = struct.Struct(">q"), struct.Struct(">i")
_NULL = INT.pack(-1)
_HEADER = struct.Struct(">iiIii")
# PostgreSQL counts time in microseconds from the start of 2000, UTC.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Column:
    """One column: its values, each already in PostgreSQL's binary form
    (None: NULL), as a one-dimensional array of the class's element type."""

    __slots__ = ("data",)
    array_oid: ClassVar[int]
    element_oid: ClassVar[int]

    def __init__(self, values: Iterable[bytes | None]) -> None:
        parts, count, nulls = [b""], 0, 0
        for value in values:
            count += 1
            if value is None:
                nulls = 1
                parts.append(_NULL)
            else:
                parts += (INT.pack(len(value)), value)
        # dimensions, whether any is NULL, element type; the dimension's length, lower bound
        parts[0] = _HEADER.pack(1, nulls, self.element_oid, count, 1)
        self.data = b"".join(parts)


class Uuids(Column):
    array_oid, element_oid = 2951, 2950


class Bigints(Column):
    array_oid, element_oid = 1016, 20


class Ints(Column):
    array_oid, element_oid = 1007, 23


class Texts(Column):
    array_oid, element_oid = 1009, 25


class Byteas(Column):
    array_oid, element_oid = 1001, 17


class Jsonbs(Column):
    array_oid, element_oid = 3807, 3802


class Timestamptzs(Column):
    array_oid, element_oid = 1185, 1184


def uuids(values: Iterable[uuid.UUID | str]) -> Uuids:
    return Uuids(v.bytes if isinstance(v, uuid.UUID) else uuid.UUID(v).bytes for v in values)


def bigints(values: Iterable[int]) -> Bigints:
    return Bigints(BIGINT.pack(v) for v in values)


def ints(values: Iterable[int]) -> Ints:
    return Ints(INT.pack(v) for v in values)


def texts(values: Iterable[str | None], encoding: str) -> Texts:
    """Text in the connection's encoding (`conn.info.encoding`), as the
    server expects text sent in binary form."""
    return Texts(None if v is None else v.encode(encoding) for v in values)


def byteas(values: Iterable[bytes | None]) -> Byteas:
    return Byteas(values)


def jsonbs(values: Iterable[Any]) -> Jsonbs:
    """Each value as JSON (the binary form: a version byte, then the text)."""
    return Jsonbs(b"\x01" + json.dumps(v).encode() for v in values)


def timestamptzs(values: Iterable[datetime | None]) -> Timestamptzs:
    """Moments with a time zone (a naive one is refused: it names no moment)."""

    def moment(value: datetime) -> bytes:
        if value.utcoffset() is None:
            raise ValueError(f"a moment without a time zone: {value!r}")
        return BIGINT.pack((value - _EPOCH) // _MICROSECOND)

    return Timestamptzs(None if v is None else moment(v) for v in values)


class _ColumnDumper(Dumper):
    format = Format.BINARY

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        assert issubclass(cls, Column)
        self.oid = cls.array_oid

    def dump(self, obj: Any) -> Buffer:
        data: bytes = obj.data
        return data


for _column in (Uuids, Bigints, Ints, Texts, Byteas, Jsonbs, Timestamptzs):
    adapters.register_dumper(_column, _ColumnDumper)

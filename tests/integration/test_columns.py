"""A batch's columns, written here in PostgreSQL's binary array form
(`casemesh.platform.columns`), reach the server as the values they were
made from: each kind, NULLs, empty columns and text beyond ASCII."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from casemesh.platform import columns


def test_every_kind_of_column_comes_back_as_it_went_in(dsn: str) -> None:
    given, spelled = uuid.uuid4(), str(uuid.uuid4())
    moments = [
        datetime(2026, 12, 6, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=8))),
    ]
    with psycopg.connect(dsn) as conn:
        encoding = conn.info.encoding
        rows = conn.execute(
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::int[], %s::text[],"
            " %s::bytea[], %s::jsonb[], %s::timestamptz[])",
            (
                columns.uuids([given, spelled]),
                columns.bigints([2**40, -1]),
                columns.ints([-(2**31), 7]),
                columns.texts(["票 Évènement ✓", None], encoding),
                columns.byteas([bytes(range(256)) * 100, b""]),
                columns.jsonbs([{"name": "张三", "n": 1}, []]),
                columns.timestamptzs([moments[0], None]),
            ),
        ).fetchall()
        blob, document = bytes(range(256)) * 100, {"name": "张三", "n": 1}
        first = (given, 2**40, -(2**31), "票 Évènement ✓", blob, document)
        assert rows == [(*first, moments[0]), (uuid.UUID(spelled), -1, 7, None, b"", [], None)]
        (back,) = conn.execute("SELECT %s::timestamptz[]", (columns.timestamptzs(moments),))
        assert back == (moments,)
        (empty,) = conn.execute("SELECT cardinality(%s::text[])", (columns.texts([], encoding),))
        assert empty == (0,)


def test_a_moment_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="without a time zone"):
        columns.timestamptzs([datetime(2026, 12, 6, 3, 4, 5)])

"""A service's tables made at start-up only when their statements changed.

Every service makes its tables at start-up with statements that do nothing
when there is nothing to do (`IF NOT EXISTS`). Not all of them are free
then: `CREATE INDEX IF NOT EXISTS` takes its table's SHARE lock before it
finds the index there, and `ALTER TABLE … IF NOT EXISTS` its ACCESS
EXCLUSIVE lock before it finds the column. Each waits for every transaction
open on the table, and every query after it waits behind it (for an ALTER,
reads too): a replica starting while a long transaction holds a table (a
report, a `pg_dump`) would stall the replicas serving.

So a service's statements run only when they are not those last run under
their name on that database: each name's fingerprint (a hash of the
statements' text) is kept in `casemesh_schema`, and a start whose
statements hash the same runs none of them. A release that changes a
statement (a new column or index) runs them all once, under the service's
advisory lock as before (and again at each start while it alternates with
another such release, in a rollout or a rollback). Steps that must run at
every start (data written by a replica of an older release during a
rollout, say) are not part of them.

An operator who drops an object by hand has it made again by deleting its
name's row (`DELETE FROM casemesh_schema WHERE name = …`) and restarting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresRecorder

from casemesh.platform.logging import get_logger

log = get_logger(__name__)

TABLE = "casemesh_schema"
_LIBRARY = f"eventsourcing {version('eventsourcing')}"

_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " name text PRIMARY KEY, fingerprint text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
_READ = f"SELECT fingerprint FROM {TABLE} WHERE name = %s"
_RECORD = (
    f"INSERT INTO {TABLE} (name, fingerprint) VALUES (%s, %s) ON CONFLICT (name)"
    " DO UPDATE SET fingerprint = EXCLUDED.fingerprint, applied_at = now()"
)


def fingerprint(statements: Sequence[str]) -> str:
    """The statements' hash: a change to any of them changes it."""
    digest = hashlib.sha256()
    for statement in statements:
        digest.update(statement.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


async def ensure(conn: psycopg.AsyncConnection[Any], name: str, statements: Sequence[str]) -> bool:
    """Runs `statements` in order on `conn` (autocommit) unless they are the
    ones last run under `name` there; returns whether they ran. Call under
    the service's schema lock, as the statements themselves were."""
    made = fingerprint(statements)
    try:
        row = await (await conn.execute(_READ, (name,))).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    if row is not None and row[0] == made:
        return False
    for statement in statements:
        await conn.execute(statement)
    await conn.execute(_CREATE)
    await conn.execute(_RECORD, (name, made))
    log.info("schema.applied", name=name)
    return True


def create_table(recorder: PostgresRecorder, make: Callable[[], None] | None = None) -> bool:
    """`make()` (by default `recorder.create_table()`: an eventsourcing
    recorder's tables, ours or the library's) unless the recorder's
    statements are those last run for its table on its database; returns
    whether they ran. Call under `schema_lock`."""
    table = getattr(recorder, "tracking_table_name", None) or getattr(
        recorder, "events_table_name", type(recorder).__name__
    )
    name = f"recorder:{table}"
    # The library's version and the recorder's class too: `create_table`
    # does more than run the statements (a tracking table's migration).
    kind = f"{_LIBRARY} {type(recorder).__module__}.{type(recorder).__qualname__}"
    with recorder.datastore.get_connection() as conn:
        made = fingerprint([kind, *(s.as_string(conn) for s in recorder.sql_create_statements)])
        try:
            row = conn.execute(_READ, (name,)).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
    if row is not None and row["fingerprint"] == made:
        # As `create_table` would after its statements (composite types).
        recorder.datastore.register_type_adapters()
        return False
    (make or recorder.create_table)()
    with recorder.datastore.get_connection() as conn:
        conn.execute(_CREATE)
        conn.execute(_RECORD, (name, made))
    log.info("schema.applied", name=name)
    return True

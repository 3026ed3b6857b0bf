"""The wrapped data keys in PostgreSQL: the `personal_keys` table of the
shared key database.

Like the broker, the key database (`casemesh_keys`) is shared infrastructure:
every service that seals or reveals personal data reaches it, and only
through this library, never with SQL of its own. It holds one row per data
key, wrapped by a master key (`masterkeys`); nothing in it is readable
without the master key secret.

A person's current key is unique by a partial unique index, so processes
that make a person's first key at the same moment all end up with one: the
first insert wins, the others' do nothing and they read the winner's.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from casemesh.platform.eventstore import schema_lock
from casemesh.platform.personal.keys import WrappedKey
from casemesh.platform.pools import POOL_WAIT_S, guard_pool

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS personal_keys ("
    " key_id uuid PRIMARY KEY,"
    " person text NOT NULL,"
    " current boolean NOT NULL DEFAULT true,"
    " master_id text NOT NULL,"
    " wrapped bytea NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS personal_keys_person ON personal_keys (person)",
    "CREATE UNIQUE INDEX IF NOT EXISTS personal_keys_current"
    " ON personal_keys (person) WHERE current",
    "CREATE INDEX IF NOT EXISTS personal_keys_master ON personal_keys (master_id)",
)

_COLUMNS = "key_id, person, master_id, wrapped"


def create_schema(database_url: str) -> None:
    """Creates the table and its indexes if need be; processes starting
    together take turns."""
    with schema_lock(database_url, "casemesh-personal-keys"):
        pool: ConnectionPool[Any] = ConnectionPool(
            database_url, min_size=1, max_size=1, kwargs={"autocommit": True}
        )
        with pool, pool.connection() as conn:
            for statement in SCHEMA:
                conn.execute(statement)


def open_pool(database_url: str, *, max_size: int = 4) -> ConnectionPool[Any]:
    """An opened autocommit pool on the key database, with the pools' guard
    (`casemesh.platform.pools`)."""
    pool: ConnectionPool[Any] = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True},
        timeout=POOL_WAIT_S,
        name="personal-keys",
    )
    guard_pool(pool)
    pool.open()
    return pool


def _row(row: dict[str, Any]) -> WrappedKey:
    return WrappedKey(row["key_id"], row["person"], row["master_id"], bytes(row["wrapped"]))


class PostgresKeyStore:
    """A KeyStore on the `personal_keys` table (see `create_schema`)."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool

    def current(self, person: str) -> WrappedKey | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys WHERE person = %s AND current", (person,)
            )
            row = cur.fetchone()
        return None if row is None else _row(row)

    def add_current(self, key: WrappedKey) -> WrappedKey:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO personal_keys (key_id, person, master_id, wrapped)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (person) WHERE current DO NOTHING",
                (key.key_id, key.person, key.master_id, key.wrapped),
            )
            if cur.rowcount == 1:
                return key
            # Another process made the person's key first: use theirs.
            cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys WHERE person = %s AND current",
                (key.person,),
            )
            row = cur.fetchone()
        if row is None:
            # Theirs was erased between our insert and our read: try again.
            return self.add_current(key)
        return _row(row)

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey]:
        if not key_ids:
            return {}
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys WHERE key_id = ANY(%s)", (list(key_ids),)
            )
            return {row["key_id"]: _row(row) for row in cur.fetchall()}

    def erase(self, person: str) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM personal_keys WHERE person = %s", (person,))
            return int(cur.rowcount)

    def wrapped_by_other_than(self, master_id: str, limit: int) -> list[WrappedKey]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys WHERE master_id <> %s"
                " ORDER BY key_id LIMIT %s",
                (master_id, limit),
            )
            return [_row(row) for row in cur.fetchall()]

    def replace_wrapping(self, old: WrappedKey, master_id: str, wrapped: bytes) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE personal_keys SET master_id = %s, wrapped = %s"
                " WHERE key_id = %s AND master_id = %s AND wrapped = %s",
                (master_id, wrapped, old.key_id, old.master_id, old.wrapped),
            )
            return bool(cur.rowcount == 1)

"""The wrapped data keys in PostgreSQL: the `personal_keys` table of the
shared key database.

Like the broker, the key database (`casemesh_keys`) is shared infrastructure:
every service that seals or reveals personal data reaches it, and only
through this library, never with SQL of its own. It holds one row per data
key, wrapped by a master key (`masterkeys`); nothing in it is readable
without the master key secret. Beside it, `personal_erasures` records each
erasure for the topic (`erasures`). The tables are made by `create_schema`,
run by operators (and the devstack) with DDL rights; services only read and
write rows.

An erased key keeps its row, without the key: `master_id` and `wrapped`
become NULL and `erased_at` is set. That record is how a token of an erased
person is told from one whose key was never here. A person has at most one
live (not erased) key: the current one, unique by a partial unique index.

Making a person's key and erasing the person take the same transaction-level
advisory lock on the person, so they never interleave: an erasure waits for a
key being made to be committed, and then destroys it too, and a key made
after an erasure is a new one. A person's key is read, or made if they have
none, in one statement (for a new key: lock, insert, commit), one round trip,
since a first ticket waits for it. (Without the lock, an erasure under READ
COMMITTED would not see a key another process had inserted but not yet
committed, and would miss it.)

Case keys (`keys.CASE_KEYS`) are rows of the same table, owned by
`#case/<key id>`: made in batches by one INSERT, destroyed like an erased
person's by `destroy_case_keys` (which touches no person's key), and moved
to a new master key with the rest.

Backups of the key database still hold the keys erased since they were
taken: how long backups are kept bounds how long an erased person's data can
still be read by someone holding both a backup and the master keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

import psycopg
from psycopg import Cursor
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from casemesh import topics
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.eventstore import schema_lock
from casemesh.platform.outbox import Outbox, outbox_schema
from casemesh.platform.personal.keys import CASE_KEYS, WrappedKey
from casemesh.platform.pools import POOL_WAIT_S, guard_pool

# Each erasure, recorded with it (`erasures.erase_person`) and published by
# the privacy service from this outbox.
ERASURES = Outbox(
    table="personal_erasures",
    topic=topics.PRIVACY,
    source="casemesh/privacy",
    subject_column="person",
    messages=(PersonErased,),
)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS personal_keys ("
    " key_id uuid PRIMARY KEY,"
    " person text NOT NULL,"
    " master_id text,"
    " wrapped bytea,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " erased_at timestamptz,"
    " CONSTRAINT personal_keys_wrapped_until_erased"
    " CHECK ((erased_at IS NULL) = (wrapped IS NOT NULL)"
    " AND (erased_at IS NULL) = (master_id IS NOT NULL)))",
    "CREATE UNIQUE INDEX IF NOT EXISTS personal_keys_current"
    " ON personal_keys (person) WHERE erased_at IS NULL",
    "CREATE INDEX IF NOT EXISTS personal_keys_master"
    " ON personal_keys (master_id) WHERE erased_at IS NULL",
    *(s for s in outbox_schema(ERASURES).split(";\n") if s),
)

_COLUMNS = "key_id, person, master_id, wrapped"

# How many times `add_current` asks, when another process's key keeps
# beating the one it makes.
_ATTEMPTS = 3

# The first key of the two-key advisory locks on a person (the second is a
# hash of the person); two-key locks never meet one-key ones (`schema_lock`).
_PERSON_LOCKS = 0x7064_6B31  # "pdk1"
# Takes that lock (parameters `locks`: _PERSON_LOCKS, and `person`) till the
# transaction ends.
_LOCK_PERSON = "pg_advisory_xact_lock(%(locks)s::int, hashtext(%(person)s))"


# The person's live key, or the one given made theirs: see `add_current`.
_CURRENT_OR_ADD = (
    f"WITH existing AS (SELECT {_COLUMNS} FROM personal_keys"
    "   WHERE person = %(person)s AND erased_at IS NULL),"
    " made AS (INSERT INTO personal_keys (key_id, person, master_id, wrapped)"
    "   SELECT %(key_id)s, %(person)s, %(master_id)s, %(wrapped)s"
    f"   FROM (SELECT {_LOCK_PERSON}) AS locked"
    "   WHERE NOT EXISTS (SELECT FROM existing)"
    "   ON CONFLICT (person) WHERE erased_at IS NULL DO NOTHING"
    f"   RETURNING {_COLUMNS})"
    " SELECT * FROM made UNION ALL SELECT * FROM existing"
)


def create_schema(database_url: str) -> None:
    """Creates the table and its indexes if need be; processes starting
    together take turns. Needs DDL rights: run by operators and the devstack,
    never by `open_sealer`."""
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


def lock_person(cur: Cursor[Any], person: str) -> None:
    """Held until the transaction ends: making a key of the person and
    erasing them take turns."""
    cur.execute(f"SELECT {_LOCK_PERSON}", {"locks": _PERSON_LOCKS, "person": person})


# Destroys the live keys the condition that follows chooses, keeping their
# records (the ids, marked erased).
_DESTROY = (
    "UPDATE personal_keys SET master_id = NULL, wrapped = NULL, erased_at = now()"
    " WHERE erased_at IS NULL AND "
)


def erase_keys(cur: Cursor[Any], person: str) -> int:
    """Destroys the person's live keys, keeping their records; the caller
    holds `lock_person`. Returns how many there were."""
    cur.execute(_DESTROY + "person = %s", (person,))
    return int(cur.rowcount)


class PostgresKeyStore:
    """A KeyStore on the `personal_keys` table (see `create_schema`)."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool

    def add_current(self, key: WrappedKey) -> WrappedKey:
        # One statement, its own transaction (one round trip): the person's
        # current key if they have one (no lock, no commit to flush); else
        # `key`, inserted under the person's lock, held until the commit, so
        # that an erasure of the person waits for it.
        params = {
            "locks": _PERSON_LOCKS,
            "key_id": key.key_id,
            "person": key.person,
            "master_id": key.master_id,
            "wrapped": key.wrapped,
        }
        for _ in range(_ATTEMPTS):
            try:
                with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    row = cur.execute(_CURRENT_OR_ADD, params).fetchone()
            except psycopg.errors.ReadOnlySqlTransaction:
                # A key database that only reads (a primary being demoted in a
                # failover): a person's key can still be read, none made.
                existing = self._current(key.person)
                if existing is None:
                    raise
                return existing
            if row is not None:
                return key if row["key_id"] == key.key_id else _row(row)
            # Another process's key, made after this statement began, won
            # (the unique index): the next one reads it, or, should it have
            # been erased meanwhile, makes ours.
        raise KeyChurn(f"the key of {key.person!r} was made and erased {_ATTEMPTS} times at once")

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey | None]:
        if not key_ids:
            return {}
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys WHERE key_id = ANY(%s)", (list(key_ids),)
            )
            return {
                row["key_id"]: None if row["wrapped"] is None else _row(row)
                for row in cur.fetchall()
            }

    def erase(self, person: str) -> int:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            lock_person(cur, person)
            return erase_keys(cur, person)

    def add_case_keys(self, keys: Collection[WrappedKey]) -> None:
        # No person's lock: a case key belongs to nobody an erasure names.
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO personal_keys (key_id, person, master_id, wrapped)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bytea[])",
                (
                    [k.key_id for k in keys],
                    [k.person for k in keys],
                    [k.master_id for k in keys],
                    [k.wrapped for k in keys],
                ),
            )

    def destroy_case_keys(self, key_ids: Collection[uuid.UUID]) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute(
                _DESTROY + "key_id = ANY(%s) AND starts_with(person, %s)",
                (list(key_ids), CASE_KEYS),
            )
            return int(cur.rowcount)

    def wrapped_by_other_than(
        self, master_id: str, limit: int, after: uuid.UUID | None = None
    ) -> list[WrappedKey]:
        # From `after` on, along the key ids' index: each batch starts where
        # the last ended, not at the first key (past every key already moved).
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys"
                " WHERE master_id <> %s AND erased_at IS NULL AND key_id > %s"
                " ORDER BY key_id LIMIT %s",
                (master_id, after or uuid.UUID(int=0), limit),
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

    def close(self) -> None:
        self.pool.close()

    def _current(self, person: str) -> WrappedKey | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM personal_keys WHERE person = %s AND erased_at IS NULL",
                (person,),
            ).fetchone()
        return None if row is None else _row(row)


class KeyChurn(RuntimeError):
    """A person's key kept being made and erased while this process made one."""

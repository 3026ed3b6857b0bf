"""Crypto-shredding: each person's personal data (contacts, what they wrote)
sealed with a key of their own, so that deleting their keys erases it from
every event store and topic that keeps events for ever.

- `sealing`: `Sealer.seal(text, person)` gives a `pd1.` token that travels
  where the text did; `Sealer.reveal(token)` is the one way back, giving the
  clear text, `ERASED` for an erased person, or text written before sealing
  unchanged; a token it cannot reveal raises a `PersonalDataError` (per item
  in the batch forms, `look_many` and `reveal_many`).
- `aio`: `AsyncSealer`, the same from asyncio code.
- `fields`: which fields of which domain events are personal, and whose
  (`PersonalFields`, `PersonalEvent`).
- `mapper`: `SealingMapper`, which stores those fields sealed and reveals
  them for the application (or, for the relay, leaves the tokens).
- `messages`: `reveal_message`, the one way a consumer reveals the personal
  fields of a protobuf event message.
- `keys`: each person's data keys, made on first need, cached in memory for
  a bounded time, erased together (`DataKeys.erase`), moved to a new master
  key (`DataKeys.rewrap`).
- `masterkeys`: the master keys (`CASEMESH_MASTER_KEYS`) that wrap the data keys.
- `postgres`: the wrapped keys in the shared key database (`casemesh_keys`),
  which every service reaches only through this package.
- `settings`: what a process needs to seal and reveal.
- `errors`: `PersonalDataError` and its kinds.

- `erasures`: erasing a person, recorded for casemesh.privacy.v1 in the same
  transaction (the privacy service's).

`open_sealer` puts them together for a process; the key database's tables are
made beforehand by `create_schema`, which operators and the devstack run
(services need no DDL rights).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from casemesh.platform.personal.aio import AsyncSealer
from casemesh.platform.personal.errors import (
    PersonalDataError,
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)
from casemesh.platform.personal.fields import PersonalEvent, PersonalFields
from casemesh.platform.personal.keys import DataKeys, KeyStore, MemoryKeyStore
from casemesh.platform.personal.mapper import SealingMapper
from casemesh.platform.personal.masterkeys import MasterKeys
from casemesh.platform.personal.messages import (
    RevealedMessage,
    reveal_message,
    reveal_message_async,
    reveal_messages_async,
)
from casemesh.platform.personal.postgres import PostgresKeyStore, create_schema, open_pool
from casemesh.platform.personal.sealing import (
    ERASED,
    PREFIX,
    UNREADABLE,
    Disclosure,
    Revealed,
    Sealer,
    case_key_of,
    is_erased,
    is_token,
    person_key_of,
)
from casemesh.platform.personal.settings import PersonalDataSettings
from casemesh.platform.pools import connect_at_start

__all__ = [
    "ERASED",
    "PREFIX",
    "UNREADABLE",
    "AsyncSealer",
    "DataKeys",
    "Disclosure",
    "KeyStore",
    "KeyTableMissing",
    "MasterKeys",
    "MemoryKeyStore",
    "PersonalDataError",
    "PersonalDataSettings",
    "PersonalEvent",
    "PersonalFields",
    "PostgresKeyStore",
    "Revealed",
    "RevealedMessage",
    "Sealer",
    "SealingMapper",
    "TokenRefused",
    "UnknownDataKey",
    "UnknownMasterKey",
    "WrappedKeyRefused",
    "case_key_of",
    "create_schema",
    "is_erased",
    "is_token",
    "open_key_pool",
    "open_sealer",
    "person_key_of",
    "reveal_message",
    "reveal_message_async",
    "reveal_messages_async",
]


def open_key_pool(
    database_url: str, tables: tuple[str, ...] = ("personal_keys",)
) -> ConnectionPool[Any]:
    """An opened pool on the shared key database, once it answers: a key
    database away at start-up is waited for (`connect_at_start`), not a
    reason to exit. A process on a key database without `tables` (made by
    `create_schema`) refuses to start, saying what to run, rather than
    failing every event it meets."""

    def has_tables(conn: psycopg.Connection[Any]) -> None:
        for table in tables:
            conn.execute(SQL("SELECT 1 FROM {} LIMIT 0").format(Identifier(table)))

    try:
        connect_at_start(database_url, has_tables, keys="personal-keys").close()
    except psycopg.errors.UndefinedTable as exc:
        raise KeyTableMissing(
            "the key database (CASEMESH_KEYS_DATABASE_URL) lacks a table"
            f" ({exc.diag.message_primary}):"
            " run `python -m casemesh.platform.personal schema` against it"
        ) from None
    return open_pool(database_url)


def open_sealer(settings: PersonalDataSettings) -> Sealer:
    """A sealer on the shared key database, whose table `create_schema` made.
    Close it when done (`with open_sealer(settings) as personal: ...`), or
    wrap it for asyncio code (`AsyncSealer`)."""
    store = PostgresKeyStore(open_key_pool(settings.keys_database_url))
    keys = DataKeys(store, settings.master_key_set(), cache_seconds=settings.key_cache_seconds)
    return Sealer(keys)


class KeyTableMissing(RuntimeError):
    """The key database has no key table: `create_schema` was never run on it."""

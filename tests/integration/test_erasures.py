"""Erasing a person in the key database: the keys go and the erasure is
recorded for casemesh.privacy.v1 in one transaction, once per request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.personal import ERASED, DataKeys, MasterKeys, PostgresKeyStore, Sealer
from casemesh.platform.personal.erasures import RequestReused, erase_person
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.platform.personal.postgres import create_schema, open_pool
from tests.conftest import Infra

WHEN = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


@pytest.fixture()
def keys_db(infra: Infra) -> str:
    name = f"keys_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    create_schema(dsn)
    return dsn


@pytest.fixture()
def pool(keys_db: str) -> Iterator[ConnectionPool[Any]]:
    pool = open_pool(keys_db)
    yield pool
    pool.close()


def recorded(dsn: str) -> list[tuple[str, str, PersonErased]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT person, ce_type, payload FROM personal_erasures ORDER BY id"
        ).fetchall()
    return [(person, ce_type, PersonErased.FromString(bytes(p))) for person, ce_type, p in rows]


def erase(pool: ConnectionPool[Any], request_id: str, person: str, when: datetime = WHEN) -> Any:
    return erase_person(
        pool,
        request_id=request_id,
        person=person,
        erased_by="admin-1",
        reason="PIPL-2026-0042",
        now=when,
    )


def test_an_erasure_destroys_the_keys_and_is_recorded_once_per_request(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    personal = Sealer(DataKeys(PostgresKeyStore(pool), MasterKeys.parse(f"m1:{new_master_key()}")))
    alices, bobs = personal.seal("alice@example.com", "alice"), personal.seal("bob@x.cn", "bob")

    first = erase(pool, "req-1", "alice")
    assert (first.person, first.erase_time, first.new) == ("alice", WHEN, True)
    # A retry, even later, is answered with the first erasure and records nothing.
    again = erase(pool, "req-1", "alice", when=WHEN.replace(hour=11))
    assert (again.erase_time, again.erased_by, again.reason, again.new) == (
        WHEN,
        "admin-1",
        "PIPL-2026-0042",
        False,
    )
    [(person, ce_type, message)] = recorded(keys_db)
    assert (person, ce_type) == ("alice", "casemesh.privacy.PersonErased.v1")
    assert (message.person, message.erased_by, message.reason) == (
        "alice",
        "admin-1",
        "PIPL-2026-0042",
    )
    assert message.erase_time.ToDatetime(tzinfo=UTC) == WHEN

    # A process that never held the keys reads Alice's text as erased, Bob's as it was.
    fresh = Sealer(DataKeys(PostgresKeyStore(pool), personal.keys.masters))
    assert fresh.reveal_many([alices, bobs]) == {alices: ERASED, bobs: "bob@x.cn"}


def test_a_request_id_used_for_one_person_cannot_erase_another(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    erase(pool, "req-2", "alice")
    with pytest.raises(RequestReused):
        erase(pool, "req-2", "bob")
    assert [person for person, _, _ in recorded(keys_db)] == ["alice"]


def test_a_person_erased_again_later_is_recorded_again(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    """What they wrote after the first erasure went under a new key: a new
    request erases that too, and is published again."""
    erase(pool, "req-3", "alice")
    assert erase(pool, "req-4", "alice").new
    assert [person for person, _, _ in recorded(keys_db)] == ["alice", "alice"]

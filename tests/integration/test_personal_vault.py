"""People's data keys in a real PostgreSQL key database: what erasure
leaves in the table, two processes making a person's first key at the same
moment, an erasure meeting a key being made, a process on the wrong key
database, a master key rotation done in place, and an erasure recorded for
casemesh.privacy.v1 with the keys' destruction, once per request."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.personal import (
    ERASED,
    UNREADABLE,
    DataKeys,
    KeyTableMissing,
    MasterKeys,
    PersonalDataSettings,
    PostgresKeyStore,
    Sealer,
    UnknownDataKey,
    case_key_of,
    open_sealer,
)
from casemesh.platform.personal.erasures import RequestReused, erase_person
from casemesh.platform.personal.keys import WrappedKey
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.platform.personal.postgres import create_schema, open_pool
from tests.conftest import Infra
from tests.support import wait_until

ALICE = "users/alice"

OLD = new_master_key()
NEW = new_master_key()


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


def rows(dsn: str, person: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT key_id, master_id, length(wrapped), erased_at IS NOT NULL"
            " FROM personal_keys WHERE person = %s ORDER BY created_at",
            (person,),
        ).fetchall()


def sealer(pool: ConnectionPool[Any], setting: str = f"m1:{NEW}") -> Sealer:
    return Sealer(DataKeys(PostgresKeyStore(pool), MasterKeys.parse(setting)))


def test_an_erasure_deletes_the_persons_keys_and_their_text_reads_as_erased(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    writer = sealer(pool)
    token = writer.seal("alice@example.com", ALICE)
    bobs = writer.seal("bob@example.com", "users/bob")
    # One key for Alice, stored wrapped (nonce, 32-byte key, tag), never in the clear.
    [(key_id, master_id, length, erased)] = rows(keys_db, ALICE)
    assert (master_id, length, erased) == ("m1", 12 + 32 + 16, False)

    assert writer.keys.erase(ALICE) == 1
    # The key is gone; the record that it was erased stays.
    assert rows(keys_db, ALICE) == [(key_id, None, None, True)]
    assert writer.keys.erase(ALICE) == 0

    # A process that never held the key, as a consumer reading from offset 0.
    reader = sealer(pool)
    assert reader.reveal_many([token, bobs]) == {token: ERASED, bobs: "bob@example.com"}


def test_destroying_a_cases_keys_leaves_records_and_the_persons_other_cases(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    writer = sealer(pool)
    case, other = uuid.uuid4(), uuid.uuid4()
    in_case = writer.seal("my video was stolen", ALICE, case)
    in_other = writer.seal("my account is locked", ALICE, other)
    case_key = case_key_of(in_case)
    assert case_key is not None
    with psycopg.connect(keys_db) as conn:
        made = conn.execute(
            "SELECT count(*) FROM personal_keys WHERE person LIKE '#case/%%'"
        ).fetchone()
    assert made == (128,)  # one batch for both cases

    [(alices_key, _, _, _)] = rows(keys_db, ALICE)
    # Given a person's key id among them, destroying case keys leaves it.
    assert writer.keys.destroy({case_key, alices_key}) == 1
    assert rows(keys_db, f"#case/{case_key}") == [(case_key, None, None, True)]
    # Alice's own key is live: only the case is erased.
    [(_, _, _, erased)] = rows(keys_db, ALICE)
    assert not erased
    reader = sealer(pool)
    assert reader.reveal_many([in_case, in_other]) == {
        in_case: ERASED,
        in_other: "my account is locked",
    }


def test_processes_starting_again_leave_the_one_table_with_its_indexes(keys_db: str) -> None:
    create_schema(keys_db)
    create_schema(keys_db)
    with psycopg.connect(keys_db) as conn:
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'personal_keys' ORDER BY 1"
        ).fetchall()
    assert [name for (name,) in indexes] == [
        "personal_keys_current",
        "personal_keys_master",
        "personal_keys_pkey",
    ]


def test_two_processes_making_a_persons_first_key_at_once_end_with_one(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    masters = MasterKeys.parse(f"m1:{NEW}")
    processes = [Sealer(DataKeys(PostgresKeyStore(pool), masters)) for _ in range(2)]
    tokens: dict[int, str] = {}
    gate_inserts(keys_db)

    def seal(n: int) -> None:
        tokens[n] = processes[n].seal(f"written by process {n}", ALICE)

    # The first is writing its key (the person's lock taken, the row not yet
    # written); the second, having found none, waits for the lock.
    at_the_gate(keys_db, [(lambda: seal(0), "gate"), (lambda: seal(1), "person")])
    assert len(rows(keys_db, ALICE)) == 1
    reader = sealer(pool)
    assert [reader.reveal(tokens[n]) for n in range(2)] == [
        "written by process 0",
        "written by process 1",
    ]
    # Both sealed with the one key: erasing it erases both.
    reader.keys.erase(ALICE)
    assert {sealer(pool).reveal(tokens[n]) for n in range(2)} == {ERASED}


def test_a_key_database_that_only_reads_still_gives_a_persons_key(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    """As a primary being demoted in a failover answers: a person who has a
    key is still sealed for; a new key cannot be made (an outage)."""
    masters = MasterKeys.parse(f"m1:{NEW}")
    token = Sealer(DataKeys(PostgresKeyStore(pool), masters)).seal("alice@example.com", ALICE)
    read_only = open_pool(make_conninfo(keys_db, options="-c default_transaction_read_only=on"))
    try:
        reading = Sealer(DataKeys(PostgresKeyStore(read_only), masters))
        again = reading.seal("alice@example.org", ALICE)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reading.seal("bob@example.com", "users/bob")
    finally:
        read_only.close()
    reader = sealer(pool)
    assert [reader.reveal(t) for t in (token, again)] == ["alice@example.com", "alice@example.org"]
    assert len(rows(keys_db, ALICE)) == 1 and rows(keys_db, "users/bob") == []


def test_after_a_rewrap_only_the_new_master_key_is_needed(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    before = sealer(pool, f"old:{OLD}")
    people = [f"users/{n}" for n in range(5)]
    tokens = {p: before.seal(f"{p}'s phone", p) for p in people}

    rotating = DataKeys(PostgresKeyStore(pool), MasterKeys.parse(f"new:{NEW},old:{OLD}"))
    done = rotating.rewrap(batch=2)
    assert (done.moved, done.left) == (5, 0)
    assert rotating.rewrap().moved == 0
    assert {row[1] for p in people for row in rows(keys_db, p)} == {"new"}

    after = sealer(pool, f"new:{NEW}")
    assert after.reveal_many(tokens.values()) == {t: f"{p}'s phone" for p, t in tokens.items()}


# A lock the test holds while a key's row is being inserted: the insert
# waits on it (a trigger), inside the statement that makes the key.
GATE = 0x6761_7465  # "gate"
# The first key of the person locks (casemesh.platform.personal.postgres).
PERSON_LOCKS = 0x7064_6B31


def gate_inserts(dsn: str) -> None:
    """Every insert into personal_keys waits, before its row is written, until
    the gate is free."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION wait_at_gate() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN PERFORM pg_advisory_lock({GATE}); PERFORM pg_advisory_unlock({GATE});"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER wait_at_gate BEFORE INSERT ON personal_keys"
            " FOR EACH ROW EXECUTE FUNCTION wait_at_gate()"
        )


def waiting_at(dsn: str, lock: str) -> bool:
    """Someone in this database waits for the gate (`gate`) or for a
    person's key lock (`person`), and for no other advisory lock."""
    where = {
        "gate": f"objsubid = 1 AND objid = {GATE}",
        "person": f"objsubid = 2 AND classid = {PERSON_LOCKS}",
    }[lock]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND {where}"
        ).fetchone()
    return bool(row and row[0])


def test_an_erasure_meeting_a_key_being_made_erases_it_too(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    masters = MasterKeys.parse(f"m1:{NEW}")
    maker = Sealer(DataKeys(PostgresKeyStore(pool), masters))
    eraser = DataKeys(PostgresKeyStore(pool), masters)
    gate_inserts(keys_db)
    tokens: list[str] = []
    erased: list[int] = []

    def seal() -> None:
        tokens.append(maker.seal("alice@example.com", ALICE))

    def erase() -> None:
        erased.append(eraser.erase(ALICE))

    # The key is being made (the person's lock taken, its row not yet
    # written); then the erasure comes, and waits for the person's lock.
    at_the_gate(keys_db, [(seal, "gate"), (erase, "person")])
    # The erasure waited for the key to be committed, then erased it.
    assert erased == [1]
    assert [row[3] for row in rows(keys_db, ALICE)] == [True]
    assert sealer(pool).reveal(tokens[0]) == ERASED


def at_the_gate(keys_db: str, steps: list[tuple[Callable[[], None], str]]) -> datetime:
    """With the gate closed (`gate_inserts`), starts each step in a thread of
    its own once the one before waits where it says (`waiting_at`); then
    opens the gate, and returns when all ended, none failing: the moment
    just before it opened."""
    failures: list[BaseException] = []
    threads = []
    with psycopg.connect(keys_db, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        for target, lock in steps:
            thread = threading.Thread(target=lambda t=target: _catching(t, failures))
            thread.start()
            threads.append(thread)
            wait_until(lambda at=lock: waiting_at(keys_db, at), timeout=10)
        opened = datetime.now(UTC)
        gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        for thread in threads:
            thread.join(timeout=30)
    assert not [t for t in threads if t.is_alive()] and failures == []
    return opened


def test_an_erasure_waiting_for_a_key_being_made_is_timed_after_it(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    """The erase time is read once the person's lock is held: a key made
    while the erasure waited for it is destroyed with the rest, and what
    was sealed under it must not look newer than the erasure (readers keep
    what was written after the erase time as the person's anew)."""
    maker = Sealer(DataKeys(PostgresKeyStore(pool), MasterKeys.parse(f"m1:{NEW}")))
    gate_inserts(keys_db)
    erasures: list[Any] = []

    def seal() -> None:
        maker.seal("alice@example.com", ALICE)

    def erase() -> None:
        erasures.append(
            erase_person(
                pool,
                request_id=f"erase-{uuid.uuid4()}",
                person=ALICE,
                erased_by="admin-1",
                reason="PIPL-2026-0042",
                now=lambda: datetime.now(UTC),
            )
        )

    opened = at_the_gate(keys_db, [(seal, "gate"), (erase, "person")])
    [erasure] = erasures
    assert erasure.erased_keys == 1
    assert erasure.erase_time > opened


def _catching(target: Callable[[], None], failures: list[BaseException]) -> None:
    try:
        target()
    except BaseException as exc:
        failures.append(exc)


def test_a_process_on_the_wrong_key_database_does_not_show_everything_as_erased(
    keys_db: str, pool: ConnectionPool[Any], infra: Infra
) -> None:
    token = sealer(pool).seal("alice@example.com", ALICE)
    other = f"keys_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(other)
    create_schema(infra.pg.dsn(other))
    with Sealer(
        DataKeys(PostgresKeyStore(open_pool(infra.pg.dsn(other))), MasterKeys.parse(f"m1:{NEW}"))
    ) as wrong:
        with pytest.raises(UnknownDataKey):
            wrong.reveal(token)
        assert wrong.reveal_many([token]) == {token: UNREADABLE}


def test_a_service_opens_a_sealer_without_making_tables_and_closes_it(infra: Infra) -> None:
    name = f"keys_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    settings = PersonalDataSettings(
        master_keys=f"m1:{NEW}",
        keys_database_url=infra.pg.dsn(name),
    )
    # Before the operator made the table: refused, saying what to run.
    with pytest.raises(KeyTableMissing, match=r"casemesh\.platform\.personal schema"):
        open_sealer(settings)
    with psycopg.connect(infra.pg.dsn(name)) as conn:
        assert conn.execute("SELECT to_regclass('personal_keys')").fetchone() == (None,)

    create_schema(infra.pg.dsn(name))
    with open_sealer(settings) as personal:
        pool = personal.keys.store.pool  # type: ignore[attr-defined]
        assert personal.reveal(personal.seal("x", ALICE)) == "x"
    assert pool.closed


def test_a_key_made_behind_a_rewrap_by_a_pod_on_the_old_secret_is_moved_by_the_next_run(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    """While the rewrap goes along the key ids, a pod still on the old
    secret makes a person's first key, its id below where the pass has got
    to: the pass counts it as left, and the next run moves it."""
    old_only = MasterKeys.parse(f"old:{OLD}")

    class MadeMeanwhile(PostgresKeyStore):
        reads = 0

        def wrapped_by_other_than(
            self, master_id: str, limit: int, after: uuid.UUID | None = None
        ) -> list[WrappedKey]:
            self.reads += 1
            if self.reads == 2:
                key_id = uuid.UUID(int=1)
                made_by, wrapped = old_only.wrap(os.urandom(32), key_id.bytes, ALICE)
                self.add_current(WrappedKey(key_id, ALICE, made_by, wrapped))
            return super().wrapped_by_other_than(master_id, limit, after)

    before = sealer(pool, f"old:{OLD}")
    for n in range(5):
        before.seal("hello", f"users/{n}")
    rotating = DataKeys(MadeMeanwhile(pool), MasterKeys.parse(f"new:{NEW},old:{OLD}"))
    first = rotating.rewrap(batch=2)
    assert first.moved == 5
    assert first.made_meanwhile.named == [(uuid.UUID(int=1), "old")] and first.left == 1
    second = rotating.rewrap(batch=2)
    assert (second.moved, second.left) == (1, 0)
    assert rows(keys_db, ALICE) == [(uuid.UUID(int=1), "new", 60, False)]


def operator(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Runs a key database command as an operator would, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "casemesh.platform.personal", *command],
        env={**os.environ, **{f"CASEMESH_{k.upper()}": v for k, v in env.items()}},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_operator_makes_the_table_then_rotates_the_master_key_with_two_commands(
    infra: Infra,
) -> None:
    name = f"keys_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    assert operator(["schema"], keys_database_url=dsn).returncode == 0
    made = operator(["new-master-key", "2027-01"])
    assert made.returncode == 0
    new = made.stdout.strip()
    assert new.startswith("2027-01:") and MasterKeys.parse(new).current_id == "2027-01"
    pool = open_pool(dsn)
    try:
        tokens = {p: sealer(pool, f"old:{OLD}").seal(f"{p}'s words", p) for p in ("a", "b")}

        bad = operator(["rewrap"], keys_database_url=dsn, master_keys="not-a-key")
        assert bad.returncode == 2 and "CASEMESH_MASTER_KEYS" in bad.stderr
        rotated = operator(["rewrap"], keys_database_url=dsn, master_keys=f"{new},old:{OLD}")
        assert rotated.returncode == 0, rotated.stderr
        assert "2 data keys now wrapped by 2027-01" in rotated.stdout

        # The old master key can go: the new one alone reveals everything.
        after = sealer(pool, new)
        assert after.reveal_many(tokens.values()) == {t: f"{p}'s words" for p, t in tokens.items()}
    finally:
        pool.close()


def test_a_rewrap_that_meets_a_key_it_cannot_unwrap_moves_the_rest_and_exits_1(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    """A data key wrapped by a master key the secret no longer holds (a
    missed earlier rotation) does not stop the command: every other key is
    moved, and it exits 1 naming the key left and why. Put back, the master
    key's keys move on the next run, which exits 0."""
    gone = new_master_key()
    tokens = {p: sealer(pool, f"old:{OLD}").seal(f"{p}'s words", p) for p in ("a", "b", "c")}
    sealer(pool, f"gone:{gone}").seal("lost", ALICE)
    [(alices, *_)] = rows(keys_db, ALICE)

    rotated = operator(["rewrap"], keys_database_url=keys_db, master_keys=f"new:{NEW},old:{OLD}")
    assert rotated.returncode == 1, rotated.stderr
    assert "3 data keys now wrapped by new" in rotated.stdout
    assert "Data keys still wrapped by a master key other than new: 1." in rotated.stderr
    assert "a master key CASEMESH_MASTER_KEYS does not hold (1)" in rotated.stderr
    assert f"{alices} (master key gone)" in rotated.stderr
    after = sealer(pool, f"new:{NEW}")
    assert after.reveal_many(tokens.values()) == {t: f"{p}'s words" for p, t in tokens.items()}

    again = operator(
        ["rewrap"], keys_database_url=keys_db, master_keys=f"new:{NEW},old:{OLD},gone:{gone}"
    )
    assert again.returncode == 0, again.stderr
    assert "1 data keys now wrapped by new" in again.stdout
    assert rows(keys_db, ALICE)[0][1] == "new"


# -- erasures recorded for casemesh.privacy.v1 ----------------------------

WHEN = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def recorded(dsn: str) -> list[tuple[str, str, PersonErased]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT person, ce_type, payload FROM personal_erasures ORDER BY id"
        ).fetchall()
    return [(person, ce_type, PersonErased.FromString(bytes(p))) for person, ce_type, p in rows]


def erase_as_admin(
    pool: ConnectionPool[Any], request_id: str, person: str, when: datetime = WHEN
) -> Any:
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

    first = erase_as_admin(pool, "req-1", "alice")
    assert (first.person, first.erase_time, first.erased_keys, first.new) == (
        "alice",
        WHEN,
        1,
        True,
    )
    # A retry, even later, is answered with the first erasure and records nothing.
    again = erase_as_admin(pool, "req-1", "alice", when=WHEN.replace(hour=11))
    assert (again.erase_time, again.erased_by, again.reason, again.erased_keys, again.new) == (
        WHEN,
        "admin-1",
        "PIPL-2026-0042",
        1,
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
    erase_as_admin(pool, "req-2", "alice")
    with pytest.raises(RequestReused):
        erase_as_admin(pool, "req-2", "bob")
    # Nor answer another admin, or the same one for another request, with it.
    for erased_by, reason in (("admin-2", "PIPL-2026-0042"), ("admin-1", "PIPL-2026-0043")):
        with pytest.raises(RequestReused):
            erase_person(
                pool,
                request_id="req-2",
                person="alice",
                erased_by=erased_by,
                reason=reason,
                now=WHEN,
            )
    assert [person for person, _, _ in recorded(keys_db)] == ["alice"]


def test_a_person_erased_again_later_is_recorded_again(
    keys_db: str, pool: ConnectionPool[Any]
) -> None:
    """What they wrote after the first erasure went under a new key: a new
    request erases that too, and is published again."""
    erase_as_admin(pool, "req-3", "alice")
    assert erase_as_admin(pool, "req-4", "alice").new
    assert [person for person, _, _ in recorded(keys_db)] == ["alice", "alice"]

"""Services make their tables at start-up only when the statements changed
(`casemesh.platform.schema`), on a real PostgreSQL: a replica starting while
a transaction holds every table of its database (a long write, a backup)
starts at once instead of queueing a lock behind it that would stall the
replicas serving."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from casemesh.platform import schema
from casemesh.platform.clock import SystemClock
from casemesh.platform.pools import async_pool
from casemesh.platform.timers import case_timer
from casemesh_appeals import policy as appeals_policy
from casemesh_appeals.application import open_appeals
from casemesh_casequeue import store as queue_store
from casemesh_evidence.application import EvidenceLocker
from casemesh_evidence.store import LocalBlobStore
from casemesh_helpcenter import phone
from casemesh_helpcenter import store as help_store
from casemesh_notifier.schema import create_schema as notifier_schema
from casemesh_reports.application import open_reports
from casemesh_reports.policy import Misuse, ReportsPolicy, load_taxonomy
from casemesh_tickets.application import open_tickets

# Long enough for a start on a busy machine; a start that waits for the
# transaction holding the tables waits for ever.
START_S = 60.0


async def test_statements_run_once_until_they_change(dsn: str) -> None:
    once = ["CREATE TABLE once_only (id int PRIMARY KEY)"]  # fails if run again
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await schema.ensure(conn, "it", once)
        assert not await schema.ensure(conn, "it", once)
        # Another name is another set of statements.
        assert await schema.ensure(conn, "other", ["CREATE TABLE other_only (id int)"])
        changed = [*once, "ALTER TABLE once_only ADD COLUMN IF NOT EXISTS note text"]
        with pytest.raises(psycopg.errors.DuplicateTable):
            await schema.ensure(conn, "it", changed)  # they all run again
        fixed = ["CREATE TABLE IF NOT EXISTS once_only (id int PRIMARY KEY)", *changed[1:]]
        assert await schema.ensure(conn, "it", fixed)
        assert not await schema.ensure(conn, "it", fixed)
        cur = await conn.execute(f"SELECT name FROM {schema.TABLE} ORDER BY name")
        assert await cur.fetchall() == [("it",), ("other",)]


@contextmanager
def every_table_held(dsn: str) -> Iterator[None]:
    """A transaction holding every table of the database in ROW EXCLUSIVE
    mode (as any write does) until the block ends."""
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        assert tables
        conn.execute(f"LOCK TABLE {', '.join(tables)} IN ROW EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def starts_while_held(dsn: str, start: Callable[[], object]) -> None:
    """`start` (a service's start-up) runs once, then again while every
    table is held, and must finish without waiting for the holder."""
    start()
    done = threading.Event()
    failed: list[BaseException] = []

    def again() -> None:
        try:
            start()
        except BaseException as exc:
            failed.append(exc)
        finally:
            done.set()

    with every_table_held(dsn):
        threading.Thread(target=again, daemon=True).start()
        started = done.wait(START_S)
    # Released now: a start that was waiting ends, and the test with it.
    done.wait(START_S)
    assert started, "the start waited for the transaction holding the tables"
    assert not failed, failed


def on_loop(make: Callable[[], Awaitable[object]]) -> Callable[[], object]:
    return lambda: asyncio.run(make())  # type: ignore[arg-type]


async def _notifier(dsn: str) -> None:
    await notifier_schema(dsn)


async def _evidence(dsn: str, root: Path) -> None:
    pool = async_pool(dsn, min_size=1, max_size=2)
    await pool.open()
    try:
        store = LocalBlobStore(root / "blobs")
        locker = EvidenceLocker(pool=pool, store=store, limits={}, incoming=root / "in")
        await locker.create_schema()
    finally:
        await pool.close()


async def _casequeue(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await queue_store.create_schema(conn)


async def _helpcenter(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await help_store.create_schema(conn, phone.SCHEMA)


def _tickets(dsn: str) -> None:
    app = open_tickets(dsn, pool_size=2)
    try:
        case_timer(app, dsn, "ticket_timers")
    finally:
        app.close()


def _appeals(dsn: str) -> None:
    app = open_appeals(dsn, clock=SystemClock(), policies=appeals_policy.load(), pool_size=2)
    app.close()


def _reports(dsn: str) -> None:
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=3, window_days=180, suspension_days=30),
    )
    app = open_reports(dsn, clock=SystemClock(), policy=policy, pool_size=2)
    app.close()


STARTS: dict[str, Callable[[str, Path], Callable[[], object]]] = {
    "notifier": lambda dsn, _: on_loop(lambda: _notifier(dsn)),
    "evidence": lambda dsn, root: on_loop(lambda: _evidence(dsn, root)),
    "casequeue": lambda dsn, _: on_loop(lambda: _casequeue(dsn)),
    "helpcenter": lambda dsn, _: on_loop(lambda: _helpcenter(dsn)),
    "tickets": lambda dsn, _: lambda: _tickets(dsn),
    "appeals": lambda dsn, _: lambda: _appeals(dsn),
    "reports": lambda dsn, _: lambda: _reports(dsn),
}


@pytest.mark.parametrize("service", sorted(STARTS))
def test_a_replica_starts_while_a_transaction_holds_every_table(
    service: str, dsn: str, tmp_path: Path
) -> None:
    starts_while_held(dsn, STARTS[service](dsn, tmp_path))


def test_tables_a_start_finds_missing_are_not_made_again_until_their_row_goes(dsn: str) -> None:
    """What an operator reads in the guide: an index dropped by hand comes
    back once its name's row is deleted."""
    _tickets(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX ticket_timers_due")
        _tickets(dsn)
        assert not _index_exists(conn, "ticket_timers_due")
        conn.execute(f"DELETE FROM {schema.TABLE} WHERE name = 'recorder:ticket_timers_tracking'")
        _tickets(dsn)
        assert _index_exists(conn, "ticket_timers_due")


def _index_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])

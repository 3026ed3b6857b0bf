"""Connection pools across a database restart, on a real PostgreSQL: a
connection the server dropped is never handed out, and a pool comes back by
itself once the database does."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from casemesh.platform.identity import Identity
from casemesh.platform.pools import (
    RECONNECT_EVERY_S,
    async_pool,
    guard_pool,
    is_database_outage,
    with_keepalives,
)
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_tickets.application import NewTicket, Tickets, open_tickets
from tests.conftest import Infra
from tests.support import wait_until


@pytest.fixture()
def database(infra: Infra) -> Iterator[str]:
    name = f"pools_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    yield name


def drop_connections(infra: Infra, dbname: str) -> None:
    """What a PostgreSQL restart does to every session of the database."""
    with psycopg.connect(infra.pg.dsn("postgres"), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )

        def gone() -> bool:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
            ).fetchone()
            return row == (0,)

        wait_until(gone, timeout=10)


def allow_connections(infra: Infra, dbname: str, allowed: bool) -> None:
    with psycopg.connect(infra.pg.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allowed).lower()}')


def test_after_a_restart_no_caller_gets_a_dropped_connection(infra: Infra, database: str) -> None:
    with ConnectionPool(
        infra.pg.dsn(database), min_size=4, max_size=4, kwargs={"autocommit": True}
    ) as pool:
        guard_pool(pool)
        pool.wait()
        drop_connections(infra, database)
        # Every idle connection of the pool is dead now; each caller still gets a live one.
        for _ in range(8):
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_without_the_guard_a_caller_meets_the_dropped_connection(
    infra: Infra, database: str
) -> None:
    # The failure the guard exists for (and the library's pre-ping avoided
    # at a round trip per use).
    with ConnectionPool(
        infra.pg.dsn(database), min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        pool.wait()
        drop_connections(infra, database)
        with pytest.raises(psycopg.OperationalError) as failure, pool.connection() as conn:
            conn.execute("SELECT 1")
        assert is_database_outage(failure.value)


def test_a_connection_given_back_listening_does_not_go_on_hearing_every_write(
    infra: Infra, database: str
) -> None:
    """As the event-store library's subscription leaves one when it stops
    (the relay's listens on a connection of its own): else every later
    write's NOTIFY would pile up in the process's
    memory (psycopg keeps those heard outside `notifies()`). The guard finds
    it has something to read, and replaces it."""
    dsn = infra.pg.dsn(database)
    with ConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        guard_pool(pool)
        with pool.connection() as conn:
            conn.execute("LISTEN casemesh_test")
        with psycopg.connect(dsn, autocommit=True) as writer:
            for n in range(50):
                writer.execute(f"NOTIFY casemesh_test, '{n}'")
        with pool.connection() as conn:
            conn.execute("SELECT 1")  # hears the 50, and is given back
        with pool.connection() as conn:
            assert conn.execute("SELECT pg_listening_channels()").fetchall() == []
            assert not conn._notifies_backlog


async def test_an_async_pool_rides_out_an_outage_and_comes_back_by_itself(
    infra: Infra, database: str
) -> None:
    pool = async_pool(infra.pg.dsn(database), min_size=2, max_size=2)
    await pool.open(wait=True)
    try:
        allow_connections(infra, database, False)
        drop_connections(infra, database)
        for _ in range(2):  # the first waits for a connection, the next is told at once
            with pytest.raises(Exception) as failure:
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1")
            assert is_database_outage(failure.value)
        allow_connections(infra, database, True)
        await pool.wait(timeout=30)  # reconnected in the background, nobody asked
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        allow_connections(infra, database, True)
        await pool.close()


def test_an_event_store_write_meets_an_outage_once_not_ten_times(
    infra: Infra, database: str
) -> None:
    """The event store retries a connection error ten times over (0.2 s
    apart); a pool that has no connection to give says so in a way it does
    not retry, so the caller hears UNAVAILABLE within its deadline."""
    app = open_tickets(infra.pg.dsn(database), pool_size=2)
    who = Identity("alice", frozenset({"user"}))
    try:
        app.create_ticket(who, new_ticket("before"))
        pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
        asked = 0
        guarded = pool.getconn

        def counting(timeout: float | None = None) -> Any:
            nonlocal asked
            asked += 1
            return guarded(timeout)

        pool.getconn = counting
        allow_connections(infra, database, False)
        drop_connections(infra, database)
        for _ in range(2):
            with pytest.raises(Exception) as failure:
                app.create_ticket(who, new_ticket("during"))
            assert is_database_outage(failure.value)
        assert asked == 2
        allow_connections(infra, database, True)
        wait_until(lambda: _created(app, who), timeout=30)
    finally:
        allow_connections(infra, database, True)
        app.close()


def new_ticket(request_id: str) -> NewTicket:
    return NewTicket(
        request_id=f"{request_id}-{uuid.uuid4().hex[:8]}",
        category="account.login",
        subject="无法登录",
        description="换了手机号",
        locale="zh-CN",
        contact={"email": "alice@example.com", "phone": "", "channels": ["EMAIL"]},
    )


def _created(app: Tickets, who: Identity) -> bool:
    try:
        app.create_ticket(who, new_ticket("after"))
    except Exception as exc:
        if is_database_outage(exc):
            return False
        raise
    return True


def test_while_the_database_is_away_a_pool_tries_again_every_few_seconds(
    infra: Infra, database: str
) -> None:
    # psycopg_pool alone doubles the pause each time (1, 2, 4, 8 s, …), so a
    # service would come back long after its database did.
    with ConnectionPool(
        infra.pg.dsn(database), min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        guard_pool(pool)
        pool.wait()
        pauses: list[float] = []
        steady = pool.schedule_task

        def recording(task: Any, delay: float) -> None:
            steady(task, delay)
            if getattr(task, "attempt", None) is not None:
                pauses.append(task.attempt.delay)

        pool.schedule_task = recording  # type: ignore[method-assign]
        try:
            allow_connections(infra, database, False)
            drop_connections(infra, database)
            with pytest.raises(Exception) as failure, pool.connection():
                pass
            assert is_database_outage(failure.value)
            wait_until(lambda: len(pauses) >= 4, timeout=60)
            assert max(pauses) <= RECONNECT_EVERY_S
        finally:
            allow_connections(infra, database, True)
        pool.wait(timeout=30)


async def test_while_the_database_is_away_an_async_pool_tries_again_every_few_seconds(
    infra: Infra, database: str
) -> None:
    pool = async_pool(infra.pg.dsn(database), min_size=1, max_size=1)
    await pool.open(wait=True)
    pauses: list[float] = []
    steady = pool.schedule_task

    async def recording(task: Any, delay: float) -> None:
        await steady(task, delay)
        if getattr(task, "attempt", None) is not None:
            pauses.append(task.attempt.delay)

    pool.schedule_task = recording  # type: ignore[method-assign]
    try:
        allow_connections(infra, database, False)
        drop_connections(infra, database)
        with pytest.raises(Exception) as failure:
            async with pool.connection():
                pass
        assert is_database_outage(failure.value)
        await asyncio.to_thread(wait_until, lambda: len(pauses) >= 4, 60)
        assert max(pauses) <= RECONNECT_EVERY_S
    finally:
        allow_connections(infra, database, True)
        await pool.close()


async def test_every_pooled_connection_gives_up_on_a_network_that_went_silent(
    infra: Infra, database: str
) -> None:
    """A primary's host powered off answers nothing: a statement sent to it
    must fail within seconds (then UNAVAILABLE, and the pool reconnects to
    the promoted standby), not wait out the kernel's retransmissions."""
    app = open_tickets(infra.pg.dsn(database), pool_size=1)
    pool = async_pool(infra.pg.dsn(database))
    await pool.open()
    try:
        with app.recorder.datastore.pool.connection() as conn:  # type: ignore[attr-defined]
            stored = conn.info.get_parameters()
        async with pool.connection() as aconn:
            direct = aconn.info.get_parameters()
    finally:
        await pool.close()
        app.close()
    for params in (stored, direct):
        assert params["tcp_user_timeout"] == "15000"
        assert params["keepalives"] == "1" and params["connect_timeout"] == "5"


def test_a_standby_at_the_address_is_a_database_away_not_one_to_read(
    tmp_path: Path,
) -> None:
    """In a failover the old primary, now a standby, may answer at the
    address for a moment: a pool, a relay's lock or a follower's LISTEN
    connected to it would read a few milliseconds behind the primary (a
    follower's batch short of its position, a case a version old). Every
    connection the platform makes refuses it, as a database away; one made
    without those limits reaches it and finds it in recovery."""
    standby = LocalPostgres(tmp_path / "pg", free_port())
    standby.start()
    standby.stop()
    signal = standby.data_dir / "standby.signal"
    signal.touch()
    owner = standby.data_dir.stat()
    os.chown(signal, owner.st_uid, owner.st_gid)
    standby.start()  # in recovery, answering reads (hot standby)
    try:
        with psycopg.connect(standby.dsn("postgres")) as plain:
            assert plain.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(with_keepalives(standby.dsn("postgres")))
        assert is_database_outage(refused.value)
        pool = ConnectionPool(
            standby.dsn("postgres"),
            min_size=1,
            open=False,
            timeout=1.0,
            kwargs={"autocommit": True},
        )
        guard_pool(pool)
        pool.open(wait=False)
        try:
            with pytest.raises(Exception) as away, pool.connection():
                pass
            assert is_database_outage(away.value)
        finally:
            pool.close()
    finally:
        standby.stop()

"""Connection pools that never hand out a connection the server has dropped,
without a round trip on every use.

When PostgreSQL restarts, or ends a backend for any other reason, the client
gets a termination message or a closed socket. So an idle pooled connection
that was dropped has something to read, while a healthy idle one has
nothing: one non-blocking `poll` of its socket tells them apart, with no
round trip. The pools make that check each time they hand out a connection;
on the first dropped one they also check every other idle connection once
(after an outage they are all dropped), so no caller meets the rest.

A connection whose network path died silently (no message, no close) is
still found by TCP keepalives or by its next query, which fails with
`OperationalError`: the gRPC layer turns that into UNAVAILABLE
(`is_database_outage`), never UNKNOWN, and the pool replaces it.
"""

from __future__ import annotations

import asyncio
import select
import threading
from typing import Any

import psycopg
from eventsourcing import persistence
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from casemesh.platform.logging import get_logger

log = get_logger(__name__)

# Errors that mean "the database is not there right now", not "the request is wrong".
DATABASE_OUTAGE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    persistence.OperationalError,
    persistence.InterfaceError,
)


def is_database_outage(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_OUTAGE)


def dropped(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True for a connection that is closed or that the server has dropped."""
    if conn.closed or conn.broken:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    # An idle connection has nothing to read unless the server sent a
    # termination message or closed it.
    return bool(poller.poll(0))


def guard_pool(pool: ConnectionPool[Any]) -> None:
    """Gives a pool the cheap check. Also for pools a library builds itself
    (eventsourcing's datastore), which take no `check` argument from us."""
    sweeping = threading.Lock()

    def sweep() -> None:
        with sweeping:
            pool.check()

    def check(conn: psycopg.Connection[Any]) -> None:
        if dropped(conn):
            conn.close()
            log.warning("database.connection_dropped", pool=pool.name)
            if not sweeping.locked():
                threading.Thread(target=sweep, name=f"{pool.name}-sweep", daemon=True).start()
            raise psycopg.OperationalError("the server dropped the connection")

    pool._check = check  # where the pool keeps its `check` argument


def async_pool(conninfo: str, *, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool[Any]:
    """An unopened autocommit pool with the cheap check, for the services that
    talk to PostgreSQL directly."""
    sweeps: set[asyncio.Task[None]] = set()

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        if dropped(conn):
            await conn.close()
            log.warning("database.connection_dropped", pool=pool.name)
            if not sweeps:
                task = asyncio.create_task(pool.check())
                sweeps.add(task)
                task.add_done_callback(sweeps.discard)
            raise psycopg.OperationalError("the server dropped the connection")

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True},
        check=check,
        # A caller waits no longer than a client would for an answer: during
        # an outage it gets UNAVAILABLE soon, and the pool keeps reconnecting.
        timeout=10.0,
        reconnect_timeout=float("inf"),
    )
    return pool

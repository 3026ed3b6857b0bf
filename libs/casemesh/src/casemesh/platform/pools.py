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
still found by TCP keepalives or by its next query, which fails
(`NETWORK_LIMITS`) with
`OperationalError`: the gRPC layer turns that into UNAVAILABLE
(`is_database_outage`), never UNKNOWN, and the pool replaces it.
"""

from __future__ import annotations

import asyncio
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import psycopg
from eventsourcing import persistence
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from casemesh.platform.logging import get_logger

log = get_logger(__name__)


class DatabaseUnavailable(Exception):
    """No pooled connection could be had: the database is away. On purpose not
    a psycopg or eventsourcing error: the event store retries those ten times
    over, so a caller would wait past its deadline (DEADLINE_EXCEEDED) where
    it should hear UNAVAILABLE at once and retry."""


# Errors that mean "the database is not there right now", not "the request is wrong".
DATABASE_OUTAGE: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    persistence.OperationalError,
    persistence.InterfaceError,
    # A primary just demoted in a failover, still reached by a pooled connection.
    psycopg.errors.ReadOnlySqlTransaction,
)


# Every connection's limits on a network that fails without a word (a host
# powered off, a path black-holed, a failover to another address): an idle
# one is probed (keepalives), and one whose sent bytes go unacknowledged for
# 15 s is given up (`tcp_user_timeout`) rather than after the kernel's ~15
# minutes of retransmissions, during which a pool would hand it out, and its
# caller, and every writer queued behind it, would wait. Waiting on the
# server's answer to a long statement is not bounded by it.
# And only a primary is connected to: a standby (a primary demoted in a
# failover, still at the address for a moment) is refused as a database away,
# never read from: a few milliseconds behind, it would hand a follower a batch
# short of the position another connection read, or a writer a case a
# version old.
NETWORK_LIMITS: dict[str, int | str] = {
    "keepalives": 1,
    "keepalives_idle": 20,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
    "connect_timeout": 5,
    "target_session_attrs": "primary",
}


# What every pooled connection is opened with besides. A statement is
# prepared on the server only where its code asks (`prepare=True`: the event
# store's own, on tables and functions whose results keep their shape),
# never by itself, as psycopg would on a statement's fifth run: a prepared
# `SELECT *` of a table another release's schema step adds a column to (in a
# rolling deploy) fails, "cached plan must not change result type", on that
# connection for as long as it lives. (None would turn off the event store's
# preparing too; a threshold no statement reaches leaves it on.) Every other
# statement is parsed and planned at each run.
POOLED: dict[str, Any] = {"prepare_threshold": sys.maxsize}


def with_keepalives(conninfo: str) -> str:
    """For a connection held open for long (locks, LISTEN): one the network
    dropped, and the session's locks with it, is noticed within a minute."""
    return make_conninfo(conninfo, **NETWORK_LIMITS)


# The longest pause between a starting process's tries to reach its database.
MOST_START_BACKOFF_S = 30.0
# What the server answers a password (or login) it refuses: a database URL that
# will not work however long it is tried (a database not made yet is waited for).
REFUSED_SETTINGS = frozenset({"28P01", "28000"})


def refused_for_good(exc: BaseException) -> bool:
    """Whether the server refused the URL's password: by its code, or, for a
    refusal at connection (which carries none), by libpq's words. A role or
    database not made yet (an operator's managed roles lag the cluster) is
    waited for."""
    if getattr(exc, "sqlstate", None) in REFUSED_SETTINGS:
        return True
    return "password authentication failed" in str(exc)


def connect_at_start(
    database_url: str, check: Callable[[psycopg.Connection[Any]], None], **what: str
) -> psycopg.Connection[Any]:
    """A connection to `database_url` on which `check` succeeded, however long
    that takes: for a process starting, before anything is served (readiness
    stays false). A database away then (down, restarting, not yet made, a
    black-holed address) is waited out, each failed try logged with `what`
    and the next one after a pause doubling up to `MOST_START_BACKOFF_S`,
    never a reason to exit (a process that exits restarts only after the
    orchestrator's own back-off, minutes after the database is back). A
    password the server refuses is raised: a setting to mend, not to wait
    out. Any other error of `check` is raised too."""
    delay = 1.0
    while True:
        conn = None
        try:
            # Each try bounded (`connect_timeout`, and the keepalives once connected).
            conn = psycopg.connect(with_keepalives(database_url), autocommit=True)
            check(conn)
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if not isinstance(exc, DATABASE_OUTAGE) or refused_for_good(exc):
                raise
            log.error("database.unreachable", **what, error=str(exc), retry_in=delay)
        time.sleep(delay)
        delay = min(delay * 2, MOST_START_BACKOFF_S)


def wait_for_database(database_url: str, **what: str) -> None:
    """Returns once `database_url` takes a connection, waiting as
    `connect_at_start` does: for a process starting, before it connects its
    own way."""
    connect_at_start(database_url, lambda conn: None, **what).close()


# How long a caller waits for a pooled connection. The services' worker
# threads are fewer than their pools' connections, so a caller that waits at
# all finds the database away; a second is the most it should wait to hear so.
POOL_WAIT_S = 1.0

# The longest pause between a pool's attempts to reconnect while the database
# is away. psycopg_pool doubles it without bound: after a minute's outage the
# next attempt could come half a minute after the database is back.
RECONNECT_EVERY_S = 2.0


def is_database_outage(exc: BaseException) -> bool:
    """One of DATABASE_OUTAGE, or the event-store library's wording of a
    read-only transaction (its InternalError, raised from psycopg's)."""
    return isinstance(exc, DATABASE_OUTAGE) or (
        isinstance(exc, persistence.InternalError)
        and isinstance(exc.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    )


def dropped(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True for a connection that is closed or that the server has dropped."""
    if conn.closed or conn.broken:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    # An idle connection has nothing to read unless the server sent a
    # termination message or closed it.
    return bool(poller.poll(0))


# While the database is known to be away (a caller already waited for a
# connection in vain), callers wait at most this long before they get
# UNAVAILABLE, instead of each one the pool's whole timeout: a queue of calls
# each waiting in a worker thread would outlast its callers' deadlines. Not
# zero: tried in the fault drills, the tickets service then got no connection
# from its pool after PostgreSQL came back.
OUTAGE_WAIT_S = 0.1


class _Outage:
    """Whether the last wait for a connection timed out: set by a timeout,
    cleared by the next connection handed out."""

    def __init__(self) -> None:
        self.since: float | None = None

    def wait_for(self, timeout: float) -> float:
        return timeout if self.since is None else min(timeout, OUTAGE_WAIT_S)

    def began(self, pool: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.error("database.unavailable", pool=pool)

    def ended(self, pool: str) -> None:
        if self.since is not None:
            away = round(time.monotonic() - self.since, 1)
            log.info("database.available", pool=pool, after_s=away)
            self.since = None


def _capped(task: Any, delay: float) -> float:
    attempt = getattr(task, "attempt", None)  # a reconnection's backoff state
    if attempt is not None and delay > RECONNECT_EVERY_S:
        attempt.delay = delay = RECONNECT_EVERY_S
    return delay


def guard_pool(pool: ConnectionPool[Any]) -> None:
    """Gives a pool the cheap check, and makes it answer at once while the
    database is away (DatabaseUnavailable, which no library retries). Also
    for pools a library builds itself (eventsourcing's datastore), which take
    no `check` argument from us."""
    sweeping = threading.Lock()
    outage = _Outage()
    getconn = pool.getconn

    def getconn_or_fail_fast(timeout: float | None = None) -> Any:
        try:
            conn = getconn(outage.wait_for(pool.timeout if timeout is None else timeout))
        except PoolTimeout as exc:
            outage.began(pool.name)
            raise DatabaseUnavailable(str(exc)) from exc
        outage.ended(pool.name)
        return conn

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

    schedule = pool.schedule_task

    def schedule_steadily(task: Any, delay: float) -> None:
        schedule(task, _capped(task, delay))

    # What each new connection is opened with (the library gives a dict).
    pool.kwargs = {**cast(dict[str, Any], pool.kwargs), **NETWORK_LIMITS, **POOLED}
    if not pool.closed:
        pool.drain()  # those opened already (the library's schema check) are replaced
    pool._check = check  # where the pool keeps its `check` argument
    pool.getconn = getconn_or_fail_fast  # type: ignore[method-assign]
    pool.schedule_task = schedule_steadily  # type: ignore[method-assign]
    # However long the database is away, the pool keeps reconnecting.
    pool.reconnect_timeout = float("inf")


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
        kwargs={"autocommit": True, **NETWORK_LIMITS, **POOLED},
        check=check,
        timeout=POOL_WAIT_S,
        # However long the database is away, the pool keeps reconnecting.
        reconnect_timeout=float("inf"),
    )
    outage = _Outage()
    getconn = pool.getconn

    async def getconn_or_fail_fast(timeout: float | None = None) -> Any:  # noqa: ASYNC109 (the pool's own signature)
        try:
            conn = await getconn(outage.wait_for(pool.timeout if timeout is None else timeout))
        except PoolTimeout:
            outage.began(pool.name)
            raise
        outage.ended(pool.name)
        return conn

    schedule = pool.schedule_task

    async def schedule_steadily(task: Any, delay: float) -> None:
        await schedule(task, _capped(task, delay))

    pool.getconn = getconn_or_fail_fast  # type: ignore[method-assign]
    pool.schedule_task = schedule_steadily  # type: ignore[method-assign]
    return pool

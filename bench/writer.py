"""The writer against PostgreSQL's own speed, with fsync on (a cluster of its
own that flushes every commit, as production does):

- event-store appends (a new ticket aggregate saved: mapping, group commit,
  lock, insert, commit) against raw one-row INSERT transactions, at 1, 8 and
  32 concurrent callers;
- whole `CreateTicket` commands (checks, idempotency, save) at 8 clients;
- the same with the followers a tickets process runs beside its API (the
  case index, and the deadline timer or not), so that what the timer costs
  the writer is seen;
- two writer processes on one database against one, so that a second
  replica is seen to add throughput rather than wait on the first.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import psycopg

from bench.report import Goal, interleaved, row
from casemesh.platform.caseindex import IndexProjector
from casemesh.platform.eventstore import postgres_env
from casemesh.platform.identity import Identity
from casemesh.platform.logging import configure_logging
from casemesh.platform.timers import case_timer
from casemesh_tickets.application import NewTicket, Tickets, case_row, open_tickets
from casemesh_tickets.domain import Ticket

# Seconds each measurement runs (a count would make slow runs long).
SPAN_S = 4.0


# Request ids unique across runs and processes on one database, without a
# random number each (reading the system's randomness costs a writer under
# load as much as a twelfth of its time).
_PROCESS = uuid.uuid4().hex[:8]
_SERIAL = itertools.count()


def new_ticket() -> NewTicket:
    return NewTicket(
        request_id=f"bench-{_PROCESS}-{next(_SERIAL)}",
        category="content.upload_failed",
        subject="上传失败",
        description="视频上传到 99% 失败",
        locale="zh-CN",
        contact={"email": "bench@example.com", "phone": "", "channels": ["EMAIL"]},
    )


def new_aggregate() -> Ticket:
    t = new_ticket()
    return Ticket(
        requester="bench-user",
        request_id=t.request_id,
        request_fingerprint="-",
        category=t.category,
        subject=t.subject,
        description=t.description,
        locale=t.locale,
        contact=t.contact,
        priority=2,
        evidence=[],
    )


def per_second(callers: int, make_work: Callable[[], Callable[[int], object]]) -> float:
    """Operations per second of `callers` threads, each running its own
    `make_work()` in a loop for SPAN_S seconds."""
    done = [0] * callers
    deadline = time.perf_counter() + SPAN_S

    def loop(n: int) -> None:
        work = make_work()
        i = 0
        while time.perf_counter() < deadline:
            work(n * 1_000_000 + i)
            i += 1
        done[n] = i

    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(loop, range(callers)))
    return sum(done) / (time.perf_counter() - start)


def raw_inserts(dsn: str, callers: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_bench (id bigserial PRIMARY KEY, body bytea)")

    conns: list[psycopg.Connection[Any]] = []

    def make_work() -> Callable[[int], object]:
        conn = psycopg.connect(dsn, autocommit=True)
        conns.append(conn)
        body = b"x" * 400  # about a stored ticket event

        def work(_: int) -> None:
            conn.execute("INSERT INTO raw_bench (body) VALUES (%s)", (body,))

        return work

    try:
        return per_second(callers, make_work)
    finally:
        for conn in conns:
            conn.close()


def appends(app: Tickets, callers: int) -> float:
    return per_second(callers, lambda: lambda _: app.save(new_aggregate()))


def creates(app: Tickets, callers: int) -> float:
    who = Identity("bench-user", frozenset({"user"}))
    return per_second(callers, lambda: lambda _: app.create_ticket(who, new_ticket()))


def beside_followers(app: Tickets, dsn: str, *, timer: bool) -> float:
    """CreateTicket per second at 8 callers while the case index (and, with
    `timer`, the deadline timer) follow the log, as in the service."""
    followers: list[Any] = [IndexProjector(app, app.index, case_row)]
    if timer:
        followers.append(case_timer(app, dsn, "ticket_timers"))
    for follower in followers:
        follower.start()
    try:
        return creates(app, 8)
    finally:
        for follower in followers:
            follower.stop()


def _replica(dsn: str, callers: int, out: Any) -> None:
    configure_logging("bench", "warning", "console")
    app = open_tickets(dsn, pool_size=4)
    out.put(creates(app, callers))
    app.close()


def replicas(dsn: str, count: int, callers: int) -> float:
    """CreateTicket per second of `count` writer processes together."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_replica, args=(dsn, callers, out)) for _ in range(count)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    return float(total)


def library_recorder(dsn: str) -> Tickets:
    """Tickets as they were: the library's recorder, one transaction (and
    one fsync under the table lock) per command."""
    env = postgres_env(dsn, pool_size=8)
    del env["APPLICATION_RECORDER_TOPIC"]
    return Tickets(env=env)


def run(dsn: str) -> None:
    configure_logging("bench", "warning", "console")
    app = open_tickets(dsn, pool_size=8)
    before = library_recorder(dsn)
    lines = []
    try:
        ours, lib = interleaved(lambda: appends(app, 1), lambda: appends(before, 1))
        goal = Goal("event-store appends, 1 caller", "/s", 1.0)
        lines.append(row(goal, ours, lib, "the library's recorder, 1 caller"))
        for callers in (8, 32):
            ours, raw = interleaved(
                partial(appends, app, callers), partial(raw_inserts, dsn, callers)
            )
            goal = Goal(f"event-store appends, {callers} callers", "/s", 1.0)
            lines.append(row(goal, ours, raw, "raw 1-row INSERT transactions"))
        ours, raw = interleaved(lambda: creates(app, 8), lambda: raw_inserts(dsn, 8))
        lines.append(
            row(
                Goal("CreateTicket commands, 8 callers", "/s", None),
                ours,
                raw,
                "raw 1-row INSERT transactions",
            )
        )
        with_timer, without = interleaved(
            partial(beside_followers, app, dsn, timer=True),
            partial(beside_followers, app, dsn, timer=False),
        )
        lines.append(
            row(
                Goal("CreateTicket, case index + deadline timer", "/s", None),
                with_timer,
                without,
                "the same with the case index alone",
            )
        )
    finally:
        app.close()
        before.close()
    two, one = interleaved(lambda: replicas(dsn, 2, 8), lambda: replicas(dsn, 1, 8))
    lines.append(
        row(
            Goal("CreateTicket, 2 writer processes", "/s", 1.1),
            two,
            one,
            "1 writer process, same load each",
        )
    )
    print("\nWriter (fsync on; each figure the median of 2, A-B-A-B)")
    print("\n".join(lines))

"""The read models during a rolling update: replicas of two releases project
side by side and record one shared position. A case the older release cannot
read is set aside by it; the newer one's row of it must still be written,
and replicas projecting batches of their own must not lock each other out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import Tracking
from prometheus_client import REGISTRY

from casemesh.platform.caseindex import CaseIndex, CaseRow, IndexProjector, Projector
from casemesh.platform.clock import SystemClock
from casemesh.platform.identity import Identity
from casemesh_reports.api import index_doc
from casemesh_reports.application import Reports, open_reports
from casemesh_reports.policy import Misuse, ReportsPolicy, load_taxonomy
from casemesh_tickets.application import Tickets, case_row
from tests.application.test_reports import NO_VIOLATION, report
from tests.integration.test_pools import new_ticket
from tests.support import wait_until

USER = Identity("rollout-user", frozenset({"user"}))
AGENT = Identity("rollout-agent", frozenset({"agent"}))


def as_older_release(app: Any) -> Any:
    """`app` as a replica of the older release reads it: each aggregate as it
    was created, not past it (as if every later event were of a class it
    does not know)."""
    read = app.repository.get

    def reading_as_created(ident: Any, version: int | None = None) -> Any:
        if version != 1:
            raise KeyError(f"an event of {ident} this release does not know")
        return read(ident, version=version)

    return SimpleNamespace(
        name=app.name,
        recorder=app.recorder,
        repository=SimpleNamespace(get=reading_as_created),
        created=None,
    )


def overtaking(
    older: Projector, render: Callable[[Any], Any]
) -> tuple[Callable[[Any], Any], list[Any]]:
    """`render` for the newer release, and what it was given as the older
    replica `older` overtook it: the first aggregate it renders past its
    creation, for which the older replica records the shared position first
    (past that event, while the newer one is still rendering it)."""
    overtaken: list[Any] = []

    def rendering(aggregate: Any) -> Any:
        if aggregate.version > 1 and not overtaken:
            overtaken.append(aggregate)
            older.catch_up()
        return render(aggregate)

    return rendering, overtaken


def projected_past(app: Any, newer: Projector, overtaken: list[Any]) -> None:
    """Runs `newer` until the older replica has overtaken it (`overtaking`)
    and it has projected all `app` has recorded."""
    newer.start()
    try:
        last = app.recorder.max_notification_id()
        wait_until(lambda: overtaken and newer._follower._at == last)
    finally:
        newer.stop()


def statuses(app: Tickets) -> list[str]:
    return [x.status for x in app.list_tickets(AGENT, [], 0, "").items]


def test_a_case_the_older_release_set_aside_is_listed_as_the_newer_one_renders_it(
    app: Tickets,
) -> None:
    """The older release reads a ticket as it was opened, not once it was
    solved (here, as if solving recorded a class it does not know): it sets
    the case aside and records the shared position past the solve while the
    newer release renders it. The newer one's batch was refused whole and the
    position taken as the older one's: the ticket was listed as open until
    its next event. It is listed as solved."""
    t = app.create_ticket(USER, new_ticket("rollout"))
    older = IndexProjector(as_older_release(app), app.index, case_row)
    older.catch_up()
    assert statuses(app) == [t.status]

    rendering, overtaken = overtaking(older, case_row)  # past the solve
    app.solve(AGENT, t.id, "已处理", etag="")
    projected_past(app, IndexProjector(app, app.index, rendering), overtaken)
    assert statuses(app) == ["SOLVED"]


def test_a_row_the_database_refuses_is_a_failure_tried_again_not_jumped_over(
    app: Tickets,
) -> None:
    """While the newer release renders a ticket's solve, the older one
    records the shared position past it, and the database refuses the newer
    one's row once (a column it must have, left empty). That IntegrityError
    was taken for another replica's refusal of the position: the batch was
    jumped over without a word, and the ticket listed as open. It is a
    failure, counted, and the row is written at the next try."""
    t = app.create_ticket(USER, new_ticket("refused"))
    older = IndexProjector(as_older_release(app), app.index, case_row)
    older.catch_up()
    refused: list[Any] = []

    def refusing_once(case: Any) -> Any:
        row = case_row(case)
        if case.version > 1 and not refused:
            refused.append(case)
            return dataclasses.replace(row, status=cast(Any, None))  # NOT NULL
        return row

    rendering, overtaken = overtaking(older, refusing_once)
    app.solve(AGENT, t.id, "已处理", etag="")
    newer = IndexProjector(app, app.index, rendering)
    task = {"task": f"{app.name}-{newer.name}"}

    def failures() -> float:
        return REGISTRY.get_sample_value("casemesh_background_failures_total", task) or 0.0

    before = failures()
    projected_past(app, newer, overtaken)
    assert statuses(app) == ["SOLVED"]
    assert failures() == before + 1


def waiting_for_locks(conn: psycopg.Connection[Any]) -> list[int]:
    """The backends of the database waiting for a lock."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchall()
    return [pid for (pid,) in rows]


def blocked(conn: psycopg.Connection[Any], pid: int) -> bool:
    row = conn.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", (pid,)).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("write", ["record_many", "rewrite"])
def test_two_writes_of_the_same_cases_listed_in_other_orders_both_commit(
    app: Tickets, dsn: str, write: str
) -> None:
    """Replicas project from positions of their own, so their batches overlap
    with different lengths and list the same cases in other orders (a batch
    lists them by their last event); an erasure rewrites rows in the order
    it found them. Two such writes locked two cases in opposite orders: the
    database failed one of them as a deadlock (here each waits first for a
    transaction holding its first case, which lets go of one case and then
    of the other). Both commit."""
    index = app.index
    assert isinstance(index, CaseIndex)
    tickets = [app.create_ticket(USER, new_ticket(f"locks-{i}")) for i in range(2)]
    IndexProjector(app, index, case_row).catch_up()
    for t in tickets:
        app.solve(AGENT, t.id, "已处理", etag="")
    a, b = sorted(
        (case_row(app.repository.get(UUID(t.id))) for t in tickets), key=lambda r: UUID(r.case_id)
    )
    done = Tracking(app.name, app.recorder.max_notification_id() or 0)
    writes: dict[str, Callable[[list[CaseRow]], None]] = {
        "record_many": lambda rows: index.record_many(rows, done),
        "rewrite": index.rewrite,
    }
    locking = f"SELECT FROM {index.table_name} WHERE case_id = %s FOR UPDATE"
    with (
        ThreadPoolExecutor(2) as writers,
        psycopg.connect(dsn) as holding_a,
        psycopg.connect(dsn) as holding_b,
        psycopg.connect(dsn, autocommit=True) as looking,
    ):
        holding_a.execute(locking, (a.case_id,))
        holding_b.execute(locking, (b.case_id,))
        ascending = writers.submit(index.record_many, [a, b], done)
        [first] = wait_until(lambda: waiting_for_locks(looking))
        descending = writers.submit(writes[write], [b, a])
        wait_until(lambda: len(waiting_for_locks(looking)) == 2)
        holding_a.commit()
        wait_until(lambda: blocked(looking, first))  # a taken, waiting for b
        holding_b.commit()
        ascending.result(timeout=30)
        descending.result(timeout=30)
    assert statuses(app) == ["SOLVED", "SOLVED"]


@pytest.fixture()
def reports(dsn: str) -> Iterator[Reports]:
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=3, window_days=180, suspension_days=30),
    )
    app = open_reports(dsn, clock=SystemClock(), policy=policy, pool_size=4)
    yield app
    app.close()


def test_a_report_the_older_release_set_aside_is_listed_as_the_newer_one_renders_it(
    reports: Reports,
) -> None:
    """The reports view as the case index: the older release reads a report
    and its case as they were filed, not once decided, and records the
    shared position past the decision while the newer release renders it.
    The newer one's writes were refused and the position taken as the older
    one's: the reporter's list said submitted and the agents' queue still
    held the case until their next events. Both show the decision."""
    view = reports.view

    def projector(app: Any, rendering: Any) -> Projector:
        return Projector(
            app,
            view,
            lambda a, tracking: view.apply(a, tracking, rendering(a)),
            name="reports_view",
        )

    filed = reports.file(USER, report())
    older = projector(as_older_release(reports), index_doc)
    older.catch_up()
    [listed] = reports.list_reports(USER, 0, "", "").items
    assert listed["report"]["state"] == "REPORT_STATE_SUBMITTED"
    queued = [d["id"] for d in reports.list_cases(AGENT, 0, "", "", [], "").items]
    assert queued == [str(filed.case_id)]

    rendering, overtaken = overtaking(older, index_doc)  # past the decision
    reports.decide(AGENT, str(filed.case_id), "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    projected_past(reports, projector(reports, rendering), overtaken)
    [listed] = reports.list_reports(USER, 0, "", "").items
    assert listed["report"]["state"] == "REPORT_STATE_NO_VIOLATION"
    assert reports.list_cases(AGENT, 0, "", "", [], "").items == []

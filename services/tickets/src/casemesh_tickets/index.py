"""The ticket index: a read model of every ticket for listing and paging.

Fed from the application's own notification log; each row and the tracking
position commit in one transaction, and a row only moves forward in version,
so replays and several replicas projecting at once change nothing.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL
from psycopg.types.json import Jsonb

from casemesh.platform.logging import get_logger
from casemesh_tickets.views import TicketView

log = get_logger(__name__)


class TicketIndex(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(datastore, tracking_table_name="ticket_index_tracking")
        self.sql_create_statements.extend(
            SQL(statement).format()
            for statement in [
                "CREATE TABLE IF NOT EXISTS ticket_index ("
                " ticket_id uuid PRIMARY KEY, requester text NOT NULL,"
                " status text NOT NULL, create_time timestamptz NOT NULL,"
                " version int NOT NULL, doc jsonb NOT NULL)",
                "CREATE INDEX IF NOT EXISTS ticket_index_requester"
                " ON ticket_index (requester, create_time DESC, ticket_id DESC)",
                "CREATE INDEX IF NOT EXISTS ticket_index_recent"
                " ON ticket_index (create_time DESC, ticket_id DESC)",
            ]
        )

    def record(self, view: TicketView, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "INSERT INTO ticket_index (ticket_id, requester, status, create_time, version, doc)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (ticket_id) DO UPDATE SET status = EXCLUDED.status,"
                " version = EXCLUDED.version, doc = EXCLUDED.doc"
                " WHERE ticket_index.version < EXCLUDED.version",
                (
                    view.id,
                    view.requester,
                    view.status,
                    view.create_time,
                    view.version,
                    Jsonb(view.to_json()),
                ),
            )
            self._insert_tracking(curs, tracking)

    def page(
        self,
        *,
        requester: str | None,
        statuses: list[str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[TicketView]:
        clauses: list[str] = []
        params: list[Any] = []
        if requester is not None:
            clauses.append("requester = %s")
            params.append(requester)
        if statuses:
            clauses.append("status = ANY(%s)")
            params.append(statuses)
        if after is not None:
            clauses.append("(create_time, ticket_id) < (%s, %s)")
            params.extend(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT doc FROM ticket_index {where}"
            " ORDER BY create_time DESC, ticket_id DESC LIMIT %s"
        )
        params.append(limit)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, params)
            return [TicketView.from_json(row["doc"]) for row in curs.fetchall()]


class IndexProjector:
    """Keeps the index up to date in a background thread (push-driven: the
    subscription LISTENs for the event store's NOTIFY)."""

    def __init__(self, app: Any, index: TicketIndex) -> None:
        self._app = app
        self._index = index
        self._thread = threading.Thread(target=self._run, name="ticket-index", daemon=True)
        self._subscription: Any = None
        self._stopped = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._subscription is not None:
            self._subscription.stop()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                start = self._index.max_tracking_id(self._app.name)
                with self._app.recorder.subscribe(gt=start) as subscription:
                    self._subscription = subscription
                    for n in subscription:
                        ticket = self._app.repository.get(
                            n.originator_id, version=n.originator_version
                        )
                        self._index.record(TicketView.of(ticket), Tracking(self._app.name, n.id))
            except Exception as exc:  # a database restart: resume from the tracked position
                log.error("ticket_index.failed", error=repr(exc))
                self._stopped.wait(1.0)

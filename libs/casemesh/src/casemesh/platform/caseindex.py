"""A case index: the read model a writer service lists and pages its cases from.

Fed from the application's own notification log; each row and the tracking
position commit in one transaction, and a row only moves forward in version,
so replays and several replicas projecting at once change nothing. A case
has parties (the users who may list it: a requester, a claimant and an
uploader, …) and a JSON document the service renders from.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import Notification, Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from casemesh.platform.logging import get_logger
from casemesh.platform.pools import DatabaseUnavailable

log = get_logger(__name__)


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the token for the next ("" on the last)."""

    items: list[T]
    next_token: str


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    parties: list[str]
    status: str
    create_time: datetime
    version: int
    doc: dict[str, Any]


class CaseIndex(PostgresTrackingRecorder):
    """The case index in the service's database: a table of rows, one a case."""

    def __init__(self, datastore: PostgresDatastore, table: str) -> None:
        super().__init__(datastore, tracking_table_name=f"{table}_tracking")
        self.table = Identifier(table)
        self.sql_create_statements.extend(
            SQL(statement).format(table=self.table, name=Identifier(f"{table}_{suffix}"))
            for suffix, statement in [
                (
                    "",
                    "CREATE TABLE IF NOT EXISTS {table} ("
                    " case_id uuid PRIMARY KEY, parties text[] NOT NULL,"
                    " status text NOT NULL, create_time timestamptz NOT NULL,"
                    " version int NOT NULL, doc jsonb NOT NULL)",
                ),
                (
                    "parties",
                    "CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (parties)",
                ),
                (
                    "recent",
                    "CREATE INDEX IF NOT EXISTS {name} ON {table} (create_time DESC, case_id DESC)",
                ),
            ]
        )

    def record(self, row: CaseRow, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {table} (case_id, parties, status, create_time, version, doc)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (case_id) DO UPDATE SET parties = EXCLUDED.parties,"
                    " status = EXCLUDED.status, version = EXCLUDED.version, doc = EXCLUDED.doc"
                    " WHERE {table}.version < EXCLUDED.version"
                ).format(table=self.table),
                (
                    row.case_id,
                    row.parties,
                    row.status,
                    row.create_time,
                    row.version,
                    Jsonb(row.doc),
                ),
            )
            self._insert_tracking(curs, tracking)

    def page(
        self,
        *,
        party: str | None,
        statuses: list[str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Newest first; `party` None lists every case (agents)."""
        clauses: list[SQL] = []
        params: list[Any] = []
        if party is not None:
            clauses.append(SQL("%s = ANY(parties)"))
            params.append(party)
        if statuses:
            clauses.append(SQL("status = ANY(%s)"))
            params.append(statuses)
        if after is not None:
            clauses.append(SQL("(create_time, case_id) < (%s, %s)"))
            params.extend(after)
        where = SQL("WHERE ") + SQL(" AND ").join(clauses) if clauses else SQL("")
        query = SQL(
            "SELECT doc FROM {table} {where} ORDER BY create_time DESC, case_id DESC LIMIT %s"
        ).format(table=self.table, where=where)
        params.append(limit)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return [row["doc"] for row in curs.fetchall()]


class MemoryCaseIndex(POPOTrackingRecorder):
    """The case index in memory, with the same rules: for the application tests."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, CaseRow] = {}

    def record(self, row: CaseRow, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            held = self.rows.get(row.case_id)
            if held is None or held.version < row.version:
                self.rows[row.case_id] = row
            self._insert_tracking(tracking)

    def page(
        self,
        *,
        party: str | None,
        statuses: list[str],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        def key(row: CaseRow) -> tuple[datetime, uuid.UUID]:
            return row.create_time, uuid.UUID(row.case_id)

        rows = sorted(self.rows.values(), key=key, reverse=True)
        found = [
            r.doc
            for r in rows
            if (party is None or party in r.parties)
            and (not statuses or r.status in statuses)
            and (after is None or key(r) < (after[0], uuid.UUID(after[1])))
        ]
        return found[:limit]


# A case index as the application reads it and a projector writes it.
CaseIndexLike = CaseIndex | MemoryCaseIndex


# Errors after which the projection resumes from its tracked position; any
# other error is the row's own (it can never be written) and is set aside.
RETRYABLE = (
    DatabaseUnavailable,
    persistence.OperationalError,
    persistence.InterfaceError,
    persistence.IntegrityError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class Projector:
    """Keeps a read model up to date in a background thread (push-driven: the
    subscription LISTENs for the event store's NOTIFY). `apply(aggregate,
    tracking)` writes what the aggregate, as it stands after a notification,
    means for the read model and the tracking record in ONE transaction.
    A row the database refuses (DataError) is set aside, loudly, and the
    position moves on: one bad row must not stall every list for good."""

    def __init__(
        self,
        app: Any,
        recorder: TrackingRecorder,
        apply: Callable[[Any, Tracking], None],
        name: str,
    ) -> None:
        self._app = app
        self._recorder = recorder
        self._apply = apply
        self._name = name
        self._thread = threading.Thread(target=self._run, name=f"{app.name}-{name}", daemon=True)
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
                start = self._recorder.max_tracking_id(self._app.name)
                with self._app.recorder.subscribe(gt=start) as subscription:
                    self._subscription = subscription
                    for n in subscription:
                        self._project(n)
            except Exception as exc:  # a database restart: resume from the tracked position
                log.error("read_model.failed", read_model=self._name, error=repr(exc))
                self._stopped.wait(1.0)

    def catch_up(self) -> None:
        """Projects, here and now, what the store holds past the tracked position
        (the application tests' way; a service runs the thread)."""
        while True:
            start = self._recorder.max_tracking_id(self._app.name)
            batch = self._app.recorder.select_notifications(
                start=start, limit=100, inclusive_of_start=start is None
            )
            if not batch:
                return
            for n in batch:
                self._project(n)

    def _project(self, n: Notification) -> None:
        aggregate = self._app.repository.get(n.originator_id, version=n.originator_version)
        tracking = Tracking(self._app.name, n.id)
        try:
            self._apply(aggregate, tracking)
        except RETRYABLE:
            raise  # the database is away, or another replica got there first
        except Exception as exc:
            log.error(
                "read_model.row_refused",
                read_model=self._name,
                aggregate_id=str(n.originator_id),
                version=n.originator_version,
                error=repr(exc),
            )
            self._recorder.insert_tracking(tracking)


def IndexProjector(app: Any, index: CaseIndexLike, to_row: Callable[[Any], CaseRow]) -> Projector:
    """Projects each case into `index` as `to_row` renders it."""
    return Projector(
        app,
        index,
        lambda case, tracking: index.record(to_row(case), tracking),
        name=f"{app.name}_case_index",
    )


def encode_page_token(ts: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{ident}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str] | None:
    """None for the first page; ValueError for a token this API did not give."""
    if not token:
        return None
    ts, _, ident = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    uuid.UUID(ident)
    return datetime.fromisoformat(ts), ident

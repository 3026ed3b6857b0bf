"""A case index: the read model a writer service lists and pages its cases from.

Fed from the application's own notification log; each row and the tracking
position commit in one transaction, and a row only moves forward in version,
so replays and several replicas projecting at once change nothing. That is
also why a replica writes its rows even when another recorded the shared
position further first (`SharedTracking`): during a rolling update that
other may be of the older release, which set aside a case it could not
read, and the case's row would stay as it was until its next event. A case
has parties (the users who may list it: a requester, a claimant and an
uploader, …) and a JSON document the service renders from.

Words are searched for in the document's texts as `folded` gives them (case
and width folded in Python), kept beside the document: a search finds
`ÉCRAN` for `écran` and `ＡＢＣ` for `abc` whatever locale the database was
made with (under the C locale PostgreSQL's own ILIKE folds ASCII letters
only).
"""

from __future__ import annotations

import base64
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from eventsourcing import persistence
from eventsourcing.persistence import Notification, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composable, Identifier, Literal
from psycopg.types.json import Jsonb

from casemesh.platform.following import Follower, SharedMemoryTracking, SharedTracking
from casemesh.platform.logging import get_logger
from casemesh.platform.periodic import Periodic
from casemesh.platform.personal.errors import UnknownDataKey, UnknownMasterKey
from casemesh.platform.pools import is_database_outage

log = get_logger(__name__)


T = TypeVar("T")

# Rows an older release wrote (before texts were folded, or a replica of it
# during a rollout) have their texts folded this often, this many at a time.
FOLD_EVERY_S = 30.0
FOLD_BATCH = 500
# Below every case id: where folding starts.
_FIRST = uuid.UUID(int=0)


def folded(text: str) -> str:
    """`text` as a search compares it: case folded (`ÉCRAN` is `écran`,
    `Straße` is `strasse`) and in compatibility form (full-width `ＡＢＣ` is
    `abc`, `ﬁ` is `fi`, an accent typed apart is the accented letter)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def folded_texts(doc: Mapping[str, Any]) -> dict[str, str]:
    """A case document's texts (its fields that are strings), folded."""
    return {name: folded(value) for name, value in doc.items() if isinstance(value, str)}


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


class CaseIndex(SharedTracking):
    """The case index in the service's database: a table of rows, one a case."""

    def __init__(self, datastore: PostgresDatastore, table: str) -> None:
        super().__init__(datastore, tracking_table_name=f"{table}_tracking")
        self.table_name = table
        self._all_folded = False
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
                # The document's texts as a search compares them
                # (`folded_texts`), and the version they were folded from:
                # a row an older release wrote has none, or an older one.
                ("", "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS folded jsonb"),
                ("", "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS folded_version int"),
                # An index of unfolded rows an earlier build made: it cost
                # every update of the table its HOT path.
                ("unfolded", "DROP INDEX IF EXISTS {name}"),
            ]
        )

    def record(self, row: CaseRow, tracking: Tracking) -> None:
        self.record_many([row], tracking)

    def record_many(self, rows: list[CaseRow], tracking: Tracking) -> None:
        """The rows and the tracking position in one transaction; a row only
        replaces an older version of its case, and the position only moves
        forward. Rows are written in case order (`in_case_order`)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL(
                    "INSERT INTO {table} (case_id, parties, status, create_time, version, doc,"
                    " folded, folded_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (case_id) DO UPDATE SET parties = EXCLUDED.parties,"
                    " status = EXCLUDED.status, version = EXCLUDED.version, doc = EXCLUDED.doc,"
                    " folded = EXCLUDED.folded, folded_version = EXCLUDED.folded_version"
                    " WHERE {table}.version < EXCLUDED.version"
                ).format(table=self.table),
                [
                    (
                        row.case_id,
                        row.parties,
                        row.status,
                        row.create_time,
                        row.version,
                        Jsonb(row.doc),
                        Jsonb(folded_texts(row.doc)),
                        row.version,
                    )
                    for row in in_case_order(rows)
                ],
            )
            self._insert_tracking(curs, tracking)

    def cases_of(self, party: str) -> list[str]:
        """The ids of every case `party` is a party to."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT case_id FROM {table} WHERE parties @> ARRAY[%s]::text[]").format(
                    table=self.table
                ),
                (party,),
            )
            return [str(row["case_id"]) for row in curs.fetchall()]

    def rewrite(self, rows: list[CaseRow]) -> None:
        """Replaces the rows of these cases with these renderings of the same
        version or a newer one (a projector may have gone further meanwhile:
        its row stays). In case order, as `record_many` writes."""
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL(
                    "UPDATE {table} SET parties = %s, status = %s, version = %s, doc = %s,"
                    " folded = %s, folded_version = %s WHERE case_id = %s AND version <= %s"
                ).format(table=self.table),
                [
                    (
                        row.parties,
                        row.status,
                        row.version,
                        Jsonb(row.doc),
                        Jsonb(folded_texts(row.doc)),
                        row.version,
                        row.case_id,
                        row.version,
                    )
                    for row in in_case_order(rows)
                ],
            )

    def fold(self, stopping: Callable[[], bool] = lambda: False) -> int:
        """Folds the texts of the rows not folded at their version (written
        before texts were folded, or by a replica of an older release during
        a rollout), `FOLD_BATCH` at a time, until none is left or `stopping()`;
        returns how many. Until then a search reads such a row's document as
        before (`page`). A row a projector moved on meanwhile is left to it."""
        # Found none once, this process looks no more: a row an older
        # replica writes after that is folded at the next start. (No index
        # finds them: one on `version` would make every update of the
        # table write every index, for rows a rollout leaves.)
        if self._all_folded:
            return 0
        done, after = 0, _FIRST
        while not stopping():
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    SQL(
                        "SELECT case_id, version, doc FROM {table}"
                        " WHERE folded_version IS DISTINCT FROM version AND case_id > %s"
                        " ORDER BY case_id LIMIT %s"
                    ).format(table=self.table),
                    (after, FOLD_BATCH),
                )
                rows = curs.fetchall()
                if not rows:
                    break
                curs.executemany(
                    SQL(
                        "UPDATE {table} SET folded = %s, folded_version = version"
                        " WHERE case_id = %s AND version = %s"
                        " AND folded_version IS DISTINCT FROM version"
                    ).format(table=self.table),
                    [(Jsonb(folded_texts(r["doc"])), r["case_id"], r["version"]) for r in rows],
                )
            after = rows[-1]["case_id"]
            done += len(rows)
        self._all_folded = not done and not stopping()
        if done:
            log.info("case_index.folded", table=self.table_name, rows=done)
        return done

    def page(
        self,
        *,
        party: str | None,
        statuses: list[str],
        after: tuple[datetime, str] | None,
        limit: int,
        matches: Mapping[str, str] | None = None,
        text: str = "",
        text_fields: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Newest first; `party` None lists every case (agents). `matches`:
        document fields that must equal these values; `text`: words that must
        each appear (in any order) in the `text_fields`, compared `folded`. A
        row not yet folded at its version (`fold`) is compared as before:
        ILIKE on its document, as the database's locale folds case."""
        clauses: list[Composable] = []
        params: list[Any] = []
        if party is not None:
            clauses.append(SQL("parties @> ARRAY[%s]::text[]"))  # served by the GIN index
            params.append(party)
        if statuses:
            clauses.append(SQL("status = ANY(%s)"))
            params.append(statuses)
        for field, value in (matches or {}).items():
            clauses.append(SQL("doc->>%s = %s"))
            params.extend([field, value])
        for word in text.split() if text_fields else []:
            clauses.append(
                SQL(
                    "CASE WHEN folded_version = version THEN concat_ws(' ', {}) LIKE %s"
                    " ELSE concat_ws(' ', {}) ILIKE %s END"
                ).format(_texts("folded", text_fields), _texts("doc", text_fields))
            )
            params.extend([_containing(folded(word)), _containing(word)])
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


def in_case_order(rows: list[CaseRow]) -> list[CaseRow]:
    """The rows by case id: the order every write of several rows locks
    them in. Replicas project overlapping batches from positions of their
    own, and a batch lists its cases by their last event: two batches of
    different lengths could lock two cases in opposite orders, and one of
    them would fail as a deadlock."""
    return sorted(rows, key=lambda row: uuid.UUID(str(row.case_id)))


def _texts(column: str, fields: Sequence[str]) -> Composable:
    """The `fields` of the JSON `column`, as concat_ws's arguments."""
    return SQL(", ").join(SQL("{}->>{}").format(Identifier(column), Literal(f)) for f in fields)


def _containing(word: str) -> str:
    """A LIKE pattern: `word` anywhere, its `%`, `_` and `\\` taken as they are."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class MemoryCaseIndex(SharedMemoryTracking):
    """The case index in memory, with the same rules: for the application tests."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, CaseRow] = {}

    def record(self, row: CaseRow, tracking: Tracking) -> None:
        self.record_many([row], tracking)

    def record_many(self, rows: list[CaseRow], tracking: Tracking) -> None:
        with self._database_lock:
            for row in rows:
                held = self.rows.get(row.case_id)
                if held is None or held.version < row.version:
                    self.rows[row.case_id] = row
            self._move_to(tracking)

    def cases_of(self, party: str) -> list[str]:
        with self._database_lock:
            return [r.case_id for r in self.rows.values() if party in r.parties]

    def rewrite(self, rows: list[CaseRow]) -> None:
        with self._database_lock:
            for row in rows:
                held = self.rows.get(row.case_id)
                if held is not None and held.version <= row.version:
                    self.rows[row.case_id] = row

    def page(
        self,
        *,
        party: str | None,
        statuses: list[str],
        after: tuple[datetime, str] | None,
        limit: int,
        matches: Mapping[str, str] | None = None,
        text: str = "",
        text_fields: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        def key(row: CaseRow) -> tuple[datetime, uuid.UUID]:
            return row.create_time, uuid.UUID(row.case_id)

        def has_text(doc: dict[str, Any]) -> bool:
            texts = folded_texts(doc)
            searched = " ".join(texts.get(f, "") for f in text_fields)
            return not text_fields or all(folded(w) in searched for w in text.split())

        rows = sorted(self.rows.values(), key=key, reverse=True)
        found = [
            r.doc
            for r in rows
            if (party is None or party in r.parties)
            and (not statuses or r.status in statuses)
            and all(str(r.doc.get(f)) == v for f, v in (matches or {}).items())
            and has_text(r.doc)
            and (after is None or key(r) < (after[0], uuid.UUID(after[1])))
        ]
        return found[:limit]


# A case index as the application reads it and a projector writes it.
CaseIndexLike = CaseIndex | MemoryCaseIndex


def retryable(exc: BaseException) -> bool:
    """Whether `exc` is raised to the follower (`Follower`) rather than what
    was being written set aside: the database away (or a primary just
    demoted: `is_database_outage`), or an IntegrityError. From a recorder
    that refuses a position another replica recorded first, that is the
    refusal (the follower reads on from that replica's position); a
    `SharedTracking` recorder refuses none, so it is a row's own, and the
    follower fails (counted) and tries again after its pause. Any other
    error is the row's own (it can never be written)."""
    return is_database_outage(exc) or isinstance(exc, persistence.IntegrityError)


# How long a case this replica created is kept revealed for its projector
# (`Created`): also how long it may write an erased person's text after the
# erasure (`forgetting`).
KEEP_REVEALED_S = 60.0


class Created:
    """The cases this process created lately, each as it was saved, kept
    until its projector takes it (`take`): a new case's row is then rendered
    from the case the command made, not read back from the store (a query,
    decoding, its personal text revealed again, its events replayed). Only
    a case's creation is kept: the stored version reads the same
    until an erasure destroys a key, and the application then forgets them
    all (`clear`) before it renders the erased person's rows again. A case
    not taken (its projection went past its first version, or another
    replica's did) is let go after `keep_s` seconds, or past `keep` cases,
    as the keys' own cache lets go of theirs."""

    def __init__(
        self,
        keep: int = 1024,
        keep_s: float = KEEP_REVEALED_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep, self._keep_s, self._clock = keep, keep_s, clock
        self._cases: OrderedDict[uuid.UUID | str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._clears = 0

    @property
    def clears(self) -> int:
        """How many times `clear` was called: read before a case is saved and
        handed to `add`, so that a case saved across an erasure is not kept."""
        return self._clears

    def add(self, case: Any, clears: int) -> None:
        now = self._clock()
        with self._lock:
            if clears != self._clears:
                return
            self._cases[case.id] = (now, case)
            while self._cases and (
                len(self._cases) > self._keep
                or next(iter(self._cases.values()))[0] < now - self._keep_s
            ):
                self._cases.popitem(last=False)

    def take(self, ident: uuid.UUID | str, version: int) -> Any | None:
        """The case at exactly `version`, if kept; the case is let go whatever
        its version (a projection never goes back to an earlier one)."""
        with self._lock:
            kept = self._cases.pop(ident, None)
        if kept is None or self._clock() - kept[0] > self._keep_s:
            return None
        return kept[1] if kept[1].version == version else None

    def clear(self) -> None:
        with self._lock:
            self._clears += 1
            self._cases.clear()


@dataclass
class Projector:
    """Keeps a read model up to date in a background thread, a batch of
    notifications at a time (`Follower`). For each case a batch touches, the
    aggregate as it stands after the batch's last event of it is projected:
    `apply_batch(aggregates, tracking)` writes them all and the tracking
    position in ONE transaction. Where a batch is refused, each aggregate is
    written alone by `apply(aggregate, tracking)`, and a row the database
    refuses (DataError) is set aside, loudly, and the position moves on: one
    bad row must not stall every list for good. With `created` (the
    application's), a case created by this process is taken from there
    rather than read back. With `upkeep`, the read model's own rows are
    seen to every `FOLD_EVERY_S` in a thread of their own: `upkeep(stopping)`
    (a case index folds the texts of rows an older release wrote, `fold`)."""

    app: Any
    recorder: TrackingRecorder
    apply: Callable[[Any, Tracking], None]
    name: str
    apply_batch: Callable[[list[Any], Tracking], None] | None = None
    created: Created | None = None
    upkeep: Callable[[Callable[[], bool]], object] | None = None

    def __post_init__(self) -> None:
        self._follower = Follower(
            self.app,
            self.name,
            lambda: self.recorder.max_tracking_id(self.app.name),
            self._project,
            own_position=isinstance(self.recorder, SharedTracking),
        )
        self._upkeep: Periodic | None = None
        if self.upkeep is not None:
            upkeep = self.upkeep
            self._upkeep = Periodic(
                f"{self.name}-upkeep",
                FOLD_EVERY_S,
                lambda: upkeep(lambda: self._upkeep is not None and self._upkeep.stopping),
                "read_model.upkeep_failed",
                join_s=5,
            )

    def start(self) -> None:
        self._follower.start()
        if self._upkeep is not None:
            self._upkeep.start()

    def stop(self) -> None:
        if self._upkeep is not None:
            self._upkeep.stop()
        self._follower.stop()

    def catch_up(self) -> None:
        """Projects, here and now, what the store holds past the tracked position
        (the application tests' way; a service runs the thread)."""
        self._follower.catch_up()

    def _project(self, batch: Sequence[Notification], reached: int) -> None:
        last: dict[Any, Notification] = {n.originator_id: n for n in batch}
        latest = sorted(last.values(), key=lambda n: n.id)
        # A case this release cannot read (an event class gone without an
        # upcaster) is set aside as a row that cannot be written is: one bad
        # case must not stall every list for good.
        read: list[tuple[Notification, Any]] = []
        for n in latest:
            try:
                read.append((n, self._aggregate(n.originator_id, n.originator_version)))
            except (UnknownDataKey, UnknownMasterKey):
                # A key not to be had now (a master key missing from the
                # secret, the wrong key database) is read again, not set aside.
                raise
            except Exception as exc:
                if retryable(exc):
                    raise
                self._refused(n, exc)
                read.append((n, None))
        done = Tracking(self.app.name, reached)
        if self.apply_batch is not None:
            try:
                self.apply_batch([a for _, a in read if a is not None], done)
                return
            except Exception as exc:
                if retryable(exc):
                    raise  # the database away, or an IntegrityError (`retryable`)
                log.warning("read_model.batch_refused", read_model=self.name, error=repr(exc))
        for n, aggregate in read:
            if aggregate is None:
                self.recorder.insert_tracking(Tracking(self.app.name, n.id))
            else:
                self._project_one(n, aggregate)

    def _aggregate(self, ident: uuid.UUID | str, version: int) -> Any:
        kept = self.created.take(ident, version) if self.created is not None else None
        return kept if kept is not None else self.app.repository.get(ident, version=version)

    def _project_one(self, n: Notification, aggregate: Any) -> None:
        tracking = Tracking(self.app.name, n.id)
        try:
            self.apply(aggregate, tracking)
        except Exception as exc:
            if retryable(exc):
                raise
            self._refused(n, exc)
            self.recorder.insert_tracking(tracking)

    def _refused(self, n: Notification, exc: Exception) -> None:
        log.error(
            "read_model.row_refused",
            read_model=self.name,
            aggregate_id=str(n.originator_id),
            version=n.originator_version,
            error=repr(exc),
        )


def IndexProjector(app: Any, index: CaseIndexLike, to_row: Callable[[Any], CaseRow]) -> Projector:
    """Projects each case into `index` as `to_row` renders it; on PostgreSQL,
    folds the texts of rows an older release wrote (`CaseIndex.fold`)."""
    return Projector(
        app,
        index,
        lambda case, tracking: index.record(to_row(case), tracking),
        name=f"{app.name}_case_index",
        apply_batch=lambda cases, tracking: index.record_many([to_row(c) for c in cases], tracking),
        created=app.created,
        upkeep=index.fold if isinstance(index, CaseIndex) else None,
    )


def encode_page_token(ts: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{ident}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str] | None:
    """None for the first page; ValueError for a token this API did not give."""
    if not token:
        return None
    ts, _, ident = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    return datetime.fromisoformat(ts), str(uuid.UUID(ident))

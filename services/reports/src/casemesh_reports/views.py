"""The reports service's read model, projected from its own event log: the
reporters' lists, the agents' triage queue, the trusted-flagger list and the
facts the transparency figures are computed from. Each notification's rows
and its tracking record commit in one transaction; rows only move forward in
version, and a fact stays as first written (the aggregate's later versions
keep it the same; an appeal's reversal is only filled in), so a replay
changes nothing, nor does a row rendered from an older version written
after a newer one. That is why a replica writes its rows even when another
recorded the shared position further first (`SharedTracking`): during a
rolling update that other may be of the older release, which set aside a
report or case it could not read, and its row would stay as it was until
its next event.

The facts carry the times the aggregates themselves keep (when a report was
filed and first decided, each decision made, a case voided, an appeal lodged
and upheld, a reporter suspended: the service's clock, which also stamps the
events), so the figures are the same however the projector batched the
events that established them.

`ReportsView` keeps it in the service's database; `MemoryReportsView` keeps
it in memory by the same rules, for the application tests."""

from __future__ import annotations

import base64
import binascii
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from casemesh.platform.following import SharedMemoryTracking, SharedTracking
from casemesh.platform.periods import falls_within, within
from casemesh.platform.where import Where
from casemesh_reports.domain import (
    AbuseReport,
    ReportCase,
    Reporter,
    TrustedFlagger,
    decision_reversed_at,
)
from casemesh_reports.policy import Triage

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS report_index ("
    " report_id uuid PRIMARY KEY, reporter text NOT NULL, case_id uuid NOT NULL,"
    " state text NOT NULL, create_time timestamptz NOT NULL, version int NOT NULL,"
    " doc jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS report_index_reporter"
    " ON report_index (reporter, create_time DESC, report_id DESC)",
    "CREATE INDEX IF NOT EXISTS report_index_case ON report_index (case_id, create_time DESC)",
    "CREATE TABLE IF NOT EXISTS report_queue ("
    " case_id uuid PRIMARY KEY, lane text NOT NULL, rank_time timestamptz NOT NULL,"
    " base_priority double precision NOT NULL, first_report_time timestamptz NOT NULL,"
    " state text NOT NULL, category text NOT NULL, version int NOT NULL, doc jsonb NOT NULL)",
    "ALTER TABLE report_queue ADD COLUMN IF NOT EXISTS uploader text NOT NULL DEFAULT ''",
    "CREATE INDEX IF NOT EXISTS report_queue_uploader ON report_queue (uploader)"
    " WHERE uploader <> ''",
    # An erasure finds the cases naming a person as the affected uploader.
    "CREATE INDEX IF NOT EXISTS report_queue_named_uploader"
    " ON report_queue ((doc->'case'->'affectedUploader'->>'userId'))",
    "CREATE INDEX IF NOT EXISTS report_queue_order"
    " ON report_queue (state, lane, rank_time, case_id)",
    "CREATE TABLE IF NOT EXISTS report_facts ("
    " report_id uuid PRIMARY KEY, category text NOT NULL, source text NOT NULL,"
    " received_at timestamptz NOT NULL, decided_at timestamptz, outcome text NOT NULL,"
    " version int NOT NULL)",
    "CREATE TABLE IF NOT EXISTS decision_facts ("
    " case_id uuid NOT NULL, n int NOT NULL, decided_at timestamptz NOT NULL,"
    " outcome text NOT NULL, restrictions text[] NOT NULL, PRIMARY KEY (case_id, n))",
    "CREATE TABLE IF NOT EXISTS void_facts ("
    " case_id uuid PRIMARY KEY, voided_at timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS appeal_facts ("
    " appeal text PRIMARY KEY, case_id uuid NOT NULL, lodged_at timestamptz NOT NULL,"
    " reversed_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS suspension_facts ("
    " reporter text NOT NULL, until timestamptz NOT NULL, at timestamptz NOT NULL,"
    " PRIMARY KEY (reporter, until))",
    "CREATE TABLE IF NOT EXISTS trusted_flaggers ("
    " user_id text PRIMARY KEY, display_name text NOT NULL, areas text[] NOT NULL,"
    " designate_time timestamptz NOT NULL, active boolean NOT NULL, version int NOT NULL)",
]


@dataclass(frozen=True)
class ReportsQuery:
    """Which reports to list (`reports`): a reporter's (None: anyone's), a
    case's (None: any), after the page token's (create time, id)."""

    reporter: str | None
    case_id: str | None
    after: tuple[datetime, str] | None
    limit: int


@dataclass(frozen=True)
class QueueQuery:
    """Which cases of the triage queue to list (`cases`): in these states, of
    this lane and category ("": any), after the page token's (ordinary lane,
    rank time, id)."""

    lane: str
    states: list[str]
    category: str
    after: tuple[bool, datetime, str] | None
    limit: int


class ReportsView(SharedTracking):
    def __init__(self, datastore: PostgresDatastore, triage: Triage) -> None:
        super().__init__(datastore, tracking_table_name="reports_view_tracking")
        self.triage = triage
        self.sql_create_statements.extend(SQL(statement).format() for statement in SCHEMA)

    # -- projection ----------------------------------------------------------------

    def apply(self, aggregate: Any, tracking: Tracking, doc: dict[str, Any] | None) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if isinstance(aggregate, AbuseReport):
                self._report(curs, aggregate, doc or {})
            elif isinstance(aggregate, ReportCase):
                self._case(curs, aggregate, doc or {})
            elif isinstance(aggregate, Reporter):
                for s in aggregate.suspensions:
                    curs.execute(
                        "INSERT INTO suspension_facts (reporter, until, at) VALUES (%s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (aggregate.user_id, s["until"], s["at"]),
                    )
            elif isinstance(aggregate, TrustedFlagger):
                curs.execute(
                    "INSERT INTO trusted_flaggers (user_id, display_name, areas, designate_time,"
                    " active, version) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name,"
                    " areas = EXCLUDED.areas, active = EXCLUDED.active,"
                    " version = EXCLUDED.version WHERE trusted_flaggers.version < EXCLUDED.version",
                    (
                        aggregate.user_id,
                        aggregate.display_name,
                        aggregate.areas,
                        aggregate.created_on,
                        aggregate.active,
                        aggregate.version,
                    ),
                )
            self._insert_tracking(curs, tracking)

    @staticmethod
    def _report(curs: Any, r: AbuseReport, doc: dict[str, Any]) -> None:
        curs.execute(
            "INSERT INTO report_index (report_id, reporter, case_id, state, create_time,"
            " version, doc) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (report_id) DO UPDATE SET state = EXCLUDED.state,"
            " version = EXCLUDED.version, doc = EXCLUDED.doc"
            " WHERE report_index.version < EXCLUDED.version",
            (r.id, r.reporter, r.case_id, r.state.value, r.created_on, r.version, Jsonb(doc)),
        )
        curs.execute(
            "INSERT INTO report_facts (report_id, category, source, received_at, decided_at,"
            " outcome, version) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (report_id) DO UPDATE"
            " SET decided_at = COALESCE(report_facts.decided_at, EXCLUDED.decided_at),"
            " outcome = EXCLUDED.outcome, version = EXCLUDED.version"
            " WHERE report_facts.version < EXCLUDED.version",
            (r.id, r.category, r.source, r.received_at, r.decided_at, r.state.value, r.version),
        )

    def _case(self, curs: Any, c: ReportCase, doc: dict[str, Any]) -> None:
        curs.execute(
            "INSERT INTO report_queue (case_id, lane, rank_time, base_priority,"
            " first_report_time, state, category, version, doc, uploader)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (case_id) DO UPDATE SET rank_time = EXCLUDED.rank_time,"
            " base_priority = EXCLUDED.base_priority, state = EXCLUDED.state,"
            " version = EXCLUDED.version, doc = EXCLUDED.doc, uploader = EXCLUDED.uploader"
            " WHERE report_queue.version < EXCLUDED.version",
            (
                c.id,
                c.lane,
                self.triage.rank_time(c.waiting_since, c.base_priority),
                c.base_priority,
                c.first_report_at,
                c.state.value,
                c.category,
                c.version,
                Jsonb(doc),
                (c.uploader or {}).get("user_id", "") if c.in_effect else "",
            ),
        )
        # Each fact at the time the case keeps for it, written once.
        for n, d in enumerate(c.decisions):
            curs.execute(
                "INSERT INTO decision_facts (case_id, n, decided_at, outcome, restrictions)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    c.id,
                    n,
                    d["at"],
                    d["outcome"],
                    [r["type"] for r in d["statement"].get("restrictions", [])],
                ),
            )
        if c.voided_at is not None:
            curs.execute(
                "INSERT INTO void_facts (case_id, voided_at) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (c.id, c.voided_at),
            )
        for appeal, a in c.appeals.items():
            curs.execute(
                "INSERT INTO appeal_facts (appeal, case_id, lodged_at, reversed_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (appeal) DO UPDATE"
                " SET reversed_at = COALESCE(appeal_facts.reversed_at, EXCLUDED.reversed_at)",
                (appeal, c.id, a["at"], decision_reversed_at(a)),
            )

    # -- erasure -----------------------------------------------------------------------

    def naming(self, person: str) -> list[UUID]:
        """The reports `person` filed, and the cases they are in or whose
        uploader `person` is: every row whose document may hold their text."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT report_id AS id FROM report_index WHERE reporter = %s"
                " UNION SELECT case_id FROM report_index WHERE reporter = %s"
                " UNION SELECT case_id FROM report_queue"
                " WHERE doc->'case'->'affectedUploader'->>'userId' = %s",
                (person, person, person),
            )
            return [row["id"] for row in curs.fetchall()]

    def rewrite(self, aggregate: Any, doc: dict[str, Any] | None) -> None:
        """The document of a report's or a case's row rendered again, only if
        the row is at the aggregate's version: a row behind is left to the
        projector, which writes its document with the columns the lists
        filter on (state, rank, uploader). Raising its version here would
        make the projector skip the events it has yet to apply, and those
        columns would stay as they were; a projector gone further keeps its
        own."""
        table, key = _row_of(aggregate)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("UPDATE {} SET doc = %s WHERE {} = %s AND version = %s").format(
                    Identifier(table), Identifier(key)
                ),
                (Jsonb(doc or {}), aggregate.id, aggregate.version),
            )

    # -- queries ---------------------------------------------------------------------

    def reports(self, q: ReportsQuery) -> list[dict[str, Any]]:
        where = Where()
        if q.reporter is not None:  # a user's own reports only (None: an agent's list)
            where.add("reporter = %s", q.reporter)
        if q.case_id is not None:
            where.add("case_id = %s", q.case_id)
        if q.after is not None:
            where.add("(create_time, report_id) < (%s, %s)", *q.after)
        return self._docs(
            f"SELECT doc FROM report_index WHERE {where}"
            " ORDER BY create_time DESC, report_id DESC LIMIT %s",
            [*where.params, q.limit],
        )

    def cases(self, q: QueueQuery) -> list[dict[str, Any]]:
        """Triage order: the child-safety lane first, then the highest priority
        now (see `Triage.rank_time`)."""
        where = (
            Where("state = ANY(%s)", q.states)
            .given(q.lane, "lane = %s")
            .given(q.category, "category = %s")
        )
        if q.after is not None:
            where.add("(lane <> 'CHILD_SAFETY', rank_time, case_id) > (%s, %s, %s)", *q.after)
        query = (
            "SELECT doc || jsonb_build_object('rank_time', rank_time, 'base_priority',"
            " base_priority, 'ordinary', lane <> 'CHILD_SAFETY', 'id', case_id) AS doc"
            f" FROM report_queue WHERE {where}"
            " ORDER BY lane <> 'CHILD_SAFETY', rank_time, case_id LIMIT %s"
        )
        return self._docs(query, [*where.params, q.limit])

    def restricting(self, user_id: str, now: datetime) -> list[dict[str, Any]]:
        """Cases whose restrictions on `user_id` are in force `now` (`in_force`),
        newest first: filtered before the limit, so ended ones do not crowd
        out one that still holds."""
        return self._docs(
            "SELECT doc FROM report_queue WHERE uploader = %s AND EXISTS (SELECT FROM"
            f" (VALUES {_KINDS}) AS k (kind, ends), LATERAL (SELECT"
            " doc->'case'->'decision'->'restrictions' AS r) AS d"
            " WHERE d.r ? k.kind AND (d.r->>k.ends IS NULL OR (d.r->>k.ends)::timestamptz > %s))"
            " ORDER BY doc->'case'->>'decideTime' DESC LIMIT 100",
            [user_id, now],
        )

    def naming_uploader(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Cases whose decisions named `user_id` as the affected uploader,
        newest case first, from after `after` (a case's time and id)."""
        named = "doc->'case'->'affectedUploader'->>'userId' = %s"
        where = Where(named, user_id)
        if after is not None:
            where.add("((doc->>'create_time')::timestamptz, case_id) < (%s, %s)", *after)
        return self._docs(
            f"SELECT doc FROM report_queue WHERE {where}"
            " ORDER BY (doc->>'create_time')::timestamptz DESC, case_id DESC LIMIT %s",
            [*where.params, limit],
        )

    def flaggers(self) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT user_id, display_name, areas, designate_time FROM trusted_flaggers"
                " WHERE active ORDER BY user_id"
            )
            return [dict(row) for row in curs.fetchall()]

    def transparency(self, start: datetime | None, end: datetime | None) -> dict[str, Any]:
        def period(column: str) -> tuple[str, list[Any]]:
            return within(column, start, end)

        figures: dict[str, Any] = {}
        with self.datastore.transaction(commit=False) as curs:
            where, params = period("received_at")
            curs.execute(
                f"SELECT category, source, count(*) AS n FROM report_facts WHERE {where}"
                " GROUP BY category, source ORDER BY category, source",
                params,
            )
            figures["by_category"] = [
                (row["category"], row["source"], row["n"]) for row in curs.fetchall()
            ]
            where, params = period("decided_at")
            curs.execute(
                "SELECT restriction, count(*) AS n FROM (SELECT unnest(CASE WHEN"
                " cardinality(restrictions) = 0 THEN ARRAY['NO_VIOLATION'] ELSE restrictions"
                f" END) AS restriction FROM decision_facts WHERE {where}) r"
                " GROUP BY restriction ORDER BY restriction",
                params,
            )
            figures["by_restriction"] = [(row["restriction"], row["n"]) for row in curs.fetchall()]
            curs.execute(f"SELECT count(*) AS n FROM decision_facts WHERE {where}", params)
            figures["decided"] = _one(curs)["n"]
            curs.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                " extract(epoch FROM decided_at - received_at)) AS m"
                f" FROM report_facts WHERE {where}",
                params,
            )
            figures["median_seconds"] = float(_one(curs)["m"] or 0.0)
            for key, table, column in (
                ("void", "void_facts", "voided_at"),
                ("appeals", "appeal_facts", "lodged_at"),
                ("reversals", "appeal_facts", "reversed_at"),
                ("suspended", "suspension_facts", "at"),
            ):
                where, params = period(column)
                curs.execute(f"SELECT count(*) AS n FROM {table} WHERE {where}", params)
                figures[key] = _one(curs)["n"]
        figures["received"] = sum(n for _, _, n in figures["by_category"])
        return figures

    def _docs(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return [row["doc"] for row in curs.fetchall()]


class MemoryReportsView(SharedMemoryTracking):
    """The read model in memory: the tables of `ReportsView` as dictionaries,
    written and read by the same rules (a row, and the position, move
    forward only, the position not refused when it is as far already; a
    fact is kept as first seen)."""

    def __init__(self, triage: Triage) -> None:
        super().__init__()
        self.triage = triage
        self.report_index: dict[UUID, dict[str, Any]] = {}
        self.report_queue: dict[UUID, dict[str, Any]] = {}
        self.report_facts: dict[UUID, dict[str, Any]] = {}
        self.decision_facts: dict[tuple[UUID, int], dict[str, Any]] = {}
        self.void_facts: dict[UUID, datetime] = {}
        self.appeal_facts: dict[str, dict[str, Any]] = {}
        self.suspension_facts: dict[tuple[str, datetime], datetime] = {}
        self.trusted_flaggers: dict[str, dict[str, Any]] = {}

    # -- projection ----------------------------------------------------------------

    def apply(self, aggregate: Any, tracking: Tracking, doc: dict[str, Any] | None) -> None:
        with self._database_lock:
            if isinstance(aggregate, AbuseReport):
                self._report(aggregate, doc or {})
            elif isinstance(aggregate, ReportCase):
                self._case(aggregate, doc or {})
            elif isinstance(aggregate, Reporter):
                for s in aggregate.suspensions:
                    key = (aggregate.user_id, s["until"])
                    self.suspension_facts.setdefault(key, s["at"])
            elif isinstance(aggregate, TrustedFlagger):
                kept = {"user_id": aggregate.user_id, "designate_time": aggregate.created_on}
                changed = {
                    "display_name": aggregate.display_name,
                    "areas": list(aggregate.areas),
                    "active": aggregate.active,
                    "version": aggregate.version,
                }
                _upsert(self.trusted_flaggers, aggregate.user_id, kept, changed)
            self._move_to(tracking)

    def _report(self, r: AbuseReport, doc: dict[str, Any]) -> None:
        kept = {
            "reporter": r.reporter,
            "case_id": UUID(str(r.case_id)),
            "create_time": r.created_on,
        }
        _upsert(
            self.report_index,
            r.id,
            kept,
            {"state": r.state.value, "version": r.version, "doc": doc},
        )
        held = self.report_facts.get(r.id, {})
        kept = {"category": r.category, "source": r.source, "received_at": r.received_at}
        changed = {
            "decided_at": held.get("decided_at") or r.decided_at,
            "outcome": r.state.value,
            "version": r.version,
        }
        _upsert(self.report_facts, r.id, kept, changed)

    def _case(self, c: ReportCase, doc: dict[str, Any]) -> None:
        kept = {"lane": c.lane, "first_report_time": c.first_report_at, "category": c.category}
        changed = {
            "rank_time": self.triage.rank_time(c.waiting_since, c.base_priority),
            "base_priority": c.base_priority,
            "state": c.state.value,
            "version": c.version,
            "doc": doc,
            "uploader": (c.uploader or {}).get("user_id", "") if c.in_effect else "",
        }
        _upsert(self.report_queue, c.id, kept, changed)
        for n, d in enumerate(c.decisions):
            self.decision_facts.setdefault(
                (c.id, n),
                {
                    "decided_at": d["at"],
                    "outcome": d["outcome"],
                    "restrictions": [r["type"] for r in d["statement"].get("restrictions", [])],
                },
            )
        if c.voided_at is not None:
            self.void_facts.setdefault(c.id, c.voided_at)
        for appeal, a in c.appeals.items():
            fact = self.appeal_facts.setdefault(
                appeal, {"case_id": c.id, "lodged_at": a["at"], "reversed_at": None}
            )
            fact["reversed_at"] = fact["reversed_at"] or decision_reversed_at(a)

    # -- erasure -----------------------------------------------------------------------

    def naming(self, person: str) -> list[UUID]:
        with self._database_lock:
            filed = {i: r for i, r in self.report_index.items() if r["reporter"] == person}
            uploaded = [
                i
                for i, c in self.report_queue.items()
                if c["doc"].get("case", {}).get("affectedUploader", {}).get("userId") == person
            ]
            return [*filed, *{r["case_id"] for r in filed.values()}, *uploaded]

    def rewrite(self, aggregate: Any, doc: dict[str, Any] | None) -> None:
        table, _ = _row_of(aggregate)
        with self._database_lock:
            held = getattr(self, table).get(aggregate.id)
            if held is not None and held["version"] == aggregate.version:
                held["doc"] = doc or {}

    # -- queries ---------------------------------------------------------------------

    def reports(self, q: ReportsQuery) -> list[dict[str, Any]]:
        def key(ident: UUID) -> tuple[datetime, UUID]:
            return self.report_index[ident]["create_time"], ident

        found = [
            row["doc"]
            for ident, row in sorted(self.report_index.items(), key=lambda i: key(i[0]))[::-1]
            if (q.reporter is None or row["reporter"] == q.reporter)
            and (q.case_id is None or row["case_id"] == UUID(q.case_id))
            and (q.after is None or key(ident) < (q.after[0], UUID(q.after[1])))
        ]
        return found[: q.limit]

    def cases(self, q: QueueQuery) -> list[dict[str, Any]]:
        """In `ReportsView.cases`' order, its rows as it renders them."""

        def key(ident: UUID) -> tuple[bool, datetime, UUID]:
            row = self.report_queue[ident]
            return row["lane"] != "CHILD_SAFETY", row["rank_time"], ident

        found = [
            {
                **row["doc"],
                "rank_time": row["rank_time"].isoformat(),
                "base_priority": row["base_priority"],
                "ordinary": row["lane"] != "CHILD_SAFETY",
                "id": str(ident),
            }
            for ident, row in sorted(self.report_queue.items(), key=lambda i: key(i[0]))
            if row["state"] in q.states
            and (not q.lane or row["lane"] == q.lane)
            and (not q.category or row["category"] == q.category)
            and (q.after is None or key(ident) > (q.after[0], q.after[1], UUID(q.after[2])))
        ]
        return found[: q.limit]

    def restricting(self, user_id: str, now: datetime) -> list[dict[str, Any]]:
        """Cases whose restrictions on `user_id` are in force `now`, newest first."""

        def decided(doc: dict[str, Any]) -> tuple[bool, str]:
            at = doc.get("case", {}).get("decideTime")
            return at is None, at or ""  # as PostgreSQL orders: no time first

        docs = [
            r["doc"]
            for r in self.report_queue.values()
            if r["uploader"] == user_id and in_force(r["doc"], now)
        ]
        return sorted(docs, key=decided, reverse=True)[:100]

    def naming_uploader(
        self, user_id: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        def key(doc: dict[str, Any]) -> tuple[datetime, UUID]:
            return datetime.fromisoformat(doc["create_time"]), UUID(doc["id"])

        with self._database_lock:
            docs = [row["doc"] for row in self.report_queue.values()]
        named = [
            doc
            for doc in docs
            if doc.get("case", {}).get("affectedUploader", {}).get("userId") == user_id
            and (after is None or key(doc) < (after[0], UUID(after[1])))
        ]
        return sorted(named, key=key, reverse=True)[:limit]

    def flaggers(self) -> list[dict[str, Any]]:
        return [
            {k: f[k] for k in ("user_id", "display_name", "areas", "designate_time")}
            for _, f in sorted(self.trusted_flaggers.items())
            if f["active"]
        ]

    def transparency(self, start: datetime | None, end: datetime | None) -> dict[str, Any]:
        def within(moment: datetime | None) -> bool:
            return falls_within(moment, start, end)

        received = Counter(
            (f["category"], f["source"])
            for f in self.report_facts.values()
            if within(f["received_at"])
        )
        decisions = [d for d in self.decision_facts.values() if within(d["decided_at"])]
        restrictions = Counter(r for d in decisions for r in d["restrictions"] or ["NO_VIOLATION"])
        waited = [
            (f["decided_at"] - f["received_at"]).total_seconds()
            for f in self.report_facts.values()
            if within(f["decided_at"])
        ]
        appeals = self.appeal_facts.values()
        figures: dict[str, Any] = {
            "by_category": [(c, s, n) for (c, s), n in sorted(received.items())],
            "by_restriction": sorted(restrictions.items()),
            "decided": len(decisions),
            "median_seconds": float(statistics.median(waited)) if waited else 0.0,
            "void": sum(within(at) for at in self.void_facts.values()),
            "appeals": sum(within(a["lodged_at"]) for a in appeals),
            "reversals": sum(within(a["reversed_at"]) for a in appeals),
            "suspended": sum(within(at) for at in self.suspension_facts.values()),
        }
        figures["received"] = sum(received.values())
        return figures


# Each restriction list of a decision (a case's document), and the field
# saying when it ends; as SQL rows for `ReportsView.restricting`.
RESTRICTIONS = (
    ("visibility", "visibilityEndTime"),
    ("monetary", "monetaryEndTime"),
    ("provision", "provisionEndTime"),
    ("account", "accountEndTime"),
)
_KINDS = ", ".join(f"('{kind}', '{ends}')" for kind, ends in RESTRICTIONS)


def in_force(doc: dict[str, Any], now: datetime) -> bool:
    """Whether a case's decision (its document) has a restriction without an
    end, or one that ends after `now`. (A document leaves out an empty list
    and an unset value, so `ReportsView.restricting`'s `?` tests the same.)"""
    restrictions = doc.get("case", {}).get("decision", {}).get("restrictions", {})
    for kind, ends in RESTRICTIONS:
        if not restrictions.get(kind):
            continue
        until = restrictions.get(ends)
        if not until or datetime.fromisoformat(until.replace("Z", "+00:00")) > now:
            return True
    return False


def _row_of(aggregate: Any) -> tuple[str, str]:
    """The table of an aggregate's row with a document, and its key column."""
    if isinstance(aggregate, AbuseReport):
        return "report_index", "report_id"
    if isinstance(aggregate, ReportCase):
        return "report_queue", "case_id"
    raise TypeError(f"no document is kept of a {type(aggregate).__name__}")


def _upsert(table: dict[Any, dict[str, Any]], key: Any, kept: Any, changed: Any) -> None:
    """INSERT … ON CONFLICT DO UPDATE … WHERE the held version is older, in
    memory: a new row is `kept` and `changed`; a held one takes `changed`
    only from a newer version."""
    held = table.get(key)
    if held is None:
        table[key] = {**kept, **changed}
    elif held["version"] < changed["version"]:
        held.update(changed)


# The read model as the application reads it and its projector writes it.
ReportsViewLike = ReportsView | MemoryReportsView


def _one(curs: Any) -> dict[str, Any]:
    row: dict[str, Any] = curs.fetchone()
    return row


def encode_queue_token(ordinary: bool, rank_time: datetime, ident: str) -> str:
    """The token of the queue page that starts after this case (`cases`' `after`)."""
    raw = f"{int(ordinary)}|{rank_time.isoformat()}|{ident}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_queue_token(token: str) -> tuple[bool, datetime, str] | None:
    """None for the first page; ValueError for a token this API did not give."""
    if not token:
        return None
    try:
        ordinary, ts, ident = base64.urlsafe_b64decode(token.encode()).decode().split("|")
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError(token) from exc
    if ordinary not in ("0", "1"):
        raise ValueError(token)
    return ordinary == "1", datetime.fromisoformat(ts), str(UUID(ident))

"""The reports service's read model, projected from its own event log: the
reporters' lists, the agents' triage queue, the trusted-flagger list and the
facts the transparency figures are computed from. Each notification's rows
and its tracking record commit in one transaction; rows only move forward in
version, so a replay changes nothing.

The facts carry the recording time of the event that established them (the
aggregate's `modified_on` at that version: the time on the public event), so
the figures agree with what a consumer of `casemesh.reports.v1` counts."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL
from psycopg.types.json import Jsonb

from casemesh.platform.periods import within
from casemesh_reports.domain import AbuseReport, ReportCase, Reporter, TrustedFlagger
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


class ReportsView(PostgresTrackingRecorder):
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
                        (aggregate.user_id, s["until"], aggregate.modified_on),
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
        decided = r.modified_on if r.state.value in ("ACTION_TAKEN", "NO_VIOLATION") else None
        curs.execute(
            "INSERT INTO report_facts (report_id, category, source, received_at, decided_at,"
            " outcome, version) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (report_id) DO UPDATE"
            " SET decided_at = COALESCE(report_facts.decided_at, EXCLUDED.decided_at),"
            " outcome = EXCLUDED.outcome, version = EXCLUDED.version"
            " WHERE report_facts.version < EXCLUDED.version",
            (r.id, r.category, r.source, r.created_on, decided, r.state.value, r.version),
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
                self.triage.rank_time(c.first_report_at, c.base_priority),
                c.base_priority,
                c.first_report_at,
                c.state.value,
                c.category,
                c.version,
                Jsonb(doc),
                (c.uploader or {}).get("user_id", "") if c.in_effect else "",
            ),
        )
        # A fact is first seen at the version of the event that made it.
        for n, d in enumerate(c.decisions):
            curs.execute(
                "INSERT INTO decision_facts (case_id, n, decided_at, outcome, restrictions)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    c.id,
                    n,
                    c.modified_on,
                    d["outcome"],
                    [r["type"] for r in d["statement"].get("restrictions", [])],
                ),
            )
        if c.voided_at is not None:
            curs.execute(
                "INSERT INTO void_facts (case_id, voided_at) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (c.id, c.modified_on),
            )
        for appeal, a in c.appeals.items():
            curs.execute(
                "INSERT INTO appeal_facts (appeal, case_id, lodged_at, reversed_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (appeal) DO UPDATE"
                " SET reversed_at = COALESCE(appeal_facts.reversed_at, EXCLUDED.reversed_at)",
                (appeal, c.id, c.modified_on, c.modified_on if a["reversed_at"] else None),
            )

    # -- queries ---------------------------------------------------------------------

    def reports(
        self,
        *,
        reporter: str | None,
        case_id: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if reporter is not None:
            where.append("reporter = %s")
            params.append(reporter)
        if case_id is not None:
            where.append("case_id = %s")
            params.append(case_id)
        if after is not None:
            where.append("(create_time, report_id) < (%s, %s)")
            params.extend(after)
        return self._docs(
            f"SELECT doc FROM report_index WHERE {' AND '.join(where)}"
            " ORDER BY create_time DESC, report_id DESC LIMIT %s",
            [*params, limit],
        )

    def cases(
        self,
        *,
        lane: str,
        states: list[str],
        category: str,
        after: tuple[bool, datetime, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Triage order: the child-safety lane first, then the highest priority
        now (see `Triage.rank_time`). `after` is (ordinary lane, rank time, id)."""
        where: list[str] = ["state = ANY(%s)"]
        params: list[Any] = [states]
        if lane:
            where.append("lane = %s")
            params.append(lane)
        if category:
            where.append("category = %s")
            params.append(category)
        if after is not None:
            where.append("(lane <> 'CHILD_SAFETY', rank_time, case_id) > (%s, %s, %s)")
            params.extend(after)
        query = (
            "SELECT doc || jsonb_build_object('rank_time', rank_time, 'base_priority',"
            " base_priority, 'ordinary', lane <> 'CHILD_SAFETY', 'id', case_id) AS doc"
            f" FROM report_queue WHERE {' AND '.join(where)}"
            " ORDER BY lane <> 'CHILD_SAFETY', rank_time, case_id LIMIT %s"
        )
        return self._docs(query, [*params, limit])

    def restricting(self, user_id: str) -> list[dict[str, Any]]:
        """Cases whose restrictions on `user_id` are in effect, newest first."""
        return self._docs(
            "SELECT doc FROM report_queue WHERE uploader = %s"
            " ORDER BY doc->'case'->>'decideTime' DESC LIMIT 100",
            [user_id],
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

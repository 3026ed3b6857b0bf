"""Which notices name an item: the look-up behind an item's coming back.

A notice that lets go of an item (its counter-notice's window passed, a
court or an appeal restored it, its claimant withdrew it) brings the item
back only if no other notice keeps it down (`Appeals.overlaps`). The case
index renders each notice with its infringing items; PostgreSQL keeps them
in a column of their own, worked out from the row's document and indexed,
so that every row has it (one an older release's projector wrote too) and
updating a row that leaves them as they were stays a HOT update (an index
on the document itself would cost every update that).
"""

from __future__ import annotations

from collections.abc import Collection

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from casemesh.platform.caseindex import CaseIndex, CaseIndexLike

# Where the case index's document (`api.index_doc`) lists a notice's items.
ITEMS_OF_DOC = "doc -> 'appeal' -> 'notice' -> 'infringingItems'"


class AppealCaseIndex(CaseIndex):
    """The appeals' case index, each notice's infringing items in a column
    of their own, indexed (`notices_naming`)."""

    def __init__(self, datastore: PostgresDatastore, table: str) -> None:
        super().__init__(datastore, table)
        self.sql_create_statements.extend(
            SQL(statement).format(table=self.table, name=Identifier(f"{table}_items"))
            for statement in (
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS infringing_items jsonb"
                f" GENERATED ALWAYS AS ({ITEMS_OF_DOC}) STORED",
                "CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (infringing_items)",
            )
        )


def notices_naming(index: CaseIndexLike, items: Collection[str]) -> list[str]:
    """The ids of the cases `index` renders with any of `items` among its
    notice's infringing items: looked up in the table (through its own
    column and index in an `AppealCaseIndex`, else in each row's document),
    or, in memory (the application tests), read off its rows."""
    if isinstance(index, CaseIndex):
        listed = "infringing_items" if isinstance(index, AppealCaseIndex) else ITEMS_OF_DOC
        with index.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT case_id FROM {table} WHERE " + listed + " ?| %s::text[]").format(
                    table=index.table
                ),
                (sorted(items),),
            )
            return [str(row["case_id"]) for row in curs.fetchall()]
    wanted = set(items)
    return [row.case_id for row in list(index.rows.values()) if wanted & set(_items_of(row.doc))]


def _items_of(doc: dict[str, object]) -> list[str]:
    appeal = doc.get("appeal")
    notice = appeal.get("notice") if isinstance(appeal, dict) else None
    items = notice.get("infringingItems") if isinstance(notice, dict) else None
    return [item for item in items if isinstance(item, str)] if isinstance(items, list) else []

"""The table behind an outbox (`casemesh.platform.outbox`), made from its
declaration, so that the publisher and the schema name the same table and
subject column."""

from __future__ import annotations

from casemesh.platform.outbox import Outbox


def outbox_schema(outbox: Outbox, subject_type: str = "text") -> str:
    """The outbox's table and the partial index on its unpublished rows (both
    created only if missing), as SQL statements ending with ";"."""
    table, subject = outbox.table, outbox.subject_column
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY,"
        f" event_id text NOT NULL UNIQUE, {subject} {subject_type} NOT NULL, ce_type text NOT NULL,"
        " payload bytea NOT NULL, created_at timestamptz NOT NULL, published_at timestamptz);\n"
        f"CREATE INDEX IF NOT EXISTS {table}_unpublished ON {table} (id)"
        " WHERE published_at IS NULL;\n"
    )

"""When a file is no longer needed, and its deletion.

The service follows the three case topics (group `casemesh-evidence-cases`)
and keeps, for each file a case event attaches, which cases hold it
(`evidence_uses`), and where each of those cases stands (`evidence_cases`).
A file is known there by its uploader and content: the event's actor (a
caller may attach only what they uploaded) and the attachment's hash (its
name, `evidence/{id}`, travels sealed with the person's data). A case is

- **live** until it ends for good;
- **ended**: a ticket closed or cancelled; a copyright case withdrawn,
  abandoned or restored; a report voided, or its decision reversed. A
  decided copyright case or report stays live until it expires: a
  counter-notice or an appeal may still take it further;
- **expired**: its retention period ran out (`TicketExpired`,
  `AppealExpired`, `ReportExpired`).

A file is deleted (its record, and its bytes once no record of anyone's
names them) when

- every case that holds it has expired, or
- its uploader was erased and no live case holds it (a file no case holds
  goes with the erasure; one a live case holds, when that case ends).

A file's own advisory lock (`file_lock`, by its content) orders a deletion
against an upload of the same bytes and against a case taking the file up,
so neither can slip in between the check and the deletion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.consuming import ConsumerThread, Place, Subscription
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh_evidence.store import BlobStore

log = get_logger(__name__)

GROUP = "casemesh-evidence-cases"
CASE_TOPICS = (topics.TICKETS, topics.APPEALS, topics.REPORTS)
# The streams whose events attach files (a report case's own stream attaches
# none: its reports do).
HOLDERS = ("tickets/", "appeals/", "reports/")
EXPIRIES = (tev.TicketExpired, aev.AppealExpired, rev.ReportExpired)
# States a case does not leave (the tickets' without their prefix).
FINAL = frozenset({"CLOSED", "CANCELLED", "WITHDRAWN", "ABANDONED", "RESTORED", "VOID", "REVERSED"})

SCHEMA = """CREATE TABLE IF NOT EXISTS evidence_cases (
    name text PRIMARY KEY,
    version bigint NOT NULL,
    standing text NOT NULL);
CREATE TABLE IF NOT EXISTS evidence_uses (
    owner text NOT NULL,
    sha256 text NOT NULL,
    case_name text NOT NULL,
    PRIMARY KEY (owner, sha256, case_name));
CREATE INDEX IF NOT EXISTS evidence_uses_case ON evidence_uses (case_name);
CREATE TABLE IF NOT EXISTS evidence_erased_owners (owner text PRIMARY KEY)"""

# Of a file `e`: nothing still needs it.
UNNEEDED = """CASE
  WHEN EXISTS (SELECT FROM evidence_erased_owners o WHERE o.owner = e.owner)
  THEN NOT EXISTS (
    SELECT FROM evidence_uses u JOIN evidence_cases c ON c.name = u.case_name
    WHERE (u.owner, u.sha256) = (e.owner, e.sha256) AND c.standing = 'live')
  ELSE EXISTS (SELECT FROM evidence_uses u WHERE (u.owner, u.sha256) = (e.owner, e.sha256))
   AND NOT EXISTS (
    SELECT FROM evidence_uses u JOIN evidence_cases c ON c.name = u.case_name
    WHERE (u.owner, u.sha256) = (e.owner, e.sha256) AND c.standing <> 'expired')
  END"""


class Standing(StrEnum):
    LIVE = "live"
    ENDED = "ended"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Told:
    """What a case event says of files: the case (`tickets/{id}`…), its
    version, where it stands after the event, who caused it, and the content
    hashes of the files it attached (theirs)."""

    case: str
    version: int
    standing: Standing
    actor: str
    files: tuple[str, ...]


def observe(event: CloudEvent) -> Told | None:
    """What `event` tells of its case's files; None for a stream that holds
    none (a report case, a reporter's standing, the trusted flaggers)."""
    if not event.subject.startswith(HOLDERS):
        return None
    message: Any = event.message()
    header = message.header
    state = (
        tev.TicketStatus.Name(header.status).removeprefix("TICKET_STATUS_")
        if isinstance(header, tev.TicketEventHeader)
        else header.state
    )
    if isinstance(message, EXPIRIES):
        standing = Standing.EXPIRED
    else:
        standing = Standing.ENDED if state in FINAL else Standing.LIVE
    files = tuple(sorted({a.sha256 for a in getattr(message, "evidence", ())}))
    return Told(event.subject, header.version, standing, header.actor, files)


def file_lock(sha256: str) -> int:
    """The advisory lock of the file with this content (60 bits of its hash)."""
    return int(sha256[:15], 16)


def take(conn: psycopg.Connection[Any], store: BlobStore, told: Told) -> int:
    """Records what `told` says (a redelivered or older event changes
    nothing) and deletes what its case no longer needs. Returns how many
    files were deleted."""
    if told.files:
        for sha in told.files:  # sorted: two takers lock in one order
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (file_lock(sha),))
        conn.execute(
            "INSERT INTO evidence_cases (name, version, standing) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version,"
            " standing = EXCLUDED.standing WHERE evidence_cases.version < EXCLUDED.version",
            (told.case, told.version, told.standing),
        )
        conn.execute(
            "INSERT INTO evidence_uses (owner, sha256, case_name)"
            " SELECT %s, unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
            (told.actor, list(told.files), told.case),
        )
    elif told.standing is not Standing.LIVE:
        conn.execute(
            "UPDATE evidence_cases SET version = %s, standing = %s"
            " WHERE name = %s AND version < %s",
            (told.version, told.standing, told.case, told.version),
        )
    if told.standing is Standing.LIVE:
        return 0
    held = conn.execute(
        "SELECT e.id FROM evidence_uses u JOIN evidence e USING (owner, sha256)"
        " WHERE u.case_name = %s",
        (told.case,),
    ).fetchall()
    return delete_unneeded(conn, store, [row[0] for row in held])


def delete_unneeded(conn: psycopg.Connection[Any], store: BlobStore, ids: Sequence[Any]) -> int:
    """Deletes those of the files `ids` nothing needs any more (see the
    module): the record, and the bytes once no other record names them.
    The bytes go before the transaction commits: should it not, the record
    stays and is deleted when this runs again. Returns how many."""
    if not ids:
        return 0
    candidates = conn.execute(
        f"SELECT e.id, e.owner, e.sha256 FROM evidence e WHERE e.id = ANY(%s) AND {UNNEEDED}"
        " ORDER BY e.sha256",
        (list(ids),),
    ).fetchall()
    deleted = 0
    for ident, owner, sha in candidates:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (file_lock(sha),))
        # Checked again under the file's lock: a case may have taken it up.
        if not conn.execute(
            f"DELETE FROM evidence e WHERE e.id = %s AND {UNNEEDED}", (ident,)
        ).rowcount:
            continue
        conn.execute("DELETE FROM evidence_uses WHERE owner = %s AND sha256 = %s", (owner, sha))
        if (
            conn.execute("SELECT FROM evidence WHERE sha256 = %s LIMIT 1", (sha,)).fetchone()
            is None
        ):
            store.delete(sha)
        deleted += 1
        log.info("evidence.deleted", evidence_id=str(ident))
    return deleted


class CaseFollower(ConsumerThread):
    """A worker (`serve_servicer`'s) that follows the case topics in
    `GROUP`, taking each event that attaches files or ends a case (in a
    transaction of its own, in a worker thread)."""

    def __init__(self, bootstrap: str, database_url: str, store: BlobStore) -> None:
        super().__init__("evidence-cases", bootstrap)
        self._database_url, self._store = database_url, store

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("evidence-cases", GROUP, CASE_TOPICS, self._handle)]

    async def _handle(self, event: CloudEvent, place: Place) -> None:
        told = observe(event)
        if told is not None and (told.files or told.standing is not Standing.LIVE):
            await asyncio.to_thread(self._take, told)

    def _take(self, told: Told) -> None:
        with psycopg.connect(self._database_url, connect_timeout=10) as conn:
            take(conn, self._store, told)

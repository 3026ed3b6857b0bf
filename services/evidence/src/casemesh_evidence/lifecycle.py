"""When a file is no longer needed, and its deletion.

The service follows the three case topics (group `casemesh-evidence-cases`)
and keeps, for each file a case event attaches, which cases hold it
(`evidence_uses`), and where each of those cases stands (`evidence_cases`).
A file is known there by its uploader and content: the event's actor (a
caller may attach only what they uploaded) and the attachment's hash (its
name, `evidence/{id}`, travels sealed with the person's data). A case is

- **live** until it ends for good;
- **ended**: a ticket closed or cancelled; a copyright case withdrawn,
  abandoned or restored on appeal; a report voided, or its decision
  reversed. A decided copyright case or report stays live until it
  expires: a counter-notice or an appeal may still take it further. So
  does a notice restored after its counter-notice (its window passed, or a
  court restored what it named), or one whose counter-noticed items a court
  kept down: the items the counter-notice did not name are down still, and
  its uploader may appeal for them, which the notice's evidence (and the
  counter-notice's) is needed to decide; the events do not say whether any
  are left (the items may come in a request for information's answer,
  which they do not carry);
- **expired**: its retention period ran out (`TicketExpired`,
  `AppealExpired`, `ReportExpired`); an expired case stays so.

A file is not needed any more (`UNNEEDED`) when

- every case that holds it has expired (none ever held it: it was never
  attached), or
- its uploader was erased and no live case holds it (a file no case holds
  goes with the erasure; one a live case holds, when that case ends).

A case ending or expiring, and an erasure, make their files candidates
(`evidence_unneeded`, with the time). A file no live or ended case holds
waits to be attached (`evidence_unattached`, needed while it waits) for
the period `retention.toml` gives files never attached (`UNATTACHED`,
counted from its last upload); the purger makes it a candidate once the
wait is over, from then (so its grace counts from then however late that
is); a case taking it up ends the wait. (This relies on a case event's
actor being the file's uploader, as the gateway ensures: a file attached
by anyone else would not be found.) The purger deletes a candidate once it
has been one for the grace period and, checked again then, is still not
needed: what the topics tell arrives late (a relay or this consumer behind,
another partition read first, a whole history read again after a reset), so
a case that took the file up just before may not have been heard yet. The
grace counts only up to where `GROUP` has read the case topics (its
committed offsets: `HeardUntil`), so this consumer being behind or away,
however long, deletes nothing it may not have heard; a relay behind is
covered by the grace alone. A candidate its owner uploads again waits its
grace again from then (`TOUCH`); one its owner asks for (to attach it) does
too only if nothing but the end of its wait to be attached made it one
(`TOUCH_UNATTACHED`): the files of ended or expired cases and of an erased
person go on time however often their owner asks for them (a person polling,
or erased, would otherwise keep them for ever). Its record goes first; its
bytes go after, once no record of anyone's names them.

A file's own advisory lock (`file_locks`, by its content) orders the
purger's check and deletion against a case taking the file up and against
an upload of the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from itertools import takewhile
from typing import Any, NamedTuple

import psycopg

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.clock import Clock
from casemesh.platform.consuming import ConsumerThread, HeardUntil, Place, Subscription
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh.platform.periodic import Periodic
from casemesh.platform.pools import with_keepalives
from casemesh.rules import retention
from casemesh_evidence.store import BlobStore

log = get_logger(__name__)

GROUP = "casemesh-evidence-cases"
# Candidates looked at in one round of the purger.
PURGE_BATCH = 100
CASE_TOPICS = (topics.TICKETS, topics.APPEALS, topics.REPORTS)
# The streams whose events attach files (a report case's own stream attaches
# none: its reports do).
HOLDERS = ("tickets/", "appeals/", "reports/")
EXPIRIES = (tev.TicketExpired, aev.AppealExpired, rev.ReportExpired)
# States a case does not leave (the tickets' without their prefix).
FINAL = frozenset(
    {
        "CLOSED",
        "CANCELLED",
        "WITHDRAWN",
        "ABANDONED",
        "VOID",
        "REVERSED",
    }
)
# A copyright notice's content back up, or what its counter-notice named
# kept down by a court: final only once an upheld appeal brought back the
# rest (the decision on an appeal is final, and it restores every item the
# platform's decision alone keeps down); not before (`_has_ended`).
AFTER_COUNTER_NOTICE = frozenset({"RESTORED", "UPHELD_BY_COURT"})

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
CREATE TABLE IF NOT EXISTS evidence_erased_owners (owner text PRIMARY KEY);
ALTER TABLE evidence_erased_owners ADD COLUMN IF NOT EXISTS erased_at timestamptz;
ALTER TABLE evidence_erased_owners ALTER COLUMN erased_at SET DEFAULT now();
UPDATE evidence_erased_owners SET erased_at = now() WHERE erased_at IS NULL;
CREATE TABLE IF NOT EXISTS evidence_unneeded (
    evidence_id uuid PRIMARY KEY,
    since timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS evidence_unneeded_since ON evidence_unneeded (since);
CREATE TABLE IF NOT EXISTS evidence_bytes_unneeded (sha256 text PRIMARY KEY);
ALTER TABLE evidence_bytes_unneeded
    ADD COLUMN IF NOT EXISTS not_before timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE evidence_unneeded
    ADD COLUMN IF NOT EXISTS unattached boolean NOT NULL DEFAULT true;
ALTER TABLE evidence_unneeded ALTER COLUMN unattached SET DEFAULT true"""
# `evidence_erased_owners.erased_at`: the erasure's time. A release before
# it wrote none (NULL), which the purger took as "all their files are from
# before it" and an upload as "never erased": a file the person uploaded on
# coming back went a grace period after its ticket closed, not once the
# ticket expired. Such an erasure was heard before the first start of a
# release with these statements, which gives it that time (their files from
# before then go as an erased owner's, as they did; those after are theirs
# as anyone's). A replica of that older release still inserting one during
# a rollout gets the time it does. So no erasure is without a time once
# these statements ran (one string: PostgreSQL runs it as one transaction,
# under the ALTER's lock), and that is before this release reads the table
# (`create_schema`, at start); no release writes a NULL since (the last to
# keep one kept only one it found). `UNNEEDED`, and an upload's check for
# an erasure (`ERASURE_SINCE`), count on it.
# `evidence_unneeded.unattached`: the candidate was made one by the end of its
# wait to be attached (`PROMOTE`) and by nothing else (`mark_unneeded`: a
# case's end or expiry, an erasure, which says false). A row written by a
# release before it, or by one of its replicas still running, reads as
# unattached: its owner's asking for it still puts it off, as it did then
# (a file kept a little longer, never one a case just took up deleted).

# The longest an upload takes from storing its bytes to recording them. Bytes
# are stored before their record (not in its transaction: a video takes a
# while), so an upload that never records them (cancelled, or the database
# gone meanwhile) would leave bytes no record names and nothing deletes: each
# upload first notes its bytes as maybe unneeded from then on (`STORING`),
# and the purger deletes them then if no record names them.
STORING_FOR = timedelta(hours=1)
STORING = """INSERT INTO evidence_bytes_unneeded (sha256, not_before) VALUES (%s, %s)
ON CONFLICT (sha256) DO UPDATE
SET not_before = GREATEST(evidence_bytes_unneeded.not_before, EXCLUDED.not_before)"""
# Once recorded (the record names the bytes), in the recording transaction:
# else the note would hold back for an hour the deletion of bytes whose
# record goes sooner (an erasure).
STORED = "DELETE FROM evidence_bytes_unneeded WHERE sha256 = %s AND not_before = %s"

# How long an upload no case takes up is kept (then its grace period).
UNATTACHED = retention.period("unattached_files")
# Of a file `e`: no live or ended case holds it (none ever did, or every
# one that did has expired).
_HELD_BY_NONE = """NOT EXISTS (
    SELECT FROM evidence_uses u LEFT JOIN evidence_cases c ON c.name = u.case_name
    WHERE (u.owner, u.sha256) = (e.owner, e.sha256) AND c.standing IS DISTINCT FROM 'expired')"""
# Of a file `e`: nothing still needs it (a file waiting to be attached is needed).
UNNEEDED = f"""CASE
  WHEN EXISTS (SELECT FROM evidence_erased_owners o WHERE o.owner = e.owner
    AND e.created_at <= o.erased_at)
  THEN NOT EXISTS (
    SELECT FROM evidence_uses u JOIN evidence_cases c ON c.name = u.case_name
    WHERE (u.owner, u.sha256) = (e.owner, e.sha256) AND c.standing = 'live')
  ELSE {_HELD_BY_NONE}
   AND NOT EXISTS (SELECT FROM evidence_unattached n WHERE n.evidence_id = e.id)
  END"""

UNATTACHED_SCHEMA = """CREATE TABLE IF NOT EXISTS evidence_unattached (
    evidence_id uuid PRIMARY KEY,
    until timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS evidence_unattached_until
    ON evidence_unattached (until, evidence_id);
CREATE TABLE IF NOT EXISTS evidence_sweeps (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    started_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS evidence_created ON evidence (created_at)"""
# Run at each start (`wait_for_the_unrecorded`): a file no case holds that
# neither waits nor is a candidate (stored before files waited to be
# attached, or by a replica of an older release during a rollout) waits
# from its upload. In id order, so that replicas starting together do not
# wait on each other in a cycle.
WAIT_FOR_THE_UNRECORDED = f"""INSERT INTO evidence_unattached (evidence_id, until)
SELECT e.id, e.created_at + make_interval(secs => %(wait)s) FROM evidence e
WHERE {_HELD_BY_NONE}
  AND NOT EXISTS (SELECT FROM evidence_unattached n WHERE n.evidence_id = e.id)
  AND NOT EXISTS (SELECT FROM evidence_unneeded n WHERE n.evidence_id = e.id)
  AND e.created_at >= %(since)s
ORDER BY e.id
ON CONFLICT DO NOTHING"""
# A sweep looks at files uploaded since the last one began, less this: an
# upload under way then (not yet committed) was stamped a little before it.
SWEEP_OVERLAP = timedelta(days=1)
# A file no case holds (uploaded, or uploaded again) waits to be attached
# until `%(until)s`, or later if it already did. Run under its lock, before
# anything that writes its candidacy (`TOUCH`, `MARK`): the purger's
# `PROMOTE` takes these rows first too, and holds them as it writes those.
AWAIT_ATTACHING = (
    "INSERT INTO evidence_unattached (evidence_id, until) SELECT e.id, %(until)s FROM evidence e"
    f" WHERE e.id = %(id)s AND {_HELD_BY_NONE}"
    " ON CONFLICT (evidence_id) DO UPDATE SET"
    " until = GREATEST(evidence_unattached.until, EXCLUDED.until)"
)
# Up to `%(limit)s` files whose wait to be attached ended before `%(now)s`
# become candidates from `%(now)s` (rows a writer holds are left for the
# next round), inserted in the order every marker inserts them.
PROMOTE = (
    "WITH due AS (DELETE FROM evidence_unattached WHERE evidence_id IN ("
    "  SELECT evidence_id FROM evidence_unattached WHERE until < %(now)s"
    "  ORDER BY until, evidence_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " RETURNING evidence_id)"
    " INSERT INTO evidence_unneeded (evidence_id, since, unattached)"
    " SELECT evidence_id, %(now)s, true FROM due ORDER BY evidence_id"
    " ON CONFLICT (evidence_id) DO UPDATE SET"
    " since = GREATEST(evidence_unneeded.since, EXCLUDED.since),"
    " unattached = evidence_unneeded.unattached AND EXCLUDED.unattached"
)


# A file its owner uploaded again: were it a candidate, it waits its grace
# period again from now (`%s`), so that the case it goes to is heard before
# it is checked. Run under the file's lock.
TOUCH = "UPDATE evidence_unneeded SET since = GREATEST(since, %s) WHERE evidence_id = %s"
# A file its owner asked for (to attach it, say): likewise, were it a
# candidate only because no case took it up in time. Not one an ended or
# expired case or an erasure made a candidate: asking is no use of it (a
# person polling their files, or erased, would keep them for ever).
TOUCH_UNATTACHED = f"{TOUCH} AND unattached"


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


def _ticket_status(number: int) -> str:
    """A ticket status's name; a number this build does not know (a status
    added since) is "" and so reads as live: its files are kept, and the
    event's attachments recorded, rather than the event set aside."""
    if number not in tev.TicketStatus.values():
        return ""
    return tev.TicketStatus.Name(tev.TicketStatus.ValueType(number)).removeprefix("TICKET_STATUS_")


def observe(event: CloudEvent) -> Told | None:
    """What `event` tells of its case's files; None for a stream that holds
    none (a report case, a reporter's standing, the trusted flaggers)."""
    if not event.subject.startswith(HOLDERS):
        return None
    message: Any = event.message()
    header = message.header
    state = (
        _ticket_status(header.status) if isinstance(header, tev.TicketEventHeader) else header.state
    )
    if isinstance(message, EXPIRIES):
        standing = Standing.EXPIRED
    else:
        standing = Standing.ENDED if _has_ended(state, message) else Standing.LIVE
    files = tuple(sorted({a.sha256 for a in getattr(message, "evidence", ())}))
    return Told(event.subject, header.version, standing, header.actor, files)


def _has_ended(state: str, message: Any) -> bool:
    """Whether a case in `state` after `message` can change no more but by
    expiring. A notice RESTORED after its counter-notice (the window passed,
    or a court's outcome), or UPHELD_BY_COURT, cannot tell: what that
    counter-notice did not name stays down and its uploader may still appeal
    it, so it is live until an upheld appeal restores the rest
    (`ContentRestored` naming it) or it expires."""
    if state in AFTER_COUNTER_NOTICE:
        return isinstance(message, aev.ContentRestored) and bool(message.outcome_of)
    return state in FINAL


# Takes the advisory locks `file_locks` gives, in its order, till the
# transaction ends.
LOCK = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k"


def file_locks(*sha256: str) -> tuple[list[int]]:
    """`LOCK`'s parameter: the locks of the files with these contents (60
    bits of each hash), in one order for every taker, so they do not
    deadlock."""
    return (sorted({int(sha[:15], 16) for sha in sha256}),)


def take(conn: psycopg.Connection[Any], told: Told) -> list[Any]:
    """Records what `told` says (an older event does not move its case
    back; an expired case takes nothing up any more) and returns the files
    of its case if it ended or expired: to be made candidates
    (`mark_unneeded`; a redelivered ending marks them again, which only
    makes them wait longer). The caller holds the locks of the files it
    attaches (`LOCK`)."""
    if told.files:
        conn.execute(
            "INSERT INTO evidence_uses (owner, sha256, case_name)"
            " SELECT %s, unnest(%s::text[]), %s WHERE NOT EXISTS ("
            "  SELECT FROM evidence_cases WHERE name = %s AND standing = 'expired')"
            " ON CONFLICT DO NOTHING",
            (told.actor, list(told.files), told.case, told.case),
        )
        # Taken up by a case not ended (an old event heard again changes
        # nothing): its wait to be attached is over.
        conn.execute(
            "DELETE FROM evidence_unattached n USING evidence e"
            " WHERE n.evidence_id = e.id AND e.owner = %s AND e.sha256 = ANY(%s)"
            " AND NOT EXISTS (SELECT FROM evidence_cases WHERE name = %s AND standing <> 'live')",
            (told.actor, list(told.files), told.case),
        )
    conn.execute(
        "INSERT INTO evidence_cases (name, version, standing) SELECT %s, %s, %s"
        " WHERE %s OR EXISTS (SELECT FROM evidence_uses WHERE case_name = %s)"
        " ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version,"
        " standing = EXCLUDED.standing"
        " WHERE evidence_cases.version < EXCLUDED.version AND evidence_cases.standing <> 'expired'",
        (told.case, told.version, told.standing, bool(told.files), told.case),
    )
    if told.standing is Standing.LIVE:
        return []
    held = conn.execute(
        "SELECT e.id FROM evidence_uses u JOIN evidence e USING (owner, sha256)"
        " WHERE u.case_name = %s",
        (told.case,),
    ).fetchall()
    return [row[0] for row in held]


async def wait_for_the_unrecorded(conn: psycopg.AsyncConnection[Any], now: datetime) -> None:
    """Gives each file recorded without a wait one (`WAIT_FOR_THE_UNRECORDED`),
    looking at the files uploaded since the last sweep began (less
    `SWEEP_OVERLAP`; all of them the first time), not the whole table; then
    notes that this sweep began at `now` (by the clock of `created_at`)."""
    cur = await conn.execute("SELECT started_at FROM evidence_sweeps")
    last = await cur.fetchone()
    since = datetime.min.replace(tzinfo=UTC) if last is None else last[0] - SWEEP_OVERLAP
    await conn.execute(
        WAIT_FOR_THE_UNRECORDED, {"wait": UNATTACHED.total_seconds(), "since": since}
    )
    await conn.execute(
        "INSERT INTO evidence_sweeps (started_at) VALUES (%s) ON CONFLICT (only_row)"
        " DO UPDATE SET started_at = GREATEST(evidence_sweeps.started_at, EXCLUDED.started_at)",
        (now,),
    )


# Makes files candidates from a time (`mark_unneeded`); its parameters: `marked`.
MARK = (
    "INSERT INTO evidence_unneeded (evidence_id, since, unattached)"
    " SELECT unnest(%s::uuid[]), %s, false"
    " ON CONFLICT (evidence_id) DO UPDATE SET"
    " since = GREATEST(evidence_unneeded.since, EXCLUDED.since), unattached = false"
)


def marked(ids: Sequence[Any], now: datetime) -> tuple[list[Any], datetime]:
    """`MARK`'s parameters: the files in one order for all markers, so that
    they do not deadlock."""
    return sorted(set(ids)), now


def mark_unneeded(conn: psycopg.Connection[Any], ids: Sequence[Any], now: datetime) -> int:
    """Makes the files `ids` candidates from `now` (a candidate marked again
    waits its grace period from then), whose owner's asking for them does not
    put them off (not `unattached`)."""
    if not ids:
        return 0
    return conn.execute(MARK, marked(ids, now)).rowcount


class Purged(NamedTuple):
    deleted: int
    # A whole batch of due candidates was gone through: more may be due.
    more: bool


def purge(
    connect: Callable[[], psycopg.Connection[Any]],
    store: BlobStore,
    now: datetime,
    grace: timedelta,
    heard: Callable[[], datetime | None],
    limit: int = PURGE_BATCH,
) -> Purged:
    """Makes the files whose wait to be attached is over candidates; deletes
    the candidates marked `grace` before `now` that are still not needed
    (`limit` at the most), each in a transaction of its own, and then the
    bytes no record names any more; a candidate needed after all stops
    being one.

    `heard()`, asked only when a candidate is that old: a time before which
    every case event on the topics has been read (`HeardUntil`; None: none
    known). The grace counts up to it, not past it: while this service's
    follower is behind, by however long, a case that took a file up is not
    yet heard, and no candidate marked within `grace` of where it stands is
    deleted."""
    with connect() as conn:
        conn.autocommit = True  # each `transaction()` below is one of its own
        while conn.execute(PROMOTE, {"now": now, "limit": limit}).rowcount == limit:
            pass
        deleted = looked_at = 0
        due = conn.execute(
            "SELECT evidence_id, since FROM evidence_unneeded WHERE since < %s"
            " ORDER BY since LIMIT %s",
            (now - grace, limit),
        ).fetchall()
        until = heard() if due else None
        if until is not None:
            before = min(now, until) - grace
            # Oldest first: those marked before `before` lead.
            for ident, _ in takewhile(lambda row: row[1] < before, due):
                looked_at += 1
                with conn.transaction():
                    deleted += _delete_if_unneeded(conn, ident, before)
        unnamed = conn.execute(
            "SELECT sha256 FROM evidence_bytes_unneeded WHERE not_before <= %s", (now,)
        )
        for (sha,) in unnamed.fetchall():
            with conn.transaction():
                _delete_bytes_if_unnamed(conn, store, sha, now)
    # Each one looked at is deleted, or no candidate any more, or marked
    # again since (no longer due): the next batch is another one.
    return Purged(deleted, more=looked_at == limit)


def _delete_if_unneeded(conn: psycopg.Connection[Any], ident: Any, before: datetime) -> int:
    """Deletes the file's record if, checked under its lock, it is still a
    candidate from before `before` (not marked or touched since) and still
    not needed (a case may have taken it up meanwhile); leaves its bytes to
    be deleted once no record names them. Locks in the order every writer
    of these rows takes them: the file's, its candidacy, its record."""
    found = conn.execute("SELECT sha256 FROM evidence WHERE id = %s", (ident,)).fetchone()
    if found is None:
        conn.execute("DELETE FROM evidence_unneeded WHERE evidence_id = %s", (ident,))
        return 0
    conn.execute(LOCK, file_locks(found[0]))
    # Its wait to be attached before its candidacy: the order `PROMOTE` takes them in.
    conn.execute("SELECT FROM evidence_unattached WHERE evidence_id = %s FOR UPDATE", (ident,))
    due = conn.execute(
        "DELETE FROM evidence_unneeded WHERE evidence_id = %s AND since < %s RETURNING since",
        (ident, before),
    ).fetchone()
    if due is None:
        return 0
    gone = conn.execute(
        f"DELETE FROM evidence e WHERE e.id = %s AND {UNNEEDED} RETURNING e.owner, e.sha256",
        (ident,),
    ).fetchone()
    if gone is None:
        return 0
    conn.execute("DELETE FROM evidence_uses WHERE owner = %s AND sha256 = %s", gone)
    conn.execute("DELETE FROM evidence_unattached WHERE evidence_id = %s", (ident,))
    conn.execute(
        "INSERT INTO evidence_bytes_unneeded (sha256) VALUES (%s) ON CONFLICT DO NOTHING",
        (gone[1],),
    )
    log.info("evidence.deleted", evidence_id=str(ident))
    return 1


def _delete_bytes_if_unnamed(
    conn: psycopg.Connection[Any], store: BlobStore, sha: str, now: datetime
) -> None:
    """Deletes the bytes if no record names them, under the file's lock (an
    upload of the same bytes holds it while it records them). Should the
    transaction not commit, the bytes are looked at again next time; should
    an upload of them have begun meanwhile (`STORING`), again after it."""
    conn.execute(LOCK, file_locks(sha))
    if conn.execute("SELECT FROM evidence WHERE sha256 = %s LIMIT 1", (sha,)).fetchone() is None:
        store.delete(sha)
    conn.execute(
        "DELETE FROM evidence_bytes_unneeded WHERE sha256 = %s AND not_before <= %s", (sha, now)
    )


class CaseFollower(ConsumerThread):
    """A worker (`serve_servicer`'s) that follows the case topics in
    `GROUP`, the records received together at once: the events among them
    that attach files or end a case are taken in one transaction (in a
    worker thread), the batch's offsets committed after it."""

    def __init__(self, bootstrap: str, database_url: str, clock: Clock) -> None:
        super().__init__("evidence-cases", bootstrap)
        self._database_url, self._clock = database_url, clock

    def subscriptions(self) -> list[Subscription]:
        group = Subscription(
            "evidence-cases", GROUP, CASE_TOPICS, self._handle, batch=self._taking, lag=True
        )
        return [group]

    @asynccontextmanager
    async def _taking(self) -> AsyncIterator[list[Told]]:
        told: list[Told] = []
        yield told
        if told:
            await asyncio.to_thread(self._take, told)

    async def _handle(self, told: list[Told], event: CloudEvent, place: Place) -> None:
        seen = observe(event)
        if seen is not None and (seen.files or seen.standing is not Standing.LIVE):
            told.append(seen)

    def _take(self, told: list[Told]) -> None:
        with psycopg.connect(with_keepalives(self._database_url), connect_timeout=10) as conn:
            # Every file's lock first, at once, in one order.
            if attached := [sha for t in told for sha in t.files]:
                conn.execute(LOCK, file_locks(*attached))
            ended = [ident for t in told for ident in take(conn, t)]
            mark_unneeded(conn, ended, self._clock.now())  # at once, in one order


def purge_round(
    connect: Callable[[], psycopg.Connection[Any]],
    store: BlobStore,
    clock: Clock,
    grace: timedelta,
    heard: HeardUntil,
    stopping: Callable[[], bool] = lambda: False,
    limit: int = PURGE_BATCH,
) -> int:
    """One round of the purger: `purge`, a batch (`limit`) after another
    while whole batches are due (until `stopping()`), whether or not they
    delete anything: a closed case's files, still needed until it expires,
    lead the candidates and must not hold back those due behind them.
    `heard` is asked how far the case topics have been read by `GROUP` at
    most once, and only if a candidate is due. Returns how many files were
    deleted."""
    now = clock.now()
    known: list[datetime | None] = []

    def until() -> datetime | None:
        if not known:
            known.append(asyncio.run(heard.check(now)))
        return known[0]

    deleted = 0
    while not stopping():
        batch = purge(connect, store, clock.now(), grace, until, limit)
        deleted += batch.deleted
        if not batch.more:
            break
    return deleted


def Purger(
    database_url: str,
    store: BlobStore,
    clock: Clock,
    grace: timedelta,
    tick: float,
    heard: HeardUntil,
) -> Periodic:
    """A worker (`serve_servicer`'s) that runs a `purge_round` every `tick`
    seconds, in a thread of its own; a failure is logged and tried again
    next time."""
    connect = partial(psycopg.connect, with_keepalives(database_url), connect_timeout=10)

    def purge_due() -> None:
        purge_round(connect, store, clock, grace, heard, lambda: purger.stopping)

    purger = Periodic("evidence-purger", tick, purge_due, "evidence.purge_failed", join_s=30)
    return purger

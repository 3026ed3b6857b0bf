"""The queue's tables and every change to them.

Consuming an event, firing a clock and claiming a case each run in one
transaction on the case's row (SELECT … FOR UPDATE), so replicas and the
consumer never half-apply anything; claims use SKIP LOCKED so concurrent
agents never wait on, or get, the same case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from casemesh import topics
from casemesh.events.v1 import casequeue_pb2 as qev
from casemesh.platform import schema
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.errors import AlreadyExists
from casemesh.platform.eventstore import advisory_lock
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.logging import get_logger
from casemesh.platform.outbox import Outbox, outbox_schema
from casemesh.platform.pools import dropped
from casemesh.platform.where import Where
from casemesh_casequeue.model import Case, Clock, Observation, Signal, advance, apply, new_case
from casemesh_casequeue.sla import ServiceLevels

log = get_logger(__name__)

# SLA warnings, breaches and escalations, published from this outbox.
SLA_EVENTS = Outbox(
    table="queue_outbox",
    topic=topics.CASEQUEUE,
    source="casemesh/casequeue",
    subject_column="case_name",
    messages=(qev.SlaWarning, qev.SlaBreached, qev.CaseEscalated),
)

CHANGES_CHANNEL = "queue_changes"


def note(change: str, name: str, left: str = "") -> str:
    """A change as the watchers are told it (NOTIFY): `CHANGE|name`, or
    `CHANGE|name|queue` for a change that took the case out of `queue`,
    told besides the first, for that queue's watchers (replicas from before
    such notes find no case by that name and pass it over)."""
    return f"{change}|{name}|{left}" if left else f"{change}|{name}"


def read_note(payload: str) -> tuple[str, str, str]:
    """A note's change, case name and the queue the case left ('' if none)."""
    change, _, rest = payload.partition("|")
    name, _, left = rest.partition("|")
    return change, name, left


# Whether `agent` is no party to the case `c`, as the services count a
# case's parties when they refuse an agent its work (OWN_CASE: nobody
# decides their own case): given it, the agent could not work it, and the
# case, still the most urgent, would come back to them at each claim while
# nobody else could take it. Its own parties, then those of the decision it
# appeals (`queue_party_to_decision`), for the few cases the claim looks at:
# the first free case is nearly always the agent's to take.
NO_PARTY = """NOT queue_party_to(agent, c.name)
    AND (c.appeal_of = '' OR NOT queue_party_to_decision(agent, c.appeal_of))"""


def _claim_free(*, skip_locked: bool) -> str:
    """queue_claim's statement that gives `agent` the most urgent free case of
    `queues` they are no party to: passing the rows locked this instant, or
    waiting for them."""
    locking = " SKIP LOCKED" if skip_locked else ""
    told = f"pg_notify('{CHANGES_CHANNEL}', 'CLAIMED|' || claimed.name)"
    return f"""RETURN QUERY
        WITH claimed AS (
            UPDATE queue_cases SET holder = agent, hold_since = now, lease_until = until,
                claim_request = request
            WHERE name = (SELECT c.name FROM queue_cases c
                          WHERE c.claimable AND c.holder = ''
                            AND (cardinality(queues) = 0 OR c.queue = ANY(queues))
                            AND {NO_PARTY}
                          ORDER BY c.child_safety DESC, c.priority DESC, c.due_key,
                                   c.created_at, c.name
                          LIMIT 1 FOR UPDATE{locking})
            RETURNING *)
        SELECT claimed.* FROM claimed, {told};"""


# The longest the timer's looks for lapsed leases (every second) may be
# apart before the time between counts as a gap nobody could renew in. A
# shorter outage the leases ride out themselves (a console renews its 300 s
# lease every minute); a timer that never looks sooner is a fault of its
# own, whose leases would otherwise never run out.
MOST_BETWEEN_LOOKS_S = 30

CLAIMS = f"""
-- Cases whose lease ran out go back to the queue, each told to the watchers
-- (rows another transaction holds are left for the next look: nobody waits on
-- anybody).
CREATE OR REPLACE FUNCTION queue_release_lapsed(now timestamptz) RETURNS void
LANGUAGE sql AS $$
    WITH released AS (
        UPDATE queue_cases SET holder = '', hold_since = NULL, lease_until = NULL
        WHERE name IN (SELECT name FROM queue_cases WHERE holder <> '' AND lease_until <= now
                       FOR UPDATE SKIP LOCKED)
        RETURNING name)
    SELECT count(pg_notify('{CHANGES_CHANNEL}', 'RELEASED|' || name)) FROM released
$$;
-- The timer looks for lapsed leases every second and keeps when it last did
-- (`queue_lease_look`). A longer gap between looks is a time nobody could
-- renew a claim (the database, or every replica, was away): every lease
-- held is first pushed on by the gap, and told to the watchers, so agents
-- keep the cases they work on however long the queue was away. Returns
-- the gap made up (NULL if none). The look's row is read unlocked, so claims
-- and renewals queue on it only while a gap is being made up; whoever
-- makes it up locks it, and the others, let in after, find no gap left.
-- Its row before any case's, here as everywhere, so none deadlock.
CREATE OR REPLACE FUNCTION queue_make_up_gap(now timestamptz) RETURNS interval
LANGUAGE plpgsql AS $$
DECLARE
    last timestamptz;
    told bigint;
BEGIN
    SELECT looked_at INTO last FROM queue_lease_look;
    IF last IS NULL OR now - last <= interval '{MOST_BETWEEN_LOOKS_S} seconds' THEN
        RETURN NULL;
    END IF;
    SELECT looked_at INTO last FROM queue_lease_look FOR UPDATE;
    IF now - last <= interval '{MOST_BETWEEN_LOOKS_S} seconds' THEN
        RETURN NULL;
    END IF;
    WITH extended AS (
        UPDATE queue_cases SET lease_until = lease_until + (now - last) WHERE holder <> ''
        RETURNING name)
    SELECT count(pg_notify('{CHANGES_CHANNEL}', 'UPDATED|' || name)) INTO told FROM extended;
    UPDATE queue_lease_look SET looked_at = now;
    RETURN now - last;
END
$$;
-- The timer's look: a gap made up, the look kept (never moved back, by a
-- replica whose clock is behind), lapsed leases released. Returns the gap.
CREATE OR REPLACE FUNCTION queue_expire_leases(now timestamptz) RETURNS interval
LANGUAGE plpgsql AS $$
DECLARE
    gap interval;
BEGIN
    INSERT INTO queue_lease_look VALUES (true, now) ON CONFLICT (only_row) DO NOTHING;
    PERFORM FROM queue_lease_look FOR UPDATE;
    gap := queue_make_up_gap(now);
    UPDATE queue_lease_look SET looked_at = now WHERE looked_at < now;
    PERFORM queue_release_lapsed(now);
    RETURN gap;
END
$$;
-- The look as the timers of replicas from before it call it, kept while they
-- may still run during a rolling update (drop it a release later).
CREATE OR REPLACE FUNCTION queue_release_expired(now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM queue_expire_leases(now);
END
$$;
-- Whether `agent` is a party to the case `case_name`, by its key. In
-- plpgsql, never inlined: as a subquery in a claim the planner read every
-- party of every case to find the agent's (an anti join), however many
-- reporters cases have had (`NO_PARTY`).
CREATE OR REPLACE FUNCTION queue_party_to(agent text, case_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT FROM queue_case_parties p
                   WHERE p.name = case_name AND p.party = agent);
END
$$;
-- Whether `agent` is a party to the decision `decided` (an appeal's
-- `appeal_of`) as the services count them for its appeals: a party to the
-- case decided (`appeals/…`, or `report-cases/…`: the gateway refuses its
-- reporters and uploader the appeals of its decision); for a report
-- decision, whoever appealed it too (the parties the appeals service
-- knows). In plpgsql, never inlined: looked up for each case a claim looks
-- at, by index, never planned as a scan of every case (`NO_PARTY`).
CREATE OR REPLACE FUNCTION queue_party_to_decision(agent text, decided text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF starts_with(decided, 'appeals/') THEN
        RETURN EXISTS (SELECT FROM queue_case_parties d
                       WHERE d.name = decided AND d.party = agent);
    END IF;
    IF starts_with(decided, 'report-cases/') THEN
        RETURN EXISTS (SELECT FROM queue_case_parties d
                       WHERE d.name = decided AND d.party = agent)
            OR EXISTS (SELECT FROM queue_cases a
                       JOIN queue_case_parties p ON p.name = a.name AND p.party = agent
                       WHERE a.appeal_of = decided AND a.appeal_of <> '');
    END IF;
    RETURN false;
END
$$;
-- A claim in one statement, so one round trip: a gap in the timer's looks
-- made up and expired leases released first (the claim is no look: it
-- queues on the look's row only while a gap is being made up), then the
-- most urgent free case (of `queues`, when any are named); SKIP LOCKED walks
-- past the rows other claims hold, so no two agents get the same case and
-- none waits while an unlocked case is free (when none is, it waits for the
-- locked ones, rather than answer that the queue is empty).
-- A claim sent again under its request id (its answer was lost) gets the case
-- the first claimed while the agent still holds it, not a second case. The
-- request is the id, a newline and what was asked (`claim_key`): a case held
-- under the same id is returned whatever was asked, and the caller compares
-- (another request under the id is refused, not answered with that case).
CREATE OR REPLACE FUNCTION queue_claim(
    agent text, now timestamptz, until timestamptz, queues text[], request text
) RETURNS SETOF queue_cases LANGUAGE plpgsql AS $$
DECLARE
    id text := split_part(request, chr(10), 1);
BEGIN
    PERFORM queue_make_up_gap(now);
    PERFORM queue_release_lapsed(now);
    IF request <> '' THEN
        -- One at a time per agent and id: a retry racing its original waits for it.
        PERFORM pg_advisory_xact_lock(hashtextextended(agent || chr(10) || id, 0));
        -- (The very request first: a case claimed under the id with something
        -- else asked, by a replica of an earlier release, comes after it.)
        RETURN QUERY SELECT * FROM queue_cases
            WHERE holder <> '' AND holder = agent AND split_part(claim_request, chr(10), 1) = id
              AND lease_until > now
            ORDER BY claim_request = request DESC, hold_since DESC, name LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- The first free case nobody is working on this instant: agents claiming
    -- at once each get another, without waiting for each other.
    {_claim_free(skip_locked=True)}
    IF FOUND THEN
        RETURN;
    END IF;
    -- None: but a free case may be locked for a moment (an event about it
    -- being applied, another agent's claim not yet committed). Wait for
    -- those locks, rather than tell the agent the queue is empty while it
    -- shows a case; a case claimed meanwhile no longer qualifies, and the
    -- next one is tried.
    {_claim_free(skip_locked=False)}
END
$$;
-- The claim as replicas from before request ids call it, kept while they may
-- still run during a rolling update (drop it a release later).
CREATE OR REPLACE FUNCTION queue_claim(
    agent text, now timestamptz, until timestamptz, queues text[]
) RETURNS SETOF queue_cases LANGUAGE sql AS $$
    SELECT * FROM queue_claim(agent, now, until, queues, '')
$$;
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS queue_cases (
    name text PRIMARY KEY,
    type text NOT NULL,
    category text NOT NULL,
    lane text NOT NULL,
    source_priority int NOT NULL,
    escalations int NOT NULL,
    priority int NOT NULL,
    status text NOT NULL,
    base_queue text NOT NULL,
    queue text NOT NULL,
    policy text NOT NULL,
    escalate_to text NOT NULL,
    open boolean NOT NULL,
    waiting boolean NOT NULL,
    claimable boolean NOT NULL,
    version bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    sla_state text NOT NULL,
    due_key timestamptz NOT NULL,
    next_check timestamptz,
    clocks jsonb NOT NULL,
    holder text NOT NULL DEFAULT '',
    hold_since timestamptz,
    lease_until timestamptz,
    child_safety boolean NOT NULL DEFAULT false
);
-- The child-safety lane comes before every other case, whatever the priority.
-- A table made before the lane had a column of its own gets it, filled, once.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'queue_cases' AND column_name = 'child_safety') THEN
        ALTER TABLE queue_cases ADD COLUMN child_safety boolean NOT NULL DEFAULT false;
        UPDATE queue_cases SET child_safety = true
            WHERE lane = 'CHILD_SAFETY' OR base_queue = 'child-safety';
    END IF;
END $$;
DROP INDEX IF EXISTS queue_cases_claim;
DROP INDEX IF EXISTS queue_cases_order;
CREATE INDEX IF NOT EXISTS queue_cases_claim_order ON queue_cases
    (child_safety DESC, priority DESC, due_key, created_at, name)
    WHERE claimable AND holder = '';
CREATE INDEX IF NOT EXISTS queue_cases_open_order ON queue_cases
    (child_safety DESC, priority DESC, due_key, created_at, name) WHERE open;
CREATE INDEX IF NOT EXISTS queue_cases_check ON queue_cases (next_check)
    WHERE next_check IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_cases_leases ON queue_cases (lease_until)
    WHERE holder <> '';
-- The request id of the claim that gave the holder the case (a retry of it
-- answers with the same case).
-- (Looked up first: ALTER TABLE would lock the table at every start.)
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'queue_cases' AND column_name = 'claim_request') THEN
        ALTER TABLE queue_cases ADD COLUMN claim_request text NOT NULL DEFAULT '';
    END IF;
END $$;
-- Who is a party to each case (user ids), and the case whose decision an
-- appeal appeals: a claim passes over the cases the agent is a party to
-- (`NO_PARTY`). Replicas of a release from before them leave them as they
-- are; the cases those queued, and those queued before, have no parties
-- until a rebuild reads their events again.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'queue_cases' AND column_name = 'appeal_of') THEN
        ALTER TABLE queue_cases ADD COLUMN IF NOT EXISTS parties text[] NOT NULL DEFAULT '{}',
            ADD COLUMN IF NOT EXISTS appeal_of text NOT NULL DEFAULT '';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS queue_cases_appeals ON queue_cases (appeal_of)
    WHERE appeal_of <> '';
-- The parties, a row each: an event adds those it names (`_add_parties`),
-- and reads or writes none named before, however many a case has (a
-- video reported by 100,000 users). The `parties` column above held them
-- before: this release neither writes nor reads it, and keeps it for the
-- replicas of an older release that may still run during a rollout (they
-- read and write it). What it holds is not copied here (a statement that
-- read every case would hold up the queue's writes while these statements
-- run): the rebuild that ends the rollout reads every event again.
CREATE TABLE IF NOT EXISTS queue_case_parties (
    name text, party text, PRIMARY KEY (name, party));
CREATE TABLE IF NOT EXISTS queue_consumed (
    event_id text PRIMARY KEY, topic text NOT NULL, kafka_partition int NOT NULL,
    kafka_offset bigint NOT NULL, consumed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS queue_generation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), generation int NOT NULL);
INSERT INTO queue_generation VALUES (true, 1) ON CONFLICT DO NOTHING;
-- When the timer last looked for lapsed leases (`queue_make_up_gap`); no
-- row before its first look.
CREATE TABLE IF NOT EXISTS queue_lease_look (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), looked_at timestamptz NOT NULL);
-- The claims a rebuild found on the cases it dropped (`rebuild`), until the
-- replay has caught up and they are put back (`restore_claims`): the lease
-- each had left when the timer last looked, and the case's version when it
-- was kept (a later event that takes the case out of the queue drops it).
CREATE TABLE IF NOT EXISTS queue_kept_claims (
    name text PRIMARY KEY, holder text NOT NULL, hold_since timestamptz,
    lease_left interval NOT NULL, claim_request text NOT NULL, version bigint NOT NULL);
"""
    + outbox_schema(SLA_EVENTS)
    + CLAIMS
)

# The order key of a case with no running clock: after every due time.
NO_DUE = datetime(9999, 12, 31, tzinfo=UTC)
SLA_NAMESPACE = uuid.UUID("3f1f0e9a-7c55-4a0b-9d7e-2a6c5b8e1d04")
COLUMNS = (
    "name, type, category, lane, source_priority, escalations, priority, status, base_queue,"
    " queue, policy, escalate_to, open, waiting, claimable, version, created_at, updated_at,"
    " sla_state, due_key, next_check, clocks, holder, hold_since, lease_until, child_safety,"
    " appeal_of"
)
# A case's row (`_row`) as an INSERT.
INSERT = (
    f"INSERT INTO queue_cases ({COLUMNS}) VALUES ({', '.join(['%s'] * len(COLUMNS.split(',')))})"
)


async def create_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """The tables, when the statements changed (`casemesh.platform.schema`)."""
    async with advisory_lock(conn, "casemesh-casequeue-schema"):
        await schema.ensure(conn, "casequeue", [SCHEMA])


def _row(case: Case) -> tuple[Any, ...]:
    due = case.due_key
    return (
        case.name,
        case.type,
        case.category,
        case.lane,
        case.source_priority,
        case.escalations,
        case.priority,
        case.status,
        case.base_queue,
        case.queue,
        case.policy,
        case.escalate_to,
        case.open,
        case.waiting,
        case.claimable,
        case.version,
        case.created_at,
        case.updated_at,
        case.sla_state,
        due if due is not None else NO_DUE,
        case.next_check,
        Jsonb({k: c.to_json() for k, c in case.clocks.items()}),
        case.holder,
        case.hold_since,
        case.lease_until,
        case.child_safety,
        case.appeal_of,
    )


def case_of(row: dict[str, Any]) -> Case:
    return Case(
        name=row["name"],
        type=row["type"],
        category=row["category"],
        lane=row["lane"],
        source_priority=row["source_priority"],
        status=row["status"],
        open=row["open"],
        waiting=row["waiting"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        base_queue=row["base_queue"],
        policy=row["policy"],
        escalate_to=row["escalate_to"],
        clocks={k: Clock.from_json(v) for k, v in row["clocks"].items()},
        escalations=row["escalations"],
        holder=row["holder"],
        hold_since=row["hold_since"],
        lease_until=row["lease_until"],
        appeal_of=row["appeal_of"],
    )


async def _save(cur: psycopg.AsyncCursor[Any], case: Case) -> None:
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS.replace(" ", "").split(",")[1:])
    await cur.execute(f"{INSERT} ON CONFLICT (name) DO UPDATE SET {updates}", _row(case))


async def _load(cur: psycopg.AsyncCursor[Any], name: str) -> Case | None:
    await cur.execute(f"SELECT {COLUMNS} FROM queue_cases WHERE name = %s FOR UPDATE", (name,))
    row = await cur.fetchone()
    return case_of(row) if row else None


async def _announce(
    cur: psycopg.AsyncCursor[Any],
    case: Case,
    change: str | None,
    signals: list[Signal],
    before: str,
) -> None:
    """Records the SLA events (each once: their ids are derived from the case,
    the clock and the kind) and tells the watchers the `change` (None: the
    signals alone) and the signals: those of the queue the case was in
    `before` too, when it took the case out of it."""
    for s in signals:
        header = qev.SlaEventHeader(
            case_name=case.name,
            clock=s.clock,
            due_time=to_timestamp(s.due),
            time=to_timestamp(s.at),
        )
        message: Any
        if s.kind == "WARNED":
            message = qev.SlaWarning(header=header)
        elif s.kind == "BREACHED":
            message = qev.SlaBreached(header=header)
        else:
            message = qev.CaseEscalated(header=header, priority=s.priority, queue=s.queue)
        event_id = str(uuid.uuid5(SLA_NAMESPACE, f"{case.name}|{s.clock}|{s.kind}"))
        await cur.execute(
            "INSERT INTO queue_outbox (event_id, case_name, ce_type, payload, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
            (
                event_id,
                case.name,
                SLA_EVENTS.type_of(message),
                message.SerializeToString(),
                s.at,
            ),
        )
    # A closing event's catch-up signals come before its REMOVED, which is
    # what a watcher is left with; an open case's change comes first (a new
    # case is ADDED before it is WARNED).
    said = [note(s.kind, case.name) for s in signals]
    told = [note(change, case.name)] if change else []
    # A move out of a queue, its watchers hear of from a note naming it: the
    # escalation's, when one took the case out of its home queue (a later
    # breach, of a case already out of it, is not theirs to hear), else the
    # change's (a breach taken back, a new policy's queue).
    if before and before != case.queue:
        if before == case.base_queue and "ESCALATED" in {s.kind for s in signals}:
            said.append(note("ESCALATED", case.name, before))
        elif change:
            told.append(note(change, case.name, before))
    for payload in [*told, *said] if case.open else [*said, *told]:
        await cur.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, payload))
    if signals:
        await cur.execute("SELECT pg_notify('queue_outbox', '')")


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int


async def consume(
    conn: psycopg.AsyncConnection[Any],
    event: CloudEvent,
    obs: Observation | None,
    where: Consumed,
    levels: ServiceLevels,
    kept: KeptClaims | None = None,
) -> bool:
    """Applies one event, exactly once in effect, in the caller's transaction
    (the consumer's, shared by a batch of events, which checked the read
    model's generation first: `check_generation`). False for a redelivery.
    `kept`: whether claims a rebuild kept may still wait (None: they may)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO queue_consumed (event_id, topic, kafka_partition, kafka_offset)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (event.id, where.topic, where.partition, where.offset),
        )
        if cur.rowcount == 0 or obs is None:
            return cur.rowcount == 1
        case = await _load(cur, obs.name)
        # Every watcher dropped a closed case when it closed: a later event
        # that leaves it closed (a closed ticket rated, an appeal's window
        # run out) is kept, and told to nobody.
        was_closed = case is not None and not case.open
        if case is None:
            if not obs.created and not obs.open:
                log.warning("queue.unknown_case", case=obs.name, event_id=event.id)
                return True
            if not obs.created:
                # Its first event was set aside (counted, and alerted on):
                # the case is queued from this one, its clocks from now,
                # rather than never reaching an agent.
                log.warning("queue.case_from_later_event", case=obs.name, event_id=event.id)
            case = new_case(obs, levels)
            change = "ADDED"
        elif obs.version <= case.version:
            return True  # already applied under another event id (cannot happen; be safe)
        else:
            change = "UPDATED" if obs.open else "REMOVED"
        before = case.queue
        signals = apply(case, obs, levels)
        await _save(cur, case)
        await _add_parties(cur, case.name, obs.named_parties)
        if not case.claimable and (kept is None or kept.waiting):
            await _drop_kept_claim(cur, case)
        if not (was_closed and not case.open and not signals):
            await _announce(cur, case, change, signals, before)
    return True


async def _add_parties(cur: psycopg.AsyncCursor[Any], name: str, parties: tuple[str, ...]) -> None:
    """Records the parties an event names to its case: those named before
    are neither read nor written again (`queue_case_parties`)."""
    if parties:
        await cur.execute(
            "INSERT INTO queue_case_parties (name, party) SELECT %s, unnest(%s::text[])"
            " ON CONFLICT DO NOTHING",
            (name, list(parties)),
        )


async def _drop_kept_claim(cur: psycopg.AsyncCursor[Any], case: Case) -> None:
    """A claim a rebuild kept is dropped when an event after it takes its
    case out of the queue (closed, waiting): `apply` would have taken the
    claim itself off then, had the read model not been dropped. Events up to
    the claim's, replayed, leave it be: the case was claimable when claimed."""
    await cur.execute(
        "DELETE FROM queue_kept_claims WHERE name = %s AND version < %s",
        (case.name, case.version),
    )


async def fire_due(
    conn: psycopg.AsyncConnection[Any], until: datetime, levels: ServiceLevels
) -> int:
    """Warnings and breaches due by `until`, each case once (rows another
    transaction holds are left for the next look). Told as the signals
    alone: a look changes nothing else a watcher sees."""
    fired = 0
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {COLUMNS} FROM queue_cases WHERE next_check <= %s ORDER BY next_check"
            " LIMIT 200 FOR UPDATE SKIP LOCKED",
            (until,),
        )
        for row in await cur.fetchall():
            case = case_of(row)
            before = case.queue
            signals = advance(case, until, levels)
            for c in case.clocks.values():
                c.plan(levels.calendar, levels.warn_before)
            await _save(cur, case)
            await _announce(cur, case, None, signals, before)
            fired += len(signals)
    return fired


async def expire_leases(conn: psycopg.AsyncConnection[Any], now: datetime) -> timedelta | None:
    """The timer's look: leases that ran out by `now` go back to the queue,
    after a gap since its last look (the database or the queue away) was
    made up (`queue_make_up_gap`); returns that gap, if any."""
    async with conn.transaction():
        cur = await conn.execute("SELECT queue_expire_leases(%s)", (now,))
        row = await cur.fetchone()
    return _made_up(row[0] if row else None)


def _made_up(gap: timedelta | None) -> timedelta | None:
    if gap is not None:
        log.warning("queue.leases_extended", gap_s=gap.total_seconds())
    return gap


# How many times a claim is made when PostgreSQL picks it to end a deadlock.
CLAIM_TRIES = 5


def claim_key(request_id: str, queues: list[str], lease: timedelta) -> str:
    """What a claim under `request_id` keeps (`queue_claim`): the id, a
    newline, and a digest of what it asked for ("" without an id)."""
    if not request_id:
        return ""
    asked = json.dumps({"queues": sorted(queues), "lease": lease.total_seconds()})
    return f"{request_id}\n{hashlib.sha256(asked.encode()).hexdigest()[:32]}"


def same_claim(kept: str, request: str) -> bool:
    """Whether the claim kept under a request's id asked what `request` asks
    (one kept by a replica from before the digest has none to compare)."""
    return "\n" not in kept or kept == request


async def claim_next(
    conn: psycopg.AsyncConnection[Any],
    agent: str,
    queues: list[str],
    lease: timedelta,
    now: datetime,
    request_id: str = "",
) -> Case | None:
    """The case `agent` now holds, or None when none is waiting; under a
    `request_id` they claimed with before, the case that claim gave them while
    they still hold it. On an autocommit connection (what the pools give), so
    the one statement is its own transaction.

    When every free case is locked, claims wait for those locks, and a
    claim that waited for a case claimed meanwhile keeps its lock while it
    waits for the next: claims waiting at once can deadlock. PostgreSQL
    then rolls one back (after `deadlock_timeout`), which changed nothing,
    so it is made again, up to `CLAIM_TRIES` times in all."""
    assert conn.autocommit, "a claim is its own transaction"
    request = claim_key(request_id, queues, lease)
    tries = 1
    while True:
        try:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"SELECT {COLUMNS}, claim_request FROM queue_claim(%s, %s, %s, %s, %s)",
                    (agent, now, now + lease, queues, request),
                )
                row = await cur.fetchone()
            if row and request and not same_claim(row["claim_request"], request):
                raise AlreadyExists(
                    f"request_id {request_id!r} was already used for a different claim,"
                    " whose case you still hold",
                    reason="REQUEST_ID_REUSED",
                )
            return case_of(row) if row else None
        except psycopg.errors.DeadlockDetected:
            if tries == CLAIM_TRIES:
                raise
            log.warning("queue.claim_deadlocked", agent=agent, tries=tries)
            tries += 1


class NotHeld(enum.Enum):
    """Why an agent cannot renew or release a case."""

    ABSENT = "absent"  # not in the queue (never, or no longer open)
    NOT_HOLDER = "not_holder"  # someone else holds it, or the lease ran out


async def _held(
    cur: psycopg.AsyncCursor[Any], agent: str, name: str, now: datetime
) -> Case | NotHeld:
    """The case `agent` holds under a live lease, or why not: after a gap in
    the timer's looks, with the gap made up first (its lease pushed on), so a
    renewal that comes before the timer's look finds the claim still held."""
    await cur.execute("SELECT queue_make_up_gap(%s) AS gap", (now,))
    row = await cur.fetchone()
    _made_up(row["gap"] if row else None)
    case = await _load(cur, name)
    if case is None or not case.open:
        return NotHeld.ABSENT
    if case.holder != agent or case.lease_until is None or case.lease_until <= now:
        return NotHeld.NOT_HOLDER
    return case


async def renew(
    conn: psycopg.AsyncConnection[Any], agent: str, name: str, lease: timedelta, now: datetime
) -> Case | NotHeld:
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        case = await _held(cur, agent, name, now)
        # Extends the lease, never shortens it: renewed with the default
        # (600 s), a claim made for an hour keeps its hour. One that stays
        # as it was is neither written nor told.
        if isinstance(case, Case) and (case.lease_until or now) < now + lease:
            case.lease_until = now + lease
            await _save(cur, case)
            await cur.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, f"UPDATED|{name}"))
        return case


async def release(
    conn: psycopg.AsyncConnection[Any], agent: str, name: str, now: datetime
) -> Case | NotHeld:
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        case = await _held(cur, agent, name, now)
        if isinstance(case, Case):
            case.holder, case.hold_since, case.lease_until = "", None, None
            await _save(cur, case)
            await cur.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, f"RELEASED|{name}"))
        return case


async def get(conn: psycopg.AsyncConnection[Any], name: str) -> Case | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM queue_cases WHERE name = %s", (name,))
        row = await cur.fetchone()
        return case_of(row) if row else None


@dataclass(frozen=True)
class Filters:
    types: list[str]
    category: str
    queues: list[str]
    sla_states: list[str]


def encode_token(case: Case) -> str:
    due = case.due_key
    raw = json.dumps(
        [
            case.child_safety,
            case.priority,
            (due or NO_DUE).isoformat(),
            case.created_at.isoformat(),
            case.name,
        ]
    )
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_token(token: str) -> tuple[bool, int, str, datetime, str] | None:
    """None for the first page; ValueError for a token this API did not give."""
    if not token:
        return None
    try:
        child_safety, priority, due, created, name = json.loads(
            base64.urlsafe_b64decode(token.encode())
        )
        # (A bool is an int to Python, not to PostgreSQL.)
        if not (isinstance(child_safety, bool) and type(priority) is int):
            raise ValueError(token)
        if not (0 <= priority <= 4 and isinstance(name, str)):
            raise ValueError(token)
        # Written again as Python writes them: Python reads forms PostgreSQL
        # does not (`2024-W01-1`), which would fail the query, not the token.
        due_at, created_at = datetime.fromisoformat(due), datetime.fromisoformat(created)
        if due_at.tzinfo is None or created_at.tzinfo is None:
            raise ValueError(token)
        if any(ord(ch) < 32 for ch in name) or len(name) > 200:
            raise ValueError(token)
        name.encode()  # a lone surrogate (`\ud800`) is no text PostgreSQL takes
        # In UTC: an offset with seconds (`+05:30:15.5`) PostgreSQL reads not.
        due, created = due_at.astimezone(UTC).isoformat(), created_at.astimezone(UTC)
        return child_safety, priority, due, created, name
    except Exception as exc:  # anything else is not a token this API gave
        raise ValueError(token) from exc


async def page(
    conn: psycopg.AsyncConnection[Any],
    filters: Filters,
    after: tuple[bool, int, str, datetime, str] | None,
    limit: int,
) -> list[Case]:
    where = (
        Where("open")
        .given(filters.types, "type = ANY(%s)")
        .given(filters.category, "starts_with(category, %s)")
        .given(filters.queues, "queue = ANY(%s)")
        .given(filters.sla_states, "sla_state = ANY(%s)")
    )
    if after is not None:
        child_safety, priority, due, created, name = after
        where.add(
            "(child_safety < %s OR (child_safety = %s AND (priority < %s OR (priority = %s"
            " AND (due_key, created_at, name) > (%s::timestamptz, %s, %s)))))",
            *(child_safety, child_safety, priority, priority, due, created, name),
        )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {COLUMNS} FROM queue_cases WHERE {where}"
            " ORDER BY child_safety DESC, priority DESC, due_key, created_at, name LIMIT %s",
            [*where.params, limit],
        )
        return [case_of(r) for r in await cur.fetchall()]


async def generation(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT generation FROM queue_generation")
    row = await cur.fetchone()
    return int(row[0]) if row else 1


INSTANCES_LOCK = "hashtext('casemesh-casequeue-instances')"


async def hold_instance_lock(conn: psycopg.AsyncConnection[Any]) -> None:
    """Held (shared) by every running instance, for its life: a rebuild needs
    them all stopped."""
    await conn.execute(f"SELECT pg_advisory_lock_shared({INSTANCES_LOCK})")


class Rebuilt(RuntimeError):
    """The read model was rebuilt while this instance ran without its lock."""


async def check_generation(conn: psycopg.AsyncConnection[Any], started: int) -> None:
    """Raises `Rebuilt` unless the read model is still of generation
    `started`. First in each of the consumer's transactions: a database
    restart drops the instance lock, and for up to `keep_instance_lock`'s
    `every_s` a rebuild can run; events applied after it, into the dropped
    tables, would be skipped by the replay (their ids recorded as consumed).
    The generation's row stays share-locked to the transaction's end, so a
    rebuild (which takes it first) waits for the transaction, and a
    transaction begun after a rebuild finds the new generation and writes
    nothing."""
    cur = await conn.execute("SELECT generation FROM queue_generation FOR SHARE")
    row = await cur.fetchone()
    now = int(row[0]) if row else 1
    if now != started:
        raise Rebuilt(f"the read model was rebuilt (generation {started} → {now})")


async def keep_instance_lock(
    conninfo: str,
    conn: psycopg.AsyncConnection[Any],
    started: int,
    stop: asyncio.Event,
    every_s: float = 5.0,
) -> None:
    """Keeps the instance lock taken on `conn` (which it closes at the end)
    until `stop`. A database restart ends the session and the lock with it,
    which would let a rebuild run under this instance: the lock is taken
    again on a new connection as soon as the database answers. Raises
    `Rebuilt` if a rebuild ran meanwhile (the generation is no longer
    `started`): the instance follows a consumer group the read model no
    longer matches, and must start again."""
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set() or not dropped(conn):
                continue
            log.warning("queue.instance_lock_lost")
            await conn.close()
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                await hold_instance_lock(conn)
                now = await generation(conn)
            except psycopg.Error as exc:
                log.warning("queue.instance_lock_not_taken", error=repr(exc))
                continue
            if now != started:
                raise Rebuilt(f"the read model was rebuilt (generation {started} → {now})")
            log.info("queue.instance_lock_taken_again")
    finally:
        await conn.close()


# The live claims, kept aside by a rebuild (`queue_kept_claims`), each with
# the lease it had left when the timer last looked: since then nobody could
# renew it. A claim kept by an earlier rebuild and not put back yet (no
# instance caught up since) stays, unless its case is held anew.
KEEP_CLAIMS = """
INSERT INTO queue_kept_claims (name, holder, hold_since, lease_left, claim_request, version)
SELECT name, holder, hold_since, lease_until - looked, claim_request, version
FROM queue_cases, (SELECT coalesce((SELECT looked_at FROM queue_lease_look), now()) AS looked) l
WHERE holder <> '' AND lease_until > looked
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, hold_since = EXCLUDED.hold_since,
    lease_left = EXCLUDED.lease_left, claim_request = EXCLUDED.claim_request,
    version = EXCLUDED.version
"""


async def rebuild(conn: psycopg.AsyncConnection[Any]) -> int:
    """Drops the read model; the next start replays the topics from offset 0
    (under a new consumer group). Published SLA events are kept: replaying
    them again would repeat them. So are the claims agents hold: claims are
    no events, and no replay would give them back; they return to their
    cases once the replay has caught up (`restore_claims`). Refused while
    an instance runs."""
    cur = await conn.execute(f"SELECT pg_try_advisory_lock({INSTANCES_LOCK})")
    row = await cur.fetchone()
    if not (row and row[0]):
        raise RuntimeError("stop every casequeue instance before a rebuild")
    async with conn.transaction():
        # The generation first: a consumer's transaction locks it first too
        # (`check_generation`), so the two wait for each other, never deadlock.
        cur = await conn.execute(
            "UPDATE queue_generation SET generation = generation + 1 RETURNING generation"
        )
        row = await cur.fetchone()
        await conn.execute(KEEP_CLAIMS)
        await conn.execute("TRUNCATE queue_cases, queue_case_parties, queue_consumed")
    assert row is not None
    return int(row[0])


@dataclass
class KeptClaims:
    """Whether claims a rebuild kept (`queue_kept_claims`) may still wait to
    go back on their cases, as one instance knows it. Read at its start
    (`kept_claims`), under its instance lock: a rebuild, the one writer of
    that table, cannot run while the instance does (one that ran while a
    database restart had dropped the lock leaves it applying nothing more:
    `check_generation`). No claim waits once `restore_claims` found the
    table empty, whichever instance put them back. Until then the consumer
    drops the kept claim of each case an event takes out of the queue
    (`_drop_kept_claim`); after, it would look for one in vain at every
    such event, most events of a replay."""

    waiting: bool = True


async def kept_claims(conn: psycopg.AsyncConnection[Any]) -> KeptClaims:
    """Whether any claim a rebuild kept waits, read after the instance lock
    was taken (`hold_instance_lock`)."""
    cur = await conn.execute("SELECT EXISTS (SELECT FROM queue_kept_claims)")
    row = await cur.fetchone()
    return KeptClaims(waiting=bool(row and row[0]))


async def restore_claims(
    conn: psycopg.AsyncConnection[Any],
    started: int,
    now: datetime,
    kept: KeptClaims | None = None,
) -> int:
    """Puts the claims a rebuild kept back on their cases: what an instance
    of generation `started` does once the replay has caught up, before it
    serves agents. Each holder holds its case again under the request id it
    claimed with, with the lease it had left when the queue went away
    (nobody could renew meanwhile) counted from `now`; so no other agent's
    claim gets the case, and the holder's renewal and release work. A case
    the replay left out of the queue (closed, waiting, or not there at all)
    loses its kept claim, as the consumer takes a claim off a case that
    leaves the queue. Returns how many came back. Raises `Rebuilt` if
    another rebuild ran meanwhile (its claims are its replay's to restore).

    One claim a transaction, its case's row locked before the kept claim's,
    as the consumer locks them: never a deadlock with a batch being applied,
    and instances caught up at once restore each claim once. Each finds the
    table empty only once the other's last claim went back (committed), and
    then says so to its consumer (`kept`)."""
    # The time the queue was away, made up first if the timer has not yet
    # (for the claims held then: none), lest it be added to the leases put
    # back, which already leave it out.
    async with conn.transaction():
        cur = await conn.execute("SELECT queue_make_up_gap(%s)", (now,))
        row = await cur.fetchone()
    _made_up(row[0] if row else None)
    restored = 0
    while True:
        put_back = await _restore_one_claim(conn, started, now)
        if put_back is None:
            if kept is not None:
                kept.waiting = False
            return restored
        restored += int(put_back)


async def _party_to(cur: psycopg.AsyncCursor[Any], agent: str, name: str) -> bool:
    """Whether `agent` is a party to the case `name` or to the decision it
    appeals, as a claim counts them (`NO_PARTY`). A claim a rebuild kept is
    not put back on such a case: its holder could not work it (OWN_CASE),
    and would keep it from everyone else until the lease ran out. The
    replay may have named them since they claimed it (a report they made
    while the queue was away; the parties of report cases queued by a
    release that kept none)."""
    await cur.execute(
        f"SELECT NOT ({NO_PARTY}) AS party"
        " FROM queue_cases c, (SELECT %s::text AS agent) kept WHERE c.name = %s",
        (agent, name),
    )
    row = await cur.fetchone()
    return bool(row and row["party"])


async def _restore_one_claim(
    conn: psycopg.AsyncConnection[Any], started: int, now: datetime
) -> bool | None:
    """Whether one kept claim went back on its case (None: none was left)."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await check_generation(conn, started)
        await cur.execute("SELECT name FROM queue_kept_claims ORDER BY name LIMIT 1")
        first = await cur.fetchone()
        if first is None:
            return None
        name = first["name"]
        case = await _load(cur, name)
        await cur.execute(
            "DELETE FROM queue_kept_claims WHERE name = %s"
            " RETURNING holder, hold_since, lease_left, claim_request",
            (name,),
        )
        kept = await cur.fetchone()
        # (None kept: another instance caught up at once put it back first.)
        if kept is None or case is None or not case.claimable or case.holder:
            return False
        if await _party_to(cur, kept["holder"], name):
            return False
        await cur.execute(
            "UPDATE queue_cases SET holder = %s, hold_since = %s, lease_until = %s,"
            " claim_request = %s WHERE name = %s",
            (
                kept["holder"],
                kept["hold_since"],
                now + kept["lease_left"],
                kept["claim_request"],
                name,
            ),
        )
        await cur.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, f"CLAIMED|{name}"))
        return True

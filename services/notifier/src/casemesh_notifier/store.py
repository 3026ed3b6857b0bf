"""The planner's tables: the events consumed, each case's parties as the
events describe them, and the notification jobs.

Every statement runs in the caller's transaction and covers a whole batch
of events: one statement records them consumed, one reads (and locks) the
parties of their cases, one writes the parties back, two follow the
parties named anew with other contacts (`follow_contact_changes`), one adds
their jobs; a batch that ended cases cancels what they still asked of
their parties (`cancel_requests`). A job is unique per cause event × party
× channel (its id is derived from the three, and the insert skips a job
that exists), so planning an event again adds nothing. Its id says nothing of its
recipient: it is published, and would outlive the person's erasure.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, partial
from typing import Any

import psycopg

from casemesh.platform import columns
from casemesh.platform.consuming import Place
from casemesh_notifier.phone_changes import (
    READDRESSED,
    READDRESSED_ROWS,
    READDRESSING,
    Readdressed,
    write_again,
    written_for,
)
from casemesh_notifier.policy import REQUEST_TEMPLATES

JOB_NAMESPACE = uuid.UUID("0b7f3c1e-3c1d-4a56-a1f4-6f1f3f0c2a90")
# The senders LISTEN here: a NOTIFY tells them new jobs are due.
JOBS_CHANNEL = "notification_jobs"


@dataclass(frozen=True)
class Party:
    """A person a case concerns, and how they want to hear about it; `status`
    is the case's as of event `version`."""

    role: str
    locale: str
    email: str
    phone: str
    channels: list[str]
    subject: str
    status: str
    user_id: str = ""
    version: int = 0
    # When this person was first named in the row (None: before it was kept).
    named_at: datetime | None = None
    # The id of the person's data key their contact was sealed under, as the
    # event naming them carried it (None: in clear, or before it was kept).
    key_id: uuid.UUID | None = None
    # The zone the case counts its deadlines in (its jurisdiction's), where
    # they are told dates when their number tells none ("": not known, or
    # written by an older release: the service's).
    time_zone: str = ""
    # A takedown notice's filer: the items the notice names, which upholding
    # it takes down (the uploader is told which); () when not known.
    items: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewJob:
    """One message to one recipient on one channel about a case, caused by
    one event, its text rendered."""

    cause_event_id: str
    case_name: str
    party: str
    channel: str
    recipient: str
    template: str
    locale: str
    subject: str
    body: str
    params: dict[str, str]
    # An e-mail's HTML alternative ("" for SMS).
    html: str = ""
    # The party's user id ("" for a party without an account).
    user_id: str = ""
    # When it is worth nothing any more (a one-time code): never sent later.
    expires_at: datetime | None = None
    # Whose words its text carries besides its party's (`Step.words_of`;
    # "" none), and when they wrote them (the cause event's time).
    words_of: str = ""
    written_at: datetime | None = None
    # The id of the data key its recipient's address was sealed under
    # (`Party.key_id`; None: given in clear).
    key_id: uuid.UUID | None = None

    @cached_property
    def id(self) -> uuid.UUID:
        return job_id(self.cause_event_id, self.party, self.channel)


@dataclass(frozen=True)
class ContactChange:
    """A party of a case that an event named anew (a filer's new details, a
    decision naming the uploader) and who is reached otherwise since: for
    each channel, the address their messages go to ("" where none may go:
    they gave the channel up, or have no address on it), and the person
    their messages are for. What was planned for them before that event and
    is not yet sent follows it (`follow`, `follow_contact_changes`)."""

    case_name: str
    party: str
    # Whose the party's messages planned without a user id were: the person
    # the party was until the change ("" not known).
    owner: str
    # The person named (None: several, one after another, so that no
    # message planned before is anyone's now).
    person: str | None
    email: str
    phone: str
    # The key those addresses were sealed under (`Party.key_id`).
    key_id: uuid.UUID | None = None

    def address(self, channel: str) -> str:
        """Where a message on `channel` goes now ("": nowhere)."""
        return self.email if channel == "EMAIL" else self.phone

    def for_someone_else(self, user_id: str) -> bool:
        """Whether a message planned for `user_id` is for someone other than
        the person named: theirs is never sent to the next. A message whose
        person is not known ("", and no owner) is not taken for another's."""
        owner = user_id or self.owner
        return bool(owner) and owner != self.person

    def follow(self, job: NewJob, at: datetime | None) -> NewJob | None:
        """The job, planned before the change, as it goes now: to the
        address on its channel, an SMS written in its number's time as of
        `at` (`phone_changes.written_for`), or not at all (None)."""
        recipient = self.address(job.channel)
        if not recipient or self.for_someone_else(job.user_id):
            return None
        moved = dataclasses.replace(job, recipient=recipient, key_id=self.key_id)
        if job.channel != "SMS":
            return moved
        text = written_for(job.template, job.locale, job.params, job.recipient, recipient, at)
        if text is None:
            return moved
        body, params = text
        return dataclasses.replace(moved, body=body, params=params)

    def then(self, later: ContactChange) -> ContactChange:
        """This change, then `later` of the same party: a channel given up
        or a person replaced once stays so."""
        return dataclasses.replace(
            self,
            person=self.person if later.person == self.person else None,
            email=self.email and later.email,
            phone=self.phone and later.phone,
            key_id=later.key_id,
        )


@dataclass(frozen=True)
class Copy:
    """Jobs of one party that carry another's words or contact: those of
    `holder` (of the `template`, or all its jobs when "", which then show
    the other's words as their subject) in a case of `collection` carry
    `owner`'s. Erasing the owner scrubs them too (`erasures`): a copy of a
    template is blanked and cancelled if unsent; the others lose the words
    and still go."""

    collection: str
    owner: str
    holder: str
    template: str = ""


COPIES = (
    # The uploader hears of the case under the filer's subject (the work's title).
    Copy("appeals", owner="filer", holder="uploader"),
    # The claimant's copy of a counter-notice: the uploader's name, contact,
    # postal address, reason.
    Copy("appeals", owner="uploader", holder="filer", template="appeal.counter_notice_received"),
)


def copy_params(**params: Any) -> dict[str, Any]:
    """`params` and COPIES as columns (`c(collection, owner, holder, template)`)."""
    return {
        **params,
        "copy_collections": [c.collection + "/%" for c in COPIES],
        "copy_owners": [c.owner for c in COPIES],
        "copy_holders": [c.holder for c in COPIES],
        "copy_templates": [c.template for c in COPIES],
    }


COPY_ROWS = (
    "unnest(%(copy_collections)s::text[], %(copy_owners)s::text[], %(copy_holders)s::text[],"
    " %(copy_templates)s::text[]) AS c(collection, owner, holder, template)"
)


def key_ids(keys: Iterable[uuid.UUID | None]) -> columns.Uuids:
    """A column of data key ids, None as NULL (`columns.uuids` takes none)."""
    return columns.Uuids(None if key is None else key.bytes for key in keys)


def job_id(event_id: str, party: str, channel: str) -> uuid.UUID:
    """A job's id: of its cause, party and channel (a party has one address
    per channel), never its address. Jobs planned before took their address
    into it as well, and keep those ids."""
    return uuid.uuid5(JOB_NAMESPACE, f"{event_id}|{party}|{channel}")


# Planning and erasures take turns (an advisory lock held to the end of
# their transaction): planning shares it, a batch with an erasure holds it
# alone. Without it, a replica planning a person's case event beside another
# replica applying their erasure read them as not erased and wrote their
# address and jobs where the erasure's scrub, reading before that commit,
# did not find them. A batch with a phone change holds it alone as well, for
# the same reason (`phone_changes`).
ERASURES_LOCK = 0x65726173  # "eras"


async def take_turn_with_erasures(conn: psycopg.AsyncConnection[Any], *, erasing: bool) -> None:
    """Waits for an erasure under way (`erasing`: for any planning too), then
    holds the turn till the caller's transaction ends."""
    lock = "pg_advisory_xact_lock" if erasing else "pg_advisory_xact_lock_shared"
    await conn.execute(f"SELECT {lock}(%s)", (ERASURES_LOCK,))


async def record_consumed(
    conn: psycopg.AsyncConnection[Any], consumer: str, events: Sequence[tuple[str, Place]]
) -> set[str]:
    """Records the events (id, where it was read) as consumed; returns the
    ids consumed for the first time (a redelivered one is not among them)."""
    cur = await conn.execute(
        "INSERT INTO consumed_events (consumer, event_id, topic, kafka_partition, kafka_offset)"
        " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[])"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        (
            consumer,
            columns.texts((event_id for event_id, _ in events), conn.info.encoding),
            columns.texts((place.topic for _, place in events), conn.info.encoding),
            columns.ints(place.partition for _, place in events),
            columns.bigints(place.offset for _, place in events),
        ),
    )
    return {row[0] for row in await cur.fetchall()}


async def lock_parties(
    conn: psycopg.AsyncConnection[Any], case_names: Collection[str]
) -> dict[str, dict[str, Party]]:
    """The parties of these cases, by case and role, locked until the
    transaction ends."""
    cur = await conn.execute(
        "SELECT case_name, party, locale, email, phone, channels, subject, status, user_id,"
        " version, named_at, key_id, COALESCE(time_zone, ''), COALESCE(items, '[]')"
        " FROM case_parties WHERE case_name = ANY(%s)"
        " ORDER BY case_name, party FOR UPDATE",
        (list(case_names),),
    )
    known: dict[str, dict[str, Party]] = {}
    for case_name, *row, items in await cur.fetchall():
        party = dataclasses.replace(Party(*row), items=tuple(items))
        known.setdefault(case_name, {})[party.role] = party
    return known


async def save_parties(
    conn: psycopg.AsyncConnection[Any], parties: Sequence[tuple[str, Party]]
) -> None:
    """Writes the parties (case name, party) as they now are."""
    if not parties:
        return
    texts = partial(columns.texts, encoding=conn.info.encoding)
    values = (
        texts(name for name, _ in parties),
        texts(p.role for _, p in parties),
        texts(p.user_id for _, p in parties),
        texts(p.locale for _, p in parties),
        texts(p.email for _, p in parties),
        texts(p.phone for _, p in parties),
        # A channel's name has no comma; unnest cannot take ragged arrays.
        texts(",".join(p.channels) for _, p in parties),
        texts(p.subject for _, p in parties),
        texts(p.status for _, p in parties),
        columns.bigints(p.version for _, p in parties),
        columns.timestamptzs(p.named_at for _, p in parties),
        key_ids(p.key_id for _, p in parties),
        texts(p.time_zone for _, p in parties),
        # A list each (an item's URL may hold any character: no separator).
        columns.jsonbs(list(p.items) for _, p in parties),
    )
    await conn.execute(
        "INSERT INTO case_parties (case_name, party, user_id, locale, email, phone, channels,"
        " subject, status, version, named_at, key_id, time_zone, items)"
        " SELECT c, r, u, l, e, p, COALESCE(string_to_array(NULLIF(ch, ''), ','), '{}'),"
        " s, st, v, n, k, NULLIF(z, ''), NULLIF(i, '[]')"
        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamptz[],"
        " %s::uuid[], %s::text[], %s::jsonb[])"
        " AS t(c, r, u, l, e, p, ch, s, st, v, n, k, z, i)"
        " ON CONFLICT (case_name, party) DO UPDATE SET user_id = EXCLUDED.user_id,"
        " locale = EXCLUDED.locale, email = EXCLUDED.email, phone = EXCLUDED.phone,"
        " channels = EXCLUDED.channels, subject = EXCLUDED.subject,"
        " status = EXCLUDED.status, version = EXCLUDED.version, named_at = EXCLUDED.named_at,"
        " key_id = EXCLUDED.key_id, time_zone = EXCLUDED.time_zone, items = EXCLUDED.items"
        # A row another consumer moved past this batch's events (a partition
        # handed over mid-batch) is not turned back.
        " WHERE case_parties.version <= EXCLUDED.version",
        values,
    )


async def add_jobs(
    conn: psycopg.AsyncConnection[Any], jobs: Sequence[NewJob], now: datetime
) -> list[uuid.UUID]:
    """Adds the jobs, due now, in their order (a party's messages about a case
    go out in it); returns the ids of those no earlier planning had added."""
    if not jobs:
        return []
    texts = partial(columns.texts, encoding=conn.info.encoding)
    cur = await conn.execute(
        "INSERT INTO notification_jobs (id, cause_event_id, party, case_name, channel,"
        " recipient, template, locale, subject, body, html, params, user_id, expires_at,"
        " words_of, written_at, key_id, next_attempt_at, created_at)"
        " SELECT id, cause, party, case_name, channel, recipient, template, locale, subject,"
        " body, html, params, user_id, expires_at, words_of, written_at, key_id, %s, %s"
        " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[], %s::text[],"
        " %s::timestamptz[], %s::text[], %s::timestamptz[], %s::uuid[])"
        " WITH ORDINALITY AS j(id, cause, party, case_name, channel, recipient, template,"
        " locale, subject, body, html, params, user_id, expires_at, words_of, written_at,"
        " key_id, n)"
        " ORDER BY n"
        # The job planned already, by id (or, planned before ids left the
        # address out, by its cause, party, channel and address).
        " ON CONFLICT DO NOTHING RETURNING id",
        (
            now,
            now,
            columns.uuids(j.id for j in jobs),
            texts(j.cause_event_id for j in jobs),
            texts(j.party for j in jobs),
            texts(j.case_name for j in jobs),
            texts(j.channel for j in jobs),
            texts(j.recipient for j in jobs),
            texts(j.template for j in jobs),
            texts(j.locale for j in jobs),
            texts(j.subject for j in jobs),
            texts(j.body for j in jobs),
            texts(j.html for j in jobs),
            columns.jsonbs(j.params for j in jobs),
            texts(j.user_id for j in jobs),
            columns.timestamptzs(j.expires_at for j in jobs),
            texts(j.words_of for j in jobs),
            columns.timestamptzs(j.written_at for j in jobs),
            key_ids(j.key_id for j in jobs),
        ),
    )
    return [row[0] for row in await cur.fetchall()]


async def cancel_superseded(
    conn: psycopg.AsyncConnection[Any], newer: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, str]]:
    """Cancels the jobs still waiting that the `newer` jobs replace (of the
    same template, case, party and channel, planned before them), erasing
    their text; returns (id, channel) of each."""
    cur = await conn.execute(
        "UPDATE notification_jobs AS old SET status = 'cancelled', claimed_until = NULL,"
        " last_error = 'replaced by a newer message', body = '', html = '', params = '{}'"
        " FROM notification_jobs AS new"
        " WHERE new.id = ANY(%s) AND old.case_name = new.case_name AND old.party = new.party"
        " AND old.channel = new.channel AND old.template = new.template AND old.seq < new.seq"
        " AND old.status = 'pending'"
        " RETURNING old.id, old.channel",
        (columns.uuids(newer),),
    )
    return [(job_id, channel) for job_id, channel in await cur.fetchall()]


@dataclass(frozen=True)
class ContactsFollowed:
    """What following contact changes did: the jobs cancelled (id, channel)
    and how many went to a new address (or were withdrawn from their
    sender: `WITHDRAWN`)."""

    cancelled: list[tuple[uuid.UUID, str]]
    readdressed: int = 0


# The jobs `j` of the changed parties (`ContactChange` as rows `c`), and for
# each the address it goes to now and whether it is for someone else.
THEIR_JOBS = (
    "notification_jobs AS j JOIN unnest(%(cases)s::text[], %(parties)s::text[],"
    " %(owners)s::text[], %(people)s::text[], %(emails)s::text[], %(phones)s::text[],"
    " %(keys)s::uuid[])"
    " AS c(case_name, party, owner, person, email, phone, key_id)"
    " ON j.case_name = c.case_name AND j.party = c.party"
)
NEW_ADDRESS = "(CASE WHEN j.channel = 'EMAIL' THEN c.email ELSE c.phone END)"
# Not yet sent, a sender's claim too (`phone_changes.READDRESSED`), as the
# index notification_jobs_to_send has it.
UNSENT = "status IN ({})".format(", ".join(f"'{s}'" for s in READDRESSED))
FOR_SOMEONE_ELSE = (
    "(COALESCE(NULLIF(j.user_id, ''), c.owner) <> ''"
    " AND COALESCE(NULLIF(j.user_id, ''), c.owner) IS DISTINCT FROM c.person)"
)
# Where the job goes now: "" nowhere (someone else's, or a channel given up),
# and why.
GOES_TO = f"(CASE WHEN {FOR_SOMEONE_ELSE} THEN '' ELSE {NEW_ADDRESS} END)"
WHY_NOT = f"(CASE WHEN {FOR_SOMEONE_ELSE} THEN %(someone_else)s ELSE %(given_up)s END)"
# A job a sender holds (`sending`) that is not to be sent after all is left
# with no recipient, the reason as its last error: a sender's claim is its
# own to end. Its sender, finding it so before it sends it, or done with it
# unsent, cancels it rather than put it back (`delivery.put_back`); a send
# already begun is recorded as it went.
WITHDRAWN = "recipient = ''"


async def follow_contact_changes(
    conn: psycopg.AsyncConnection[Any], changes: Sequence[ContactChange]
) -> ContactsFollowed:
    """Makes what the changed parties' cases still have to tell them, as
    planned before the changes (the caller runs this before it adds the
    batch's jobs), follow them: a job for someone else than the person now
    named, or on a channel they gave up, is cancelled, its text erased; the
    others go to the party's address on their channel, as jobs never tried
    there (`phone_changes.READDRESSING`), an SMS written in its new number's
    time (`phone_changes.write_again`). A job a sender holds (`sending`)
    is given its new address, or none (`WITHDRAWN`): its sender looks
    before it sends it, and hands it back untried, to go there or be
    cancelled; a send already begun is recorded as it went, and should it
    fail, it is not tried again where it was going. Heard again, the
    changes change nothing more."""
    if not changes:
        return ContactsFollowed([])
    texts = partial(columns.texts, encoding=conn.info.encoding)
    params = {
        "cases": texts(c.case_name for c in changes),
        "parties": texts(c.party for c in changes),
        "owners": texts(c.owner for c in changes),
        "people": texts(c.person for c in changes),
        "emails": texts(c.email for c in changes),
        "phones": texts(c.phone for c in changes),
        "keys": key_ids(c.key_id for c in changes),
        "someone_else": "someone else was named in their place",
        "given_up": "their contact no longer takes it",
    }
    cur = await conn.execute(
        f"WITH gone AS (SELECT j.id, {WHY_NOT} AS why FROM {THEIR_JOBS}"
        f" WHERE j.{UNSENT} AND j.status <> 'sending' AND {GOES_TO} = ''"
        " ORDER BY j.id FOR UPDATE OF j)"
        " UPDATE notification_jobs AS j SET status = 'cancelled', claimed_until = NULL,"
        " last_error = gone.why,"
        " recipient = '', subject = '', body = '', html = '', params = '{}'"
        " FROM gone WHERE j.id = gone.id RETURNING j.id, j.channel",
        params,
    )
    cancelled = [(job_id, channel) for job_id, channel in await cur.fetchall()]
    # The rest: those going elsewhere now, and the claimed ones going
    # nowhere (`WITHDRAWN`). One withdrawn stays so, as a cancelled one does.
    cur = await conn.execute(
        f"WITH moved AS (SELECT j.id, j.recipient AS was, {GOES_TO} AS recipient,"
        f" {WHY_NOT} AS why, c.key_id FROM {THEIR_JOBS}"
        f" WHERE j.{UNSENT} AND j.recipient NOT IN ('', {GOES_TO})"
        " ORDER BY j.id FOR UPDATE OF j)"
        # The new address's key goes with it (`erasures`).
        f" UPDATE notification_jobs AS j SET recipient = moved.recipient, {READDRESSING},"
        " key_id = moved.key_id,"
        " last_error = CASE WHEN moved.recipient = '' THEN moved.why ELSE j.last_error END"
        f" FROM moved WHERE j.id = moved.id RETURNING {READDRESSED_ROWS}",
        params,
    )
    moved = [Readdressed(*row) for row in await cur.fetchall()]
    await write_again(conn, moved)
    return ContactsFollowed(cancelled, len(moved))


async def cancel_requests(
    conn: psycopg.AsyncConnection[Any], cases: Collection[str], why: str = "its case has ended"
) -> list[tuple[uuid.UUID, str]]:
    """Cancels what these cases still had to ask of their parties
    (`policy.REQUEST_TEMPLATES`: "we need more information by …") and did
    not send, erasing its text: the case takes no answer now (it ended), or
    has had it (`why` says which). One a sender holds is withdrawn from it
    (`WITHDRAWN`). Returns (id, channel) of those cancelled. Rows are
    locked in id order, as the other statements lock jobs."""
    if not cases:
        return []
    params = {"cases": sorted(cases), "templates": sorted(REQUEST_TEMPLATES), "why": why}
    theirs = f"case_name = ANY(%(cases)s) AND template = ANY(%(templates)s) AND {UNSENT}"
    await conn.execute(
        f"SELECT FROM notification_jobs WHERE {theirs} ORDER BY id FOR UPDATE", params
    )
    cur = await conn.execute(
        "UPDATE notification_jobs SET status = 'cancelled', claimed_until = NULL,"
        " last_error = %(why)s, subject = '', body = '', html = '', params = '{}'"
        f" WHERE {theirs} AND status <> 'sending' RETURNING id, channel",
        params,
    )
    cancelled = [(job_id, channel) for job_id, channel in await cur.fetchall()]
    await conn.execute(
        "UPDATE notification_jobs SET recipient = '', last_error = %(why)s"
        f" WHERE {theirs} AND status = 'sending' AND recipient <> ''",
        params,
    )
    return cancelled


async def wake_senders(conn: psycopg.AsyncConnection[Any]) -> None:
    """Tells the listening senders (on commit) that jobs were added."""
    await conn.execute(f"NOTIFY {JOBS_CHANNEL}")


async def erased_among(
    conn: psycopg.AsyncConnection[Any], user_ids: Collection[str]
) -> dict[str, datetime | None]:
    """Those of the users who were erased (`erasures.py`), with when (None:
    not known)."""
    if not user_ids:
        return {}
    cur = await conn.execute(
        "SELECT person, erased_at FROM erased_people WHERE person = ANY(%s)", (sorted(user_ids),)
    )
    return {person: at for person, at in await cur.fetchall()}

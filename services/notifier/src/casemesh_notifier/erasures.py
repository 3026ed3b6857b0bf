"""Forgetting an erased person (`PersonErased` on casemesh.privacy.v1).

Erasing a person destroys their data keys: what is sealed with them reads as
erased everywhere. What the notifier copied in the clear is its own to
scrub, in the transaction that records the event consumed (`Planner`):

- their party rows (`case_parties` whose `user_id` is the person), and the
  subject of other parties' rows that is their words (`store.COPIES`), keep the
  case, role, user id, channels, status and version, with no address and no
  subject: a later event about the case tells nobody (no address), and an
  event naming them again reveals their contacts as erased, that is blank;
- their jobs (those planned for them; those of their party rows that were
  planned for nobody known; the one-time codes sent to one of their
  numbers, which belong to no party row; and the other parties' jobs that
  are copies of their words or contact, `store.COPIES`) lose recipient, subject,
  body, HTML, params and last error, sent ones too: each row stays as the
  record that a message of that template went on that channel at that time;
  (the other parties' messages told under the person's words as their
  subject only lose those words, and still go);
  those not yet sent (`pending`, or `sending` under a sender's claim) become
  `cancelled`, a final status no sender claims and that holds back no later
  job of the thread (the ordering rule waits only on pending and sending
  jobs);
- other people's jobs whose text carries their words (`words_of`: an
  agent's public reply in the requester's e-mail, sealed under the agent's
  key in the event store) lose body and HTML, sent ones too, and those not
  yet sent are cancelled as above (the words were all they had to say);
  recipient, subject, params and outcome events are the requester's and
  stay. Words written after the erasure's time (`written_at`, the cause
  event's) are theirs anew and stay, as with `NAMED_SINCE`; such a copy
  written before it and heard after it is never planned (`Planner`);
- the person is recorded in `erased_people` with the erasure's time: no
  event written before it gives their party an address or them a job,
  however late it is heard, nor does a later event naming them in a case the
  erasure blanked (appeals and reports carry contacts in clear) (`Planner`);
  a case they open after it (its contacts sealed with the key they have
  since) is told as any, whether it is heard before the erasure or after:
  rows first naming them after the erasure's time (`named_at`), and their
  jobs, are left as they are (`NAMED_SINCE`), as are one-time codes issued
  after it (`ISSUED_SINCE`: a phone change begun since);
- but what was sealed under a key the erasure destroyed is erased however
  late it was written (`SEALED_UNDER_ERASED`): a process still holding the
  key (for up to the key cache's while, until it hears the erasure) seals
  and reads with it after the erase time. A party row and a job keep the id
  of the key their address was sealed under (`key_id`), and the key
  database says which of a person's are erased (`keys_recorded`, then
  `forget_people`); the planner asks it too for an erased person's case
  heard since. A row without it (an address given in clear, or written
  before it was kept) keeps the time's rule;
- the outcome events of those jobs in `notification_outbox` lose the masked
  recipient and the error text (which may quote an address). No outcome event
  says "cancelled": the topic's messages do not include one.

A sender that claimed a job checks its claim just before it sends
(`Delivery._send`): a cancellation committed before that check is never
sent. One committed while the message is in the relay's hands (between the
check and the relay's answer) cannot stop it; that send is then recorded
nowhere (its claim is gone) and logged as `notification.claim_lost`.

Every statement is idempotent: the event met again changes nothing more (and
the planner skips it as consumed before that).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from markupsafe import escape

from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.platform.envelope import message_class
from casemesh.rules.codes import CODE_LIFE
from casemesh_notifier.metrics import OUTCOMES
from casemesh_notifier.policy import CODE_TEMPLATE
from casemesh_notifier.rendering import shows_subject
from casemesh_notifier.store import COPY_ROWS, copy_params, key_ids

CANCELLED = "cancelled"
# Statuses of a job still to be sent, or that an operator may send again
# (parked after its retries: `replay`).
OPEN = ["pending", "sending", "parked"]


@dataclass(frozen=True)
class Forgotten:
    """What an erasure changed: party rows blanked, jobs cancelled, jobs
    blanked (the cancelled among them), outcome events blanked."""

    parties: int = 0
    cancelled: int = 0
    jobs: int = 0
    outcomes: int = 0


# A party row (alias `{p}`) of one of the people first naming them after
# their erasure's time (`%(at)s`): a case they opened since, heard before the
# erasure was (the privacy topic behind the case topics). Its row and jobs
# are theirs anew, as if the erasure had been heard first.
NAMED_SINCE = "COALESCE({p}.user_id = ANY(%(people)s) AND {p}.named_at > %(at)s, false)"

# An address sealed under the key `{p}` (a party row's or a job's `key_id`;
# a job planned by a pod of the earlier release has none, and goes by its
# party row's) that is one of the people's keys the erasure destroyed
# (`%(keys)s`): erased, whenever it was written (a process still holding
# the key sealed or read it after the erasure's time). The person back
# since has another key.
SEALED_UNDER_ERASED = "COALESCE({p} = ANY(%(keys)s), false)"
# A party row (alias `{p}`) the erasure leaves as it is.
SPARED = f"({NAMED_SINCE} AND NOT {SEALED_UNDER_ERASED.format(p='{p}.key_id')})"

# A one-time code (alias `j`; it has no party row for `NAMED_SINCE` to
# spare) issued after the erasure's time (`%(at)s`): a phone change of
# someone back since, heard before the erasure was. It is theirs anew, as
# the planner leaves one heard after the erasure. When the code was issued
# is its expiry less its life: the job keeps no other time of its cause
# (`created_at` is when the notifier heard it, which says nothing of the
# erasure's order).
ISSUED_SINCE = "COALESCE(j.template = %(code)s AND j.expires_at - %(code_life)s > %(at)s, false)"

# The jobs of the people (`%(people)s`): those planned for them, those of
# their party rows planned for nobody known (a party's row names whoever the
# case's last event named: jobs planned for an earlier party are theirs),
# and those of no party row and nobody known (one-time codes from before
# codes named who asked) sent to one of their addresses. Another person's
# code to an address they once gave (a family phone) is that person's.
THEIR_JOBS = (
    "SELECT j.id, j.status, j.channel FROM notification_jobs AS j"
    " LEFT JOIN case_parties AS p ON p.case_name = j.case_name AND p.party = j.party"
    " WHERE (j.user_id = ANY(%(people)s) OR (j.user_id = '' AND p.user_id = ANY(%(people)s))"
    "   OR (p.case_name IS NULL AND j.user_id = '' AND j.recipient <> ''"
    "       AND j.recipient = ANY(%(addresses)s)))"
    f"  AND NOT (({NAMED_SINCE.format(p='p')} OR {ISSUED_SINCE})"
    f"    AND NOT {SEALED_UNDER_ERASED.format(p='COALESCE(j.key_id, p.key_id)')})"
    " ORDER BY j.id FOR UPDATE OF j"
)


# The jobs of other parties that are copies of what the people wrote
# (`store.COPIES` of a template): scrubbed, and cancelled if unsent.
THEIR_COPIES = (
    "SELECT j.id, j.status, j.channel FROM notification_jobs AS j"
    " JOIN case_parties AS p ON p.case_name = j.case_name"
    f" JOIN {COPY_ROWS} ON p.party = c.owner AND j.party = c.holder"
    "   AND j.case_name LIKE c.collection AND c.template = j.template"
    f" WHERE p.user_id = ANY(%(people)s) AND NOT {SPARED.format(p='p')}"
    " ORDER BY j.id FOR UPDATE OF j"
)
# The jobs of other people whose text carries the people's words (`words_of`:
# an agent's reply in the requester's e-mail), written no later than the
# erasure's time (`%(at)s`; none known: all): words written since are
# theirs anew. (`words_of <> ''` lets a generic plan use the partial index.)
THEIR_WORDS = (
    "SELECT j.id, j.status, j.channel FROM notification_jobs AS j"
    " WHERE j.words_of = ANY(%(people)s) AND j.words_of <> ''"
    "   AND NOT COALESCE(j.written_at > %(at)s, false)"
    " ORDER BY j.id FOR UPDATE"
)
# Why such a job still to be sent went nowhere.
WORDS_ERASED = "the words it carried were erased"


# The jobs of other parties told under the people's words as their subject
# (`store.COPIES` of no template), with those words: the words go, the
# messages stay (the other party still needs them).
UNDER_THEIR_WORDS = (
    "SELECT j.id, j.template, j.subject, j.body, j.html, o.subject FROM notification_jobs AS j"
    " JOIN case_parties AS p ON p.case_name = j.case_name"
    f" JOIN {COPY_ROWS} ON p.party = c.owner AND j.party = c.holder"
    "   AND j.case_name LIKE c.collection AND c.template = ''"
    " JOIN case_parties AS o ON o.case_name = j.case_name AND o.party = c.holder"
    f" WHERE p.user_id = ANY(%(people)s) AND NOT {SPARED.format(p='p')}"
    " AND o.subject <> ''"
    " ORDER BY j.id FOR UPDATE OF j"
)


async def _unword(conn: psycopg.AsyncConnection[Any], scope: dict[str, Any]) -> None:
    """Takes the people's words (a subject of theirs) out of the messages
    other parties are told under it, where the message's template shows
    the subject: elsewhere the words are not there, and taking their text
    out would cut whatever happens to match it (a title "1" out of a date).
    `scope`: the people, the time and the keys (`forget_people`)."""
    cur = await conn.execute(UNDER_THEIR_WORDS, copy_params(**scope))
    changed = []
    for job_id, template, subject, body, html_text, words in await cur.fetchall():
        if not shows_subject(template):
            continue
        shown = [words, str(escape(words))]  # as the HTML part's template writes them
        new = [
            functools.reduce(lambda text, w: text.replace(w, ""), shown, part)
            for part in (subject, body, html_text)
        ]
        if new != [subject, body, html_text]:
            changed.append((job_id, *new))
    if changed:
        await conn.execute(
            "UPDATE notification_jobs AS j SET subject = v.subject, body = v.body, html = v.html"
            " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[])"
            " AS v(id, subject, body, html) WHERE j.id = v.id",
            [list(column) for column in zip(*changed, strict=True)],
        )


async def _unsay(
    conn: psycopg.AsyncConnection[Any], people: list[str], at: datetime | None
) -> list[Any]:
    """Takes the people's words out of the jobs of others that carry them
    (`THEIR_WORDS`): their text (body and HTML; subject and params never
    hold them) is blanked, sent ones too, and one still to be sent is
    cancelled (it would say nothing but that). Its recipient, subject and
    outcome events are its party's, and stay. Returns (id, cancelled,
    channel) of each job changed."""
    cur = await conn.execute(
        f"WITH theirs AS ({THEIR_WORDS})"
        " UPDATE notification_jobs AS j SET"
        " status = CASE WHEN j.status = ANY(%(open)s) THEN %(cancelled)s ELSE j.status END,"
        " claimed_until = CASE WHEN j.status = ANY(%(open)s) THEN NULL ELSE j.claimed_until END,"
        " last_error = CASE WHEN j.status = ANY(%(open)s) THEN %(why)s ELSE j.last_error END,"
        " body = '', html = ''"
        " FROM theirs WHERE j.id = theirs.id AND (theirs.status = ANY(%(open)s)"
        "   OR j.body <> '' OR j.html <> '')"
        " RETURNING j.id, theirs.status = ANY(%(open)s), j.channel",
        {"people": people, "at": at, "open": OPEN, "cancelled": CANCELLED, "why": WORDS_ERASED},
    )
    jobs = await cur.fetchall()
    for _, cancelled, channel in jobs:
        if cancelled:
            OUTCOMES.labels(channel, CANCELLED).inc()
    return jobs


async def keys_recorded(
    conn: psycopg.AsyncConnection[Any], people: Collection[str]
) -> set[uuid.UUID]:
    """The data keys the people's party rows and jobs say their addresses
    were sealed under: the key database says which are erased, for
    `forget_people`."""
    cur = await conn.execute(
        "SELECT key_id FROM case_parties WHERE user_id = ANY(%(people)s) AND key_id IS NOT NULL"
        " UNION SELECT key_id FROM notification_jobs"
        # (`user_id <> ''` lets a generic plan use the partial index.)
        " WHERE user_id = ANY(%(people)s) AND user_id <> '' AND key_id IS NOT NULL",
        {"people": sorted(people)},
    )
    return {row[0] for row in await cur.fetchall()}


async def forget_people(
    conn: psycopg.AsyncConnection[Any],
    people: Collection[str],
    event_id: str,
    now: datetime,
    erased_at: datetime | None = None,
    erased_keys: Collection[uuid.UUID] = (),
) -> Forgotten:
    """Scrubs what the notifier keeps in clear of `people` and cancels what
    it would still send them, in the caller's transaction; records them as
    erased (`erased_people`), with the erasure's time, so that no event
    written before it names them again with an address, however late it is
    heard (the planner reads it). What was sealed under one of
    `erased_keys` (their keys the key database says are erased, of those
    `keys_recorded` gives) goes whenever it was written."""
    people = sorted(set(people))
    cur = await conn.execute(
        "INSERT INTO erased_people (person, event_id, recorded_at, erased_at)"
        " SELECT unnest(%s::text[]), %s, %s, %s"
        # Erased again (back since, then erased anew): from the later time.
        " ON CONFLICT (person) DO UPDATE SET erased_at = CASE"
        "   WHEN erased_people.erased_at IS NULL THEN NULL"
        "   ELSE greatest(erased_people.erased_at, EXCLUDED.erased_at) END"
        " RETURNING erased_at",
        (people, event_id, now, erased_at or now),
    )
    # The time rows first naming them since are spared from, as the planner
    # reads it: none (everything blanked) for one recorded before times were.
    kept = [row[0] for row in await cur.fetchall()]
    at = None if None in kept else min(kept, default=erased_at or now)
    scope = {"people": people, "at": at, "keys": key_ids(sorted(erased_keys))}
    cur = await conn.execute(
        "SELECT email, phone FROM case_parties WHERE user_id = ANY(%s)"
        " ORDER BY case_name, party FOR UPDATE",
        (people,),
    )
    addresses = sorted({a for row in await cur.fetchall() for a in row if a})
    # Their phone changes heard, forgotten with them. (Their numbers are not
    # scrubbed from jobs as theirs: an old one may be a stranger's now.)
    await conn.execute("DELETE FROM phone_changes_heard WHERE person = ANY(%s)", (people,))
    jobs = await _scrub_jobs(
        conn,
        THEIR_JOBS,
        {**scope, "addresses": addresses, "code": CODE_TEMPLATE, "code_life": CODE_LIFE},
    )
    jobs += await _scrub_jobs(conn, THEIR_COPIES, copy_params(**scope))
    await _unword(conn, scope)
    unsaid = await _unsay(conn, people, at)
    # Other parties' rows whose subject is the people's words.
    cur = await conn.execute(
        "UPDATE case_parties AS o SET subject = '' FROM case_parties AS p,"
        f" {COPY_ROWS} WHERE p.user_id = ANY(%(people)s) AND o.case_name = p.case_name"
        f" AND NOT {SPARED.format(p='p')}"
        " AND p.party = c.owner AND o.party = c.holder AND c.template = ''"
        " AND o.case_name LIKE c.collection AND o.subject <> ''",
        copy_params(**scope),
    )
    forgotten = await _forgotten(
        conn, "user_id", people, jobs, f"NOT {SPARED.format(p='case_parties')}", scope
    )
    return dataclasses.replace(
        forgotten,
        parties=forgotten.parties + cur.rowcount,
        cancelled=forgotten.cancelled + sum(1 for _, cancelled, _ in unsaid if cancelled),
        jobs=forgotten.jobs + len(unsaid),
    )


async def forget_cases(conn: psycopg.AsyncConnection[Any], cases: Collection[str]) -> Forgotten:
    """Scrubs what the notifier keeps in clear of these cases (their
    retention period ran out: `TicketExpired` and the like) and cancels what it would
    still send about them, in the caller's transaction: their party rows
    and jobs as `forget_people` leaves a person's. The people stay: their
    other cases are untouched."""
    names = sorted(set(cases))
    jobs = await _scrub_jobs(
        conn,
        "SELECT id, status, channel FROM notification_jobs WHERE case_name = ANY(%(cases)s)"
        " ORDER BY id FOR UPDATE",
        {"cases": names},
    )
    return await _forgotten(conn, "case_name", names, jobs)


async def _forgotten(
    conn: psycopg.AsyncConnection[Any],
    column: str,
    values: list[str],
    jobs: list[Any],
    where: str = "true",
    scope: dict[str, Any] | None = None,
) -> Forgotten:
    """Blanks the addresses and subjects of the party rows whose `column`
    (a name from code) is one of `values` and for which `where` (a condition
    from code, on `scope`'s `%(at)s` and `%(keys)s`, and `%(people)s`, which
    is `values`) holds, and the outcome events of `jobs` (as `_scrub_jobs`
    gives them); what was changed in all."""
    cur = await conn.execute(
        "UPDATE case_parties SET email = '', phone = '', subject = ''"
        f" WHERE {column} = ANY(%(people)s) AND {where}"
        " AND (email <> '' OR phone <> '' OR subject <> '')",
        {**(scope or {}), "people": values},
    )
    return Forgotten(
        parties=cur.rowcount,
        cancelled=sum(1 for _, cancelled, _ in jobs if cancelled),
        jobs=len(jobs),
        outcomes=await _blank_outcomes(conn, [job_id for job_id, _, _ in jobs]),
    )


async def _scrub_jobs(
    conn: psycopg.AsyncConnection[Any], chosen: str, params: dict[str, Any]
) -> list[Any]:
    """Cancels the jobs `chosen` selects (id, status, channel; locked) that
    are still to be sent and blanks what each holds of the person; returns
    (id, cancelled, channel) of each job changed."""
    cur = await conn.execute(
        f"WITH theirs AS ({chosen})"
        " UPDATE notification_jobs AS j SET"
        " status = CASE WHEN j.status = ANY(%(open)s) THEN %(cancelled)s ELSE j.status END,"
        " claimed_until = CASE WHEN j.status = ANY(%(open)s) THEN NULL ELSE j.claimed_until END,"
        " recipient = '', subject = '', body = '', html = '', params = '{}', last_error = ''"
        " FROM theirs WHERE j.id = theirs.id AND (theirs.status = ANY(%(open)s)"
        "   OR j.recipient <> '' OR j.subject <> '' OR j.body <> '' OR j.html <> ''"
        "   OR j.params <> '{}' OR j.last_error <> '')"
        " RETURNING j.id, theirs.status = ANY(%(open)s), j.channel",
        {**params, "open": OPEN, "cancelled": CANCELLED},
    )
    jobs = await cur.fetchall()
    for _, cancelled, channel in jobs:
        if cancelled:
            OUTCOMES.labels(channel, CANCELLED).inc()
    return jobs


async def _blank_outcomes(conn: psycopg.AsyncConnection[Any], job_ids: list[Any]) -> int:
    """Blanks the masked recipient and the error text of the jobs' outcome
    events; returns how many rows changed."""
    if not job_ids:
        return 0
    cur = await conn.execute(
        "SELECT id, ce_type, payload FROM notification_outbox WHERE job_id = ANY(%s)"
        " ORDER BY id FOR UPDATE",
        (job_ids,),
    )
    ids, payloads = [], []
    for row_id, ce_type, payload in await cur.fetchall():
        cls = message_class(ce_type)
        if cls is None:
            continue
        message = cls.FromString(bytes(payload))
        blank(message)
        scrubbed = message.SerializeToString()
        if scrubbed != bytes(payload):
            ids.append(row_id)
            payloads.append(scrubbed)
    if ids:
        await conn.execute(
            "UPDATE notification_outbox AS o SET payload = v.payload"
            " FROM unnest(%s::bigint[], %s::bytea[]) AS v(id, payload) WHERE o.id = v.id",
            (ids, payloads),
        )
    return len(ids)


def blank(message: Any) -> None:
    """An outcome event without the person's (masked) address or an error
    text that may quote it."""
    job: nev.NotificationJobRef = message.job
    job.recipient_masked = ""
    if hasattr(message, "error"):
        message.error = ""

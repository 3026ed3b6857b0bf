"""The planner's tables: the events consumed, each case's parties as the
events describe them, and the notification jobs.

Every statement runs in the caller's transaction. A job is unique per cause
event × party × channel × recipient (its id is derived from the four, and the
insert skips a job that exists), so planning an event again adds nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from casemesh.events.v1 import tickets_pb2 as ev

JOB_NAMESPACE = uuid.UUID("0b7f3c1e-3c1d-4a56-a1f4-6f1f3f0c2a90")
# The senders LISTEN here: a NOTIFY tells them new jobs are due.
JOBS_CHANNEL = "notification_jobs"


@dataclass(frozen=True)
class Party:
    """A person a case concerns, and how they want to hear about it."""

    role: str
    locale: str
    email: str
    phone: str
    channels: list[str]
    subject: str
    status: str


@dataclass(frozen=True)
class NewJob:
    """One message to one recipient on one channel, its text rendered."""

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


def job_id(event_id: str, party: str, channel: str, recipient: str) -> uuid.UUID:
    return uuid.uuid5(JOB_NAMESPACE, f"{event_id}|{party}|{channel}|{recipient}")


async def record_consumed(
    conn: psycopg.AsyncConnection[Any],
    consumer: str,
    event_id: str,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> bool:
    """Records the event as consumed; False when it already was (a redelivery)."""
    inserted = await conn.execute(
        "INSERT INTO consumed_events (consumer, event_id, topic, kafka_partition,"
        " kafka_offset) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (consumer, event_id, topic, partition, offset),
    )
    return inserted.rowcount > 0


async def record_party(
    conn: psycopg.AsyncConnection[Any],
    case_name: str,
    role: str,
    user_id: str,
    contact: ev.ContactPreferences,
    subject: str,
    status: str,
    version: int,
    *,
    replace: bool = False,
) -> None:
    """Records a party of a case as the events describe them. A party already
    known keeps its row, or with `replace` takes the new user and contact
    details (its subject and status stay)."""
    on_conflict = (
        "DO UPDATE SET user_id = EXCLUDED.user_id, locale = EXCLUDED.locale,"
        " email = EXCLUDED.email, phone = EXCLUDED.phone, channels = EXCLUDED.channels"
        if replace
        else "DO NOTHING"
    )
    await conn.execute(
        "INSERT INTO case_parties (case_name, party, user_id, locale, email, phone, channels,"
        " subject, status, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT (case_name, party) {on_conflict}",
        (
            case_name,
            role,
            user_id,
            contact.locale or "en",
            contact.email,
            contact.phone,
            [ev.ContactChannel.Name(c).removeprefix("CONTACT_CHANNEL_") for c in contact.channels],
            subject,
            status,
            version,
        ),
    )


async def lock_parties(conn: psycopg.AsyncConnection[Any], case_name: str) -> dict[str, Party]:
    """The case's parties by role, locked until the transaction ends."""
    cur = await conn.execute(
        "SELECT party, locale, email, phone, channels, subject, status"
        " FROM case_parties WHERE case_name = %s ORDER BY party FOR UPDATE",
        (case_name,),
    )
    return {row[0]: Party(*row) for row in await cur.fetchall()}


async def record_status(
    conn: psycopg.AsyncConnection[Any], case_name: str, status: str, version: int
) -> None:
    """The case's status as of `version`; an older event does not turn it back."""
    await conn.execute(
        "UPDATE case_parties SET status = %s, version = %s WHERE case_name = %s AND version < %s",
        (status, version, case_name, version),
    )


async def add_job(
    conn: psycopg.AsyncConnection[Any],
    cause_event_id: str,
    case_name: str,
    job: NewJob,
    now: datetime,
) -> uuid.UUID | None:
    """Adds the job, due now; None when the event had planned it already."""
    jid = job_id(cause_event_id, job.party, job.channel, job.recipient)
    result = await conn.execute(
        "INSERT INTO notification_jobs (id, cause_event_id, party, case_name,"
        " channel, recipient, template, locale, subject, body, html, params,"
        " next_attempt_at, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (cause_event_id, party, channel, recipient) DO NOTHING",
        (
            jid,
            cause_event_id,
            job.party,
            case_name,
            job.channel,
            job.recipient,
            job.template,
            job.locale,
            job.subject,
            job.body,
            job.html,
            Jsonb(job.params),
            now,
            now,
        ),
    )
    return jid if result.rowcount else None


async def wake_senders(conn: psycopg.AsyncConnection[Any]) -> None:
    """Tells the listening senders (on commit) that jobs were added."""
    await conn.execute(f"NOTIFY {JOBS_CHANNEL}")

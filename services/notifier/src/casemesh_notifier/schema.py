"""The notifier's tables. Created at start-up under an advisory lock, so
replicas starting together do not race, and only when these statements
changed (`casemesh.platform.schema`)."""

from __future__ import annotations

from typing import Any

import psycopg

from casemesh.platform import schema
from casemesh.platform.eventstore import advisory_lock
from casemesh.platform.outbox import outbox_schema
from casemesh.platform.pools import with_keepalives
from casemesh_notifier.outbox import NOTIFICATIONS
from casemesh_notifier.policy import CODE_TEMPLATE
from casemesh_notifier.store import UNSENT

# The one-time codes' jobs whose number is still kept: the partial index's
# condition and `Delivery.forget_old_codes`'s, written out alike.
CODE_NUMBERS_KEPT = f"template = '{CODE_TEMPLATE}' AND recipient <> ''"

STATEMENTS = [
    """CREATE TABLE IF NOT EXISTS consumed_events (
        consumer text NOT NULL,
        event_id text NOT NULL,
        topic text NOT NULL,
        kafka_partition int NOT NULL,
        kafka_offset bigint NOT NULL,
        consumed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id))""",
    """CREATE TABLE IF NOT EXISTS case_parties (
        case_name text NOT NULL,
        party text NOT NULL,
        user_id text NOT NULL DEFAULT '',
        locale text NOT NULL,
        email text NOT NULL DEFAULT '',
        phone text NOT NULL DEFAULT '',
        channels text[] NOT NULL,
        subject text NOT NULL DEFAULT '',
        status text NOT NULL DEFAULT '',
        version bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (case_name, party))""",
    """CREATE TABLE IF NOT EXISTS notification_jobs (
        id uuid PRIMARY KEY,
        cause_event_id text NOT NULL,
        case_name text NOT NULL,
        channel text NOT NULL,
        recipient text NOT NULL,
        template text NOT NULL,
        locale text NOT NULL,
        subject text NOT NULL DEFAULT '',
        body text NOT NULL,
        params jsonb NOT NULL DEFAULT '{}',
        status text NOT NULL DEFAULT 'pending',
        attempts int NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        claimed_until timestamptz,
        last_error text NOT NULL DEFAULT '',
        provider_message_id text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        sent_at timestamptz)""",
    # One job per event, party, channel and recipient: two parties sharing an
    # address each get what concerns them.
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS party text NOT NULL DEFAULT ''",
    """ALTER TABLE notification_jobs
        DROP CONSTRAINT IF EXISTS notification_jobs_cause_event_id_channel_recipient_key""",
    """CREATE UNIQUE INDEX IF NOT EXISTS notification_jobs_once
        ON notification_jobs (cause_event_id, party, channel, recipient)""",
    # Who holds a claim and since when: a claim whose sender is gone is taken over.
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS claimed_by bigint",
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS claimed_at timestamptz",
    # A send whose answer was lost may have been delivered: its retry is a
    # possible repeat.
    """ALTER TABLE notification_jobs
        ADD COLUMN IF NOT EXISTS maybe_sent boolean NOT NULL DEFAULT false""",
    # An e-mail's HTML alternative, beside its text in `body`.
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS html text NOT NULL DEFAULT ''",
    """CREATE INDEX IF NOT EXISTS notification_jobs_due
        ON notification_jobs (next_attempt_at) WHERE status IN ('pending', 'sending')""",
    # The order jobs were planned in: a party's messages about a case go out
    # in it, one at a time (a job is claimed only once the one before it in
    # the same case, party and channel is sent or parked).
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS seq bigserial",
    """CREATE INDEX IF NOT EXISTS notification_jobs_open_thread
        ON notification_jobs (case_name, party, channel, seq)
        WHERE status IN ('pending', 'sending')""",
    """CREATE INDEX IF NOT EXISTS notification_jobs_sms_rate
        ON notification_jobs (recipient, sent_at) WHERE channel = 'SMS'""",
    # The one-time codes whose number is still kept (`Delivery.forget_old_codes`).
    f"""CREATE INDEX IF NOT EXISTS notification_jobs_code_numbers
        ON notification_jobs (created_at) WHERE {CODE_NUMBERS_KEPT}""",
    outbox_schema(NOTIFICATIONS, subject_type="uuid"),
    # An outcome event's id counts the job's earlier ones.
    """CREATE INDEX IF NOT EXISTS notification_outbox_job ON notification_outbox (job_id)""",
    # An erasure finds the person's rows by user id.
    """CREATE INDEX IF NOT EXISTS case_parties_user ON case_parties (user_id)
        WHERE user_id <> ''""",
    # Whom each job was for: its party's user id when it was planned (a later
    # event may name someone else in the party's row).
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS user_id text NOT NULL DEFAULT ''",
    # Tries that found the relay or provider out of reach (or refusing our
    # login): they spend no attempt, but space the next try out (`delivery`).
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS outage_tries int NOT NULL DEFAULT 0",
    # The jobs `OWNERS_AT_START` looks at, and only them.
    """CREATE INDEX IF NOT EXISTS notification_jobs_ownerless
        ON notification_jobs (case_name, party) WHERE user_id = ''""",
    # The unsent jobs of a case's party, a sender's claims among them, which
    # follow its contact changes (`store.follow_contact_changes`). The index
    # before it (notification_jobs_unsent) left the claims out; it is not
    # dropped here: through a rollout, replicas of both releases start in
    # turn, each running its statements, and would drop and build it again
    # each time, locking the table against writes while it builds. It goes a
    # release later, once no replica of the older one runs.
    f"""CREATE INDEX IF NOT EXISTS notification_jobs_to_send
        ON notification_jobs (case_name, party) WHERE {UNSENT}""",
    # A person's messages (`api`), newest first.
    """CREATE INDEX IF NOT EXISTS notification_jobs_person
        ON notification_jobs (user_id, created_at DESC, id DESC) WHERE user_id <> ''""",
    # Who was erased (PersonErased): their parties stay without address or
    # subject whatever a later event carries (events of services that keep
    # contacts in clear name them again).
    """CREATE TABLE IF NOT EXISTS erased_people (
        person text PRIMARY KEY,
        event_id text NOT NULL,
        recorded_at timestamptz NOT NULL)""",
    # When what a job carries runs out (a one-time code's expiry): past it,
    # the job is cancelled unsent (`delivery`), never sent late.
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS expires_at timestamptz",
    # When each was erased (PersonErased's time; unknown for those recorded
    # before: then always). A one-time code issued after it is theirs anew.
    "ALTER TABLE erased_people ADD COLUMN IF NOT EXISTS erased_at timestamptz",
    """CREATE TABLE IF NOT EXISTS unprocessable_events (
        consumer text NOT NULL,
        event_id text NOT NULL,
        topic text NOT NULL,
        kafka_partition int NOT NULL,
        kafka_offset bigint NOT NULL,
        error text NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, topic, kafka_partition, kafka_offset))""",
    # When the party's person was first named in the row (the naming event's
    # time; unknown for rows from before): an erasure blanks the rows of
    # cases named before it, not those of a case its person opened since
    # (heard before the erasure was: `erasures.forget_people`).
    "ALTER TABLE case_parties ADD COLUMN IF NOT EXISTS named_at timestamptz",
    # How many times a job still to be sent was given a new address (its
    # party's contact corrected, a phone number changed): its sends there go
    # under an idempotency key of their own (`channels.Outgoing`), not the
    # key of a try to the old address that a provider may have kept.
    """ALTER TABLE notification_jobs
        ADD COLUMN IF NOT EXISTS readdressed int NOT NULL DEFAULT 0""",
    # Each verified phone change heard (`phone_changes.py`): a number its
    # user changed away from is not texted again for them, however late an
    # event naming it is heard. Kept for the help centre's `phone_changes`
    # period (`delivery.Delivery.forget_old_changes`), or until the user's
    # erasure.
    """CREATE TABLE IF NOT EXISTS phone_changes_heard (
        person text NOT NULL,
        old_phone text NOT NULL,
        new_phone text NOT NULL,
        verified_at timestamptz NOT NULL,
        PRIMARY KEY (person, verified_at, old_phone))""",
    """CREATE INDEX IF NOT EXISTS phone_changes_heard_age
        ON phone_changes_heard (verified_at)""",
    # Whose words a job's text carries besides its own party's (an agent's
    # reply in the requester's e-mail; "" none), and when they were written
    # (the cause event's time): that person's erasure scrubs them, not words
    # written since (`erasures.forget_people`). An erasure finds them by the
    # partial index alone.
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS words_of text NOT NULL DEFAULT ''",
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS written_at timestamptz",
    """CREATE INDEX IF NOT EXISTS notification_jobs_words
        ON notification_jobs (words_of) WHERE words_of <> ''""",
    # The id of the person's data key that the address a party row or a job
    # holds in clear was sealed under (NULL: given in clear, or written
    # before this was kept, or by a replica of an older release during the
    # rollout). Their erasure blanks what was sealed under a key it
    # destroyed, however late it was written (a process still holding the
    # key sealed and read it after the erase time); rows without it keep the
    # erase time's rule (`erasures.forget_people`). Nullable, no default:
    # adding them rewrites nothing.
    "ALTER TABLE case_parties ADD COLUMN IF NOT EXISTS key_id uuid",
    "ALTER TABLE notification_jobs ADD COLUMN IF NOT EXISTS key_id uuid",
    # The zone a party's case counts its deadlines in (a copyright case's
    # jurisdiction's, which only its first event carries), where its dates
    # are told to a party whose phone number tells none (`cases.tell`).
    # NULL: not known (a row from before, or written by a replica of an
    # older release during the rollout, which neither reads nor changes it):
    # the service's zone, as before. Nullable, no default: adding it
    # rewrites nothing.
    "ALTER TABLE case_parties ADD COLUMN IF NOT EXISTS time_zone text",
    # A takedown notice's items, on its filer's row (a JSON list: an item's
    # URL may hold any character), kept from its filing for the uploader's
    # message when it is upheld (`steps.appeal_steps`). NULL: none known (a
    # row from before, or written by an older replica during the rollout:
    # the message names no item, as before). Nullable, no default.
    "ALTER TABLE case_parties ADD COLUMN IF NOT EXISTS items jsonb",
]

# Run at every start, after the statements: jobs planned without a user id
# (before it existed, or by a replica of an older release during a rollout)
# take their party row's, if the row still names the address they went to:
# one a correction has since given to someone else stays nobody's.
OWNERS_AT_START = """UPDATE notification_jobs AS j SET user_id = p.user_id
    FROM case_parties AS p
    WHERE j.user_id = '' AND p.case_name = j.case_name AND p.party = j.party
    AND p.user_id <> '' AND j.recipient <> '' AND j.recipient IN (p.email, p.phone)"""

SCHEMA_LOCK = 0x6E6F7469  # "noti"


async def create_schema(conninfo: str) -> None:
    """The tables, when the statements changed (`casemesh.platform.schema`),
    then the owners of jobs planned without one."""
    conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
        with_keepalives(conninfo), autocommit=True
    )
    async with conn, advisory_lock(conn, SCHEMA_LOCK):
        await schema.ensure(conn, "notifier", STATEMENTS)
        await conn.execute(OWNERS_AT_START)

"""The sender: claims due jobs, delivers them, records every outcome.

A few workers send at once (`CASEMESH_SEND_CONCURRENCY`), each claiming up to
BATCH due jobs at a time. New jobs (a NOTIFY) wake one idle worker, and a
worker that claimed a full batch wakes another: a trickle of jobs costs a
claim or two a batch rather than two a worker, and a backlog keeps every
worker busy. A job is claimed with a lease (`sending`,
`claimed_until`), so workers and replicas share the work (SKIP LOCKED) and a
job whose sender died is taken up again: 15 s after the claim when its
sender's session is gone, else after the lease, and then only after a grace
(RETAKE_GRACE) in which a sender still alive can record that it sent it. A
party's messages about a case go out in the order they were planned: a job
is claimed only once the one before it (same case, party and channel) is
sent or parked, whichever worker holds it. A worker sends its e-mails one
after another over kept-open SMTP sessions, and records each outcome, with
its outcome event (outbox), before it sends the next: a sender killed at any
moment leaves at most one message per worker sent and not recorded (sent again,
marked as a possible repeat). It begins no message later than a whole send and a
recording margin before the lease ends (the rest go back to the queue
untried), so no claim lapses before its outcome is recorded; a database error
between two sends hands the batch's unsent jobs back once it answers. SMS go one at a
time per process, each recorded before the next. Failures retry with backoff and
jitter until the retry budget is spent, then the job is parked (visible,
replayable); a try that finds the relay or provider out of reach, or refusing
our login, spends none of it and waits (`_failed`), as does one refused "for
now" once sends to several recipients in a row were refused so (`_outage`).
An outcome and its outcome event commit in one transaction. Each message's
claim is looked up again just before it is sent, so a job cancelled meanwhile
(`erasures.py`) does not go out, and one given another address meanwhile (its
party's contact changed, their phone number: `store.follow_contact_changes`,
`phone_changes`) or withdrawn (`store.WITHDRAWN`) goes back untried, to go
there or be cancelled. A send begun before such a change is recorded as it
went (`_sent`); should it fail, it is tried again at the new address at
once, its attempt not spent and the job never parked for how the old
address failed (`retry_readdressed`), or it is cancelled (`_failed`). A job
whose contents run out (a one-time code) is cancelled unsent once it is past
them, or once its next try would be (`expire`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg_pool import AsyncConnectionPool

from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.platform.backoff import backoff
from casemesh.platform.clock import Clock, SystemClock
from casemesh.platform.fields import record_from
from casemesh.platform.logging import get_logger
from casemesh.platform.masking import mask_email, mask_phone, mask_text
from casemesh.platform.pools import is_database_outage, with_keepalives
from casemesh.platform.replies import reply_address
from casemesh.rules import retention
from casemesh_notifier import policy, settings
from casemesh_notifier.channels import Channel, DeliveryError, Outgoing
from casemesh_notifier.erasures import CANCELLED
from casemesh_notifier.labels import phone_zones
from casemesh_notifier.metrics import OUTCOMES, POSSIBLE_REPEATS
from casemesh_notifier.outbox import NOTIFICATIONS
from casemesh_notifier.phone_changes import KEPT_TO_REWRITE, forget_old_changes
from casemesh_notifier.schema import CODE_NUMBERS_KEPT
from casemesh_notifier.settings import NotifierSettings
from casemesh_notifier.steps import NO_REPLY_STEPS
from casemesh_notifier.store import JOBS_CHANNEL, WITHDRAWN

log = get_logger(__name__)


@dataclass(frozen=True)
class Job:
    id: str
    cause_event_id: str
    case_name: str
    channel: str
    recipient: str
    template: str
    subject: str
    body: str
    html: str
    params: dict[str, Any]
    attempts: int
    # Tries in a row that found the relay or provider out of reach.
    outage_tries: int = 0
    # When what it carries runs out (a one-time code): never sent later.
    expires_at: datetime | None = None
    # How many times it was given a new address (`Outgoing.idempotency_key`).
    readdressed: int = 0
    # Taken over from a sender that stopped mid-send, or retried after a send
    # whose answer was lost: that send may have reached the person already.
    retaken: bool = False

    def expired_by(self, when: datetime) -> bool:
        """Whether what the job carries has run out by `when`."""
        return self.expires_at is not None and when >= self.expires_at

    @property
    def address(self) -> tuple[str, int]:
        """Where it was claimed for: its recipient, and how many times it had
        been given a new one."""
        return (self.recipient, self.readdressed)

    def masked_recipient(self) -> str:
        return mask_email(self.recipient) if self.channel == "EMAIL" else mask_phone(self.recipient)

    def ref(self, now: datetime) -> nev.NotificationJobRef:
        ts = Timestamp()
        ts.FromDatetime(now)
        masked = self.masked_recipient()
        return nev.NotificationJobRef(
            job_id=self.id,
            cause_event_id=self.cause_event_id,
            case_name=self.case_name,
            channel=nev.NotificationChannel.Value(f"NOTIFICATION_CHANNEL_{self.channel}"),
            recipient_masked=masked,
            template=self.template,
            attempt=self.attempts,
            time=ts,
        )


# An outcome counts only while its sender still holds the claim: a send that
# outlived its lease may have been taken over, and its late answer must not
# undo (or repeat) what the new holder did. A delivery is the exception
# (`_sent`): the message went out, and recording so is what stops a repeat.
STILL_CLAIMED = "id = %s AND status = 'sending' AND attempts = %s"

JOB_COLUMNS = (
    "id, cause_event_id, case_name, channel, recipient, template, subject, body, html, params,"
    " attempts, outage_tries, expires_at, readdressed"
)
# How many due jobs a worker claims at once. A sender killed mid-batch leaves
# the unrecorded ones claimed; each is taken over marked as a possible repeat,
# though at most one of them (the one being sent) went out. A small batch
# keeps those marks few; the claim's cost is shared all the same.
BATCH = 8
# Due jobs a claim considers for each it takes. Every sender considers the
# same ones, those a person is waiting for (`policy.URGENT_TEMPLATES`: a
# one-time code) first, then the longest due; those other senders hold
# (locked: skipped), or took since this claim began (no longer due once
# locked), are passed over, so the spares are for up to this many claims
# under way at once.
CANDIDATES_PER_CLAIM = 16

# A job that may be claimed now: due, or its sender's lease ran out (such a
# job is held back first, not sent: RETAKE_GRACE).
_DUE = (
    "((status = 'pending' AND next_attempt_at <= %(now)s)"
    " OR (status = 'sending' AND claimed_until <= %(now)s))"
)

# A channel whose sends to this many different recipients in a row were
# refused "for now" (HTTP 5xx, 408, a timeout, SMTP 4xx, a cut session) is
# taken to be away until a send on it is delivered (`Delivery._outage`): its
# further failures spend no attempt, so an outage answered with 502s parks
# nothing, and its jobs go out once it is over, without a replay.
AWAY_AFTER = 3

# How long an idle worker waits for a NOTIFY before it looks for due jobs
# anyway (retries falling due, a lost listener connection).
POLL_S = 1.0
# Time kept after a batch's last send begins its full course for recording its
# outcome before the lease ends (else another sender could claim and send
# again). The lease leaves room for it after the longest send (settings).
RECORD_MARGIN_S = settings.RECORD_MARGIN_S

# How long a sender keeps retrying to record an outcome while the database
# is away, between tries (seconds): a message sent and not recorded would be
# sent again once its lease lapses.
RECORD_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)
# What else a record meets that passes, and is tried again: a lost race (an
# outcome of the same job recorded meanwhile took its outcome event's id:
# `_sent`), a session the server timed out. Anything else (a value the
# database refuses) would fail alike however often it was tried.
RECORD_AGAIN: tuple[type[Exception], ...] = (
    OSError,
    psycopg.errors.UniqueViolation,
    psycopg.errors.IdleInTransactionSessionTimeout,
)

# A claim whose lease ran out while `sending` is not sent again at once: its
# sender may be alive, holding a delivery it could not record while the
# database was away. The claim that finds it puts it back to the queue for
# this long (marked as a possible repeat), and the late record, which counts
# even so (`_sent`), wins. Once the database answers, such a sender records
# within one RECORD_RETRY pause plus a pool reconnection (a few seconds);
# three pauses leave room. A sender that really died is sent again after it.
RETAKE_GRACE = timedelta(seconds=3 * RECORD_RETRY[-1])

# Each sender holds the advisory lock (SENDER_LOCK, its id) while it runs, so
# the others can tell a claim whose sender died (lock gone with its session)
# from one still being worked, and take it over at once instead of after
# the lease. A claim younger than REAP_AFTER is left alone: its sender may
# be alive and reconnecting after a database restart.
SENDER_LOCK = 0x73656E64  # "send"
REAP_AFTER = timedelta(seconds=15)
REAP_EVERY = 5.0  # seconds

# The lock (RATE_LOCK, a hash of the number) a sender holds while it checks
# an SMS against its number's hourly limit and reserves its place.
RATE_LOCK = 0x72617465  # "rate"

# SMS held back for the night go out over this long after it ends, not all
# at once (`quiet_release`).
QUIET_RELEASE = timedelta(minutes=10)


def hourly_limit_ends(
    template: str, sent: Sequence[tuple[str, datetime]], limit: int
) -> datetime | None:
    """When an SMS of `template` may go by its number's hourly limit, given
    the number's SMS of the last hour (template, when sent); None: now.

    A one-time code (`policy.URGENT_TEMPLATES`) counts the codes alone: its
    person is waiting for it, and held back by their cases' updates it would
    run out (ten minutes) and be cancelled unsent. Codes to a number stay
    bounded all the same: by this limit, and by the help centre, which sends
    a number codes for at most 10 phone changes begun within an hour (3 of
    one user's: `phone.CHANGES_PER_NUMBER_PER_HOUR`,
    `phone.OWN_CHANGES_PER_NUMBER_PER_HOUR`), at most 4 to it for each (a first
    and `phone.MAX_RESENDS` more). Any other SMS counts every SMS of the
    hour, codes too."""
    if template in policy.URGENT_TEMPLATES:
        sent = [(t, when) for t, when in sent if t in policy.URGENT_TEMPLATES]
    if len(sent) < limit:
        return None
    # Free once all but limit - 1 of them are more than an hour old.
    times = sorted(when for _, when in sent)
    return times[len(times) - limit] + timedelta(hours=1, seconds=1)


def quiet_release(job_id: str) -> timedelta:
    """How long after the end of quiet hours the job's SMS goes: a point in
    QUIET_RELEASE its id fixes (so every look at it agrees). The night's SMS
    all due at the same second would come to the provider as one burst, and
    to the rate limit and each sender's one-at-a-time turn as one queue."""
    return timedelta(seconds=uuid.UUID(job_id).int % int(QUIET_RELEASE.total_seconds()))


# A one-time code's number is kept this long after its job was planned (the
# hourly limit per number reads the last hour's sends), then blanked: the
# help centre keeps the change's numbers for their retention period, and the
# outcome events only a mask. Looked for this often, a batch at a time.
CODE_RECIPIENT_KEPT = timedelta(days=1)
FORGET_CODES_EVERY = 3600.0  # seconds
FORGET_CODES_BATCH = 1000


def put_back(status: str) -> str:
    """The assignments putting a claimed job back unsent as `status`, or, if
    it was withdrawn from its sender meanwhile (`store.WITHDRAWN`),
    cancelling it with its text erased."""
    return (
        f"status = CASE WHEN {WITHDRAWN} THEN '{CANCELLED}' ELSE '{status}' END,"
        f" subject = CASE WHEN {WITHDRAWN} THEN '' ELSE subject END,"
        f" body = CASE WHEN {WITHDRAWN} THEN '' ELSE body END,"
        f" html = CASE WHEN {WITHDRAWN} THEN '' ELSE html END,"
        f" params = CASE WHEN {WITHDRAWN} THEN '{{}}' ELSE params END"
    )


async def record_outcome(
    conn: psycopg.AsyncConnection[Any], job: Job, message: Any, now: datetime
) -> None:
    await record_outcomes(conn, [(job, message)], now)


# The outbox rows of outcome events, from arrays of job ids, types and
# payloads: an event's id is `<job id>:<n>`, n counting the job's outcomes
# (attempt numbers restart when a parked job is replayed).
OUTCOME_ROWS = (
    "INSERT INTO notification_outbox (event_id, job_id, ce_type, payload, created_at)"
    " SELECT v.job || ':' || (1 + (SELECT count(*) FROM notification_outbox AS o"
    "   WHERE o.job_id = v.job::uuid)), v.job::uuid, v.type, v.payload, %(now)s"
    " FROM unnest(%(jobs)s::text[], %(types)s::text[], %(payloads)s::bytea[])"
    " WITH ORDINALITY AS v(job, type, payload, n)"
)


def outcome_params(outcomes: Sequence[tuple[Job, Any]], now: datetime) -> dict[str, Any]:
    return {
        "jobs": [job.id for job, _ in outcomes],
        "types": [NOTIFICATIONS.type_of(m) for _, m in outcomes],
        "payloads": [m.SerializeToString() for _, m in outcomes],
        "now": now,
    }


async def record_outcomes(
    conn: psycopg.AsyncConnection[Any], outcomes: Sequence[tuple[Job, Any]], now: datetime
) -> None:
    """Adds the outcome events (one per job) to the outbox, in the caller's
    transaction. Callers update the job rows first, so their row locks order
    concurrent outcomes of one job."""
    await conn.execute(f"{OUTCOME_ROWS} ORDER BY v.n", outcome_params(outcomes, now))
    await conn.execute("NOTIFY notification_outbox")


class Delivery:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[Any],
        conninfo: str,
        channels: dict[str, Channel],
        cfg: NotifierSettings,
        clock: Clock | None = None,
    ) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self._channels = channels
        self._cfg = cfg
        self._clock = clock or SystemClock()
        # A NOTIFY wakes one idle worker (`_wake_one`), not all of them: one
        # claim per batch of new jobs rather than one per worker. With every
        # worker busy it is noted instead (`_notified`), and a worker whose
        # claim found nothing claims again rather than wait: its claim may
        # have begun before the jobs were committed.
        self._idle: collections.deque[asyncio.Event] = collections.deque()
        self._workers: list[asyncio.Event] = []
        self._notified = False
        self.sender = secrets.randbelow(2**31)
        self._present = asyncio.Event()
        self._reaped_at = float("-inf")
        self._codes_forgotten_at = float("-inf")
        self._missing: set[int] = set()  # senders whose lock was missing at the last look
        self._sms_turn = asyncio.Lock()
        # Per channel, the recipients of this process's sends refused "for
        # now" since its last delivery, up to AWAY_AFTER (`_outage`).
        self._failing: dict[str, dict[str, float]] = {}
        # Set by `run`'s stop: a batch under way sends no more (the send in
        # hand is finished and recorded; the rest go back to the queue).
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Sends with `send_concurrency` workers, each claiming up to BATCH jobs at a time."""
        self._stop = stop
        listener = asyncio.create_task(self._listen(stop))
        workers = [asyncio.create_task(self._work(stop)) for _ in range(self._cfg.send_concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in (*workers, listener):
                task.cancel()
            await asyncio.gather(*workers, listener, return_exceptions=True)

    async def _work(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        self._workers.append(wake)
        try:
            while not stop.is_set():
                # A claim begun from here sees every job notified so far.
                self._notified = False
                if await self._work_once() or self._notified:
                    continue
                wake.clear()
                self._idle.append(wake)
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), POLL_S)
                finally:
                    with contextlib.suppress(ValueError):
                        self._idle.remove(wake)
        finally:
            self._workers.remove(wake)

    async def _work_once(self) -> bool:
        """Claims and handles a batch of due jobs; False when none was due
        (or the work could not be done now)."""
        try:
            if not self._present.is_set():
                # Claim nothing that others could not tell is being worked.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._present.wait(), 1.0)
                return True  # not idle: look again at once
            await self._reap_orphans()
            if time.monotonic() - self._codes_forgotten_at >= FORGET_CODES_EVERY:
                self._codes_forgotten_at = time.monotonic()
                await self.forget_old_codes()
                await self.forget_old_changes()
            return await self.deliver_batch() > 0
        except (psycopg.Error, OSError) as exc:
            log.error("delivery.database_unavailable", error=repr(exc))
        except Exception:
            # Keep delivering the other jobs; this one's claim lapses and
            # it is tried again after the lease.
            log.exception("delivery.unexpected_error")
        # A NOTIFY this worker may have taken up goes to the next to look.
        self._notified = True
        await asyncio.sleep(1.0)
        return False

    def _wake_one(self) -> None:
        """New jobs: one idle worker claims them, or, with none idle, the
        next worker to finish a claim claims again."""
        if self._idle:
            self._idle.popleft().set()
        else:
            self._notified = True

    def _wake_all(self) -> None:
        """Work for every worker (orphans taken over)."""
        self._notified = True
        for wake in self._workers:
            wake.set()

    async def _listen(self, stop: asyncio.Event) -> None:
        # Push: the consumer NOTIFYs when a batch created jobs. The 1 s poll above
        # covers retries falling due and a lost listener connection. The same
        # session holds this sender's lock, so the others see the sender
        # while it is connected; keepalives notice a connection the network
        # dropped within a minute.
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    with_keepalives(self._conninfo), autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(
                        "SELECT pg_advisory_lock(%s, %s)", (SENDER_LOCK, self.sender)
                    )
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    self._present.set()
                    log.info("delivery.sender_present", sender=self.sender)
                    async for _ in conn.notifies():
                        self._wake_one()
            except (psycopg.Error, OSError) as exc:
                log.warning("delivery.listener_lost", error=repr(exc))
            except Exception:
                log.exception("delivery.listener_failed")  # and listen again
            self._present.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def forget_old_codes(self) -> int:
        """Blanks the numbers of one-time codes planned more than
        CODE_RECIPIENT_KEPT ago, a batch at a time (rows another sender holds
        are left for the next look); returns how many."""
        before = self._clock.now() - CODE_RECIPIENT_KEPT
        forgotten = 0
        while True:
            async with self._pool.connection() as conn:
                # The template written out, as the partial index says it
                # (`schema.CODE_NUMBERS_KEPT`): a parameter would not match it.
                cur = await conn.execute(
                    "UPDATE notification_jobs SET recipient = '' WHERE id IN ("
                    f" SELECT id FROM notification_jobs WHERE {CODE_NUMBERS_KEPT}"
                    " AND created_at < %s ORDER BY created_at"
                    " LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (before, FORGET_CODES_BATCH),
                )
            done: int = cur.rowcount
            forgotten += done
            if done < FORGET_CODES_BATCH:
                break
        if forgotten:
            log.info("notification.code_numbers_forgotten", jobs=forgotten)
        return forgotten

    async def forget_old_changes(self) -> int:
        """Deletes the phone changes heard (`phone_changes_heard`) past the
        help centre's period for a change's numbers; returns how many."""
        async with self._pool.connection() as conn:
            changes = await forget_old_changes(
                conn, self._clock.now() - retention.period("phone_changes")
            )
        if changes:
            log.info("notification.phone_changes_forgotten", changes=changes)
        return changes

    async def _reap_orphans(self) -> None:
        """Every few seconds: claims whose sender's session is gone (a crash, a
        kill) lapse now, so they are taken over, as possible repeats. A sender
        is judged gone when its lock is missing at two looks REAP_EVERY apart,
        and only once the database has been up for REAP_AFTER: after a
        restart, live senders need a moment to take their locks again."""
        if time.monotonic() - self._reaped_at < REAP_EVERY:
            return
        self._reaped_at = time.monotonic()
        now = self._clock.now()
        held = {"now": now, "old": now - REAP_AFTER}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT claimed_by FROM notification_jobs"
                " WHERE status = 'sending' AND claimed_until > %(now)s"
                " AND claimed_by IS NOT NULL AND claimed_at < %(old)s"
                " AND pg_postmaster_start_time() < now() - %(settle)s"
                " AND claimed_by NOT IN (SELECT objid::bigint FROM pg_locks"
                "   WHERE locktype = 'advisory' AND classid::bigint = %(lock)s AND objsubid = 2 AND"
                "   database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                {**held, "settle": REAP_AFTER, "lock": SENDER_LOCK},
            )
            missing = {sender for (sender,) in await cur.fetchall()}
            gone, self._missing = sorted(missing & self._missing), missing
            if not gone:
                return
            cur = await conn.execute(
                "UPDATE notification_jobs SET claimed_until = %(now)s"
                " WHERE status = 'sending' AND claimed_until > %(now)s"
                " AND claimed_by = ANY(%(gone)s) AND claimed_at < %(old)s",
                {**held, "gone": gone},
            )
        if cur.rowcount:
            log.warning("delivery.orphans_taken_over", jobs=cur.rowcount, senders=len(gone))
            self._wake_all()

    async def claim(self) -> Job | None:
        jobs = await self.claim_many(1)
        return jobs[0] if jobs else None

    async def claim_many(self, limit: int) -> list[Job]:
        """Claims up to `limit` due jobs, the longest due first, none while an
        earlier one of the same case, party and channel is still to be sent:
        so a party hears of a case in order, whichever worker sends. Due jobs
        a person is waiting for (a one-time code) go before all others: a
        code asked for as the night's SMS are released would otherwise wait
        behind them all, and run out unsent. (That order is a sort of the
        jobs found due, after the pass below: it changes no index's use.)
        One pass over the jobs still to be sent, whatever the table's
        statistics say (a join of those jobs with themselves, planned on
        statistics taken before a burst, grew with the square of the
        backlog). A job whose lease ran out is not returned but held back
        (RETAKE_GRACE)."""
        now = self._clock.now()
        lease = now + timedelta(seconds=self._cfg.claim_lease_seconds)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH due AS ("
                "  SELECT n.id, n.status = 'sending' AS lapsed, n.maybe_sent AS retaken"
                "  FROM unnest(ARRAY("
                # In order: of the jobs still to be sent for one party of a
                # case on one channel, only the first planned can be taken.
                "    SELECT id FROM ("
                "      SELECT id, status, next_attempt_at, claimed_until, seq, template,"
                "        row_number() OVER (PARTITION BY case_name, party, channel"
                "          ORDER BY seq) AS place"
                "      FROM notification_jobs WHERE status IN ('pending', 'sending')"
                "    ) AS open"
                f"    WHERE place = 1 AND {_DUE}"
                "    ORDER BY template = ANY(%(urgent)s) DESC, next_attempt_at, seq"
                "    LIMIT %(candidates)s"
                "  )) WITH ORDINALITY AS candidate(id, rank)"
                # Each looked up by its id, and checked again once locked.
                "  JOIN notification_jobs AS n ON n.id = candidate.id"
                f"  WHERE {_DUE}"
                "  ORDER BY candidate.rank LIMIT %(limit)s FOR UPDATE OF n SKIP LOCKED)"
                # A lapsed claim goes back to the queue until the grace ends,
                # no attempt spent: its sender may yet record its delivery.
                " UPDATE notification_jobs AS j SET"
                " status = CASE WHEN due.lapsed THEN 'pending' ELSE 'sending' END,"
                " attempts = j.attempts + CASE WHEN due.lapsed THEN 0 ELSE 1 END,"
                " next_attempt_at = CASE WHEN due.lapsed THEN %(grace_end)s"
                "   ELSE j.next_attempt_at END,"
                " claimed_until = CASE WHEN due.lapsed THEN NULL ELSE %(lease)s END,"
                " maybe_sent = j.maybe_sent OR due.lapsed,"
                " claimed_at = %(now)s, claimed_by = %(sender)s"
                " FROM due WHERE j.id = due.id"
                f" RETURNING {', '.join('j.' + c for c in JOB_COLUMNS.split(', '))},"
                " due.retaken, due.lapsed",
                {
                    "now": now,
                    "lease": lease,
                    "grace_end": now + RETAKE_GRACE,
                    "sender": self.sender,
                    "limit": limit,
                    "candidates": CANDIDATES_PER_CLAIM * limit,
                    "urgent": sorted(policy.URGENT_TEMPLATES),
                },
                # Planned afresh each time, as the backlog's size changes.
                prepare=False,
            )
            rows = await cur.fetchall()
        for row in rows:
            if row[-1]:
                log.warning(
                    "notification.lease_lapsed",
                    job_id=str(row[0]),
                    channel=row[3],
                    held_for_s=RETAKE_GRACE.total_seconds(),
                )
        jobs = [Job(str(row[0]), *row[1:-1]) for row in rows if not row[-1]]
        # Sent in this order: those a person is waiting for first. (One job
        # of a case's party and channel at most: no thread's order changes.)
        jobs.sort(key=lambda job: job.template not in policy.URGENT_TEMPLATES)
        for job in jobs:
            if job.retaken:
                log.warning(
                    "notification.retaken",
                    job_id=job.id,
                    channel=job.channel,
                    attempt=job.attempts,
                )
        return jobs

    async def deliver_one(self) -> bool:
        """Claims and handles one due job; False when none was due."""
        return await self.deliver_batch(1) > 0

    async def deliver_batch(self, limit: int = BATCH) -> int:
        """Claims up to `limit` due jobs and handles them one at a time (SMS
        one at a time per process). Returns how many were claimed (0: none
        was due)."""
        # A send may begin until a whole send, and the time to record its
        # outcome, before the lease ends (the batch's first send at once: the
        # lease outlasts a send). Past that, what was not begun goes back.
        deadline = (
            time.monotonic()
            + self._cfg.claim_lease_seconds
            - self._cfg.longest_send
            - RECORD_MARGIN_S
        )
        jobs = await self.claim_many(limit)
        if len(jobs) == limit:
            self._wake_one()  # more may be due: another worker shares them
        try:
            await self._deliver(jobs, deadline)
        except (psycopg.Error, OSError) as exc:
            # A look-up before a send failed: the database went away mid-batch.
            # The jobs still held (none of them sent: each send before it was
            # recorded) go back to the queue at once, as untried ones do.
            log.error("delivery.batch_interrupted", jobs=len(jobs), error=repr(exc))
            await self._untried(jobs)
        return len(jobs)

    async def _deliver(self, jobs: list[Job], deadline: float) -> None:
        """Sends the claimed jobs, channel by channel; what cannot begin
        before `deadline` (monotonic), or once the sender is stopping, goes
        back untried."""
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.channel, []).append(job)
        begun = False
        for channel, group in groups.items():
            if begun and self._past(deadline):
                await self._untried(group)
                continue
            begun = True
            if channel != "SMS":
                await self._send(group, deadline)
                continue
            for n, job in enumerate(group):
                # One SMS at a time per process, from the rate check to the
                # recorded outcome. (Senders side by side, here or in other
                # replicas, count each other's sends: `_sms_not_before`.)
                async with self._sms_turn:
                    if n and self._past(deadline):
                        await self._untried(group[n:])
                        break
                    await self._handle_sms(job)

    def _past(self, deadline: float) -> bool:
        """Whether a batch's next send may no longer begin: past `deadline`
        (monotonic), or the sender is stopping."""
        return self._stop.is_set() or time.monotonic() >= deadline

    async def _untried(self, jobs: list[Job]) -> None:
        """Jobs claimed but not begun go back to the queue, no attempt spent."""
        for job in jobs:
            await self._recorded(partial(self._defer, job, self._clock.now()), [job])

    async def _handle_sms(self, job: Job) -> None:
        later = await self._sms_not_before(job, self._clock.now())
        if later is not None:
            # A code that would run out before the limit or the night lets it
            # go is cancelled now: sent later it would be of no use.
            if job.expired_by(later):
                await self._recorded(partial(self._expire, job), [job])
            else:
                await self._recorded(partial(self._defer, job, later), [job])
            return
        await self._send([job], float("inf"))

    def _reply_to(self, job: Job) -> str:
        """A ticket e-mail's reply address (replies become comments: the inbound
        mail service), when replies are set up; "" otherwise."""
        collection, _, ident = job.case_name.partition("/")
        if job.channel != "EMAIL" or collection != "tickets" or not self._cfg.replies_open:
            return ""
        if job.template in NO_REPLY_STEPS:  # the ticket takes no reply any more
            return ""
        secret = self._cfg.reply_token_secret.get_secret_value()
        return reply_address(ident, secret, self._cfg.reply_domain)

    async def _send(self, jobs: list[Job], deadline: float) -> None:
        """Sends the jobs (all of one channel) one after another, each
        recorded before the next goes out, so a sender killed at any moment
        leaves at most one message sent and not recorded. None but the first
        begins at or after `deadline` (monotonic), or once the sender is
        stopping: the rest go back to the queue untried. Once the relay
        cannot be reached, the rest fail alike untried (their backoff keeps
        the sender off a dead relay)."""
        channel = self._channels[jobs[0].channel]
        for n, job in enumerate(jobs):
            if n and self._past(deadline):
                await self._untried(jobs[n:])
                return
            held = await self._still_claimed(job)
            if held is None:
                # Cancelled (its person erased) or taken over since the claim.
                log.warning("notification.claim_lost", job_id=job.id, outcome="not_sent")
                continue
            if job.expired_by(self._clock.now()):
                await self._recorded(partial(self._expire, job), [job])
                continue
            if held != job.address or not job.recipient:
                # Given another address since the claim, or withdrawn: back
                # to the queue untried, to go there (or be cancelled: `_defer`).
                log.info("notification.readdressed_before_send", job_id=job.id)
                await self._recorded(partial(self._defer, job, self._clock.now()), [job])
                continue
            message = record_from(
                Outgoing,
                job,
                job_id=job.id,
                params={k: str(v) for k, v in job.params.items() if k not in KEPT_TO_REWRITE},
                reply_to=self._reply_to(job),
            )
            try:
                provider_id = await channel.send(message)
            except DeliveryError as exc:
                away = exc.unreachable or self._outage(job, exc)
                for failed in jobs[n:] if away else [job]:
                    failure = self._failure(failed, exc, away=away, tried=failed is job)
                    await self._recorded(failure, [failed])
                if away:
                    return
            except Exception as exc:
                await self._recorded(self._failure(job, exc), [job])
            else:
                self._back(job.channel)
                await self._recorded(
                    partial(self._sent, [(job, provider_id)]),
                    [job],
                    # Sent, whatever the provider said its id was: a record
                    # refused for that id must not leave the job to go out again.
                    instead=partial(self._sent, [(job, "")]),
                )

    def _outage(self, job: Job, exc: DeliveryError) -> bool:
        """Whether a send refused "for now" (a 5xx, a timeout, an SMTP 4xx)
        shows its channel's relay or provider away: this process's sends to
        AWAY_AFTER different recipients in a row were all refused so, none
        delivered since. Such a failure then spends no attempt, as an
        unreachable relay's does. One recipient's refusals (a full mailbox,
        however many jobs) count once, so that recipient's jobs still spend
        their budget and park while the channel delivers to others."""
        if exc.permanent:
            return False
        now = time.monotonic()
        failing = self._failing.setdefault(job.channel, {})
        # Refusals older than the longest wait between tries no longer tell
        # (another replica may have delivered since): the count starts again.
        for recipient, at in list(failing.items()):
            if now - at > 2 * self._cfg.backoff_cap_seconds:
                del failing[recipient]
        was_away = len(failing) >= AWAY_AFTER
        # The latest refusal of each recipient, the AWAY_AFTER latest kept:
        # away while that many different recipients were refused lately (one
        # full mailbox refused again and again keeps one place, not three).
        failing.pop(job.recipient, None)
        failing[job.recipient] = now
        while len(failing) > AWAY_AFTER:
            del failing[next(iter(failing))]
        away = len(failing) >= AWAY_AFTER
        if away and not was_away:
            log.warning("delivery.channel_away", channel=job.channel, error=str(exc)[:100])
        return away

    def _back(self, channel: str) -> None:
        """A delivery on `channel`: its relay or provider is there."""
        if len(self._failing.pop(channel, ())) >= AWAY_AFTER:
            log.info("delivery.channel_back", channel=channel)

    async def _still_claimed(self, job: Job) -> tuple[str, int] | None:
        """Where the job goes now (`Job.address`), if it is still this
        sender's to send (None: not), looked up just before it goes out: a
        job cancelled meanwhile (its person erased) is not sent, nor one
        given another address (or none) meanwhile, as it was claimed. One
        cancelled or given another while the relay has it is sent all the same."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT recipient, readdressed FROM notification_jobs WHERE {STILL_CLAIMED}",
                (job.id, job.attempts),
            )
            row = await cur.fetchone()
        return None if row is None else (row[0], row[1])

    def _failure(
        self, job: Job, exc: Exception, *, away: bool = False, tried: bool = True
    ) -> Callable[[], Awaitable[None]]:
        """How to record a send that failed with `exc` (`away`: its channel's
        relay or provider is away, whatever `exc` says; not `tried`: the job
        was not sent, failed with the one before it, so it went nowhere)."""
        if isinstance(exc, DeliveryError):
            return partial(
                self._failed,
                job,
                kept_error(job, exc),
                published=str(exc),
                permanent=exc.permanent,
                maybe_sent=exc.maybe_sent and tried,
                unreachable=exc.unreachable or away,
                retry_after=exc.retry_after,
            )
        # A message the channel cannot even form: retrying cannot help, and
        # it must not stop the others. Parked, it stays visible and replayable.
        log.error("notification.unsendable", job_id=job.id, channel=job.channel, exc_info=exc)
        return partial(self._failed, job, f"unsendable: {type(exc).__name__}", permanent=True)

    async def _recorded(
        self,
        record: Callable[[], Awaitable[None]],
        jobs: list[Job],
        instead: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Records attempts' outcomes, waiting out a database outage of any
        length: the attempts happened, and forgetting them would send again.
        A record refused for what it holds (by the database, or by the driver:
        a value it cannot send) is not tried again: tried for ever, it would
        hold this worker, and once its claim lapsed every sender that took the
        job up. The smaller record `instead` is tried in its place; with none,
        or refused too, its jobs are left as a dead sender's are (still
        claimed: taken up again once the lease lapses and RETAKE_GRACE is
        over, as possible repeats), and the worker goes on."""
        for tries in itertools.count():
            try:
                await record()
                return
            except (psycopg.Error, OSError, UnicodeEncodeError) as exc:
                if not (is_database_outage(exc) or isinstance(exc, RECORD_AGAIN)):
                    log.error(
                        "notification.outcome_refused",
                        job_id=jobs[0].id,
                        jobs=len(jobs),
                        recorded_instead=instead is not None,
                        exc_info=exc,
                    )
                    if instead is None:
                        return
                    record, instead = instead, None
                    continue
                pause = RECORD_RETRY[min(tries, len(RECORD_RETRY) - 1)]
                if tries == 0 or pause == RECORD_RETRY[-1]:
                    log.error(
                        "notification.outcome_unrecorded",
                        job_id=jobs[0].id,
                        jobs=len(jobs),
                        error=repr(exc),
                        retry_in=pause,
                    )
                await asyncio.sleep(pause)

    async def _sms_not_before(self, job: Job, now: datetime) -> datetime | None:
        # A one-time code is wanted now, at any hour (the hourly limit of
        # codes still applies: `hourly_limit_ends`). Quiet hours are the
        # recipient's, in every zone their number may be in (+7: Kaliningrad
        # to Kamchatka), the service's zone only for a number that tells none.
        zones = phone_zones(job.recipient) or [ZoneInfo(self._cfg.sms_time_zone)]
        quiet_end = (
            None
            if job.template in policy.URGENT_TEMPLATES
            else policy.quiet_until_everywhere(now, self._cfg.sms_quiet_hours, zones)
        )
        if quiet_end is not None:
            return quiet_end + quiet_release(job.id)
        # The number's last hour: its SMS sent, and those being sent (by any
        # sender, any replica), which count from when their check passed:
        # each check reserves its send by setting `sent_at` (set again once
        # it went). Check and reservation hold a lock on the number, so two
        # senders' checks cannot both pass on the same last free place.
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (RATE_LOCK, job.recipient)
            )
            cur = await conn.execute(
                "SELECT template, sent_at FROM notification_jobs WHERE channel = 'SMS'"
                " AND recipient = %s AND status IN ('sent', 'sending') AND sent_at > %s"
                " AND id <> %s",
                (job.recipient, now - timedelta(hours=1), job.id),
            )
            sent = await cur.fetchall()
            later = hourly_limit_ends(job.template, sent, self._cfg.sms_per_recipient_per_hour)
            if later is not None:
                return later
            await conn.execute(
                f"UPDATE notification_jobs SET sent_at = %s WHERE {STILL_CLAIMED}",
                (now, job.id, job.attempts),
            )
        return None

    async def _defer(self, job: Job, until: datetime) -> None:
        """Puts the claimed job back to the queue, due at `until`, untried;
        one withdrawn from its sender meanwhile (`store.WITHDRAWN`) is
        cancelled instead, its text erased, as are those no sender held."""
        # Not an attempt: quiet hours and rate limits do not spend the retry budget.
        async with self._pool.connection() as conn:
            # (Not waiting on its provider meanwhile: held back on purpose.)
            # A send that may have reached the person makes its retry a
            # possible repeat only where it went (not after a readdressing).
            cur = await conn.execute(
                f"UPDATE notification_jobs SET {put_back('pending')},"
                " attempts = attempts - 1, next_attempt_at = %s, claimed_until = NULL,"
                " maybe_sent = maybe_sent OR (%s AND readdressed = %s), outage_tries = 0"
                f" WHERE {STILL_CLAIMED} RETURNING status",
                (until, job.retaken, job.readdressed, job.id, job.attempts),
            )
            row = await cur.fetchone()
        if row is not None and row[0] == CANCELLED:
            OUTCOMES.labels(job.channel, CANCELLED).inc()
            log.info("notification.withdrawn", job_id=job.id, channel=job.channel, tried=False)
            return
        log.info(
            "notification.deferred", job_id=job.id, channel=job.channel, until=until.isoformat()
        )

    async def _expire(self, job: Job) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await expire(conn, job, "", self._clock.now())

    async def _sent(self, delivered: list[tuple[Job, str]]) -> None:
        """Records deliveries (job, provider's message id) and their outcome
        events in one statement (one round trip, atomic on its own). A
        delivery counts even when its claim lapsed meanwhile (a long database
        outage), while the job is held back (RETAKE_GRACE) so that this late
        record wins over a second send. Once another sender has claimed it
        again, or it was sent, parked or cancelled, it is left alone. The record
        names the address the message went to, whatever address the job was
        given while the provider had it (`store.follow_contact_changes`,
        `phone_changes`): a send already begun is recorded as it went. The job row's
        lock orders concurrent outcomes of one job; one recorded between
        this statement's snapshot and its lock would make its count of the
        job's outcomes stale, and the event id clash: the statement fails
        and `_recorded` tries again."""
        now = self._clock.now()
        outcomes = [
            (
                job,
                nev.NotificationDelivered(
                    job=job.ref(now),
                    provider_message_id=printable(provider_id),
                    possible_repeat=job.retaken,
                ),
            )
            for job, provider_id in delivered
        ]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH sent AS (UPDATE notification_jobs AS j SET status = 'sent',"
                " sent_at = %(now)s, provider_message_id = d.provider_id,"
                " recipient = d.recipient,"
                " claimed_until = NULL, last_error = '',"
                # Delivered: a one-time code is kept no longer than needed.
                " body = CASE WHEN j.template = ANY(%(secret)s) THEN '' ELSE j.body END,"
                " html = CASE WHEN j.template = ANY(%(secret)s) THEN '' ELSE j.html END,"
                " params = CASE WHEN j.template = ANY(%(secret)s) THEN '{}' ELSE j.params END"
                " FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(provider_ids)s::text[],"
                " %(recipients)s::text[]) AS d(id, attempts, provider_id, recipient)"
                # This sender's claim, or the claim held back after it lapsed
                # (RETAKE_GRACE); not one another sender took since, whose
                # own record (a possible repeat) must stand.
                " WHERE j.id = d.id AND j.attempts = d.attempts"
                " AND (j.status = 'sending' OR (j.status = 'pending' AND j.maybe_sent))"
                " RETURNING j.id),"
                f" told AS ({OUTCOME_ROWS} WHERE v.job::uuid IN (SELECT id FROM sent)"
                " ORDER BY v.n RETURNING 1)"
                " SELECT id, (SELECT count(pg_notify('notification_outbox', '')) FROM told)"
                " FROM sent",
                {
                    "secret": sorted(policy.SECRET_TEMPLATES),
                    "ids": [job.id for job, _ in delivered],
                    "attempts": [job.attempts for job, _ in delivered],
                    # The provider's words: they may hold what no text column takes.
                    "provider_ids": [printable(provider_id) for _, provider_id in delivered],
                    "recipients": [job.recipient for job, _ in delivered],
                    **outcome_params(outcomes, now),
                },
            )
            recorded = {str(row[0]) for row in await cur.fetchall()}
        for job, _ in delivered:
            if job.id not in recorded:
                log.warning("notification.claim_lost", job_id=job.id, outcome="delivered")
        delivered = [(job, pid) for job, pid in delivered if job.id in recorded]
        for job, _ in delivered:
            OUTCOMES.labels(job.channel, "delivered").inc()
            if job.retaken:
                POSSIBLE_REPEATS.labels(job.channel).inc()
            log.info(
                "notification.delivered",
                job_id=job.id,
                channel=job.channel,
                template=job.template,
                attempt=job.attempts,
            )

    async def _failed(
        self,
        job: Job,
        error: str,
        *,
        published: str | None = None,
        permanent: bool,
        maybe_sent: bool = False,
        unreachable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Records a failed try: `error` in the job's last error and the log,
        `published` (else `error`) in its outcome event. A job given another
        address while its try was under way is retried there at once
        (`retry_readdressed`); one withdrawn from its sender
        (`store.WITHDRAWN`) is cancelled (`withdraw`)."""
        now = self._clock.now()
        # A send that may have reached the person (this one, or one before the
        # job was taken over) makes any later send a possible repeat.
        maybe_sent = maybe_sent or job.retaken
        # A relay or provider away or turning us away is no fault of the
        # message: the try spends no attempt, so the job waits (backing off up
        # to the cap) however long that lasts, and goes out once the
        # operator's side is mended, without a replay; its budget is whole
        # for the answers that come after.
        park = permanent or (job.attempts >= self._cfg.max_attempts and not unreachable)
        spent, outage = (-1, job.outage_tries + 1) if unreachable else (0, 0)

        # Provider messages may quote the address; neither the table nor the
        # public outcome event keeps it whole. (Nor a control character,
        # which a text column may refuse: `printable`.)
        def masked(text: str) -> str:
            if job.recipient:
                text = text.replace(job.recipient, job.masked_recipient())
            return mask_text(printable(text))[:500]

        error = masked(error)
        told = error if published is None else masked(published)
        async with self._pool.connection() as conn, conn.transaction():
            # Its row held till the outcome commits: no change moves it meanwhile.
            cur = await conn.execute(
                "SELECT recipient, readdressed, last_error FROM notification_jobs"
                f" WHERE {STILL_CLAIMED} FOR UPDATE",
                (job.id, job.attempts),
            )
            held = await cur.fetchone()
            if held is not None and not held[0]:
                why = [held[2]] if held[2] else []
                await withdraw(
                    conn, job, "; ".join([error, *why]), "; ".join([told, *why]), now, maybe_sent
                )
                return
            if held is not None and (held[0], held[1]) != job.address:
                # What this try may have delivered went to the old address,
                # and how it failed there says nothing of the new one. (A
                # relay or provider away waits out its outage all the same,
                # spending nothing, below.)
                maybe_sent = False
                if not unreachable:
                    await retry_readdressed(conn, job, error, told, now)
                    return
            if park:
                # A one-time code is kept no longer than any other end keeps
                # it (sent, expired, replaced): a replay would not send it
                # (`replay_parked`), and the person asks for a new one.
                cur = await conn.execute(
                    "UPDATE notification_jobs SET status = 'parked', last_error = %s,"
                    " claimed_until = NULL, maybe_sent = maybe_sent OR %s,"
                    " body = CASE WHEN template = ANY(%s) THEN '' ELSE body END,"
                    " html = CASE WHEN template = ANY(%s) THEN '' ELSE html END,"
                    " params = CASE WHEN template = ANY(%s) THEN '{}' ELSE params END"
                    f" WHERE {STILL_CLAIMED}",
                    (
                        error,
                        maybe_sent,
                        *[sorted(policy.SECRET_TEMPLATES)] * 3,
                        job.id,
                        job.attempts,
                    ),
                )
                if cur.rowcount == 0:
                    log.warning("notification.claim_lost", job_id=job.id, outcome="parked")
                    return
                await record_outcome(
                    conn, job, nev.NotificationParked(job=job.ref(now), error=told), now
                )
            else:
                delay = backoff(
                    outage or job.attempts,
                    base=self._cfg.backoff_base_seconds,
                    cap=self._cfg.backoff_cap_seconds,
                )
                # Not before the provider asked (429 or 503 with Retry-After).
                delay = max(delay, retry_after or 0.0)
                retry_at = now + timedelta(seconds=delay)
                if job.expired_by(retry_at):
                    await expire(conn, job, error, now, maybe_sent=maybe_sent)
                    return
                if not await retry_later(
                    conn,
                    job,
                    error,
                    told,
                    now,
                    due=retry_at,
                    spent=spent,
                    outage_tries=outage,
                    maybe_sent=maybe_sent,
                    lost_as="retry",
                ):
                    return
        OUTCOMES.labels(job.channel, "parked" if park else "retried").inc()
        log.warning(
            "notification.parked" if park else "notification.retrying",
            job_id=job.id,
            channel=job.channel,
            attempt=job.attempts,
            error=error,
        )


# Runs of four digits or more: a one-time code, an order or account number.
# (`mask_text` takes only phone-like runs, of eight and more.)
_DIGIT_RUN = re.compile(r"\d{4,}")
# C0 control characters but tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def printable(text: str) -> str:
    """A provider's words without control characters (but tab and newline)
    or lone surrogates (`?` for those): a body in UTF-16, or binary, read as
    UTF-8 is full of NULs, and a text column refuses a NUL outright; a JSON
    answer's `\\udc00` is no character the driver can send (the outcome
    could not be recorded)."""
    return _CONTROL.sub("", text.encode("utf-8", "replace").decode("utf-8"))


def kept_error(job: Job, exc: DeliveryError) -> str:
    """What is kept of a failed send in the job's last error and the logs
    (its outcome events, public and on Kafka for weeks, carry our words
    alone: `str(exc)`): our words for it (the status, what failed), then the
    provider's own answer with every run of four digits or more masked. A
    provider may echo the request in its answer (a 400 quoting the text and
    its parameters): for a job carrying a secret (a one-time code) its answer
    is left out altogether, as no mask can tell which part of it is the
    secret. Control characters are left out (`printable`)."""
    if not exc.detail or job.template in policy.SECRET_TEMPLATES:
        return printable(str(exc))
    said = _DIGIT_RUN.sub(lambda m: "*" * len(m.group()), exc.detail)
    return printable(f"{exc}: {said}")


async def expire(
    conn: psycopg.AsyncConnection[Any],
    job: Job,
    error: str,
    now: datetime,
    *,
    maybe_sent: bool = False,
) -> None:
    """Cancels a claimed job whose contents ran out (or would before its next
    try) unsent, keeping no secret it carried, in the caller's transaction.
    Its final outcome event is a NotificationParked saying so (the job is
    `cancelled`, never replayed: what it carried is worth nothing now)."""
    error = f"{error}; expired unsent" if error else "expired unsent"
    cur = await conn.execute(
        "UPDATE notification_jobs SET status = %s, last_error = %s, claimed_until = NULL,"
        " maybe_sent = maybe_sent OR %s,"
        " body = CASE WHEN template = ANY(%s) THEN '' ELSE body END,"
        " html = CASE WHEN template = ANY(%s) THEN '' ELSE html END,"
        " params = CASE WHEN template = ANY(%s) THEN '{}' ELSE params END"
        f" WHERE {STILL_CLAIMED}",
        (
            CANCELLED,
            error,
            maybe_sent or job.retaken,
            *[sorted(policy.SECRET_TEMPLATES)] * 3,
            job.id,
            job.attempts,
        ),
    )
    if cur.rowcount == 0:
        log.warning("notification.claim_lost", job_id=job.id, outcome="expired")
        return
    await record_outcome(conn, job, nev.NotificationParked(job=job.ref(now), error=error), now)
    OUTCOMES.labels(job.channel, "expired").inc()
    log.info("notification.expired", job_id=job.id, channel=job.channel)


async def retry_later(
    conn: psycopg.AsyncConnection[Any],
    job: Job,
    error: str,
    told: str,
    now: datetime,
    *,
    due: datetime,
    spent: int,
    outage_tries: int,
    maybe_sent: bool,
    lost_as: str,
) -> bool:
    """Puts a claimed job whose try failed back in the queue, due at `due`,
    in the caller's transaction: `error` its last error, `spent` added to its
    attempts (-1 gives back the one its claim took), `outage_tries` its count
    of tries that found the relay away, `maybe_sent` kept once true; its
    outcome a NotificationAttemptFailed telling `told` and when it is tried
    next. False (logged as a lost claim, `lost_as`) when the claim was no
    longer this sender's: the job was decided elsewhere meanwhile."""
    cur = await conn.execute(
        "UPDATE notification_jobs SET status = 'pending', last_error = %s,"
        " next_attempt_at = %s, claimed_until = NULL, maybe_sent = maybe_sent OR %s,"
        " attempts = attempts + %s, outage_tries = %s"
        f" WHERE {STILL_CLAIMED}",
        (error, due, maybe_sent, spent, outage_tries, job.id, job.attempts),
    )
    if cur.rowcount == 0:
        log.warning("notification.claim_lost", job_id=job.id, outcome=lost_as)
        return False
    ts = Timestamp()
    ts.FromDatetime(due)
    await record_outcome(
        conn,
        job,
        nev.NotificationAttemptFailed(job=job.ref(now), error=told, next_attempt_time=ts),
        now,
    )
    return True


# What a failed try's record adds when the job was given another address
# while the try was under way.
READDRESSED_NOTE = "; its address changed: tried at the new one next"


async def retry_readdressed(
    conn: psycopg.AsyncConnection[Any], job: Job, error: str, told: str, now: datetime
) -> None:
    """Puts a claimed job given another address while its try was under way
    (`store.follow_contact_changes`, `phone_changes`) back to the queue, due
    at once, in the caller's transaction. The try failed at the old address
    (a lost phone's number, dead, refuses every text), which tells nothing
    of the new one: it spends no attempt and parks nothing, whether the
    failure was permanent or the job's last attempt, and the next try, to
    the new address, is no possible repeat (`phone_changes.READDRESSING`).
    `error` (kept) and `told` (its outcome event, a NotificationAttemptFailed
    due now, as a try that found the relay away is told) say how the try
    failed."""
    if job.expired_by(now):
        await expire(conn, job, error, now)
        return
    error = error[: 500 - len(READDRESSED_NOTE)] + READDRESSED_NOTE
    told = told[: 500 - len(READDRESSED_NOTE)] + READDRESSED_NOTE
    if not await retry_later(
        conn,
        job,
        error,
        told,
        now,
        due=now,
        spent=-1,
        outage_tries=0,
        maybe_sent=False,
        lost_as="readdressed",
    ):
        return
    OUTCOMES.labels(job.channel, "retried").inc()
    log.info(
        "notification.readdressed_retry",
        job_id=job.id,
        channel=job.channel,
        attempt=job.attempts,
        error=error,
    )


async def withdraw(
    conn: psycopg.AsyncConnection[Any],
    job: Job,
    error: str,
    told: str,
    now: datetime,
    maybe_sent: bool,
) -> None:
    """Cancels a claimed job withdrawn from its sender (`store.WITHDRAWN`)
    whose try failed, its text erased, in the caller's transaction: it is not
    tried again where it was going. `error` (kept) and `told` (its final
    outcome event, a NotificationParked) say how the try failed, and why
    the job was withdrawn."""
    cur = await conn.execute(
        "UPDATE notification_jobs SET status = %s, last_error = %s, claimed_until = NULL,"
        " maybe_sent = maybe_sent OR %s, subject = '', body = '', html = '', params = '{}'"
        f" WHERE {STILL_CLAIMED}",
        (CANCELLED, error, maybe_sent, job.id, job.attempts),
    )
    if cur.rowcount == 0:
        log.warning("notification.claim_lost", job_id=job.id, outcome="withdrawn")
        return
    await record_outcome(conn, job, nev.NotificationParked(job=job.ref(now), error=told), now)
    OUTCOMES.labels(job.channel, CANCELLED).inc()
    log.info("notification.withdrawn", job_id=job.id, channel=job.channel, tried=True)


async def replay_parked(conninfo: str, job_ids: list[str] | None, now: datetime) -> int:
    """Puts parked jobs (all, or the given ones) back in the queue with a fresh
    budget; not a one-time code, whose text went when it was parked."""
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    secret = sorted(policy.SECRET_TEMPLATES)
    async with conn:
        if job_ids:
            cur = await conn.execute(
                "UPDATE notification_jobs SET status = 'pending', attempts = 0,"
                " next_attempt_at = %s WHERE status = 'parked' AND id = ANY(%s::uuid[])"
                " AND template <> ALL(%s)",
                (now, job_ids, secret),
            )
        else:
            cur = await conn.execute(
                "UPDATE notification_jobs SET status = 'pending', attempts = 0,"
                " next_attempt_at = %s WHERE status = 'parked' AND template <> ALL(%s)",
                (now, secret),
            )
        await conn.execute("NOTIFY notification_jobs")
        return cur.rowcount

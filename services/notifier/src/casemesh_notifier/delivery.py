"""The sender: claims due jobs, delivers them, records every outcome.

A few workers send at once (`CASEMESH_SEND_CONCURRENCY`). A job is claimed
with a lease (`sending`, `claimed_until`), so workers and replicas share the
work (SKIP LOCKED) and a job whose sender died is taken up again: 15 s after
the claim when its sender's session is gone, else after the lease. Failures
retry with backoff and jitter until the retry budget is spent, then the job is
parked (visible, replayable). Each outcome and its outcome event (outbox) commit in
one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg_pool import AsyncConnectionPool

from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.platform.clock import Clock, SystemClock
from casemesh.platform.fields import record_from
from casemesh.platform.logging import get_logger
from casemesh.platform.masking import mask_email, mask_phone, mask_text
from casemesh.platform.pools import with_keepalives
from casemesh_notifier import policy
from casemesh_notifier.channels import Channel, DeliveryError, Outgoing
from casemesh_notifier.metrics import OUTCOMES, POSSIBLE_REPEATS
from casemesh_notifier.settings import NotifierSettings
from casemesh_notifier.store import JOBS_CHANNEL

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
    params: dict[str, Any]
    attempts: int
    # Taken over from a sender that stopped mid-send, or retried after a send
    # whose answer was lost: that send may have reached the person already.
    retaken: bool = False

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
# undo (or repeat) what the new holder did.
STILL_CLAIMED = "id = %s AND status = 'sending' AND attempts = %s"

JOB_COLUMNS = (
    "id, cause_event_id, case_name, channel, recipient, template, subject, body, params, attempts"
)
# How long a sender keeps retrying to record an outcome while the database
# is away, between tries (seconds): a message sent and not recorded would be
# sent again once its lease lapses.
RECORD_RETRY = (0.2, 0.5, 1.0, 2.0, 5.0)

# Each sender holds the advisory lock (SENDER_LOCK, its id) while it runs, so
# the others can tell a claim whose sender died (lock gone with its session)
# from one still being worked, and take it over at once instead of after
# the lease. A claim younger than REAP_AFTER is left alone: its sender may
# be alive and reconnecting after a database restart.
SENDER_LOCK = 0x73656E64  # "send"
REAP_AFTER = timedelta(seconds=15)
REAP_EVERY = 5.0  # seconds


async def record_outcome(
    conn: psycopg.AsyncConnection[Any], job: Job, message: Any, now: datetime
) -> None:
    """Adds the outcome event to the outbox, in the caller's transaction. Its id is
    `<job id>:<n>`, n counting the job's outcomes (attempt numbers restart when a
    parked job is replayed). Callers update the job row first, so its row lock
    orders concurrent outcomes of one job."""
    ce_type = f"casemesh.notifications.{message.DESCRIPTOR.name}.v1"
    await conn.execute(
        "INSERT INTO notification_outbox (event_id, job_id, ce_type, payload, created_at)"
        " SELECT %(job)s || ':' || (count(*) + 1), %(job)s::uuid, %(type)s, %(payload)s, %(now)s"
        " FROM notification_outbox WHERE job_id = %(job)s::uuid",
        {"job": job.id, "type": ce_type, "payload": message.SerializeToString(), "now": now},
    )
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
        self._wake = asyncio.Event()
        self.sender = secrets.randbelow(2**31)
        self._present = asyncio.Event()
        self._reaped_at = float("-inf")
        self._missing: set[int] = set()  # senders whose lock was missing at the last look
        self._sms_turn = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Sends with `send_concurrency` workers, each claiming one job at a time."""
        listener = asyncio.create_task(self._listen(stop))
        workers = [asyncio.create_task(self._work(stop)) for _ in range(self._cfg.send_concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in (*workers, listener):
                task.cancel()
            await asyncio.gather(*workers, listener, return_exceptions=True)

    async def _work(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if not self._present.is_set():
                    # Claim nothing that others could not tell is being worked.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._present.wait(), 1.0)
                    continue
                await self._reap_orphans()
                worked = await self.deliver_one()
            except (psycopg.Error, OSError) as exc:
                log.error("delivery.database_unavailable", error=repr(exc))
                worked = False
                await asyncio.sleep(1.0)
            except Exception:
                # Keep delivering the other jobs; this one's claim lapses and
                # it is tried again after the lease.
                log.exception("delivery.unexpected_error")
                worked = False
                await asyncio.sleep(1.0)
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _listen(self, stop: asyncio.Event) -> None:
        # Push: the planner NOTIFYs when it creates jobs. The 1 s poll above
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
                        self._wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("delivery.listener_lost", error=repr(exc))
            except Exception:
                log.exception("delivery.listener_failed")  # and listen again
            self._present.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

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
            self._wake.set()

    async def claim(self) -> Job | None:
        now = self._clock.now()
        lease = now + timedelta(seconds=self._cfg.claim_lease_seconds)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "WITH due AS ("
                "  SELECT id, status = 'sending' OR maybe_sent AS retaken FROM notification_jobs"
                "  WHERE (status = 'pending' AND next_attempt_at <= %(now)s)"
                "     OR (status = 'sending' AND claimed_until <= %(now)s)"
                "  ORDER BY next_attempt_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " UPDATE notification_jobs AS j SET status = 'sending',"
                " attempts = j.attempts + 1, claimed_until = %(lease)s,"
                " claimed_at = %(now)s, claimed_by = %(sender)s"
                " FROM due WHERE j.id = due.id"
                f" RETURNING {', '.join('j.' + c for c in JOB_COLUMNS.split(', '))}, due.retaken",
                {"now": now, "lease": lease, "sender": self.sender},
            )
            row = await cur.fetchone()
        if row is None:
            return None
        job = Job(str(row[0]), *row[1:])
        if job.retaken:
            log.warning(
                "notification.retaken", job_id=job.id, channel=job.channel, attempt=job.attempts
            )
        return job

    async def deliver_one(self) -> bool:
        """Claims and handles one due job; False when none was due."""
        job = await self.claim()
        if job is None:
            return False
        if job.channel == "SMS":
            # One SMS at a time per process, from the rate check to the
            # recorded outcome: workers sending side by side would each
            # count the same sends and together pass the per-number limit.
            async with self._sms_turn:
                await self._handle(job)
        else:
            await self._handle(job)
        return True

    async def _handle(self, job: Job) -> None:
        now = self._clock.now()
        if job.channel == "SMS":
            later = await self._sms_not_before(job, now)
            if later is not None:
                await self._recorded(self._defer, job, later)
                return
        outgoing = record_from(
            Outgoing, job, job_id=job.id, params={k: str(v) for k, v in job.params.items()}
        )
        try:
            provider_id = await self._channels[job.channel].send(outgoing)
        except DeliveryError as exc:
            await self._recorded(
                self._failed, job, str(exc), permanent=exc.permanent, maybe_sent=exc.maybe_sent
            )
        except Exception as exc:
            # A message the channel cannot even form: retrying cannot help, and
            # it must not stop the others. Parked, it stays visible and replayable.
            log.exception("notification.unsendable", job_id=job.id, channel=job.channel)
            await self._recorded(
                self._failed, job, f"unsendable: {type(exc).__name__}", permanent=True
            )
        else:
            await self._recorded(self._sent, job, provider_id)

    async def _recorded(self, record: Callable[..., Any], job: Job, *args: Any, **kw: Any) -> None:
        """Records an attempt's outcome, waiting out a database outage of any
        length: the attempt happened, and forgetting it would send again."""
        for tries in itertools.count():
            try:
                await record(job, *args, **kw)
                return
            except (psycopg.Error, OSError) as exc:
                pause = RECORD_RETRY[min(tries, len(RECORD_RETRY) - 1)]
                if tries == 0 or pause == RECORD_RETRY[-1]:
                    log.error(
                        "notification.outcome_unrecorded",
                        job_id=job.id,
                        error=repr(exc),
                        retry_in=pause,
                    )
                await asyncio.sleep(pause)

    async def _sms_not_before(self, job: Job, now: datetime) -> datetime | None:
        # A one-time code is wanted now, at any hour (the rate limit still applies).
        quiet_end = (
            None
            if job.template in policy.URGENT_TEMPLATES
            else policy.quiet_until(now, self._cfg.sms_quiet_hours, self._cfg.sms_time_zone)
        )
        if quiet_end is not None:
            return quiet_end
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*), min(sent_at) FROM notification_jobs WHERE channel = 'SMS'"
                " AND recipient = %s AND status = 'sent' AND sent_at > %s",
                (job.recipient, now - timedelta(hours=1)),
            )
            row = await cur.fetchone()
        assert row is not None
        count, oldest = row
        if count >= self._cfg.sms_per_recipient_per_hour:
            return oldest + timedelta(hours=1, seconds=1)  # type: ignore[no-any-return]
        return None

    async def _defer(self, job: Job, until: datetime) -> None:
        # Not an attempt: quiet hours and rate limits do not spend the retry budget.
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE notification_jobs SET status = 'pending', attempts = attempts - 1,"
                " next_attempt_at = %s, claimed_until = NULL, maybe_sent = maybe_sent OR %s"
                f" WHERE {STILL_CLAIMED}",
                (until, job.retaken, job.id, job.attempts),
            )
        log.info(
            "notification.deferred", job_id=job.id, channel=job.channel, until=until.isoformat()
        )

    async def _sent(self, job: Job, provider_id: str) -> None:
        now = self._clock.now()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE notification_jobs SET status = 'sent', sent_at = %s,"
                " provider_message_id = %s, claimed_until = NULL, last_error = ''"
                f" WHERE {STILL_CLAIMED}",
                (now, provider_id, job.id, job.attempts),
            )
            if cur.rowcount == 0:
                log.warning("notification.claim_lost", job_id=job.id, outcome="delivered")
                return
            if job.template in policy.SECRET_TEMPLATES:
                # Delivered: a one-time code is kept no longer than needed.
                await conn.execute(
                    "UPDATE notification_jobs SET body = '', params = '{}' WHERE id = %s",
                    (job.id,),
                )
            await record_outcome(
                conn,
                job,
                nev.NotificationDelivered(
                    job=job.ref(now), provider_message_id=provider_id, possible_repeat=job.retaken
                ),
                now,
            )
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
        self, job: Job, error: str, *, permanent: bool, maybe_sent: bool = False
    ) -> None:
        now = self._clock.now()
        # A send that may have reached the person (this one, or one before the
        # job was taken over) makes any later send a possible repeat.
        maybe_sent = maybe_sent or job.retaken
        park = permanent or job.attempts >= self._cfg.max_attempts
        # Provider messages may quote the address; neither the table nor the
        # public outcome event keeps it whole.
        error = mask_text(error.replace(job.recipient, job.masked_recipient()))[:500]
        async with self._pool.connection() as conn, conn.transaction():
            if park:
                cur = await conn.execute(
                    "UPDATE notification_jobs SET status = 'parked', last_error = %s,"
                    " claimed_until = NULL, maybe_sent = maybe_sent OR %s"
                    f" WHERE {STILL_CLAIMED}",
                    (error, maybe_sent, job.id, job.attempts),
                )
                if cur.rowcount == 0:
                    log.warning("notification.claim_lost", job_id=job.id, outcome="parked")
                    return
                await record_outcome(
                    conn, job, nev.NotificationParked(job=job.ref(now), error=error), now
                )
            else:
                delay = policy.backoff(
                    job.attempts,
                    base=self._cfg.backoff_base_seconds,
                    cap=self._cfg.backoff_cap_seconds,
                )
                retry_at = now + timedelta(seconds=delay)
                cur = await conn.execute(
                    "UPDATE notification_jobs SET status = 'pending', last_error = %s,"
                    " next_attempt_at = %s, claimed_until = NULL, maybe_sent = maybe_sent OR %s"
                    f" WHERE {STILL_CLAIMED}",
                    (error, retry_at, maybe_sent, job.id, job.attempts),
                )
                if cur.rowcount == 0:
                    log.warning("notification.claim_lost", job_id=job.id, outcome="retry")
                    return
                ts = Timestamp()
                ts.FromDatetime(retry_at)
                await record_outcome(
                    conn,
                    job,
                    nev.NotificationAttemptFailed(
                        job=job.ref(now), error=error, next_attempt_time=ts
                    ),
                    now,
                )
        OUTCOMES.labels(job.channel, "parked" if park else "retried").inc()
        log.warning(
            "notification.parked" if park else "notification.retrying",
            job_id=job.id,
            channel=job.channel,
            attempt=job.attempts,
            error=error,
        )


async def replay_parked(conninfo: str, job_ids: list[str] | None, now: datetime) -> int:
    """Puts parked jobs (all, or the given ones) back in the queue with a fresh budget."""
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async with conn:
        if job_ids:
            cur = await conn.execute(
                "UPDATE notification_jobs SET status = 'pending', attempts = 0,"
                " next_attempt_at = %s WHERE status = 'parked' AND id = ANY(%s::uuid[])",
                (now, job_ids),
            )
        else:
            cur = await conn.execute(
                "UPDATE notification_jobs SET status = 'pending', attempts = 0,"
                " next_attempt_at = %s WHERE status = 'parked'",
                (now,),
            )
        await conn.execute("NOTIFY notification_jobs")
        return cur.rowcount

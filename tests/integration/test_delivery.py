"""The notifier's delivery rules on a real PostgreSQL database, with the clock
in the test's hands: exactly-once planning, retries, parking, replay, quiet
hours and the SMS rate limit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from structlog.testing import CapturingLogger

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform import schema
from casemesh.platform.clock import SystemClock
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.pools import async_pool
from casemesh_devstack.ports import free_port
from casemesh_notifier import delivery as delivery_module
from casemesh_notifier.channels import (
    Channel,
    DeliveryError,
    HttpSmsChannel,
    Outgoing,
    SmtpChannel,
)
from casemesh_notifier.delivery import (
    BATCH,
    QUIET_RELEASE,
    REAP_AFTER,
    RETAKE_GRACE,
    SENDER_LOCK,
    Delivery,
    replay_parked,
)
from casemesh_notifier.metrics import JobsCollector
from casemesh_notifier.planner import Planner
from casemesh_notifier.schema import STATEMENTS, create_schema
from casemesh_notifier.settings import NotifierSettings
from casemesh_notifier.store import wake_senders
from tests.conftest import Infra
from tests.integration.test_channels import Provider as HttpEndpoint
from tests.support import (
    NOON_IN_SHANGHAI,
    MailEndpoint,
    case_event,
    eventually,
    memory_sealer,
    personal_settings,
    wait_until,
)


@dataclass
class Clock:
    """The services' clock (`casemesh.platform.clock.Clock`), moved only by the test."""

    time: datetime = NOON_IN_SHANGHAI

    def now(self) -> datetime:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += timedelta(seconds=seconds)


@dataclass
class Provider:
    """A channel whose next answers the test decides."""

    failures: list[DeliveryError] = field(default_factory=list)
    delivered: list[Outgoing] = field(default_factory=list)

    async def send(self, message: Outgoing) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(message)
        return f"id-{len(self.delivered)}"


@dataclass
class Notifier:
    dsn: str
    pool: AsyncConnectionPool[Any]
    clock: Clock
    email: Provider
    sms: Provider
    delivery: Delivery

    async def consume(self, event: CloudEvent, offset: int = 0) -> list[uuid.UUID]:
        async with self.pool.connection() as conn, conn.transaction():
            return await Planner(memory_sealer()).plan(
                conn,
                event,
                topic=topics.TICKETS,
                partition=0,
                offset=offset,
                now=self.clock.now(),
            )

    async def drain(self) -> int:
        handled = 0
        while await self.delivery.deliver_one():
            handled += 1
        return handled

    def sender(self, cfg: NotifierSettings | None = None, *, sms: bool = False) -> Delivery:
        """Another sender on the same database, providers and clock: the
        fixture's settings or `cfg`, sending e-mail (and SMS with `sms`)."""
        channels: dict[str, Channel] = {"EMAIL": self.email}
        if sms:
            channels["SMS"] = self.sms
        return Delivery(
            pool=self.pool,
            conninfo=self.dsn,
            channels=channels,
            cfg=cfg or self.delivery._cfg,
            clock=self.clock,
        )

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql).fetchall()


async def notifier_database(infra: Infra, prefix: str) -> tuple[str, AsyncConnectionPool[Any]]:
    """A database of its own with the notifier's tables, and an open pool on it."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    await create_schema(dsn)
    pool = async_pool(dsn, min_size=1, max_size=4)
    await pool.open()
    return dsn, pool


@pytest.fixture()
async def notifier(infra: Infra) -> AsyncIterator[Notifier]:
    dsn, pool = await notifier_database(infra, "notifier_it")
    cfg = NotifierSettings(
        **personal_settings(),
        database_url=dsn,
        smtp_host="unused",
        sms_url="http://unused",
        max_attempts=3,
        backoff_base_seconds=10,
        backoff_cap_seconds=600,
        sms_per_recipient_per_hour=2,
    )
    clock, email, sms = Clock(), Provider(), Provider()
    delivery = Delivery(
        pool=pool, conninfo=dsn, channels={"EMAIL": email, "SMS": sms}, cfg=cfg, clock=clock
    )
    yield Notifier(dsn, pool, clock, email, sms, delivery)
    await pool.close()


def created(
    ticket: str,
    *,
    channels: tuple[ev.ContactChannel.ValueType, ...],
    phone: str = "+8613800138000",
    email: str = "alice@example.com",
) -> CloudEvent:
    msg = ev.TicketCreated(
        header=ev.TicketEventHeader(ticket_id=ticket, version=1, status=ev.TICKET_STATUS_NEW),
        requester="alice",
        category="account.login",
        subject="无法登录",
        contact=ev.ContactPreferences(
            email=email,
            phone=phone,
            channels=channels,
            locale="zh-CN",
        ),
    )
    return case_event("tickets", f"tickets/{ticket}", 1, msg)


BOTH = (ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS)


async def test_a_redelivered_event_plans_nothing_new(notifier: Notifier) -> None:
    event = created(str(uuid.uuid4()), channels=BOTH)
    assert len(await notifier.consume(event, offset=5)) == 2
    assert await notifier.consume(event, offset=9) == []  # the relay published it again
    assert await notifier.drain() == 2
    assert len(notifier.email.delivered) == len(notifier.sms.delivered) == 1
    assert notifier.email.delivered[0].subject.startswith("【工单已受理】")


async def test_failures_retry_with_backoff_then_park_and_replay_delivers(
    notifier: Notifier,
) -> None:
    notifier.email.failures = [DeliveryError("SMTP 451 try again later", permanent=False)] * 3
    (job,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )

    assert await notifier.drain() == 1  # attempt 1 fails
    assert await notifier.drain() == 0  # not due yet: backoff
    notifier.clock.advance(20)
    assert await notifier.drain() == 1  # attempt 2 fails
    notifier.clock.advance(40)
    assert await notifier.drain() == 1  # attempt 3 fails: budget spent
    notifier.clock.advance(3600)
    assert await notifier.drain() == 0
    assert notifier.rows(f"SELECT status, attempts FROM notification_jobs WHERE id = '{job}'") == [
        ("parked", 3)
    ]
    assert await replay_parked(notifier.dsn, [str(job)], notifier.clock.now()) == 1
    assert await notifier.drain() == 1
    assert len(notifier.email.delivered) == 1
    outcomes = notifier.rows(
        f"SELECT ce_type FROM notification_outbox WHERE job_id = '{job}' ORDER BY id"
    )
    assert [t.split(".")[2] for (t,) in outcomes] == [
        "NotificationAttemptFailed",
        "NotificationAttemptFailed",
        "NotificationParked",
        "NotificationDelivered",
    ]


async def test_a_send_whose_answer_was_lost_is_retried_as_a_possible_repeat(
    notifier: Notifier,
) -> None:
    notifier.email.failures = [
        DeliveryError("SMTP: no answer to the message", permanent=False, maybe_sent=True),
        DeliveryError("SMTP unavailable", permanent=False),
    ]
    (job,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    assert await notifier.drain() == 1
    notifier.clock.advance(20)
    assert await notifier.drain() == 1  # a later, clear failure does not unmark it
    notifier.clock.advance(60)
    assert await notifier.drain() == 1
    assert len(notifier.email.delivered) == 1
    assert [e.possible_repeat for e in delivered_events(notifier, job)] == [True]


async def test_a_permanent_refusal_parks_at_once(notifier: Notifier) -> None:
    notifier.sms.failures = [DeliveryError("HTTP 400 invalid number", permanent=True)]
    (job,) = await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    assert await notifier.drain() == 1
    assert notifier.rows(
        f"SELECT status, last_error FROM notification_jobs WHERE id = '{job}'"
    ) == [("parked", "HTTP 400 invalid number")]


async def test_sms_waits_for_the_end_of_quiet_hours_without_spending_attempts(
    notifier: Notifier,
) -> None:
    notifier.clock.time = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    await notifier.consume(created(str(uuid.uuid4()), channels=BOTH))
    await notifier.drain()
    assert len(notifier.email.delivered) == 1  # e-mail is not held back
    assert notifier.sms.delivered == []
    notifier.clock.time = datetime(2026, 3, 2, 23, 59, tzinfo=UTC)  # 07:59
    await notifier.drain()
    assert notifier.sms.delivered == []
    notifier.clock.time = datetime(2026, 3, 3, 0, 10, tzinfo=UTC)  # 08:10, the release's end
    await notifier.drain()
    assert len(notifier.sms.delivered) == 1
    assert notifier.rows("SELECT attempts FROM notification_jobs WHERE channel = 'SMS'") == [(1,)]


def ticket_event(
    ticket: str, version: int, status: ev.TicketStatus.ValueType, message: Any
) -> CloudEvent:
    """A later event of the ticket: `message`, its header filled in."""
    message.header.CopyFrom(ev.TicketEventHeader(ticket_id=ticket, version=version, status=status))
    return case_event("tickets", f"tickets/{ticket}", version, message)


async def test_a_request_for_information_held_for_the_night_is_not_sent_once_the_ticket_ended(
    notifier: Notifier,
) -> None:
    """At 23:00 an agent asks Alice for more information: the e-mail goes, the
    text waits for the morning. At 23:30 she cancels her ticket. In the
    morning no text asks her to act on a ticket she can no longer answer."""
    ticket = await asked_at_night(notifier)
    cancelled = ev.TicketCancelled(reason="已自行解决")
    event = ticket_event(ticket, 3, ev.TICKET_STATUS_CANCELLED, cancelled)
    assert await told_in_the_morning_after(notifier, event) == ["ticket.received"]
    assert notifier.rows(
        "SELECT channel, status, body = '', last_error FROM notification_jobs"
        " WHERE template = 'ticket.info_requested' ORDER BY channel"
    ) == [("EMAIL", "sent", False, ""), ("SMS", "cancelled", True, "its case has ended")]


async def test_a_request_for_information_held_for_the_night_is_not_sent_once_answered(
    notifier: Notifier,
) -> None:
    """At 23:00 an agent asks Alice for more information: the e-mail goes, the
    text waits for the morning. At 23:30 she replies with it. In the morning
    no text asks her for what she has already sent."""
    ticket = await asked_at_night(notifier)
    reply = ev.CommentAdded(author="users/alice", by_requester=True, body="订单号 20260302")
    event = ticket_event(ticket, 3, ev.TICKET_STATUS_OPEN, reply)
    assert await told_in_the_morning_after(notifier, event) == ["ticket.received"]
    assert notifier.rows(
        "SELECT channel, status, body = '', last_error FROM notification_jobs"
        " WHERE template = 'ticket.info_requested' ORDER BY channel"
    ) == [
        ("EMAIL", "sent", False, ""),
        ("SMS", "cancelled", True, "its case no longer waits for an answer"),
    ]

    # Asked again later, she is asked again.
    notifier.clock.time = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # 10:00
    again = ev.InfoRequested(message="请再提供付款截图")
    await notifier.consume(ticket_event(ticket, 4, ev.TICKET_STATUS_PENDING, again))
    await notifier.drain()
    assert [m.template for m in notifier.sms.delivered][1:] == ["ticket.info_requested"]


async def filed_at_night_missing_the_work(notifier: Notifier) -> str:
    """At 23:00 in Shanghai Alice files, to be told by SMS, a takedown notice
    that misses its work's title: the text asking for it is held for the
    night. Returns the notice's id."""
    appeal = str(uuid.uuid4())
    notifier.clock.time = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    contact = ev.ContactPreferences(
        phone="+8613800138000", channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN"
    )
    filed = aev.AppealFiled(
        header=aev.AppealEventHeader(state="INFO_REQUESTED", next_step="YOUR_INFORMATION"),
        kind="TAKEDOWN_NOTICE",
        jurisdiction="cn",
        filer=aev.AppealParty(user_id="users/alice", legal_name="爱丽丝", contact=contact),
        missing_elements=["notice.work"],
    )
    filed.header.next_step_due.FromDatetime(datetime(2026, 3, 9, 15, 0, tzinfo=UTC))
    await notifier.consume(appeal_event(appeal, 1, filed))
    assert await notifier.drain() == 1  # held for the night
    return appeal


async def told_in_the_morning_after(notifier: Notifier, event: Any) -> list[str]:
    """`event` comes at 23:30 in Shanghai: the texts sent once the night is
    over (08:10)."""
    notifier.clock.time = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    await notifier.consume(event)
    notifier.clock.time = datetime(2026, 3, 3, 0, 10, tzinfo=UTC)
    await notifier.drain()
    return [m.template for m in notifier.sms.delivered]


async def asked_at_night(notifier: Notifier) -> str:
    """At 23:00 in Shanghai an agent asks Alice for more information on her
    ticket: the e-mail goes, the text waits for the morning. Returns the
    ticket's id."""
    ticket = str(uuid.uuid4())
    notifier.clock.time = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    await notifier.consume(created(ticket, channels=BOTH))
    asked = ev.InfoRequested(message="请提供订单号")
    await notifier.consume(ticket_event(ticket, 2, ev.TICKET_STATUS_PENDING, asked))
    await notifier.drain()
    assert [m.template for m in notifier.email.delivered] == [
        "ticket.received",
        "ticket.info_requested",
    ]
    assert notifier.sms.delivered == []
    return ticket


async def test_a_copyright_case_does_not_ask_at_night_for_what_its_filer_then_sent(
    notifier: Notifier,
) -> None:
    """At 23:00 Alice files a takedown notice by SMS that misses its work's
    title: a text asks her for it, in the morning. At 23:30 she adds it and
    the case is complete; in the morning she is told it is under review,
    and not that it needs more information or will be closed."""
    appeal = await filed_at_night_missing_the_work(notifier)
    added = aev.AppealInfoAdded(
        header=aev.AppealEventHeader(state="SUBMITTED", next_step="REVIEW"), message="《江南春》"
    )
    added.header.next_step_due.FromDatetime(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    told = await told_in_the_morning_after(notifier, appeal_event(appeal, 2, added))
    assert told == ["appeal.complete"]


async def test_a_request_for_information_held_for_the_night_is_not_sent_once_withdrawn(
    notifier: Notifier,
) -> None:
    """At 23:00 Alice files a takedown notice by SMS that misses its work's
    title: a text asks her for it, in the morning. At 23:30 she withdraws the
    notice; in the morning she is told it is withdrawn, and asked nothing."""
    appeal = await filed_at_night_missing_the_work(notifier)
    withdrawn = aev.AppealWithdrawn(header=aev.AppealEventHeader(state="WITHDRAWN"))
    told = await told_in_the_morning_after(notifier, appeal_event(appeal, 2, withdrawn))
    assert told == ["appeal.withdrawn"]


async def test_a_warning_held_for_the_night_reaches_a_reporter_suspended_by_e_mail(
    notifier: Notifier,
) -> None:
    """At 23:00 Rui's unfounded reports earn a warning, by SMS as he gave
    with that report: it waits for the morning. At 23:30 a report he gave
    with an e-mail address only gets him suspended, told by e-mail. In the
    morning the warning still reaches him (DSA Art. 23(1): warned first)."""
    reporter = str(uuid.uuid4())
    standing = f"reporters/{reporter}"
    notifier.clock.time = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    by_sms = ev.ContactPreferences(
        phone="+8613800138000", channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN"
    )
    warned = rev.ReporterWarned(
        header=rev.ReportEventHeader(aggregate_id=reporter, version=1, state="WARNED"),
        reporter="users/rui",
        contact=by_sms,
    )
    await notifier.consume(case_event("reports", standing, 1, warned))
    assert await notifier.drain() == 1  # held for the night
    notifier.clock.time = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30
    by_email = ev.ContactPreferences(
        email="rui@example.com", channels=[ev.CONTACT_CHANNEL_EMAIL], locale="zh-CN"
    )
    suspended = rev.ReporterSuspended(
        header=rev.ReportEventHeader(aggregate_id=reporter, version=2, state="SUSPENDED"),
        reporter="users/rui",
        contact=by_email,
    )
    suspended.until.FromDatetime(datetime(2026, 3, 9, 15, 30, tzinfo=UTC))
    await notifier.consume(case_event("reports", standing, 2, suspended))
    await notifier.drain()
    assert [m.template for m in notifier.email.delivered] == ["report.reporting_suspended"]
    notifier.clock.time = datetime(2026, 3, 3, 0, 10, tzinfo=UTC)  # 08:10, the release's end
    await notifier.drain()
    assert [(m.template, m.recipient) for m in notifier.sms.delivered] == [
        ("report.misuse_warning", "+8613800138000")
    ]


def appeal_event(appeal: str, version: int, message: Any) -> CloudEvent:
    """An event of the copyright case (`message`, its header's place filled in)."""
    message.header.appeal_id = appeal
    message.header.version = version
    return case_event("appeals", f"appeals/{appeal}", version, message)


async def test_quiet_hours_are_the_recipients_where_the_number_tells_their_zone(
    notifier: Notifier,
) -> None:
    # 18:00 in Shanghai, 02:00 in San Francisco: the +1 415 number waits.
    notifier.clock.time = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,), phone="+14155552671")
    )
    await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    await notifier.drain()
    assert [m.recipient for m in notifier.sms.delivered] == ["+8613800138000"]
    notifier.clock.time = datetime(2026, 3, 2, 16, 10, tzinfo=UTC)  # 08:10 there
    await notifier.drain()
    assert [m.recipient for m in notifier.sms.delivered][1:] == ["+14155552671"]


async def test_quiet_hours_of_a_number_of_several_zones_are_those_of_all(
    notifier: Notifier,
) -> None:
    """A +7 number may be in Moscow or Kamchatka: at 03:30 in Moscow (08:30
    in Shanghai, the service's zone) its SMS waits for 08:00 in Kaliningrad,
    when it is day wherever the number may be."""
    notifier.clock.time = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,), phone="+79161234567")
    )
    await notifier.drain()
    notifier.clock.time = datetime(2026, 3, 2, 5, 59, tzinfo=UTC)  # 07:59 in Kaliningrad
    await notifier.drain()
    assert notifier.sms.delivered == []
    notifier.clock.time = datetime(2026, 3, 2, 6, 0, tzinfo=UTC) + QUIET_RELEASE
    await notifier.drain()
    assert [m.recipient for m in notifier.sms.delivered] == ["+79161234567"]


async def test_a_provider_or_relay_that_cannot_be_reached_is_waited_for_not_parked(
    notifier: Notifier,
) -> None:
    """Five failures to reach the relay, past a budget of three, then a
    greylisting 4xx: the job is still waiting, and goes out once the relay
    takes it, without a replay."""
    away = DeliveryError("SMTP unavailable: refused", permanent=False, unreachable=True)
    notifier.email.failures = [away] * 5
    (job,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    waits = []
    for _ in range(5):
        assert await notifier.drain() == 1
        (due,) = notifier.rows(f"SELECT next_attempt_at FROM notification_jobs WHERE id = '{job}'")
        waits.append((due[0] - notifier.clock.now()).total_seconds())
        notifier.clock.advance(600)
    # No attempt spent, yet each wait longer than the last (10 s doubling, jittered).
    assert waits == sorted(waits) and waits[-1] >= 80, waits
    # Operators see it waiting on the provider (CasemeshNotificationProviderUnreachable).
    gauges = {m.name: m for m in JobsCollector(notifier.dsn).collect()}
    waiting = gauges["casemesh_notifications_waiting_for_provider"].samples
    assert {s.labels["channel"]: s.value for s in waiting}["EMAIL"] == 1
    # Back, the relay says "later" (greylisting): a retry, not a budget spent.
    notifier.email.failures = [DeliveryError("SMTP 451 greylisted", permanent=False)]
    assert await notifier.drain() == 1
    notifier.clock.advance(600)
    assert await notifier.drain() == 1
    assert len(notifier.email.delivered) == 1
    assert notifier.rows(f"SELECT status, attempts FROM notification_jobs WHERE id = '{job}'") == [
        ("sent", 2)
    ]


async def test_an_sms_held_back_for_the_night_is_not_counted_as_waiting_on_its_provider(
    notifier: Notifier,
) -> None:
    def waiting() -> float:
        gauges = {m.name: m for m in JobsCollector(notifier.dsn).collect()}
        samples = gauges["casemesh_notifications_waiting_for_provider"].samples
        return {s.labels["channel"]: s.value for s in samples}["SMS"]

    notifier.clock.time = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai
    notifier.sms.failures = [
        DeliveryError("SMS provider unreachable", permanent=False, unreachable=True)
    ]
    await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    assert await notifier.drain() == 1
    assert waiting() == 1
    notifier.clock.time = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00: quiet hours
    await notifier.drain()
    assert waiting() == 0 and notifier.sms.delivered == []


async def test_a_retry_waits_as_long_as_the_provider_asked(notifier: Notifier) -> None:
    notifier.sms.failures = [DeliveryError("HTTP 429", permanent=False, retry_after=1800)]
    await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    assert await notifier.drain() == 1
    notifier.clock.advance(1790)  # the backoff alone would have been at most 10 s
    assert await notifier.drain() == 0
    notifier.clock.advance(11)
    assert await notifier.drain() == 1
    assert len(notifier.sms.delivered) == 1


async def test_sms_to_one_number_is_rate_limited_per_hour(notifier: Notifier) -> None:
    for _ in range(3):
        await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    await notifier.drain()
    assert len(notifier.sms.delivered) == 2  # the limit is 2 an hour here
    notifier.clock.advance(3602)
    await notifier.drain()
    assert len(notifier.sms.delivered) == 3


async def test_an_unsendable_message_is_parked_and_the_others_still_go(notifier: Notifier) -> None:
    class Broken:
        async def send(self, message: Outgoing) -> str:
            raise ValueError("Header values may not contain linefeed or carriage return")

    working = notifier.delivery._channels["EMAIL"]
    notifier.delivery._channels["EMAIL"] = Broken()
    (bad,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    await notifier.drain()
    notifier.delivery._channels["EMAIL"] = working
    await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,)))
    await notifier.drain()
    assert len(notifier.email.delivered) == 1
    status = notifier.rows(f"SELECT status, last_error FROM notification_jobs WHERE id = '{bad}'")
    assert status == [("parked", "unsendable: ValueError")]


async def test_a_sender_whose_lease_lapsed_cannot_undo_the_new_holders_delivery(
    notifier: Notifier,
) -> None:
    (job_id,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    slow = await notifier.delivery.claim()  # sender A claims, then stalls
    assert slow is not None
    notifier.clock.advance(301)  # past the lease: sender B holds it back a while
    assert await notifier.drain() == 0
    notifier.clock.advance(RETAKE_GRACE.total_seconds())  # then takes over and delivers
    assert await notifier.drain() == 1
    assert len(notifier.email.delivered) == 1
    await notifier.delivery._failed(slow, "SMTP timed out", permanent=False)  # A's late answer
    assert notifier.rows(f"SELECT status FROM notification_jobs WHERE id = '{job_id}'") == [
        ("sent",)
    ]
    notifier.clock.advance(3600)
    assert await notifier.drain() == 0
    assert len(notifier.email.delivered) == 1
    outcomes = notifier.rows(f"SELECT ce_type FROM notification_outbox WHERE job_id = '{job_id}'")
    assert [t.split(".")[2] for (t,) in outcomes] == ["NotificationDelivered"]


async def test_a_late_record_of_a_send_wins_while_its_lapsed_claim_is_held_back(
    notifier: Notifier,
) -> None:
    """Sender A sent, and could record it only after its lease ran out and
    another claim found the job: the job was held back, so A's record
    stands and nothing is sent again."""
    (job_id,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    slow = await notifier.delivery.claim()
    assert slow is not None
    notifier.clock.advance(301)
    assert await notifier.drain() == 0  # found lapsed: held back, not sent
    await notifier.delivery._sent([(slow, "relay-1")])  # A's late record
    notifier.clock.advance(RETAKE_GRACE.total_seconds() + 1)
    assert await notifier.drain() == 0
    assert notifier.email.delivered == []
    assert notifier.rows(STATUS.format(job=job_id)) == [("sent",)]
    assert [e.possible_repeat for e in delivered_events(notifier, job_id)] == [False]


async def test_a_late_record_after_another_sender_claimed_again_leaves_its_claim(
    notifier: Notifier,
) -> None:
    """Sender A's record came after the grace, when sender B had claimed the
    job again and was sending it: B's send is recorded, as a possible
    repeat (the person may get it twice), not hidden behind A's."""
    (job_id,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    slow = await notifier.delivery.claim()
    assert slow is not None
    notifier.clock.advance(301)
    assert await notifier.drain() == 0
    notifier.clock.advance(RETAKE_GRACE.total_seconds())
    again = await notifier.delivery.claim()
    assert again is not None and again.retaken
    await notifier.delivery._sent([(slow, "relay-1")])  # A's record, too late
    assert notifier.rows(STATUS.format(job=job_id)) == [("sending",)]
    await notifier.delivery._sent([(again, "relay-2")])
    assert notifier.rows(STATUS.format(job=job_id)) == [("sent",)]
    assert [e.possible_repeat for e in delivered_events(notifier, job_id)] == [True]


def delivered_events(notifier: Notifier, job: uuid.UUID) -> list[nev.NotificationDelivered]:
    rows = notifier.rows(
        f"SELECT payload FROM notification_outbox WHERE job_id = '{job}'"
        " AND ce_type LIKE '%.NotificationDelivered.v1'"
    )
    return [nev.NotificationDelivered.FromString(bytes(p)) for (p,) in rows]


async def test_a_send_recorded_during_a_database_outage_is_not_sent_again(
    notifier: Notifier, infra: Infra
) -> None:
    """The provider took the message, then the database went away: the sender
    keeps the outcome until it can record it, instead of letting the claim
    lapse and sending again."""
    dbname = notifier.dsn.rsplit("/", 1)[1]
    admin = psycopg.connect(infra.pg.dsn("postgres"), autocommit=True)
    restored = asyncio.Event()

    async def restore_later() -> None:
        await asyncio.sleep(1.5)  # the database stays away a while
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        restored.set()

    class ThenTheDatabaseGoes(Provider):
        async def send(self, message: Outgoing) -> str:
            provider_id = await super().send(message)
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )
            asyncio.get_running_loop().create_task(restore_later())
            return provider_id

    email = ThenTheDatabaseGoes()
    notifier.delivery._channels["EMAIL"] = email
    (job,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    try:
        assert await notifier.delivery.deliver_one()
        assert restored.is_set()  # the outcome waited for the database
    finally:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        admin.close()
    assert notifier.rows(f"SELECT status FROM notification_jobs WHERE id = '{job}'") == [("sent",)]
    notifier.clock.advance(3600)  # long past any lease
    assert await notifier.drain() == 0
    assert len(email.delivered) == 1
    assert [e.possible_repeat for e in delivered_events(notifier, job)] == [False]


async def test_a_send_recorded_after_an_outage_longer_than_the_lease_is_not_sent_again(
    notifier: Notifier, infra: Infra
) -> None:
    """The relay took the message, then the database stayed away past the
    claim's lease while another sender looked for due jobs: the first
    sender's late record wins, and the person gets the message once."""
    dbname = notifier.dsn.rsplit("/", 1)[1]
    admin = psycopg.connect(infra.pg.dsn("postgres"), autocommit=True)
    mail = MailEndpoint(free_port())
    mail.start()
    relay = SmtpChannel(host=mail.address[0], port=mail.address[1], sender="support@casemesh.local")
    gone = asyncio.Event()

    async def restore_later() -> None:
        await asyncio.sleep(5)  # the outage: well past the 2 s lease
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')

    class ThenTheDatabaseGoes:
        async def send(self, message: Outgoing) -> str:
            provider_id = await relay.send(message)
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )
            asyncio.get_running_loop().create_task(restore_later())
            gone.set()
            return provider_id

    cfg = notifier.delivery._cfg.model_copy(
        update={"claim_lease_seconds": 2.0, "send_concurrency": 1}
    )
    other_pool = async_pool(notifier.dsn, min_size=1, max_size=4)  # another replica's
    await other_pool.open()
    first = Delivery(
        pool=notifier.pool,
        conninfo=notifier.dsn,
        channels={"EMAIL": ThenTheDatabaseGoes()},
        cfg=cfg,
        clock=SystemClock(),
    )
    other = Delivery(
        pool=other_pool,
        conninfo=notifier.dsn,
        channels={"EMAIL": relay},
        cfg=cfg,
        clock=SystemClock(),
    )
    notifier.clock.time = datetime.now(UTC)
    (job,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    try:
        sent_first = asyncio.create_task(first.deliver_one())
        await gone.wait()
        async with sending(other):  # polling every second all through
            assert await sent_first
            await eventually(lambda: notifier.rows(STATUS.format(job=job)) == [("sent",)])
    finally:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        admin.close()
        await other_pool.close()
        await relay.aclose()
        mail.stop()
    assert len(mail.to("alice@example.com")) == 1
    assert [e.possible_repeat for e in delivered_events(notifier, job)] == [False]


STATUS = "SELECT status FROM notification_jobs WHERE id = '{job}'"


async def test_a_database_outage_mid_batch_hands_the_unsent_jobs_back_at_once(
    notifier: Notifier, infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database went away between two sends of a batch: the jobs not yet
    sent go back to the queue once it answers, rather than a lease later as
    possible repeats, and each message goes out once."""
    dbname = notifier.dsn.rsplit("/", 1)[1]
    admin = psycopg.connect(infra.pg.dsn("postgres"), autocommit=True)
    jobs = [
        job
        for _ in range(3)
        for job in await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
        )
    ]
    real = notifier.delivery._still_claimed
    looks = 0

    async def restore_later() -> None:
        await asyncio.sleep(1.5)
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')

    async def still_claimed(job: Any) -> tuple[str, int] | None:
        nonlocal looks
        looks += 1
        if looks == 2:  # the first message is sent and recorded
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )
            asyncio.get_running_loop().create_task(restore_later())
        return await real(job)

    monkeypatch.setattr(notifier.delivery, "_still_claimed", still_claimed)
    try:
        assert await notifier.delivery.deliver_batch() == 3
    finally:
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        admin.close()
    assert len(notifier.email.delivered) == 1
    assert sorted(notifier.rows("SELECT status, attempts FROM notification_jobs")) == [
        ("pending", 0),
        ("pending", 0),
        ("sent", 1),
    ]
    assert await notifier.drain() == 2  # at once: the clock has not moved
    assert sorted(m.job_id for m in notifier.email.delivered) == sorted(map(str, jobs))
    assert [e.possible_repeat for job in jobs for e in delivered_events(notifier, job)] == [
        False
    ] * 3


async def test_a_dead_senders_claim_is_taken_over_after_the_grace_as_a_possible_repeat(
    notifier: Notifier, infra: Infra
) -> None:
    dead, alive, survivor = (notifier.sender(sms=True) for _ in range(3))
    (orphan,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    (worked,) = await notifier.consume(
        created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
    )
    # `dead` claimed one job and died mid-send (its session, and lock, gone);
    # `alive` claimed the other and is still sending (it holds its lock).
    assert (await dead.claim()) is not None
    assert (await alive.claim()) is not None
    with psycopg.connect(notifier.dsn, autocommit=True) as alive_session:
        alive_session.execute("SELECT pg_advisory_lock(%s, %s)", (SENDER_LOCK, alive.sender))
        # Judged only once the database has been up a while (live senders
        # retake their locks after a restart).
        wait_until(lambda: postgres_uptime(alive_session) > REAP_AFTER, 30)

        async def look() -> None:
            survivor._reaped_at = float("-inf")  # look now
            await survivor._reap_orphans()

        await look()
        assert await survivor.deliver_one() is False  # too young a claim to judge
        notifier.clock.advance(16)
        await look()
        assert await survivor.deliver_one() is False  # missing once: maybe reconnecting
        await look()
        assert await survivor.deliver_one() is False  # missing twice: gone, held back a while
        notifier.clock.advance(RETAKE_GRACE.total_seconds())
        assert await survivor.deliver_one() is True
        assert await survivor.deliver_one() is False  # the live sender's job is left alone
        notifier.clock.advance(16)
        await look()
        await look()
        assert await survivor.deliver_one() is False
        # A job taken over and then refused for now stays a possible repeat.
        (failing,) = await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
        )
        assert (await dead.claim()) is not None
        notifier.clock.advance(16)
        await look()
        await look()
        assert await survivor.deliver_one() is False
        notifier.clock.advance(RETAKE_GRACE.total_seconds())
        notifier.email.failures = [DeliveryError("SMTP 421", permanent=False)]
        assert await survivor.deliver_one() is True
        notifier.clock.advance(60)  # past the backoff, within the live claim's lease
        assert await survivor.deliver_one() is True
        assert [e.possible_repeat for e in delivered_events(notifier, failing)] == [True]
    assert [m.job_id for m in notifier.email.delivered] == [str(orphan), str(failing)]
    assert [e.possible_repeat for e in delivered_events(notifier, orphan)] == [True]
    assert notifier.rows(f"SELECT status FROM notification_jobs WHERE id = '{worked}'") == [
        ("sending",)
    ]


def postgres_uptime(conn: psycopg.Connection[Any]) -> timedelta:
    row = conn.execute("SELECT now() - pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def outcome_ids(notifier: Notifier) -> list[tuple[str, str]]:
    return notifier.rows("SELECT event_id, ce_type FROM notification_outbox ORDER BY id")


async def test_a_backlog_is_sent_and_recorded_many_jobs_at_a_time_each_once(
    notifier: Notifier,
) -> None:
    jobs = [
        job
        for _ in range(5)
        for job in await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
        )
    ]
    assert await notifier.delivery.deliver_batch() == 5  # one claim for the five
    assert sorted(m.job_id for m in notifier.email.delivered) == sorted(map(str, jobs))
    assert notifier.rows("SELECT DISTINCT status, attempts FROM notification_jobs") == [("sent", 1)]
    assert sorted(outcome_ids(notifier)) == sorted(
        (f"{job}:1", "casemesh.notifications.NotificationDelivered.v1") for job in jobs
    )
    assert [e.possible_repeat for job in jobs for e in delivered_events(notifier, job)] == [
        False
    ] * 5
    assert await notifier.drain() == 0


async def test_each_claim_is_planned_for_the_backlog_the_sender_finds(
    notifier: Notifier,
) -> None:
    """A sender's claim is never a plan the server cached: one made while the
    table was small (a new deployment) was kept as a backlog of thousands
    grew, and scanned all of it for each job; claims took seconds, and
    thousands of e-mails were due while none went out."""
    pool = async_pool(notifier.dsn, min_size=1, max_size=1)  # one session to look into
    await pool.open()
    try:
        sender = Delivery(
            pool=pool,
            conninfo=notifier.dsn,
            channels={"EMAIL": notifier.email},
            cfg=notifier.delivery._cfg,
            clock=notifier.clock,
        )
        for _ in range(8):  # more than psycopg runs a statement before preparing it
            await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,)))
            assert await sender.deliver_one()
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [statement for (statement,) in await cur.fetchall()]
    finally:
        await pool.close()
    assert len(notifier.email.delivered) == 8
    # (A pooled connection prepares only what its code asks to: `POOLED`.)
    assert not [statement for statement in prepared if "WITH due AS" in statement]


async def test_each_delivery_is_recorded_before_the_next_message_goes_out(
    notifier: Notifier,
) -> None:
    # So a sender killed at any moment has at most one message out and not
    # recorded: the one in flight (sent again then, as a possible repeat).
    unrecorded: list[set[str]] = []

    @dataclass
    class Watching(Provider):
        async def send(self, message: Outgoing) -> str:
            sent = {str(i) for (i,) in notifier.rows(SENT_IDS)}
            unrecorded.append({m.job_id for m in self.delivered} - sent)
            return await super().send(message)

    watching = Watching()
    notifier.delivery._channels["EMAIL"] = watching
    for _ in range(4):
        await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,)))
    assert await notifier.delivery.deliver_batch() == 4
    assert len(watching.delivered) == 4
    assert unrecorded == [set()] * 4


SENT_IDS = "SELECT id FROM notification_jobs WHERE status = 'sent'"


async def test_jobs_a_batch_could_not_begin_within_the_lease_go_back_untried(
    notifier: Notifier,
) -> None:
    # A lease just long enough for one send: a batch sends its first job only.
    cfg = notifier.delivery._cfg
    tight = cfg.model_copy(update={"claim_lease_seconds": cfg.longest_send})
    delivery = notifier.sender(tight)
    for _ in range(3):
        await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,)))
    assert await delivery.deliver_batch() == 3
    assert len(notifier.email.delivered) == 1
    assert sorted(notifier.rows("SELECT status, attempts FROM notification_jobs")) == [
        ("pending", 0),
        ("pending", 0),
        ("sent", 1),
    ]
    assert len(outcome_ids(notifier)) == 1  # untried: no outcome
    while await delivery.deliver_batch():
        pass
    assert len({m.job_id for m in notifier.email.delivered}) == len(notifier.email.delivered) == 3


def woken_only(notifier: Notifier, monkeypatch: pytest.MonkeyPatch, workers: int) -> Delivery:
    """A sender of `workers` workers whose poll is an hour away: in a test's
    time only wake-ups can start a look."""
    monkeypatch.setattr(delivery_module, "POLL_S", 3600.0)
    return notifier.sender(notifier.delivery._cfg.model_copy(update={"send_concurrency": workers}))


@contextlib.asynccontextmanager
async def sending(delivery: Delivery) -> AsyncIterator[None]:
    """The sender's workers and listener running, stopped at the end."""
    stop = asyncio.Event()
    running = asyncio.create_task(delivery.run(stop))
    try:
        yield
    finally:
        stop.set()
        delivery._wake_all()
        await running


async def test_a_stopping_sender_finishes_the_send_in_hand_and_hands_back_the_rest(
    notifier: Notifier,
) -> None:
    """Asked to stop mid-batch (a rolling deploy), a sender records the
    message it is sending and begins no other: the rest of its batch is
    back in the queue, not claimed until its lease ends or cut off unrecorded."""
    jobs = [
        job
        for _ in range(3)
        for job in await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
        )
    ]
    stop = asyncio.Event()

    class StopDuringTheFirst:
        async def send(self, message: Outgoing) -> str:
            stop.set()
            return await notifier.email.send(message)

    delivery = Delivery(
        pool=notifier.pool,
        conninfo=notifier.dsn,
        channels={"EMAIL": StopDuringTheFirst()},
        cfg=notifier.delivery._cfg.model_copy(update={"send_concurrency": 1}),
        clock=notifier.clock,
    )
    await asyncio.wait_for(delivery.run(stop), 30)
    assert len(notifier.email.delivered) == 1
    assert sorted(notifier.rows("SELECT status, attempts FROM notification_jobs")) == [
        ("pending", 0),
        ("pending", 0),
        ("sent", 1),
    ]
    assert await notifier.drain() == 2  # at once, by the next sender
    assert sorted(m.job_id for m in notifier.email.delivered) == sorted(map(str, jobs))


async def test_a_notify_heard_while_a_sender_finds_nothing_wakes_it_at_once(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery = woken_only(notifier, monkeypatch, 1)
    real = delivery.claim_many
    planted: list[uuid.UUID] = []

    async def claim_many(limit: int) -> list[Any]:
        jobs = await real(limit)
        if not jobs and not planted:
            # A job planned, and its NOTIFY heard, while this claim was running.
            planted.extend(
                await notifier.consume(
                    created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
                )
            )
            delivery._wake_one()  # what the listener does on a NOTIFY
        return jobs

    monkeypatch.setattr(delivery, "claim_many", claim_many)
    async with sending(delivery):
        await eventually(lambda: bool(notifier.email.delivered))
    assert planted and [m.job_id for m in notifier.email.delivered] == [str(planted[0])]


async def test_a_notify_wakes_an_idle_sender_and_a_full_batch_wakes_another(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery = woken_only(notifier, monkeypatch, 2)
    real = delivery.claim_many
    claimed_by: set[asyncio.Task[Any] | None] = set()

    async def claim_many(limit: int) -> list[Any]:
        jobs = await real(limit)
        if jobs:
            claimed_by.add(asyncio.current_task())
        return jobs

    monkeypatch.setattr(delivery, "claim_many", claim_many)
    async with sending(delivery):
        # Both workers asleep, listening: then more jobs than one batch.
        await eventually(lambda: len(delivery._idle) == 2)
        planned = [
            job
            for _ in range(delivery_module.BATCH + 2)
            for job in await notifier.consume(
                created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
            )
        ]
        async with notifier.pool.connection() as conn:
            await wake_senders(conn)
        await eventually(lambda: len(notifier.email.delivered) == len(planned))
    assert sorted(m.job_id for m in notifier.email.delivered) == sorted(map(str, planned))
    # The first batch was full: the other worker took the rest.
    assert len(claimed_by) == 2


async def test_a_partys_messages_about_a_case_go_out_in_the_order_planned(
    notifier: Notifier,
) -> None:
    # Three events of one ticket planned together: all due at once, and
    # workers claim side by side; the second waits until the first is sent.
    ticket = str(uuid.uuid4())
    first = created(ticket, channels=(ev.CONTACT_CHANNEL_EMAIL,))
    planned = [
        job
        for n in (1, 2, 3)
        for job in await notifier.consume(dataclasses.replace(first, id=f"{ticket}:{n}"))
    ]
    other = await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,)))
    delivery = notifier.delivery
    one = await delivery.claim_many(1)
    assert [job.id for job in one] == [str(planned[0])]
    # Another worker's claim meanwhile: another case's job, none of this one's.
    assert [job.id for job in await delivery.claim_many(8)] == [str(other[0])]
    await delivery.deliver_batch()  # nothing claimable yet: the first is being sent
    assert notifier.email.delivered == []
    await delivery._send(one, float("inf"))
    while await delivery.deliver_one():
        pass
    assert [m.job_id for m in notifier.email.delivered] == [str(j) for j in planned]


async def test_a_sender_claims_a_batch_while_other_senders_claims_are_under_way(
    notifier: Notifier,
) -> None:
    """Every sender considers the same due jobs, longest due first: one that
    claims while five others hold the first batches still takes a batch of
    its own (rather than none, and a second's wait while jobs are due)."""
    for _ in range(7 * BATCH):
        await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,)))
    async with await psycopg.AsyncConnection.connect(notifier.dsn) as others:
        cur = await others.execute(
            "SELECT id FROM notification_jobs ORDER BY next_attempt_at, seq LIMIT %s FOR UPDATE",
            (5 * BATCH,),
        )
        held = {str(row[0]) for row in await cur.fetchall()}
        claimed = {job.id for job in await notifier.delivery.claim_many(BATCH)}
        await others.rollback()
    assert len(held) == 5 * BATCH
    assert len(claimed) == BATCH
    assert not claimed & held


@pytest.mark.parametrize("replies_set_up", [True, False])
async def test_a_ticket_e_mail_invites_a_reply_exactly_when_its_reply_address_is_set(
    notifier: Notifier, replies_set_up: bool
) -> None:
    """... and the ticket still takes one: its closing e-mail invites none
    (a reply to a closed ticket would bounce)."""
    cfg = notifier.delivery._cfg.model_copy(
        update={"reply_domain": "reply.casemesh.local", "reply_token_secret": SecretStr("s" * 32)}
        if replies_set_up
        else {}
    )
    delivery = notifier.sender(cfg)
    ticket = str(uuid.uuid4())
    opened = created(ticket, channels=(ev.CONTACT_CHANNEL_EMAIL,))
    header = ev.TicketEventHeader(ticket_id=ticket, version=2, status=ev.TICKET_STATUS_CLOSED)
    closed = replace(
        opened,
        id=f"{ticket}:2",
        type="casemesh.tickets.TicketClosed.v1",
        data=ev.TicketClosed(header=header).SerializeToString(),
    )
    async with notifier.pool.connection() as conn, conn.transaction():
        now = notifier.clock.now()
        planner = Planner(memory_sealer(), replies=cfg.replies_open)
        for offset, event in enumerate((opened, closed)):
            await planner.plan(
                conn, event, topic=topics.TICKETS, partition=0, offset=offset, now=now
            )
    # One after the other: a case's messages go in order.
    assert [await delivery.deliver_batch() for _ in range(2)] == [1, 1]
    received, closing = notifier.email.delivered
    assert bool(received.reply_to) == replies_set_up
    assert ("回复会添加到工单中" in received.body) == replies_set_up
    assert ("回复此邮件无人查看" in received.body) != replies_set_up
    assert not closing.reply_to and "回复会添加到工单中" not in closing.body


def code_for(phone: str, *, minutes: int, request: str = "", code: str = "424242") -> CloudEvent:
    """A one-time code to `phone`, holding for `minutes` from now (the test's
    noon), for `request` (a new phone change's when "")."""
    message = hev.VerificationCodeIssued(
        request=request or f"phone-changes/{uuid.uuid4()}", phone=phone, code=code, locale="zh-CN"
    )
    message.expire_time.FromDatetime(NOON_IN_SHANGHAI + timedelta(minutes=minutes))
    return CloudEvent(
        id=f"{uuid.uuid4()}:1",
        source="casemesh/helpcenter",
        type="casemesh.helpcenter.VerificationCodeIssued.v1",
        subject=message.request,
        time=NOON_IN_SHANGHAI,
        data=message.SerializeToString(),
        key=message.request,
    )


def code_jobs(notifier: Notifier) -> list[tuple[str, str, str]]:
    return [
        (status, body, str(params))
        for status, body, params in notifier.rows(
            "SELECT status, body, params FROM notification_jobs"
            " WHERE template = 'verification.code' ORDER BY seq"
        )
    ]


async def test_a_code_sent_again_replaces_the_one_still_waiting(notifier: Notifier) -> None:
    """The first code's text failed and waits to be tried again; the person
    asks for another (which makes the first invalid): the first is
    cancelled, its code not kept, and the new one goes at once instead of
    waiting behind it."""
    phone, request = "+8613800138000", f"phone-changes/{uuid.uuid4()}"
    notifier.sms.failures = [DeliveryError("HTTP 500", permanent=False)]
    await notifier.consume(code_for(phone, minutes=10, request=request, code="111111"))
    await notifier.drain()
    assert notifier.sms.delivered == []
    await notifier.consume(code_for(phone, minutes=10, request=request, code="222222"))
    await notifier.drain()
    assert ["222222" in m.body for m in notifier.sms.delivered] == [True]
    jobs = code_jobs(notifier)
    assert [status for status, _, _ in jobs] == ["cancelled", "sent"]
    assert "111111" not in "".join(body + params for body, params in [jobs[0][1:]])


async def test_a_code_held_back_past_its_expiry_is_cancelled_never_sent_late(
    notifier: Notifier,
) -> None:
    """Two codes this hour used the number's limit: a code holding 10
    minutes would go out in an hour, worth nothing. It is cancelled unsent,
    its code not kept; one holding two hours waits for the limit and goes.
    (Case updates do not hold a code back: see test_notifier_sms_limit.)"""
    phone = "+8613800138000"
    for _ in range(2):
        await notifier.consume(code_for(phone, minutes=60))
    await notifier.drain()
    assert len(notifier.sms.delivered) == 2
    await notifier.consume(code_for(phone, minutes=10))
    await notifier.consume(code_for(phone, minutes=120))
    await notifier.drain()
    assert [status for status, _, _ in code_jobs(notifier)] == [
        "sent",
        "sent",
        "cancelled",
        "pending",
    ]
    assert "424242" not in "".join(body + params for _, body, params in code_jobs(notifier)[2:3])
    notifier.clock.advance(3602)
    await notifier.drain()
    assert [m.template for m in notifier.sms.delivered[2:]] == ["verification.code"]
    assert [status for status, _, _ in code_jobs(notifier)] == ["sent", "sent", "cancelled", "sent"]


async def test_a_code_whose_provider_stays_away_past_its_expiry_is_cancelled(
    notifier: Notifier,
) -> None:
    """The provider cannot be reached; the code is tried again until it would
    only arrive after it ran out, then cancelled: the provider's return
    sends nothing stale."""
    away = DeliveryError("connection refused", permanent=False, unreachable=True)
    notifier.sms.failures = [away] * 50
    await notifier.consume(code_for("+8613800138000", minutes=2))
    for _ in range(20):
        await notifier.drain()
        notifier.clock.advance(30)
    assert [status for status, _, _ in code_jobs(notifier)] == ["cancelled"]
    # Its last outcome event says so, as every job's last one says how it ended.
    last = notifier.rows(
        "SELECT ce_type FROM notification_outbox o JOIN notification_jobs j ON j.id = o.job_id"
        " WHERE j.template = 'verification.code' ORDER BY o.id DESC LIMIT 1"
    )
    assert [t for (t,) in last] == ["casemesh.notifications.NotificationParked.v1"]
    notifier.sms.failures = []
    notifier.clock.advance(3600)
    assert await notifier.drain() == 0
    assert notifier.sms.delivered == []


async def test_a_codes_number_is_forgotten_a_day_after_it_was_sent(notifier: Notifier) -> None:
    """The hourly limit per number needs the last hour's; after a day the
    number goes (the help centre keeps the change's numbers for their
    retention period), and a code planned since keeps its own."""
    await notifier.consume(code_for("+8613800138000", minutes=10))
    await notifier.drain()
    notifier.clock.advance(86_400 + 1)
    await notifier.consume(code_for("+8613900139000", minutes=10))
    assert await notifier.delivery.forget_old_codes() == 1
    assert notifier.rows(
        "SELECT status, recipient FROM notification_jobs"
        " WHERE template = 'verification.code' ORDER BY seq"
    ) == [("sent", ""), ("pending", "+8613900139000")]
    assert await notifier.delivery.forget_old_codes() == 0


async def test_an_sms_tells_its_provider_the_language_of_the_template_to_fill(
    notifier: Notifier,
) -> None:
    """A provider keeps its approved templates per language: the request
    says which, beside the text already in it."""
    await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    await notifier.drain()
    [sms] = notifier.sms.delivered
    assert sms.params["locale"] == "zh-CN" and sms.template == "ticket.received"


@contextlib.asynccontextmanager
async def sms_provider(notifier: Notifier) -> AsyncIterator[HttpEndpoint]:
    """The notifier's texts sent to an HTTP provider of the test's (its answers
    set on it before a text goes), closed after."""
    endpoint = HttpEndpoint()
    sms = HttpSmsChannel(url=endpoint.url)
    notifier.delivery._channels["SMS"] = sms
    try:
        yield endpoint
    finally:
        await sms.aclose()
        endpoint.stop()


async def test_a_refusal_quoting_the_request_publishes_no_code(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SMS provider answers 400 with a body that quotes the request (the
    text and its parameters, the code among them). The code's job keeps
    only the status: its last error, its outcome event (public, kept for
    weeks) and the log carry no code. Another message's refusal keeps the
    provider's words, every run of four digits or more masked."""
    log = CapturingLogger()
    monkeypatch.setattr(delivery_module, "log", log)
    async with sms_provider(notifier) as endpoint:
        endpoint.status, endpoint.echo = 400, True
        await notifier.consume(code_for("+8613800138000", minutes=10, code="482913"))
        await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,), phone="+8613900139000")
        )
        assert await notifier.drain() == 2
    assert "482913" in str(endpoint.received[0][0])  # the provider had it, and quoted it
    parked = {
        template: (error, nev.NotificationParked.FromString(bytes(payload)).error)
        for template, error, payload in notifier.rows(
            "SELECT j.template, j.last_error, o.payload FROM notification_jobs j"
            " JOIN notification_outbox o ON o.job_id = j.id"
            " WHERE o.ce_type LIKE '%.NotificationParked.v1'"
        )
    }
    assert parked["verification.code"] == ("SMS provider refused: HTTP 400",) * 2
    # Parked, as any other end, the code's job keeps no code: no replay sends it.
    assert code_jobs(notifier) == [("parked", "", "{}")]
    assert "482913" not in str(notifier.rows("SELECT * FROM notification_jobs"))
    assert await replay_parked(notifier.dsn, None, notifier.clock.now()) == 1  # the other
    ticket_error, published = parked["ticket.received"]
    # The public event says what failed; the provider's words (masked) stay
    # with the job and the log.
    assert published == "SMS provider refused: HTTP 400"
    assert ticket_error.startswith("SMS provider refused: HTTP 400: {")
    assert re.search(r"\d{4}", ticket_error) is None, ticket_error
    logged = [str(call.kwargs) for call in log.calls]
    assert logged and not any("482913" in line for line in logged)


async def test_a_refusal_in_utf_16_parks_its_job_and_the_sender_goes_on(
    notifier: Notifier,
) -> None:
    """The SMS provider answers 400 in UTF-16, with no charset said: read
    as UTF-8, its words hold a NUL after every letter, which no text column
    takes. The job is parked with the provider's words, as any 400 is, and
    the sender goes on to deliver the next job."""
    async with sms_provider(notifier) as endpoint:
        endpoint.status, endpoint.said = 400, "invalid number 无效号码".encode("utf-16-le")
        (texted,) = await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,))
        )
        (mailed,) = await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,))
        )
        # (Bounded: a sender that cannot record the refusal never returns.)
        assert await asyncio.wait_for(notifier.drain(), 30) == 2
    [(status, error)] = notifier.rows(
        f"SELECT status, last_error FROM notification_jobs WHERE id = '{texted}'"
    )
    assert status == "parked"
    assert error.startswith("SMS provider refused: HTTP 400: ") and "invalid number" in error
    assert [m.job_id for m in notifier.email.delivered] == [str(mailed)]


@pytest.mark.parametrize("kept", ["as it can be", "not at all"])
async def test_a_text_whose_provider_id_cannot_be_kept_is_sent_once(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch, kept: str
) -> None:
    """The SMS provider takes the text and answers an id no text column
    holds (a lone surrogate in its JSON). The job is recorded sent, with
    what can be kept of the id, or (should the record with it be refused
    all the same) with none: never left to go out again once its claim
    lapses."""
    if kept == "not at all":  # the record with the id refused, as by a cause unforeseen
        monkeypatch.setattr(delivery_module, "printable", lambda text: text)
    async with sms_provider(notifier) as endpoint:
        endpoint.answer = {"id": "msg-\udc00"}
        (texted,) = await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,))
        )
        assert await asyncio.wait_for(notifier.drain(), 30) == 1
        notifier.clock.advance(3600)  # past any claim's lease
        assert await asyncio.wait_for(notifier.drain(), 30) == 0
    [(status, provider_id)] = notifier.rows(
        f"SELECT status, provider_message_id FROM notification_jobs WHERE id = '{texted}'"
    )
    assert status == "sent"
    assert provider_id == ("msg-?" if kept == "as it can be" else "")
    assert len(endpoint.received) == 1


async def test_a_code_goes_out_ahead_of_the_texts_already_due(notifier: Notifier) -> None:
    """A morning's backlog: the night's texts have come due together, and a
    person asks for a code. It is the next text sent, not the last (it would
    reach them only after it ran out)."""
    notifier.clock.advance(-600)
    for n in range(2 * BATCH):
        await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,), phone=f"+86138{n:08d}")
        )
    notifier.clock.time = NOON_IN_SHANGHAI
    await notifier.consume(code_for("+8613900139000", minutes=5))
    assert await notifier.delivery.deliver_batch() == BATCH
    assert [m.template for m in notifier.sms.delivered][:2] == [
        "verification.code",
        "ticket.received",
    ]


async def test_the_nights_texts_go_out_over_minutes_after_it_not_all_at_once(
    notifier: Notifier,
) -> None:
    notifier.clock.time = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    for n in range(20):
        await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,), phone=f"+86138{n:08d}")
        )
    assert await notifier.drain() == 20
    assert notifier.sms.delivered == []
    morning = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    due = [when for (when,) in notifier.rows("SELECT next_attempt_at FROM notification_jobs")]
    assert all(morning <= when < morning + QUIET_RELEASE for when in due), due
    assert len(set(due)) > 10  # spread, not one burst
    notifier.clock.time = morning + QUIET_RELEASE
    await notifier.drain()
    assert len(notifier.sms.delivered) == 20


async def test_an_outage_answered_later_parks_nothing_and_its_jobs_go_once_it_is_over(
    notifier: Notifier,
) -> None:
    """For hours the provider answers 502 to every message (a proxy in front
    of it lost it), past every job's budget of three. Once sends to three
    different people in a row failed so, the provider is taken to be away:
    no further try spends an attempt, nothing is parked, and every job goes
    out once it is back, without a replay."""
    outage = DeliveryError("e-mail provider HTTP 502", permanent=False, maybe_sent=True)
    notifier.email.failures = [outage] * 1000
    jobs = [
        job
        for n in range(5)
        for job in await notifier.consume(
            created(
                str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,), email=f"u{n}@example.com"
            )
        )
    ]
    for _ in range(12):  # two hours
        await notifier.drain()
        notifier.clock.advance(600)
    assert notifier.rows("SELECT DISTINCT status FROM notification_jobs") == [("pending",)]
    assert len(notifier.email.failures) < 1000 - 5 * 3  # tried past their budgets
    notifier.email.failures = []
    assert await notifier.drain() == 5
    assert sorted(m.job_id for m in notifier.email.delivered) == sorted(map(str, jobs))


async def test_jobs_left_untried_while_the_provider_is_away_are_no_possible_repeats(
    notifier: Notifier,
) -> None:
    """Sends to three people in one batch fail with an answer after which
    each may have gone (a 502): the provider is away, and the batch's other
    jobs go back untried, not marked possible repeats (their
    NotificationDelivered would say so)."""
    notifier.email.failures = [
        DeliveryError("e-mail provider HTTP 502", permanent=False, maybe_sent=True)
    ] * 3
    for n in range(6):
        await notifier.consume(
            created(
                str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,), email=f"v{n}@example.com"
            )
        )
    assert await notifier.delivery.deliver_batch(8) == 6
    assert notifier.email.failures == []  # three tried
    marked = notifier.rows("SELECT count(*) FILTER (WHERE maybe_sent) FROM notification_jobs")
    assert marked == [(3,)]


async def test_a_channel_is_away_while_several_recipients_are_refused_lately(
    notifier: Notifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Away once three different recipients were refused "for now"; once
    their refusals are older than twice the longest wait between tries (a
    replica may have delivered since), one full mailbox refused again and
    again does not keep the channel away."""
    now = [1000.0]
    monkeypatch.setattr("casemesh_notifier.delivery.time.monotonic", lambda: now[0])
    later = DeliveryError("relay: 451 try again later", permanent=False)
    delivery = notifier.delivery

    def refused(recipient: str) -> bool:
        job = SimpleNamespace(channel="EMAIL", recipient=recipient)
        return delivery._outage(cast(Any, job), later)

    assert [refused(r) for r in ("a@x", "b@x", "a@x", "c@x")] == [False, False, False, True]
    cap = delivery._cfg.backoff_cap_seconds
    for _ in range(8):  # the outage is over (another pod delivered); d's mailbox is full
        now[0] += cap
        away = refused("d@x")
    assert away is False
    assert refused("d@x") is False


async def test_one_mailbox_refusing_for_now_still_parks_while_others_are_delivered(
    notifier: Notifier,
) -> None:
    """A full mailbox answers "later" to each of its three messages; the
    others are delivered: the relay is there, and that mailbox's jobs park
    when their budget is spent."""

    class OneFullMailbox(Provider):
        async def send(self, message: Outgoing) -> str:
            if message.recipient == "full@example.com":
                raise DeliveryError("SMTP 452", permanent=False, detail="4.2.2 mailbox full")
            return await super().send(message)

    notifier.delivery._channels["EMAIL"] = email = OneFullMailbox()
    for address in ["full@example.com"] * 3 + ["bob@example.com"]:
        await notifier.consume(
            created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_EMAIL,), email=address)
        )
    for _ in range(6):
        await notifier.drain()
        notifier.clock.advance(600)
    assert sorted(notifier.rows("SELECT recipient, status, attempts FROM notification_jobs")) == [
        ("bob@example.com", "sent", 1),
        *[("full@example.com", "parked", 3)] * 3,
    ]
    assert [m.recipient for m in email.delivered] == ["bob@example.com"]


async def test_two_replicas_sending_to_one_number_keep_to_its_hourly_limit(
    notifier: Notifier,
) -> None:
    """One text to the number this hour, a limit of two, and two replicas
    each holding another for it, checked side by side while the provider
    takes its time: one goes, the other waits for the hour."""

    @dataclass
    class Slow(Provider):
        async def send(self, message: Outgoing) -> str:
            await asyncio.sleep(0.3)
            return await super().send(message)

    for _ in range(3):
        await notifier.consume(created(str(uuid.uuid4()), channels=(ev.CONTACT_CHANNEL_SMS,)))
    assert await notifier.delivery.deliver_one()
    notifier.sms = slow = Slow()
    replicas = [notifier.sender(sms=True) for _ in range(2)]
    held = [job for replica in replicas if (job := await replica.claim()) is not None]
    assert len(held) == 2
    await asyncio.gather(*(r._handle_sms(job) for r, job in zip(replicas, held, strict=True)))
    assert len(slow.delivered) == 1
    assert sorted(notifier.rows("SELECT status FROM notification_jobs")) == [
        ("pending",),
        ("sent",),
        ("sent",),
    ]
    notifier.clock.advance(3602)
    assert await notifier.sender(sms=True).deliver_one()
    assert len(slow.delivered) == 2


# The index the release before had in the place of notification_jobs_to_send.
UNSENT_BEFORE = """CREATE INDEX IF NOT EXISTS notification_jobs_unsent
        ON notification_jobs (case_name, party) WHERE status IN ('pending', 'parked')"""


def job_indexes(notifier: Notifier) -> dict[str, int]:
    """The notification jobs' indexes, each with its storage (a new one for
    an index built again)."""
    return {
        name: node
        for name, node in notifier.rows(
            "SELECT c.relname::text, c.relfilenode::bigint FROM pg_index AS i"
            " JOIN pg_class AS c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'notification_jobs'::regclass"
        )
    }


async def test_replicas_of_two_releases_starting_in_turn_build_no_index_again(
    notifier: Notifier,
) -> None:
    """Through a rollout, replicas of the release before and of this one
    restart in turn, each running its schema statements: once both
    releases' indexes are there, neither start builds one again (each build
    holds the jobs' writes while it reads the whole table)."""
    older = [UNSENT_BEFORE if "notification_jobs_to_send" in s else s for s in STATEMENTS]

    async def older_replica_starts() -> None:
        async with await psycopg.AsyncConnection.connect(notifier.dsn, autocommit=True) as conn:
            await schema.ensure(conn, "notifier", older)

    await older_replica_starts()
    built = job_indexes(notifier)
    assert {"notification_jobs_unsent", "notification_jobs_to_send"} <= set(built)
    for _ in range(2):
        await create_schema(notifier.dsn)
        await older_replica_starts()
        assert job_indexes(notifier) == built

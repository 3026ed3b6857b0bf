"""An erased person (`PersonErased`, casemesh.privacy.v1) is forgotten by the
notifier on a real PostgreSQL database, with the real sender delivering to
test mail and SMS endpoints: what it would still send them is cancelled and
never sent, and their addresses, subjects and messages are left in none of
its tables, while everyone else's jobs go on as before."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.consuming import Place
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.masking import mask_email, mask_phone
from casemesh.platform.personal import (
    ERASED,
    AsyncSealer,
    DataKeys,
    MasterKeys,
    MemoryKeyStore,
    Sealer,
)
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh_devstack.ports import free_port
from casemesh_notifier.api import list_notifications
from casemesh_notifier.channels import Channel, HttpSmsChannel, SmtpChannel
from casemesh_notifier.delivery import Delivery, replay_parked
from casemesh_notifier.planner import ERASURE, Planner
from casemesh_notifier.settings import NotifierSettings
from tests.conftest import Infra
from tests.integration.test_delivery import Clock, notifier_database
from tests.support import (
    NOON_IN_SHANGHAI,
    MailEndpoint,
    SmsEndpoint,
    case_event,
    personal_settings,
    wait_until,
)


@dataclass(frozen=True)
class Person:
    user_id: str
    email: str
    phone: str
    subject: str  # of their ticket

    def traces(self) -> list[str]:
        """What of them no table may keep once they are erased."""
        return [
            self.email,
            self.phone,
            self.subject,
            mask_email(self.email),
            mask_phone(self.phone),
        ]


LIN = Person("users/lin", "lin@example.com", "+8613800138000", "无法登录林的账号")
WU = Person("users/wu", "wu@example.com", "+8613900139000", "退款一直没有到账")
REPLY = "我们已重置您的登录"


def processes(n: int) -> list[AsyncSealer]:
    """The sealers of `n` processes over one key store: each with its own
    memory of keys, as the privacy service and the notifier's replicas."""
    store, masters = MemoryKeyStore(), MasterKeys.parse(f"t:{new_master_key()}")
    return [AsyncSealer(Sealer(DataKeys(store, masters))) for _ in range(n)]


def erasure(person: str, event_id: str | None = None) -> CloudEvent:
    """A `PersonErased` as the privacy service publishes it."""
    message = PersonErased(person=person, erased_by="users/admin", reason="DSR-1")
    message.erase_time.FromDatetime(NOON_IN_SHANGHAI)
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source="casemesh/privacy",
        type=ERASURE,
        subject=person,
        time=NOON_IN_SHANGHAI,
        data=message.SerializeToString(),
        key=person,
    )


def ticket_event(ticket: str, version: int, message: Any) -> CloudEvent:
    return case_event("tickets", f"tickets/{ticket}", version, message)


def opened(tickets: Sealer, ticket: str, person: Person) -> CloudEvent:
    """The ticket's first event as the tickets relay publishes it: the
    subject and contacts sealed with the requester's key."""
    return ticket_event(
        ticket,
        1,
        ev.TicketCreated(
            header=ev.TicketEventHeader(ticket_id=ticket, version=1, status=ev.TICKET_STATUS_NEW),
            requester=person.user_id,
            category="account.login",
            subject=tickets.seal(person.subject, person.user_id),
            contact=ev.ContactPreferences(
                email=tickets.seal(person.email, person.user_id),
                phone=tickets.seal(person.phone, person.user_id),
                channels=[ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS],
                locale="zh-CN",
            ),
        ),
    )


def agent_reply(ticket: str, version: int) -> CloudEvent:
    return ticket_event(
        ticket,
        version,
        ev.CommentAdded(
            header=ev.TicketEventHeader(
                ticket_id=ticket, version=version, status=ev.TICKET_STATUS_PENDING
            ),
            author="users/agent",
            body=REPLY,
        ),
    )


@dataclass
class World:
    dsn: str
    pool: AsyncConnectionPool[Any]
    # The owning services' and privacy service's sealer, and the notifier's:
    # two processes' memories over one key store.
    tickets: AsyncSealer
    personal: AsyncSealer
    delivery: Delivery
    mail: MailEndpoint
    sms: SmsEndpoint
    clock: Clock = field(default_factory=Clock)
    offset: int = 0

    async def plan(
        self, events: Sequence[CloudEvent], by: AsyncSealer | None = None
    ) -> dict[str, list[uuid.UUID]]:
        """The events planned as one batch by the notifier's planner (in the
        replica whose sealer is `by`; the first one's by default)."""
        placed = []
        for event in events:
            placed.append((event, Place(topics.TICKETS, 0, self.offset, 0)))
            self.offset += 1
        async with self.pool.connection() as conn, conn.transaction():
            return await Planner(by or self.personal).plan_batch(conn, placed, self.clock.now())

    def process(self) -> AsyncSealer:
        """Another process's sealer over the same key store, its memory empty."""
        keys = self.tickets.sealer.keys
        return AsyncSealer(Sealer(DataKeys(keys.store, keys.masters)))

    async def both_told(self) -> tuple[str, str]:
        """Lin and Wu each open a ticket and are told by e-mail and SMS;
        their tickets' ids."""
        lin_ticket, wu_ticket = str(uuid.uuid4()), str(uuid.uuid4())
        sealer = self.tickets.sealer
        await self.plan([opened(sealer, lin_ticket, LIN), opened(sealer, wu_ticket, WU)])
        assert await self.drain() == 4
        return lin_ticket, wu_ticket

    async def drain(self) -> int:
        handled = 0
        while await self.delivery.deliver_one():
            handled += 1
        return handled

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql).fetchall()

    def dump(self) -> str:
        """Every row of the notifier's tables as text, outcome events'
        payloads included (as the bytes they are)."""
        text = [
            str(row)
            for table in (
                "case_parties",
                "notification_jobs",
                "unprocessable_events",
                "phone_changes_heard",
            )
            for row in self.rows(f"SELECT t::text FROM {table} AS t ORDER BY 1")
        ]
        for row_id, payload in self.rows("SELECT id, payload FROM notification_outbox ORDER BY id"):
            text.append(f"{row_id} {bytes(payload).decode('utf-8', errors='replace')}")
        return "\n".join(text)

    def jobs(self, ticket: str) -> list[tuple[str, str, str]]:
        return [
            (template, channel, status)
            for template, channel, status in self.rows(
                "SELECT template, channel, status FROM notification_jobs"
                f" WHERE case_name = 'tickets/{ticket}' ORDER BY seq"
            )
        ]


@pytest.fixture()
async def world(infra: Infra) -> AsyncIterator[World]:
    dsn, pool = await notifier_database(infra, "erasure_it")
    mail, sms = MailEndpoint(free_port()), SmsEndpoint(free_port())
    mail.start()
    sms.start()
    cfg = NotifierSettings(
        **personal_settings(),
        database_url=dsn,
        smtp_host=mail.address[0],
        smtp_port=mail.address[1],
        sms_url=sms.url,
        sms_quiet_hours="",
    )
    email = SmtpChannel(host=mail.address[0], port=mail.address[1], sender=cfg.mail_from)
    texts = HttpSmsChannel(url=sms.url)
    channels: dict[str, Channel] = {"EMAIL": email, "SMS": texts}
    tickets, personal = processes(2)
    world = World(
        dsn=dsn,
        pool=pool,
        tickets=tickets,
        personal=personal,
        delivery=Delivery(pool=pool, conninfo=dsn, channels=channels, cfg=cfg),
        mail=mail,
        sms=sms,
    )
    world.delivery._clock = world.clock
    try:
        yield world
    finally:
        await email.aclose()
        await texts.aclose()
        await pool.close()
        mail.stop()
        sms.stop()


def texts_to(world: World, phone: str) -> int:
    return sum(1 for r in world.sms.requests if r["to"] == phone)


async def test_an_erased_persons_unsent_jobs_are_cancelled_and_nothing_of_them_is_kept(
    world: World,
) -> None:
    sealer = world.tickets.sealer
    # Both open a ticket and are told by e-mail and SMS; then an agent
    # answers each, and a sender claims Lin's e-mail about it.
    lin_ticket, wu_ticket = await world.both_told()
    await world.plan([agent_reply(lin_ticket, 2), agent_reply(wu_ticket, 2)])
    claimer = Delivery(
        pool=world.pool,
        conninfo=world.dsn,
        channels=world.delivery._channels,
        cfg=world.delivery._cfg,
        clock=world.clock,
    )
    claimed = await claimer.claim()
    assert claimed is not None and claimed.recipient == LIN.email
    token = sealer.seal(LIN.email, LIN.user_id)
    before = world.dump()
    assert all(trace in before for trace in LIN.traces())

    # The privacy service destroys Lin's keys (the notifier still holds one
    # in memory), then publishes the erasure.
    await world.tickets.erase(LIN.user_id)
    assert world.personal.sealer.reveal(token) == LIN.email
    erased = erasure(LIN.user_id)
    assert await world.plan([erased]) == {}

    # The sender holding the claim does not send it; nothing else of Lin's goes.
    await claimer._send([claimed], float("inf"))
    assert await world.drain() == 2  # Wu's e-mail and SMS about the reply
    assert len(world.mail.to(LIN.email)) == texts_to(world, LIN.phone) == 1
    assert len(world.mail.to(WU.email)) == texts_to(world, WU.phone) == 2
    assert world.jobs(lin_ticket) == [
        ("ticket.received", "EMAIL", "sent"),
        ("ticket.received", "SMS", "sent"),
        ("ticket.agent_reply", "EMAIL", "cancelled"),
        ("ticket.agent_reply", "SMS", "cancelled"),
    ]
    assert [s for _, _, s in world.jobs(wu_ticket)] == ["sent"] * 4

    # Nothing of Lin's in any table; Wu's all still there.
    after = world.dump()
    assert [trace for trace in LIN.traces() if trace in after] == []
    assert all(trace in after for trace in WU.traces())
    assert REPLY in after  # in Wu's jobs
    assert (
        world.rows(
            "SELECT recipient, subject, body, html, params::text, last_error FROM notification_jobs"
            f" WHERE case_name = 'tickets/{lin_ticket}'"
        )
        == [("", "", "", "", "{}", "")] * 4
    )
    assert world.rows(
        "SELECT party, user_id, locale, email, phone, channels, subject, status, version"
        f" FROM case_parties WHERE case_name = 'tickets/{lin_ticket}'"
    ) == [("requester", LIN.user_id, "zh-CN", "", "", ["EMAIL", "SMS"], "", "PENDING", 2)]
    # The notifier forgot the key it held.
    assert world.personal.sealer.reveal(token) == ERASED

    # The same event again, or another erasure of Lin, changes nothing more;
    # a later reply on Lin's ticket tells nobody.
    assert await world.plan([erased]) == {}
    assert await world.plan([erasure(LIN.user_id)]) == {}
    assert world.dump() == after
    assert await world.plan([agent_reply(lin_ticket, 3)]) == {}
    assert await world.drain() == 0
    assert world.rows(
        f"SELECT email, phone, subject FROM case_parties WHERE case_name = 'tickets/{lin_ticket}'"
    ) == [("", "", "")]
    assert len(world.mail.messages) == len(world.sms.requests) == 3


def warned(standing: str, version: int, person: Person) -> CloudEvent:
    """A reporter warned for misuse, the contact in clear as a standing's
    events stored before sealing carry it: an erasure cannot reach it."""
    message = rev.ReporterWarned(
        header=rev.ReportEventHeader(aggregate_id=standing, version=version, state="WARNED"),
        reporter=person.user_id,
        contact=ev.ContactPreferences(
            email=person.email, channels=[ev.CONTACT_CHANNEL_EMAIL], locale="zh-CN"
        ),
    )
    return case_event("reports", f"reporters/{standing}", version, message)


async def test_a_later_event_carrying_an_erased_persons_contacts_tells_them_nothing(
    world: World,
) -> None:
    lin, wu = str(uuid.uuid4()), str(uuid.uuid4())
    await world.plan([warned(lin, 1, LIN), warned(wu, 1, WU)])
    await world.plan([erasure(LIN.user_id)])
    # Warned again: the event names Lin with her address, as before.
    assert list(await world.plan([warned(lin, 2, LIN), warned(wu, 2, WU)])) == [f"{wu}:2"]
    assert await world.drain() == 2  # Wu's two; Lin's first warning was cancelled
    assert len(world.mail.to(LIN.email)) == 0
    assert len(world.mail.to(WU.email)) == 2
    assert world.rows(
        "SELECT user_id, email, phone, subject FROM case_parties"
        f" WHERE case_name = 'reporters/{lin}'"
    ) == [(LIN.user_id, "", "", "")]
    assert LIN.email not in world.dump()


def standing_expired(standing: str, version: int, person: Person) -> CloudEvent:
    """The contact of a reporter's measures expired (their standing's record)."""
    message = rev.ReporterContactExpired(
        header=rev.ReportEventHeader(aggregate_id=standing, version=version, state="WARNED"),
        reporter=person.user_id,
    )
    return case_event("reports", f"reporters/{standing}", version, message)


def suspended(standing: str, version: int, person: Person) -> CloudEvent:
    """After a warning, a reporter suspended, told at their contact."""
    message = rev.ReporterSuspended(
        header=rev.ReportEventHeader(aggregate_id=standing, version=version, state="SUSPENDED"),
        reporter=person.user_id,
        contact=ev.ContactPreferences(
            email=person.email, channels=[ev.CONTACT_CHANNEL_EMAIL], locale="zh-CN"
        ),
    )
    message.until.FromDatetime(NOON_IN_SHANGHAI)
    return case_event("reports", f"reporters/{standing}", version, message)


async def test_a_standing_past_its_retention_is_forgotten_until_its_next_measure(
    world: World,
) -> None:
    """Lin's warning, sent, and her suspension, not yet sent, when the
    contact of her standing's measures expires: the suspension's notice is
    cancelled and the notifier keeps her address for that standing no more;
    Wu's standing is untouched. Suspended again later, on a new record, she
    is told."""
    lin, wu = str(uuid.uuid4()), str(uuid.uuid4())
    await world.plan([warned(lin, 1, LIN), warned(wu, 1, WU)])
    assert await world.drain() == 2
    await world.plan([suspended(lin, 2, LIN), standing_expired(lin, 3, LIN)])
    assert await world.drain() == 0
    assert len(world.mail.to(LIN.email)) == 1
    assert world.rows(
        "SELECT user_id, email, phone, subject FROM case_parties"
        f" WHERE case_name = 'reporters/{lin}'"
    ) == [(LIN.user_id, "", "", "")]
    assert world.rows(
        f"SELECT status, recipient FROM notification_jobs WHERE case_name = 'reporters/{lin}'"
        " ORDER BY status"
    ) == [("cancelled", ""), ("sent", "")]
    assert LIN.email not in world.dump()
    assert WU.email in world.dump()

    assert list(await world.plan([suspended(lin, 4, LIN)])) == [f"{lin}:4"]
    assert await world.drain() == 1
    assert len(world.mail.to(LIN.email)) == 2


async def test_a_measure_after_an_expiry_in_the_same_batch_is_still_told(world: World) -> None:
    """The notifier catching up reads a standing's expiry and its next
    measure together: the measure is planned after the expiry, and sent."""
    lin = str(uuid.uuid4())
    await world.plan([warned(lin, 1, LIN)])
    assert await world.drain() == 1
    planned = await world.plan([standing_expired(lin, 2, LIN), suspended(lin, 3, LIN)])
    assert list(planned) == [f"{lin}:3"]
    assert await world.drain() == 1
    assert len(world.mail.to(LIN.email)) == 2
    assert world.rows(f"SELECT email FROM case_parties WHERE case_name = 'reporters/{lin}'") == [
        (LIN.email,)
    ]


def code_to(
    person: Person,
    phone: str = "",
    version: int = 1,
    *,
    change: str = "1",
    at: datetime = NOON_IN_SHANGHAI,
) -> CloudEvent:
    """A one-time code for the person's phone change (`phone-changes/{change}`),
    to their phone (or `phone`), issued `at` and good for ten minutes: a job
    of no case's party."""
    name = f"phone-changes/{change}"
    message = hev.VerificationCodeIssued(
        request=name,
        phone=phone or person.phone,
        code="424242",
        locale="zh-CN",
        user_id=person.user_id,
    )
    message.expire_time.FromDatetime(at + timedelta(minutes=10))
    return case_event("helpcenter", name, version, message, at)


async def test_a_code_to_a_number_none_of_her_cases_names_is_cancelled_by_her_erasure(
    world: World,
) -> None:
    """Lin changes her number to one no case of hers knows: her erasure still
    cancels the code waiting for it and forgets the number, and a code heard
    after the erasure is not planned."""
    await world.both_told()
    new_number = "+8613700137000"
    await world.plan([code_to(LIN, new_number)])
    await world.plan([erasure(LIN.user_id)])
    assert await world.plan([code_to(LIN, new_number, version=2)]) == {}
    assert await world.drain() == 0
    assert world.rows(
        "SELECT status FROM notification_jobs WHERE template = 'verification.code'"
    ) == [("cancelled",)]
    assert new_number not in world.dump()


@pytest.mark.parametrize("heard", ["in the same batch", "in a later batch"])
async def test_a_code_issued_after_her_erasure_is_sent_however_early_it_is_heard(
    world: World, heard: str
) -> None:
    """The privacy topic ran behind the help centre's: Lin's code for a phone
    change begun a minute before her erasure, and one for a change she began
    after it (back since), are both heard before the erasure is. The first
    code is cancelled and its number forgotten; the second is hers anew, and
    she gets it."""
    before, since = "+8613700137000", "+8613600136000"
    await world.plan([code_to(LIN, before, change="1", at=NOON_IN_SHANGHAI - timedelta(minutes=1))])
    await world.tickets.erase(LIN.user_id)
    code_since = code_to(LIN, since, change="2", at=NOON_IN_SHANGHAI + timedelta(minutes=5))
    if heard == "in the same batch":
        await world.plan([code_since, erasure(LIN.user_id)])
    else:
        await world.plan([code_since])
        await world.plan([erasure(LIN.user_id)])
    assert await world.drain() == 1
    assert (texts_to(world, before), texts_to(world, since)) == (0, 1)
    assert world.rows(
        "SELECT case_name, status FROM notification_jobs"
        " WHERE template = 'verification.code' ORDER BY seq"
    ) == [("phone-changes/1", "cancelled"), ("phone-changes/2", "sent")]
    assert before not in world.dump()


async def test_another_persons_code_to_a_number_she_once_gave_is_not_hers_to_cancel(
    world: World,
) -> None:
    """Wu changes his number to the family phone Lin's tickets name; Lin is
    erased while his code waits: his code is his, and he gets it."""
    await world.both_told()
    await world.plan([code_to(WU, LIN.phone)])
    await world.plan([erasure(LIN.user_id)])
    assert world.rows(
        "SELECT status FROM notification_jobs WHERE template = 'verification.code'"
    ) == [("pending",)]
    assert await world.drain() == 1


async def test_an_erasure_heard_with_her_standings_expiry_still_cancels_her_code(
    world: World,
) -> None:
    """Lin's standing holds her phone, and a one-time code to it waits; then
    her erasure, her standing's expiry and a later suspension come in one
    batch. The code is cancelled (the erasure finds her phone before the
    expiry blanks the standing's row) and she is told nothing."""
    lin = str(uuid.uuid4())
    warning = warned(lin, 1, LIN)
    message = rev.ReporterWarned.FromString(warning.data)
    message.contact.phone = LIN.phone
    warning = case_event("reports", f"reporters/{lin}", 1, message)
    await world.plan([warning])
    assert await world.drain() == 1
    await world.plan([code_to(LIN)])
    await world.plan([erasure(LIN.user_id), standing_expired(lin, 2, LIN), suspended(lin, 3, LIN)])
    assert await world.drain() == 0
    assert world.rows(
        "SELECT status FROM notification_jobs WHERE template = 'verification.code'"
    ) == [("cancelled",)]
    assert LIN.phone not in world.dump()
    assert LIN.email not in world.dump()


def appeal_party(sealer: Sealer, person: Person, name: str) -> aev.AppealParty:
    return aev.AppealParty(
        user_id=person.user_id,
        legal_name=sealer.seal(name, person.user_id),
        contact=ev.ContactPreferences(
            email=sealer.seal(person.email, person.user_id),
            phone=sealer.seal(person.phone, person.user_id),
            channels=[ev.CONTACT_CHANNEL_EMAIL],
            locale="zh-CN",
        ),
    )


def countered_notice(sealer: Sealer, filer: Person, uploader: Person) -> list[CloudEvent]:
    """`filer`'s takedown notice (its work's title her subject), upheld
    against `uploader`'s video, and his counter-notice: the claimant's copy
    carries his name, contact and reason."""
    ident = str(uuid.uuid4())

    def header(version: int, state: str) -> aev.AppealEventHeader:
        return aev.AppealEventHeader(appeal_id=ident, version=version, state=state)

    filed = aev.AppealFiled(
        header=header(1, "SUBMITTED"),
        kind="TAKEDOWN_NOTICE",
        filer=appeal_party(sealer, filer, "林工作室"),
        work_title=sealer.seal(filer.subject, filer.user_id),
    )
    decided = aev.AppealDecided(
        header=header(2, "UPHELD"),
        outcome="UPHOLD",
        affected_uploader=appeal_party(sealer, uploader, "吴先生"),
    )
    countered = aev.CounterNoticeFiled(
        header=header(3, "FORWARDED_TO_CLAIMANT"),
        uploader=appeal_party(sealer, uploader, "吴先生"),
        removed_item="https://video.example/v/1",
        reason=sealer.seal("这支舞是我自己编的", uploader.user_id),
    )
    name = f"appeals/{ident}"
    return [
        case_event("appeals", name, v, m) for v, m in ((1, filed), (2, decided), (3, countered))
    ]


@pytest.mark.parametrize("erased", ["uploader", "filer"])
async def test_an_erasure_reaches_the_copies_of_their_words_the_other_party_holds(
    world: World, erased: str
) -> None:
    """Lin's notice is upheld against Wu, and Wu counter-notifies: Lin's copy
    carries Wu's name, contact and reason, and Wu hears of the case under
    Lin's work's title. Erasing either leaves nothing of them in the other's
    jobs or party row, and the copy not yet sent is not sent."""
    sealer = world.tickets.sealer
    events = countered_notice(sealer, LIN, WU)
    await world.plan(events[:2])
    assert await world.drain() == 3  # Lin: received, upheld; Wu: content removed
    await world.plan(events[2:])  # Lin's copy of the counter-notice, Wu's receipt: unsent
    person = WU if erased == "uploader" else LIN
    # His name and reason; her work's title (her subject).
    words = ["吴先生", "这支舞是我自己编的"] if erased == "uploader" else [LIN.subject]
    traces = [person.email, person.phone, mask_email(person.email), *words]
    before = world.dump()
    assert [t for t in traces if t not in before] == []
    sent_before = len(world.mail.messages)
    await world.tickets.erase(person.user_id)
    await world.plan([erasure(person.user_id)])
    await world.drain()
    left = world.dump()
    assert [trace for trace in traces if trace in left] == []
    if erased == "filer":  # Wu is still told his counter-notice was forwarded, without her title
        assert [m["X-Casemesh-Template"] for m in world.mail.to(WU.email)][-1:] == [
            "appeal.counter_notice_forwarded"
        ]
    # Whatever was still to be sent to the other party and carried them went nowhere.
    told = [
        str(m["Subject"])
        + "".join(p.get_content() for p in m.walk() if p.get_content_type() == "text/plain")
        for m in world.mail.messages[sent_before:]
    ]
    assert [t for t in told if any(w in t for w in words)] == []


async def test_a_person_back_after_their_erasure_is_told_of_what_they_open_since(
    world: World,
) -> None:
    """Lin is erased, then opens a new ticket (sealed with the key she has
    since) and starts a new phone change: she is told of both, while her old
    ticket still tells nobody and a code issued before the erasure is not
    sent."""
    old_ticket, _ = await world.both_told()
    await world.plan([code_to(LIN, "+8613700137000")])  # issued at the erasure's time
    await world.tickets.erase(LIN.user_id)
    await world.plan([erasure(LIN.user_id)])
    later = NOON_IN_SHANGHAI + timedelta(minutes=5)
    new_ticket = str(uuid.uuid4())
    opened_since = dataclasses.replace(opened(world.tickets.sealer, new_ticket, LIN), time=later)
    code_since = code_to(LIN, "+8613700137000", version=2, at=later)
    await world.plan([opened_since, code_since, agent_reply(old_ticket, 2)])
    assert await world.drain() == 3  # her new ticket's e-mail and SMS, the new code
    assert len(world.mail.to(LIN.email)) == 2  # the first ticket's, then the new one's
    assert [s for _, _, s in world.jobs(new_ticket)] == ["sent", "sent"]
    assert world.jobs(old_ticket)[2:] == []
    assert world.rows(
        "SELECT status FROM notification_jobs WHERE template = 'verification.code' ORDER BY seq"
    ) == [("cancelled",), ("sent",)]


@pytest.mark.parametrize("heard", ["in the same batch", "in a later batch"])
async def test_a_person_back_after_their_erasure_keeps_their_new_case_however_late_it_is_heard(
    world: World, heard: str
) -> None:
    """The privacy topic ran behind: Lin's new ticket, opened after her
    erasure (sealed with the key she has since), is planned before the
    erasure is heard. Her old ticket is blanked; her new one keeps its
    messages and goes on telling her."""
    old_ticket, _ = await world.both_told()
    await world.tickets.erase(LIN.user_id)
    later = NOON_IN_SHANGHAI + timedelta(minutes=5)
    new_ticket = str(uuid.uuid4())
    opened_since = dataclasses.replace(opened(world.tickets.sealer, new_ticket, LIN), time=later)
    if heard == "in the same batch":
        await world.plan([opened_since, erasure(LIN.user_id)])
    else:
        await world.plan([opened_since])
        await world.plan([erasure(LIN.user_id)])
    reply = dataclasses.replace(agent_reply(new_ticket, 2), time=later + timedelta(minutes=1))
    await world.plan([reply, agent_reply(old_ticket, 2)])
    assert await world.drain() == 4  # her new ticket's e-mail and SMS, twice
    assert [s for _, _, s in world.jobs(new_ticket)] == ["sent"] * 4
    assert world.jobs(old_ticket)[2:] == []
    old_rows = world.rows(
        f"SELECT email, phone FROM case_parties WHERE case_name = 'tickets/{old_ticket}'"
    )
    assert old_rows == [("", "")]


@pytest.mark.parametrize(
    "heard", ["before the erasure", "after it, by another replica still holding her key"]
)
async def test_what_was_sealed_under_her_erased_key_is_erased_however_late_it_was_written(
    world: World, heard: str
) -> None:
    """The privacy service erases Lin while the tickets service and a
    notifier replica still hold her key: the ticket she opens a minute later
    is sealed under the erased key, and that replica reads its contacts in
    clear. Everywhere else they read as erased; the notifier keeps none of
    them and sends nothing there, whether it hears the erasure after
    planning the ticket or plans it after the erasure. The ticket she opens
    once she is back, under a new key, is told as any."""
    replica = world.personal if heard == "before the erasure" else world.process()
    first = str(uuid.uuid4())
    await world.plan([opened(world.tickets.sealer, first, LIN)], by=replica)
    assert await world.drain() == 2

    await world.process().erase(LIN.user_id)
    later = NOON_IN_SHANGHAI + timedelta(minutes=1)
    meanwhile, since = str(uuid.uuid4()), str(uuid.uuid4())
    under_erased_key = dataclasses.replace(opened(world.tickets.sealer, meanwhile, LIN), time=later)
    sealed_email = ev.TicketCreated.FromString(under_erased_key.data).contact.email
    assert world.process().sealer.reveal(sealed_email) == ERASED
    assert replica.sealer.reveal(sealed_email) == LIN.email
    # Back since: a tickets replica that never held the erased key seals
    # under the new one.
    under_new_key = dataclasses.replace(
        opened(world.process().sealer, since, LIN), time=later + timedelta(minutes=4)
    )
    if heard == "before the erasure":
        await world.plan([under_erased_key, under_new_key], by=replica)
        assert world.rows(
            f"SELECT email FROM case_parties WHERE case_name = 'tickets/{meanwhile}'"
        ) == [(LIN.email,)]
        await world.plan([erasure(LIN.user_id)])
    else:
        await world.plan([erasure(LIN.user_id)])
        await world.plan([under_erased_key, under_new_key], by=replica)

    assert await world.drain() == 2  # the new ticket's e-mail and SMS
    assert [s for _, _, s in world.jobs(meanwhile)] in ([], ["cancelled", "cancelled"])
    assert (
        world.rows(
            "SELECT recipient, subject, body, params::text FROM notification_jobs"
            f" WHERE case_name = 'tickets/{meanwhile}' AND recipient <> ''"
        )
        == []
    )
    assert world.rows(
        "SELECT user_id, email, phone, subject FROM case_parties"
        f" WHERE case_name = 'tickets/{meanwhile}'"
    ) == [(LIN.user_id, "", "", "")]
    # Her new ticket keeps her contacts and tells her; nothing went out
    # about the ticket opened under the erased key.
    assert world.rows(
        f"SELECT email, phone FROM case_parties WHERE case_name = 'tickets/{since}'"
    ) == [(LIN.email, LIN.phone)]
    assert [s for _, _, s in world.jobs(since)] == ["sent", "sent"]
    assert len(world.mail.to(LIN.email)) == texts_to(world, LIN.phone) == 2
    told = [str(m["Subject"]) for m in world.mail.to(LIN.email)]
    assert [t for t in told if meanwhile[:8].upper() in t] == []
    # Nor does her list of notifications (her export) show her address or
    # the ticket's subject in what it lists of that ticket.
    listed = (await list_notifications(world.pool, LIN.user_id, 50, "")).notifications
    assert [
        (n.recipient, n.subject, n.body) for n in listed if n.case == f"tickets/{meanwhile}"
    ] in ([], [("", "", "")] * 2)


async def test_a_person_erased_before_erasure_times_were_kept_is_blanked_everywhere_again(
    world: World,
) -> None:
    """Recorded erased with no time (before times were kept), a person is
    erased for good as far as the planner knows: an erasure heard again
    blanks every row of theirs, one first named since too."""
    lin_ticket, _ = await world.both_told()
    with psycopg.connect(world.dsn) as conn:
        conn.execute(
            "INSERT INTO erased_people (person, event_id, recorded_at) VALUES (%s, 'old', now())",
            (LIN.user_id,),
        )
        conn.execute(
            "UPDATE case_parties SET named_at = %s WHERE case_name = %s",
            (NOON_IN_SHANGHAI + timedelta(hours=1), f"tickets/{lin_ticket}"),
        )
    await world.plan([erasure(LIN.user_id)])
    assert world.rows(
        f"SELECT email, phone FROM case_parties WHERE case_name = 'tickets/{lin_ticket}'"
    ) == [("", "")]


async def test_a_case_first_heard_of_after_the_erasure_from_events_before_it_tells_nobody(
    world: World,
) -> None:
    """The privacy topic ran ahead: a warning written before Lin's erasure
    is heard after it, naming her contacts (in clear, as a standing's old
    events do, or read with a key another replica still held). Nothing is
    planned and no address of hers is kept."""
    await world.plan([erasure(LIN.user_id)])
    standing = str(uuid.uuid4())
    written = dataclasses.replace(
        warned(standing, 1, LIN), time=NOON_IN_SHANGHAI - timedelta(minutes=1)
    )
    assert await world.plan([written]) == {}
    assert LIN.email not in world.dump()


async def test_an_erasure_applied_beside_planning_of_the_same_person_leaves_nothing_to_send(
    world: World,
) -> None:
    """Two replicas: one plans Lin's new ticket while the other applies her
    erasure. Whichever takes its turn first, nothing is left to send her and
    no address of hers stays (before, the erasure's scrub read before the
    planning committed, and her jobs and address came in after it)."""
    sealer = world.tickets.sealer

    async def in_turn(first: CloudEvent, second: CloudEvent) -> None:
        places = iter(range(world.offset, world.offset + 2))
        world.offset += 2
        async with world.pool.connection() as one, world.pool.connection() as other:
            async with one.transaction():
                place = Place(topics.TICKETS, 0, next(places), 0)
                await Planner(world.personal).plan_batch(one, [(first, place)], world.clock.now())

                async def then() -> None:
                    place = Place(topics.TICKETS, 0, next(places), 0)
                    async with other.transaction():
                        await Planner(world.personal).plan_batch(
                            other, [(second, place)], world.clock.now()
                        )

                waiting = asyncio.create_task(then())
                # The second waits for the first's turn to end (its commit).
                await asyncio.to_thread(
                    wait_until, lambda: waiting.done() or waiting_for_a_turn(world.dsn)
                )
            await waiting

    for erasure_first in (False, True):
        ticket = str(uuid.uuid4())
        events = (opened(sealer, ticket, LIN), erasure(LIN.user_id))
        await in_turn(*(reversed(events) if erasure_first else events))
        assert {status for _, _, status in world.jobs(ticket)} <= {"cancelled"}
        assert world.rows(
            f"SELECT email, phone FROM case_parties WHERE case_name = 'tickets/{ticket}'"
        ) in ([], [("", "")])
    assert await world.drain() == 0


def waiting_for_a_turn(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return row is not None and row[0] > 0


async def test_an_erased_persons_parked_jobs_are_cancelled_and_no_replay_sends_them(
    world: World,
) -> None:
    """A job parked after its retries waits for an operator's replay: an
    erasure cancels it like one still to be sent."""
    ticket = str(uuid.uuid4())
    await world.plan([opened(world.tickets.sealer, ticket, LIN)])
    with psycopg.connect(world.dsn) as conn:
        conn.execute(
            "UPDATE notification_jobs SET status = 'parked' WHERE case_name = %s",
            (f"tickets/{ticket}",),
        )
    await world.plan([erasure(LIN.user_id)])
    assert {status for _, _, status in world.jobs(ticket)} == {"cancelled"}
    assert await replay_parked(world.dsn, None, world.clock.now()) == 0
    assert await world.drain() == 0


async def test_erasing_a_filer_whose_title_is_short_leaves_the_uploaders_messages_whole(
    world: World,
) -> None:
    """The uploader's messages do not show the filer's title: erasing a
    filer whose work is called "1" cut every "1" out of them (the case's
    number, the dates) before."""
    filer = Person("users/mei", "mei@example.com", "+8613700137000", "1")
    await world.plan(countered_notice(world.tickets.sealer, filer, WU)[:2])
    assert await world.drain() == 3
    name = world.rows(
        "SELECT case_name FROM notification_jobs WHERE party = 'uploader' ORDER BY seq DESC"
    )[0][0]
    query = (
        "SELECT subject, body, html FROM notification_jobs"
        f" WHERE case_name = '{name}' AND party = 'uploader'"
    )
    before = world.rows(query)
    assert any("1" in body for _, body, _ in before)
    await world.plan([erasure(filer.user_id)])
    assert world.rows(query) == before


AGENT = "users/agent-zhao"


def reply_by(
    agent: str, ticket: str, version: int, body: str, written: timedelta = timedelta()
) -> CloudEvent:
    """An agent's public reply on a ticket, its body as given (a token sealed
    under the agent's key, as the tickets relay publishes it, or clear text,
    as an event stored before sealing came in), written `written` after
    noon."""
    message = ev.CommentAdded(
        header=ev.TicketEventHeader(
            ticket_id=ticket, version=version, actor=agent, status=ev.TICKET_STATUS_PENDING
        ),
        author=agent,
        body=body,
    )
    return dataclasses.replace(
        ticket_event(ticket, version, message), time=NOON_IN_SHANGHAI + written
    )


async def test_an_erased_agents_replies_leave_the_requesters_messages(world: World) -> None:
    """Agent Zhao answers Lin (sent) and Wu (not yet sent); Zhao is erased.
    His words go from both e-mails, the unsent one is not sent, nor is a
    reply of his written before the erasure and heard after it; Lin's and
    Wu's other messages are untouched, and a reply he writes after the
    erasure, with the key he has since, is told as any."""
    sealer = world.tickets.sealer
    sent_words, waiting_words, late_words, new_words = (
        "我已为您解除账号锁定",
        "退款已提交，请等待三个工作日",
        "请把截图再发一次",
        "新的回复：您的问题已转交财务",
    )
    lin_ticket, wu_ticket = await world.both_told()
    ago = -timedelta(minutes=10)
    await world.plan([reply_by(AGENT, lin_ticket, 2, sealer.seal(sent_words, AGENT), ago)])
    assert await world.drain() == 2
    await world.plan([reply_by(AGENT, wu_ticket, 2, sealer.seal(waiting_words, AGENT), ago)])
    received = (
        "SELECT id, status, recipient, subject, body, html, params::text FROM notification_jobs"
        " WHERE template = 'ticket.received' ORDER BY id"
    )
    before, dumped = world.rows(received), world.dump()
    assert sent_words in dumped and waiting_words in dumped
    assert world.rows(
        "SELECT words_of FROM notification_jobs WHERE template = 'ticket.agent_reply' ORDER BY seq"
    ) == [(AGENT,), ("",), (AGENT,), ("",)]  # the e-mails quote him; the SMS never do

    await world.tickets.erase(AGENT)
    await world.plan([erasure(AGENT)])
    # Written before the erasure, in clear (stored before sealing), heard after it.
    late = reply_by(AGENT, wu_ticket, 3, late_words, -timedelta(minutes=1))
    # Written after it, sealed with the key he has since.
    since = reply_by(AGENT, lin_ticket, 3, sealer.seal(new_words, AGENT), timedelta(minutes=5))
    await world.plan([late, since])
    # Wu's SMS of both replies, Lin's e-mail and SMS of the new one.
    assert await world.drain() == 4

    after = world.dump()
    assert [w for w in (sent_words, waiting_words, late_words) if w in after] == []
    assert new_words in after
    told = [
        "".join(p.get_content() for p in m.walk() if p.get_content_type() == "text/plain")
        for m in world.mail.messages
    ]
    assert [t for t in told if waiting_words in t or late_words in t] == []
    assert sum(new_words in t for t in told) == 1
    assert world.rows(received) == before
    assert world.jobs(lin_ticket)[2:] == [
        ("ticket.agent_reply", "EMAIL", "sent"),
        ("ticket.agent_reply", "SMS", "sent"),
        ("ticket.agent_reply", "EMAIL", "sent"),
        ("ticket.agent_reply", "SMS", "sent"),
    ]
    assert world.jobs(wu_ticket)[2:] == [
        ("ticket.agent_reply", "EMAIL", "cancelled"),
        ("ticket.agent_reply", "SMS", "sent"),
        ("ticket.agent_reply", "SMS", "sent"),  # the late reply's: no e-mail planned
    ]
    # The requesters keep where and what about they were told, without his words.
    assert world.rows(
        "SELECT case_name, recipient, subject <> '', body, html FROM notification_jobs"
        " WHERE template = 'ticket.agent_reply' AND channel = 'EMAIL'"
        " AND cause_event_id LIKE '%:2' ORDER BY seq"
    ) == [
        (f"tickets/{lin_ticket}", LIN.email, True, "", ""),
        (f"tickets/{wu_ticket}", WU.email, True, "", ""),
    ]
    # Nor do their notifications (their exports) show his words.
    listed = [
        n.body
        for person in (LIN, WU)
        for n in (await list_notifications(world.pool, person.user_id, 50, "")).notifications
    ]
    assert [b for b in listed if any(w in b for w in (sent_words, waiting_words, late_words))] == []
    assert sum(new_words in b for b in listed) == 1

    # The erasure heard again changes nothing more.
    await world.plan([erasure(AGENT)])
    assert world.dump() == after

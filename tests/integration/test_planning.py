"""The notifier plans a batch of events with a few statements for them all:
what it plans must be exactly what planning each event alone would."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.consuming import NotYet, Place
from casemesh.platform.envelope import CloudEvent, type_of
from casemesh.platform.personal import AsyncSealer
from casemesh_notifier.planner import Planner
from casemesh_notifier.registry import SOURCE_OF, SOURCES
from casemesh_notifier.samples import NOW, event_kinds, sample_events
from casemesh_notifier.schema import create_schema
from tests.conftest import Infra
from tests.support import case_event, memory_sealer

JOBS = (
    "SELECT id, cause_event_id, party, case_name, channel, recipient, template, locale,"
    " subject, body, html, params FROM notification_jobs ORDER BY seq"
)
PARTIES = (
    "SELECT case_name, party, user_id, locale, email, phone, channels, subject, status,"
    " version, time_zone, items FROM case_parties ORDER BY case_name, party"
)


def journey() -> list[CloudEvent]:
    """Every sample event, of every kind the notifier reads, in order (each
    ticket, appeal and report case from its opening)."""
    events = []
    for n, message in enumerate(sample_events()):
        source = SOURCE_OF[type(message)]
        subject = (
            f"reports/{message.header.aggregate_id}"  # type: ignore[attr-defined]
            if source.name == "reports"
            else getattr(message, "request", "")
        )
        events.append(
            CloudEvent(
                id=f"sample-{n}",
                source=f"casemesh/{source.name}",
                type=f"casemesh.{source.name}.{message.DESCRIPTOR.name}.v1",
                subject=subject,
                time=NOW,
                data=message.SerializeToString(),
                key=str(n),
            )
        )
    return events


async def tables(dsn: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        jobs = await (await conn.execute(JOBS)).fetchall()
        parties = await (await conn.execute(PARTIES)).fetchall()
    return jobs, parties


async def plan(dsn: str, batches: Sequence[Sequence[CloudEvent]]) -> dict[str, list[uuid.UUID]]:
    """The new job ids by event, each batch planned in a transaction of its own."""
    planner = Planner(memory_sealer())
    created: dict[str, list[uuid.UUID]] = {}
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for batch in batches:
            async with conn.transaction():
                placed = [(e, Place("t", 0, n, 0)) for n, e in enumerate(batch)]
                created |= await planner.plan_batch(conn, placed, NOW)
    return created


async def database(infra: Infra) -> str:
    name = f"planning_it_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    await create_schema(dsn)
    return dsn


async def test_a_batch_plans_the_jobs_and_parties_that_each_event_alone_would(
    infra: Infra,
) -> None:
    events = journey()
    assert {SOURCE_OF[k].name for k in event_kinds()} == {s.name for s in SOURCES}
    together, alone = await database(infra), await database(infra)

    # The whole journey in one batch, with a redelivery of its first event
    # inside it; against each event in a transaction of its own.
    batch_created = await plan(together, [[*events, events[0]]])
    alone_created = await plan(alone, [[e] for e in events])

    assert batch_created == alone_created
    # Most events tell someone, some on two channels.
    assert sum(map(len, batch_created.values())) > len(events)
    assert await tables(together) == await tables(alone)
    jobs, parties = await tables(together)
    assert {row[3].split("/")[0] for row in jobs} == {
        "tickets",
        "appeals",
        "reports",
        "phone-changes",
    }
    assert parties

    # Planned again, whole, the batch adds nothing.
    assert await plan(together, [events]) == {}
    assert await tables(together) == await tables(alone)


async def test_a_report_cases_next_round_opening_is_consumed_and_tells_nobody(
    infra: Infra,
) -> None:
    """`ReportCaseSucceeded` is recorded consumed (a redelivery stops there)
    and plans nothing: the next round's own events tell its reporters."""
    dsn = await database(infra)
    succeeded = rev.ReportCaseSucceeded(
        header=rev.ReportEventHeader(aggregate_id="c1", version=5, state="NO_VIOLATION"),
        next_case_id="c2",
    )
    told = CloudEvent(
        id="c1:5",
        source="casemesh/reports",
        type=type_of(succeeded),
        subject="report-cases/c1",
        time=NOW,
        data=succeeded.SerializeToString(),
        key="c1",
    )
    assert await plan(dsn, [[told]]) == {}
    assert await tables(dsn) == ([], [])
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        assert await (await conn.execute("SELECT count(*) FROM consumed_events")).fetchone() == (1,)


async def test_a_copyright_cases_zone_and_items_are_kept_for_its_later_events(
    infra: Infra,
) -> None:
    """Only a case's filing says its jurisdiction and a notice's items: each
    later event, planned in a transaction of its own, reads them from the
    party rows. A "us" case's parties whose numbers tell no zone (none
    given) are told its dates in New York time; the uploader whose content
    its decision removed, which items."""
    dsn = await database(infra)
    name = "appeals/c4e1a7b2-0d3f"

    def party(user_id: str, email: str) -> aev.AppealParty:
        contact = ev.ContactPreferences(
            email=email, channels=[ev.CONTACT_CHANNEL_EMAIL], locale="en"
        )
        return aev.AppealParty(user_id=user_id, legal_name=user_id, contact=contact)

    def head(version: int, state: str) -> aev.AppealEventHeader:
        header = aev.AppealEventHeader(appeal_id="c4e1a7b2-0d3f", version=version, state=state)
        # 24:00 on 16 March, New York time.
        header.next_step_due.FromDatetime(datetime(2026, 3, 17, 4, tzinfo=UTC))
        return header

    uploader = party("uploader", "u@example.com")
    messages = [
        aev.AppealFiled(
            header=head(1, "SUBMITTED"),
            kind="TAKEDOWN_NOTICE",
            jurisdiction="us",
            filer=party("claimant", "c@example.com"),
            work_title="Mountain Song",
            infringing_items=["https://v.example/1", "https://v.example/2"],
        ),
        aev.AppealDecided(
            header=head(2, "UPHELD"),
            outcome="UPHOLD",
            reasons=aev.StatementOfReasons(ground="g", facts="f"),
            affected_uploader=uploader,
        ),
        aev.CounterNoticeFiled(
            header=head(3, "FORWARDED_TO_CLAIMANT"),
            uploader=uploader,
            removed_item="https://v.example/1",
            reason="mine",
        ),
    ]
    events = [case_event("appeals", name, n, m, NOW) for n, m in enumerate(messages, start=1)]
    await plan(dsn, [[e] for e in events])
    jobs, parties = await tables(dsn)
    bodies = {(row[2], row[6]): row[9] for row in jobs}
    deadline = "24:00 on 16 March 2026 (Eastern Daylight Time)"
    removed = bodies[("uploader", "appeal.content_removed")]
    assert deadline in removed
    assert "Removed items: https://v.example/1, https://v.example/2" in removed
    assert deadline in bodies[("uploader", "appeal.counter_notice_forwarded")]
    assert deadline in bodies[("filer", "appeal.counter_notice_received")]
    assert [(row[1], row[10]) for row in parties] == [
        ("filer", "America/New_York"),
        ("uploader", "America/New_York"),
    ]


def sealed_ticket(personal: AsyncSealer, ticket: str, person: str) -> CloudEvent:
    """A ticket's opening event as the tickets relay publishes it: its
    requester's subject and contacts sealed with their key."""
    sealer = personal.sealer
    msg = ev.TicketCreated(
        header=ev.TicketEventHeader(ticket_id=ticket, version=1, status=ev.TICKET_STATUS_NEW),
        requester=person,
        category="account.login",
        subject=sealer.seal("无法登录", person),
        contact=ev.ContactPreferences(
            email=sealer.seal("lin@example.com", person),
            phone=sealer.seal("+8613800138000", person),
            channels=[ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS],
            locale="zh-CN",
        ),
    )
    return CloudEvent(
        id=f"{ticket}:1",
        source="casemesh/tickets",
        type="casemesh.tickets.TicketCreated.v1",
        subject=f"tickets/{ticket}",
        time=NOW,
        data=msg.SerializeToString(),
        key=ticket,
    )


async def test_an_erased_person_is_told_nothing_and_no_address_is_kept(infra: Infra) -> None:
    dsn, personal = await database(infra), memory_sealer()
    told = sealed_ticket(personal, str(uuid.uuid4()), "users/lin")
    erased = sealed_ticket(personal, str(uuid.uuid4()), "users/gone")
    await personal.erase("users/gone")
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.transaction():
        planned = await Planner(personal).plan_batch(
            conn, [(told, Place("t", 0, 0, 0)), (erased, Place("t", 0, 1, 0))], NOW
        )
    assert list(planned) == [told.id]
    jobs, parties = await tables(dsn)
    assert sorted(row[5] for row in jobs) == ["+8613800138000", "lin@example.com"]
    gone = [row for row in parties if row[0] == erased.subject]
    assert [(row[4], row[5]) for row in gone] == [("", "")]  # no address, not "[erased]"


async def test_a_field_sealed_with_a_key_this_process_cannot_get_pauses_the_consumer(
    infra: Infra,
) -> None:
    dsn = await database(infra)
    elsewhere = sealed_ticket(memory_sealer(), str(uuid.uuid4()), "users/lin")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        with pytest.raises(NotYet):
            async with conn.transaction():
                await Planner(memory_sealer()).plan_batch(
                    conn, [(elsewhere, Place("t", 0, 0, 0))], NOW
                )
    # Nothing was planned or consumed: the event is read again later.
    assert await tables(dsn) == ([], [])
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        assert await (await conn.execute("SELECT count(*) FROM consumed_events")).fetchone() == (0,)

"""What the notifier tells a person it sent them (`NotificationService`, and
so their data export), on a real PostgreSQL database with the real sender:
their own messages only, newest first, page by page; an erased person's
keep their channel, state and times, nothing they said or where they went."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from pathlib import Path

import psycopg
import pytest

from casemesh.platform.errors import InvalidArgument
from casemesh.v1 import notifications_pb2 as npb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_notifier import api
from casemesh_notifier.api import STATES, list_notifications
from casemesh_notifier.erasures import CANCELLED as CANCELLED_STATUS
from casemesh_notifier.schema import create_schema
from casemesh_notifier.store import NewJob, add_jobs
from tests.integration.test_notifier_erasure import (
    LIN,
    REPLY,
    WU,
    World,
    agent_reply,
    erasure,
)
from tests.integration.test_notifier_erasure import world as world_fixture

# The notifier of that test, its sender, mail and SMS endpoints.
world = world_fixture

SENT, PENDING = npb.NOTIFICATION_STATE_SENT, npb.NOTIFICATION_STATE_PENDING
CANCELLED = npb.NOTIFICATION_STATE_CANCELLED


async def every_page(world: World, person: str, page_size: int) -> list[npb.Notification]:
    """All of the person's notifications, read `page_size` at a time."""
    found: list[npb.Notification] = []
    token = ""
    while True:
        page = await list_notifications(world.pool, person, page_size, token)
        assert len(page.notifications) <= page_size
        found += page.notifications
        token = page.next_page_token
        if not token:
            return found


# A party of a case: its role, its user id ("" for none), its address.
Party = tuple[str, str, str]


def email_job(
    case: str,
    step: int,
    party: Party,
    *,
    template: str = "appeal.received",
    subject: str = "",
    body: str = "",
) -> NewJob:
    """An e-mail about a step of `case` to a party, for its user."""
    role, user, address = party
    return NewJob(
        cause_event_id=f"{case}:{step}",
        case_name=case,
        party=role,
        channel="EMAIL",
        recipient=address,
        template=template,
        locale="en",
        subject=subject or f"To {role}",
        body=body or f"Step {step} for {role}",
        params={},
        user_id=user,
    )


async def email_parties(world: World, case: str, step: int, parties: Iterable[Party]) -> None:
    """Plans an e-mail about a step of `case` to each party, for its user."""
    jobs = [email_job(case, step, party) for party in parties]
    async with world.pool.connection() as conn:
        await add_jobs(conn, jobs, world.clock.now())


def name_parties(world: World, case: str, parties: Iterable[Party]) -> None:
    """The notifier's party rows of `case`, as events named them."""
    with psycopg.connect(world.dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO case_parties (case_name, party, user_id, locale, email, channels)"
            " VALUES (%s, %s, %s, 'en', %s, '{EMAIL}')",
            [(case, *party) for party in parties],
        )


async def test_a_person_is_shown_their_own_messages_newest_first_and_once_erased_no_content(
    world: World,
) -> None:
    # Both open a ticket and are told by e-mail and SMS; an agent then
    # answers Lin, whose messages about it are not sent yet.
    lin_ticket, _ = await world.both_told()
    world.clock.advance(60)
    await world.plan([agent_reply(lin_ticket, 2)])

    lins = await every_page(world, LIN.user_id, 3)
    assert await every_page(world, LIN.user_id, 100) == lins
    # Newest first: the two about the reply, then the two about the opening.
    assert [n.state for n in lins] == [PENDING, PENDING, SENT, SENT]
    both = {(pb.CHANNEL_EMAIL, LIN.email), (pb.CHANNEL_SMS, LIN.phone)}
    assert {(n.channel, n.recipient) for n in lins[:2]} == both
    assert {(n.channel, n.recipient) for n in lins[2:]} == both
    assert {n.case for n in lins} == {f"tickets/{lin_ticket}"}
    assert len({n.name for n in lins}) == 4
    # What each said, as sent: the e-mail has a subject, a text message none.
    emailed = [n for n in lins if n.channel == pb.CHANNEL_EMAIL]
    assert all(n.subject and LIN.subject in n.body for n in emailed if n.state == SENT)
    assert [REPLY in n.body for n in emailed] == [True, False]
    assert all(n.send_time.seconds for n in lins if n.state == SENT)
    assert not any(n.HasField("send_time") for n in lins if n.state == PENDING)
    # Wu sees his own, none of Lin's.
    wus = await every_page(world, WU.user_id, 100)
    assert {n.recipient for n in wus} == {WU.email, WU.phone}
    assert not {n.name for n in wus} & {n.name for n in lins}

    # Lin is erased: her messages stay listed, with nothing of her in them,
    # and those not yet sent are cancelled.
    await world.tickets.erase(LIN.user_id)
    await world.plan([erasure(LIN.user_id)])
    after = await every_page(world, LIN.user_id, 2)
    assert [n.name for n in after] == [n.name for n in lins]
    assert [n.state for n in after] == [CANCELLED, CANCELLED, SENT, SENT]
    assert all((n.recipient, n.subject, n.body) == ("", "", "") for n in after)
    assert await every_page(world, WU.user_id, 100) == wus


async def test_each_party_of_a_case_sees_the_messages_planned_for_them_alone(
    world: World,
) -> None:
    """An appeal's filer and uploader are told of the same steps; a later
    event then names another uploader (a correction). Each sees only what
    was planned for them: the next uploader none of the earlier one's, a
    party without an account nobody's."""
    case = f"appeals/{uuid.uuid4()}"
    filer, uploader, corrected = (f"users/{n}-{uuid.uuid4().hex[:6]}" for n in "fuc")
    parties = [
        ("filer", filer, "f@example.com"),
        ("uploader", uploader, "u@example.com"),
        ("rights_holder", "", "r@example.com"),
    ]
    name_parties(world, case, parties)
    for step in (1, 2):
        await email_parties(world, case, step, parties)
        world.clock.advance(1)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE case_parties SET user_id = %s, email = 'c@example.com'"
            " WHERE case_name = %s AND party = 'uploader'",
            (corrected, case),
        )

    def seen(found: list[npb.Notification]) -> list[tuple[str, str]]:
        return [(n.recipient, n.body) for n in found]

    assert seen(await every_page(world, filer, 1)) == [
        ("f@example.com", "Step 2 for filer"),
        ("f@example.com", "Step 1 for filer"),
    ]
    assert seen(await every_page(world, uploader, 100)) == [
        ("u@example.com", "Step 2 for uploader"),
        ("u@example.com", "Step 1 for uploader"),
    ]
    assert await every_page(world, corrected, 100) == []
    # Erasing the earlier uploader reaches the messages planned for them,
    # though their party row names someone else now; the filer's stay.
    await world.plan([erasure(uploader)])
    assert seen(await every_page(world, uploader, 100)) == [("", "")] * 2
    assert seen(await every_page(world, filer, 100))[0] == ("f@example.com", "Step 2 for filer")
    # A page token this service did not give is refused, naming the field.
    with pytest.raises(InvalidArgument) as refused:
        await list_notifications(world.pool, filer, 10, "not-a-token")
    assert [v.field for v in refused.value.violations] == ["page_token"]


def test_every_status_a_job_takes_is_shown_as_a_state() -> None:
    """Every status the notifier's SQL names (`status = '…'`; and the erasure's
    `cancelled`, passed as a value) has a state: a new one fails here."""
    source = "".join(p.read_text() for p in Path(api.__file__).parent.glob("*.py"))
    written = set(re.findall(r"status = '(\w+)'", source)) | {CANCELLED_STATUS}
    assert {"pending", "sending", "sent", "parked"} <= written
    assert set(STATES) == written
    assert npb.NOTIFICATION_STATE_UNSPECIFIED not in STATES.values()


async def test_jobs_planned_for_nobody_known_are_the_persons_whose_address_they_went_to(
    world: World,
) -> None:
    """Jobs planned without a person (before jobs recorded one, or by an
    older replica) are theirs at the next start if their party's row still
    names the address they went to; one a correction has given to someone
    else since stays nobody's."""
    case = f"appeals/{uuid.uuid4()}"
    earlier, corrected = (f"users/{n}-{uuid.uuid4().hex[:6]}" for n in "ec")
    await email_parties(world, case, 1, [("filer", "", "f@example.com")])
    await email_parties(world, case, 2, [("uploader", "", "u@example.com")])
    name_parties(
        world, case, [("filer", earlier, "f@example.com"), ("uploader", corrected, "c@example.com")]
    )
    assert await every_page(world, earlier, 10) == []
    await create_schema(world.dsn)  # the next start
    assert [n.body for n in await every_page(world, earlier, 10)] == ["Step 1 for filer"]
    assert await every_page(world, corrected, 10) == []


async def test_a_person_told_of_thousands_of_removed_items_pages_through_every_message(
    world: World,
) -> None:
    """An appeal's e-mails list every item it removed: thousands of links
    make a message of a megabyte. A page of them is cut short before gRPC's
    4 MiB (past it, every call fails, the person's data export too), and
    its token leads on to the rest: each message is read once."""
    case = f"appeals/{uuid.uuid4()}"
    uploader = f"users/u-{uuid.uuid4().hex[:6]}"
    links = "\n".join(
        f"https://video.example.com/watch?v={i:08d}&list=PL{'x' * 90}" for i in range(7000)
    )
    for step in range(1, 7):
        job = email_job(
            case,
            step,
            ("uploader", uploader, "u@example.com"),
            template="appeal.counter_notice_received",
            subject=f"Counter-notice {step}",
            body=f"Step {step}: the items removed were\n{links}",
        )
        async with world.pool.connection() as conn:
            await add_jobs(conn, [job], world.clock.now())
        world.clock.advance(1)

    found: list[npb.Notification] = []
    token = ""
    while True:
        page = await list_notifications(world.pool, uploader, 50, token)
        assert 0 < page.ByteSize() < 4 * 1024 * 1024
        found += page.notifications
        token = page.next_page_token
        if not token:
            break
    assert [n.subject for n in found] == [f"Counter-notice {step}" for step in range(6, 0, -1)]
    assert len({n.name for n in found}) == 6

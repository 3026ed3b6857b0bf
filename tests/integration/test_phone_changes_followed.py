"""A verified phone-number change (`PhoneChangeVerified`, casemesh.helpcenter.v1)
is followed by the notifier on a real PostgreSQL database, with the real
sender texting a test SMS endpoint: what the user's cases still have to tell
them by SMS goes to the number they proved, never to the old one (lost, and
perhaps a stranger's soon); what went before, the help centre's one-time
codes and everyone else's messages stay as they are."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.personal import Sealer
from casemesh.rules import retention
from casemesh_notifier.channels import HttpSmsChannel
from casemesh_notifier.delivery import QUIET_RELEASE, replay_parked
from casemesh_notifier.planner import PHONE_CHANGE
from tests.integration.test_notifier_contact_change import (
    HeardMidSend,
    KeyedProvider,
    appeal_event,
    details_changed,
)
from tests.integration.test_notifier_erasure import (
    LIN,
    WU,
    World,
    agent_reply,
    code_to,
    erasure,
    opened,
    texts_to,
)
from tests.integration.test_notifier_erasure import world as world_fixture
from tests.support import NOON_IN_SHANGHAI, case_event

# The notifier of the erasure tests: its planner, sender and SMS endpoint.
world = world_fixture

OLD, NEW = LIN.phone, "+8613700137000"
# Wu's tickets give the family phone, Lin's old number: his, not hers.
WU_ON_OLD = dataclasses.replace(WU, phone=OLD)


def verified(
    sealer: Sealer | None,
    user_id: str,
    old: str = OLD,
    new: str = NEW,
    at: datetime = NOON_IN_SHANGHAI,
) -> CloudEvent:
    """A `PhoneChangeVerified` as the help centre's outbox publishes it: its
    numbers sealed under the user's key (None: in the clear, as published
    before they were)."""
    change = f"phone-changes/{uuid.uuid4()}"
    if sealer is not None:
        old, new = sealer.seal(old, user_id), sealer.seal(new, user_id)
    message = hev.PhoneChangeVerified(request=change, user_id=user_id, old_phone=old, new_phone=new)
    message.verify_time.FromDatetime(at)
    return CloudEvent(
        id=f"{change.rpartition('/')[2]}:verified",
        source="casemesh/helpcenter",
        type=PHONE_CHANGE,
        subject=change,
        time=at,
        data=message.SerializeToString(),
        key=change,
    )


def phones(world: World, ticket: str) -> list[str]:
    return [
        phone
        for (phone,) in world.rows(
            f"SELECT phone FROM case_parties WHERE case_name = 'tickets/{ticket}'"
        )
    ]


def texts(world: World, ticket: str) -> list[tuple[str, str, str]]:
    """The ticket's SMS jobs: template, status, recipient, in planned order."""
    return [
        (template, status, recipient)
        for template, status, recipient in world.rows(
            "SELECT template, status, recipient FROM notification_jobs"
            f" WHERE case_name = 'tickets/{ticket}' AND channel = 'SMS' ORDER BY seq"
        )
    ]


def code_recipients(world: World) -> list[tuple[str, str]]:
    return [
        (status, recipient)
        for status, recipient in world.rows(
            "SELECT status, recipient FROM notification_jobs"
            " WHERE template = 'verification.code' ORDER BY seq"
        )
    ]


async def test_a_verified_new_number_gets_what_is_still_to_be_texted_to_the_old_one(
    world: World,
) -> None:
    # Lin and Wu open tickets giving the same phone, and are texted about them.
    sealer = world.tickets.sealer
    lin_ticket, wu_ticket = str(uuid.uuid4()), str(uuid.uuid4())
    await world.plan([opened(sealer, lin_ticket, LIN), opened(sealer, wu_ticket, WU_ON_OLD)])
    assert await world.drain() == 4
    # An agent answers Lin; before the text about it goes, a one-time code
    # for her change is waiting for her old number too.
    await world.plan([agent_reply(lin_ticket, 2), code_to(LIN, OLD)])
    assert texts(world, lin_ticket)[-1] == ("ticket.agent_reply", "pending", OLD)

    change = verified(sealer, LIN.user_id)
    assert await world.plan([change]) == {}

    # Her ticket and her unsent text name the new number; the text already
    # sent shows where it went; the code stays for the number it proves;
    # Wu's ticket keeps the phone he gave.
    assert phones(world, lin_ticket) == [NEW]
    assert texts(world, lin_ticket) == [
        ("ticket.received", "sent", OLD),
        ("ticket.agent_reply", "pending", NEW),
    ]
    assert code_recipients(world) == [("pending", OLD)]
    assert phones(world, wu_ticket) == [OLD]
    assert texts(world, wu_ticket) == [("ticket.received", "sent", OLD)]

    # A ticket Lin opens since giving her old number is texted to the number
    # she proved (she gave up the old one); heard again (a redelivery), the
    # change changes nothing more.
    since = str(uuid.uuid4())
    await world.plan([opened(sealer, since, LIN)])
    assert await world.plan([change]) == {}
    assert phones(world, since) == [NEW]
    assert texts(world, since) == [("ticket.received", "pending", NEW)]
    assert texts(world, lin_ticket)[-1] == ("ticket.agent_reply", "pending", NEW)

    # The reply's text reaches her new number, the code her old one; a later
    # step of her ticket is texted to the new number too.
    await world.drain()
    assert texts_to(world, NEW) == 2
    await world.plan([agent_reply(lin_ticket, 3)])
    await world.drain()
    assert texts_to(world, NEW) == 3
    assert sorted(r["template_id"] for r in world.sms.requests if r["to"] == NEW) == [
        "ticket.agent_reply",
        "ticket.agent_reply",
        "ticket.received",
    ]
    assert code_recipients(world) == [("sent", OLD)]


def measure(standing: str, version: int, phone: str) -> CloudEvent:
    """A measure of Lin's reporting standing (a warning, then a suspension),
    texted to the contact given with the report it counted."""
    header = rev.ReportEventHeader(aggregate_id=standing, version=version)
    contact = ev.ContactPreferences(phone=phone, channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN")
    message: rev.ReporterWarned | rev.ReporterSuspended
    if version == 1:
        header.state = "WARNED"
        message = rev.ReporterWarned(header=header, reporter=LIN.user_id, contact=contact)
    else:
        header.state = "SUSPENDED"
        message = rev.ReporterSuspended(header=header, reporter=LIN.user_id, contact=contact)
        message.until.FromDatetime(NOON_IN_SHANGHAI + timedelta(days=7))
    return case_event("reports", f"reporters/{standing}", version, message)


async def test_what_names_her_old_number_after_the_change_is_texted_to_the_new_one(
    world: World,
) -> None:
    """After Lin's change, events still give her old number: the ticket she
    opened before it, its event heard late (its topic behind the help
    centre's), and her suspension for misuse, which carries the contact of
    the report it counted, filed before the change. Both are texted to her
    new number; Wu's ticket keeps the family phone he gave."""
    sealer = world.tickets.sealer
    standing = str(uuid.uuid4())
    await world.plan([measure(standing, 1, OLD)])
    assert await world.drain() == 1
    await world.plan([verified(sealer, LIN.user_id)])

    late, wu_ticket = str(uuid.uuid4()), str(uuid.uuid4())
    events = [opened(sealer, late, LIN), opened(sealer, wu_ticket, WU_ON_OLD)]
    await world.plan([*events, measure(standing, 2, OLD)])
    assert phones(world, late) == [NEW]
    assert texts(world, late) == [("ticket.received", "pending", NEW)]
    assert phones(world, wu_ticket) == [OLD]
    assert world.rows(
        "SELECT status, recipient FROM notification_jobs"
        f" WHERE case_name = 'reporters/{standing}' ORDER BY seq"
    ) == [("sent", OLD), ("pending", NEW)]

    await world.drain()
    assert texts_to(world, NEW) == 2
    assert texts_to(world, OLD) == 2  # the warning before the change, and Wu's


async def test_a_parked_text_follows_the_new_number(world: World) -> None:
    """A parked text would go to the old number on a replay: it follows."""
    parked = str(uuid.uuid4())
    sealer = world.tickets.sealer
    await world.plan([opened(sealer, parked, LIN)])
    with psycopg.connect(world.dsn) as conn:
        conn.execute(
            "UPDATE notification_jobs SET status = 'parked' WHERE case_name = %s",
            (f"tickets/{parked}",),
        )
    await world.plan([verified(sealer, LIN.user_id)])
    assert texts(world, parked) == [("ticket.received", "parked", NEW)]
    assert phones(world, parked) == [NEW]
    assert await replay_parked(world.dsn, None, world.clock.now()) == 2  # its e-mail too
    await world.drain()
    assert texts_to(world, NEW) == 1 and texts_to(world, OLD) == 0


@pytest.mark.parametrize("answer", ["delivered", "refused for now"])
async def test_texts_a_sender_holds_go_to_the_new_number_and_one_under_way_as_it_went(
    world: World, answer: str
) -> None:
    """A sender claims the texts about Lin's two tickets. While the SMS
    provider has the first, her change to a new number is heard: the second
    goes to the new number, never the old one. The first, on its way to the
    old number, is recorded as it went: delivered there, or, refused, tried
    again on the new one."""
    tickets = [str(uuid.uuid4()), str(uuid.uuid4())]
    sealer = world.tickets.sealer
    await world.plan([opened(sealer, t, LIN) for t in tickets])

    async def change() -> None:
        if answer != "delivered":
            world.sms.fail_remaining = 1
        await world.plan([verified(sealer, LIN.user_id)])

    provider = HeardMidSend(world.delivery._channels["SMS"], change)
    world.delivery._channels["SMS"] = provider
    assert await world.delivery.deliver_batch() == 4  # their e-mails too
    assert provider.in_hand is not None
    [(case,)] = world.rows(
        f"SELECT case_name FROM notification_jobs WHERE id = '{provider.in_hand.job_id}'"
    )
    first = case.removeprefix("tickets/")
    (second,) = set(tickets) - {first}
    assert texts(world, second) == [("ticket.received", "pending", NEW)]  # handed back
    if answer == "delivered":
        assert texts(world, first) == [("ticket.received", "sent", OLD)]
    else:
        assert texts(world, first) == [("ticket.received", "pending", NEW)]
    world.clock.advance(900)
    await world.drain()
    assert texts(world, second) == [("ticket.received", "sent", NEW)]
    if answer == "delivered":
        assert texts_to(world, OLD) == 1 and texts_to(world, NEW) == 1
    else:
        assert texts(world, first) == [("ticket.received", "sent", NEW)]
        assert texts_to(world, OLD) == 0 and texts_to(world, NEW) == 2


class DeadNumber:
    """An SMS provider's HTTP API on which a number (`dead`) is out of
    service: a text to it is answered `status` (400: no such number; 500:
    the provider's own trouble, the message perhaps taken); the others are
    taken and sent (`sent`: their numbers)."""

    url = "https://provider.example/v1/messages"

    def __init__(self, dead: str, status: int) -> None:
        self.dead, self.status = dead, status
        self.sent: list[str] = []

    def _answer(self, request: httpx.Request) -> httpx.Response:
        to = json.loads(request.content)["to"]
        if to == self.dead:
            return httpx.Response(self.status, json={"error": "invalid number"})
        self.sent.append(to)
        return httpx.Response(200, json={"id": f"m{len(self.sent)}"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._answer)


@pytest.mark.parametrize("refusal", ["no such number", "an error on its last try"])
async def test_a_text_its_old_number_refuses_as_the_change_is_heard_goes_to_the_new_one(
    world: World, refusal: str
) -> None:
    """Lin lost her phone; her old number is dead. While the SMS provider has
    the text about her ticket, her change to a new number is heard; the old
    number's refusal (permanent, or on the text's last try) parks nothing
    and spends nothing: the text is tried at once on the new number, and
    reaches her there, no possible repeat."""
    ticket = str(uuid.uuid4())
    sealer = world.tickets.sealer
    await world.plan([opened(sealer, ticket, LIN)])
    last_try = refusal != "no such number"
    attempts = world.delivery._cfg.max_attempts - 1 if last_try else 0
    # Tried and failed till one try is left, or never tried.
    world.rows(
        f"UPDATE notification_jobs SET attempts = {attempts} WHERE channel = 'SMS' RETURNING 1"
    )
    provider = DeadNumber(OLD, 500 if last_try else 400)
    api = HttpSmsChannel(url=provider.url, transport=provider.transport())
    sender = HeardMidSend(api, lambda: world.plan([verified(sealer, LIN.user_id)]))
    world.delivery._channels["SMS"] = sender
    try:
        assert await world.delivery.deliver_batch() == 2  # its e-mail too
        assert sender.in_hand is not None and sender.in_hand.recipient == OLD
        job = sender.in_hand.job_id
        assert texts(world, ticket) == [("ticket.received", "pending", NEW)]
        assert world.rows(
            f"SELECT attempts, maybe_sent FROM notification_jobs WHERE id = '{job}'"
        ) == [(attempts, False)]

        await world.drain()  # due at once: no waiting for a backoff
        assert provider.sent == [NEW]
        assert texts(world, ticket) == [("ticket.received", "sent", NEW)]
        outcomes = world.rows(
            f"SELECT ce_type, payload FROM notification_outbox WHERE job_id = '{job}' ORDER BY id"
        )
        assert [t.split(".")[2] for t, _ in outcomes] == [
            "NotificationAttemptFailed",
            "NotificationDelivered",
        ]
        failed = nev.NotificationAttemptFailed.FromString(bytes(outcomes[0][1]))
        assert failed.job.attempt == attempts + 1 and OLD not in failed.error
        assert "tried at the new one" in failed.error
        assert not nev.NotificationDelivered.FromString(bytes(outcomes[1][1])).possible_repeat
    finally:
        await api.aclose()


async def test_a_text_the_provider_may_have_taken_for_the_old_number_reaches_the_new_one(
    world: World,
) -> None:
    """The text about Lin's ticket went to the SMS provider for her old
    number, and its answer was lost. She proves her new number: the retry
    texts it under a key of its own (under the first try's, the provider
    would answer from that try and text nothing)."""
    ticket = str(uuid.uuid4())
    provider = KeyedProvider()
    api = HttpSmsChannel(url=provider.url, transport=provider.transport())
    # Her texts go to this provider rather than the world's SMS endpoint.
    world.delivery._channels["SMS"] = api
    try:
        await world.plan([opened(world.tickets.sealer, ticket, LIN)])
        provider.lose_next_answer = True
        await world.drain()
        [(job,)] = world.rows(
            "SELECT id::text FROM notification_jobs"
            f" WHERE case_name = 'tickets/{ticket}' AND channel = 'SMS'"
        )
        assert provider.sent == [(OLD, job)]
        assert texts(world, ticket) == [("ticket.received", "pending", OLD)]

        await world.plan([verified(None, LIN.user_id)])  # published before sealing
        world.clock.advance(900)
        await world.drain()
        assert provider.sent == [(OLD, job), (NEW, f"{job}.1")]
        assert texts(world, ticket) == [("ticket.received", "sent", NEW)]
    finally:
        await api.aclose()


async def test_changes_heard_together_are_followed_in_the_order_they_were_verified(
    world: World,
) -> None:
    """Lin moved to a new number and then to another; the two changes come
    from different partitions, the later first: her ticket ends on the last."""
    ticket = str(uuid.uuid4())
    await world.plan([opened(world.tickets.sealer, ticket, LIN)])
    last = "+8613600136000"
    sealer = world.tickets.sealer
    first = verified(sealer, LIN.user_id, OLD, NEW)
    then = verified(sealer, LIN.user_id, NEW, last, at=NOON_IN_SHANGHAI + timedelta(minutes=30))
    await world.plan([then, first])
    assert phones(world, ticket) == [last]
    assert texts(world, ticket) == [("ticket.received", "pending", last)]


async def test_a_user_with_no_cases_changes_no_case_and_her_change_is_kept_a_while(
    world: World,
) -> None:
    """A change of a user with no cases changes nobody's row; it is kept, so
    that an event heard late naming her old number gives the new one, for the
    help centre's period of a change's numbers, then forgotten."""
    await world.both_told()
    before = world.rows("SELECT t::text FROM case_parties AS t ORDER BY 1")
    await world.plan([verified(world.tickets.sealer, "users/nobody", OLD, NEW)])
    assert world.rows("SELECT t::text FROM case_parties AS t ORDER BY 1") == before
    kept = "SELECT person, old_phone, new_phone FROM phone_changes_heard"
    assert world.rows(kept) == [("users/nobody", OLD, NEW)]
    world.clock.time = NOON_IN_SHANGHAI + retention.period("phone_changes")
    await world.delivery.forget_old_changes()
    assert world.rows(kept) == [("users/nobody", OLD, NEW)]  # not older than the period yet
    world.clock.time += timedelta(seconds=1)
    await world.delivery.forget_old_changes()
    assert world.rows(kept) == []
    assert NEW not in world.dump()


async def test_a_number_changed_back_is_hers_again_whatever_order_the_changes_come_in(
    world: World,
) -> None:
    """Lin moved from her old number to a new one and back; the changes are
    heard in separate batches, the later first. Her ticket heard after both
    keeps the old number, hers again; the number she left is not given."""
    sealer = world.tickets.sealer
    back = verified(sealer, LIN.user_id, NEW, OLD, at=NOON_IN_SHANGHAI + timedelta(minutes=30))
    await world.plan([back])
    await world.plan([verified(sealer, LIN.user_id, OLD, NEW)])
    ticket, then = str(uuid.uuid4()), str(uuid.uuid4())
    await world.plan([opened(sealer, ticket, LIN)])
    assert phones(world, ticket) == [OLD]
    await world.plan([opened(sealer, then, dataclasses.replace(LIN, phone=NEW))])
    assert phones(world, then) == [OLD]


async def test_a_change_made_before_her_erasure_gives_no_number_to_what_she_opens_since(
    world: World,
) -> None:
    """Lin changed her number, then was erased; she comes back and opens a
    ticket with her old number. The change, heard late, is of the data her
    erasure forgot: her new ticket keeps the number she gave since, and
    nothing of hers names the erased number. A change she makes after her
    erasure is followed as anyone's."""
    old_ticket = str(uuid.uuid4())
    await world.plan([opened(world.tickets.sealer, old_ticket, LIN)])
    early = verified(world.tickets.sealer, LIN.user_id, at=NOON_IN_SHANGHAI - timedelta(minutes=1))
    await world.tickets.erase(LIN.user_id)
    await world.plan([erasure(LIN.user_id)])
    later = NOON_IN_SHANGHAI + timedelta(minutes=5)
    new_ticket = str(uuid.uuid4())
    opened_since = dataclasses.replace(opened(world.tickets.sealer, new_ticket, LIN), time=later)
    await world.plan([opened_since])

    await world.plan([early])
    assert phones(world, old_ticket) == [""]
    assert phones(world, new_ticket) == [OLD]
    assert NEW not in world.dump()

    await world.plan([verified(world.tickets.sealer, LIN.user_id, at=later + timedelta(minutes=1))])
    assert phones(world, old_ticket) == [""]
    assert phones(world, new_ticket) == [NEW]


async def test_her_erasure_forgets_the_numbers_of_her_changes(world: World) -> None:
    ticket = str(uuid.uuid4())
    await world.plan([opened(world.tickets.sealer, ticket, LIN)])
    await world.plan([verified(world.tickets.sealer, LIN.user_id)])
    assert NEW in world.dump()
    await world.tickets.erase(LIN.user_id)
    await world.plan([erasure(LIN.user_id)])
    assert world.rows("SELECT count(*) FROM phone_changes_heard") == [(0,)]
    assert NEW not in world.dump()


async def test_a_change_whose_users_key_is_gone_gives_her_cases_no_number(
    world: World,
) -> None:
    """Lin's change was published; then she was erased, and the notifier has
    dropped her keys but not yet heard the erasure itself. The change's
    numbers read as erased: nothing of hers is given a number from it."""
    ticket = str(uuid.uuid4())
    sealer = world.tickets.sealer
    await world.plan([opened(sealer, ticket, LIN)])
    change = verified(sealer, LIN.user_id)
    await world.tickets.erase(LIN.user_id)
    world.personal.forget(LIN.user_id)
    assert await world.plan([change]) == {}
    assert phones(world, ticket) == [OLD]
    assert NEW not in world.dump()


async def test_a_code_is_texted_to_its_sealed_number_and_not_once_her_key_is_gone(
    world: World,
) -> None:
    """The help centre seals the number a code goes to: the notifier texts
    the number itself; a code whose user's key is gone (erased, the erasure
    not yet heard) is texted to nobody."""
    sealer = world.tickets.sealer
    await world.plan([code_to(LIN, sealer.seal(NEW, LIN.user_id))])
    assert code_recipients(world) == [("pending", NEW)]
    late = code_to(LIN, sealer.seal(OLD, LIN.user_id), version=2)
    await world.tickets.erase(LIN.user_id)
    world.personal.forget(LIN.user_id)
    await world.plan([late])
    assert code_recipients(world) == [("pending", NEW)]
    assert OLD not in world.dump()


# Lin moves abroad: London's number, on GMT in early March. Her suspension
# (`measure`) ends at noon in Shanghai, 04:00 in London.
LONDON = "+447911123456"
ENDS_IN_SHANGHAI, ENDS_IN_LONDON = "3月9日12:00", "3月9日04:00"


def suspension_texts(world: World, standing: str) -> list[tuple[str, str, str, str]]:
    """The texts about Lin's standing: status, recipient, what they say and
    the time her provider's template is filled with, in planned order."""
    return [
        (status, recipient, body, params.get("due", ""))
        for status, recipient, body, params in world.rows(
            "SELECT status, recipient, body, params FROM notification_jobs"
            f" WHERE case_name = 'reporters/{standing}' ORDER BY seq"
        )
    ]


async def test_a_suspension_heard_after_she_moved_abroad_tells_her_london_time(
    world: World,
) -> None:
    """Lin proved a London number; her suspension, heard since, carries the
    contact of the report it counted, her Shanghai number: it is texted to
    London, saying when it ends there (her texts name no zone: times in
    them are her number's)."""
    standing = str(uuid.uuid4())
    await world.plan([measure(standing, 1, OLD)])
    assert await world.drain() == 1
    await world.plan([verified(world.tickets.sealer, LIN.user_id, OLD, LONDON)])
    await world.plan([measure(standing, 2, OLD)])

    [_, (status, recipient, body, due)] = suspension_texts(world, standing)
    assert (status, recipient, due) == ("pending", LONDON, ENDS_IN_LONDON)
    assert ENDS_IN_LONDON in body and ENDS_IN_SHANGHAI not in body
    await world.drain()
    [text] = world.sms.to(LONDON)
    assert ENDS_IN_LONDON in text["text"] and text["params"]["due"] == ENDS_IN_LONDON
    # What the job keeps only to be written again is no provider's.
    assert not {"due_at", "email_chosen"} & text["params"].keys()


async def test_a_text_waiting_for_morning_when_she_moves_abroad_tells_and_waits_for_london(
    world: World,
) -> None:
    """Lin is suspended late at night in Shanghai: the text waits for the
    morning. She proves her London number meanwhile: the text says when the
    suspension ends in London, and waits for London's morning, not
    Shanghai's (then still night in London)."""
    world.delivery._cfg = world.delivery._cfg.model_copy(update={"sms_quiet_hours": "22:00-08:00"})
    standing = str(uuid.uuid4())
    await world.plan([measure(standing, 1, OLD)])
    assert await world.drain() == 1
    world.clock.time = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    await world.plan([measure(standing, 2, OLD)])
    assert await world.drain() == 1  # held back for the night
    assert suspension_texts(world, standing)[1][:2] == ("pending", OLD)
    assert ENDS_IN_SHANGHAI in suspension_texts(world, standing)[1][2]

    change = verified(world.tickets.sealer, LIN.user_id, OLD, LONDON, at=world.clock.now())
    await world.plan([change])
    [_, (status, recipient, body, due)] = suspension_texts(world, standing)
    assert (status, recipient, due) == ("pending", LONDON, ENDS_IN_LONDON)
    assert ENDS_IN_LONDON in body and ENDS_IN_SHANGHAI not in body

    world.clock.time = datetime(2026, 3, 3, 0, 0, tzinfo=UTC) + QUIET_RELEASE  # Shanghai's 08:10
    await world.drain()
    assert world.sms.to(LONDON) == []  # midnight in London
    world.clock.time = datetime(2026, 3, 3, 8, 0, tzinfo=UTC) + QUIET_RELEASE  # London's 08:10
    await world.drain()
    [text] = world.sms.to(LONDON)
    assert ENDS_IN_LONDON in text["text"] and text["params"]["due"] == ENDS_IN_LONDON
    assert texts_to(world, OLD) == 1  # the warning, before she moved


def filed_for_review(appeal: str, phone: str) -> CloudEvent:
    """Lin files a takedown notice, to hear of it by SMS at `phone`; its
    review is due by noon in Shanghai a week on (04:00 in London)."""
    header = aev.AppealEventHeader(state="SUBMITTED", next_step="REVIEW")
    header.next_step_due.FromDatetime(NOON_IN_SHANGHAI + timedelta(days=7))
    reach = ev.ContactPreferences(phone=phone, channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN")
    message = aev.AppealFiled(
        header=header,
        kind="TAKEDOWN_NOTICE",
        jurisdiction="cn",
        filer=aev.AppealParty(user_id=LIN.user_id, legal_name="林工作室", contact=reach),
        work_title="《江南春》舞蹈原创视频",
    )
    return appeal_event(appeal, 1, message, NOON_IN_SHANGHAI)


async def test_a_text_her_corrected_number_abroad_gets_tells_the_time_there(
    world: World,
) -> None:
    """Lin corrects the number of her copyright case to her London one
    before its receipt was texted: the receipt goes to London, saying by
    when the review is expected there."""
    appeal = str(uuid.uuid4())
    await world.plan([filed_for_review(appeal, OLD)])
    receipt = (
        "SELECT recipient, body, params FROM notification_jobs"
        f" WHERE case_name = 'appeals/{appeal}'"
    )
    [(_, body, _)] = world.rows(receipt)
    assert ENDS_IN_SHANGHAI in body
    london = ev.ContactPreferences(phone=LONDON, channels=[ev.CONTACT_CHANNEL_SMS], locale="zh-CN")
    await world.plan([details_changed(appeal, 2, london, at=NOON_IN_SHANGHAI)])

    [(recipient, body, params)] = world.rows(receipt)
    assert (recipient, params["due"]) == (LONDON, ENDS_IN_LONDON)
    assert ENDS_IN_LONDON in body and ENDS_IN_SHANGHAI not in body
    await world.drain()
    [text] = world.sms.to(LONDON)
    assert ENDS_IN_LONDON in text["text"] and text["params"]["due"] == ENDS_IN_LONDON

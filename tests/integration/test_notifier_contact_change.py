"""A party named anew with other contacts takes what their case still has to
tell them along, on a real PostgreSQL database with the clock in the test's
hands: a filer who gave up SMS gets no text held back for the night, a
corrected address gets the message waiting on the mistyped one (even when
a provider may have taken its first try there), and an uploader a later
decision replaces gets nothing more of the case."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.consuming import Place
from casemesh.platform.envelope import CloudEvent
from casemesh_notifier.channels import Channel, DeliveryError, HttpEmailChannel, Outgoing
from casemesh_notifier.delivery import QUIET_RELEASE, Delivery, replay_parked
from casemesh_notifier.planner import Planner
from tests.integration.test_delivery import Notifier, delivered_events
from tests.integration.test_delivery import notifier as notifier_fixture
from tests.support import NOON_IN_SHANGHAI, case_event, memory_sealer

# The notifier of the delivery tests: its planner, sender, providers and clock.
notifier = notifier_fixture

NIGHT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
LATER_THAT_NIGHT = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30
MORNING = datetime(2026, 3, 3, 0, 0, tzinfo=UTC) + QUIET_RELEASE  # 08:10, the release's end

LIN = "users/lin"
LIN_EMAIL, LIN_TYPO, LIN_PHONE = "lin@example.com", "lin@exmaple.com", "+8613800138000"
WU, WU_PHONE = "users/wu", "+8613900139000"
ZHAO, ZHAO_PHONE = "users/zhao", "+8613700137000"

EMAIL, SMS = ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS


def contact(
    *channels: ev.ContactChannel.ValueType, email: str = LIN_EMAIL, phone: str = LIN_PHONE
) -> ev.ContactPreferences:
    return ev.ContactPreferences(email=email, phone=phone, channels=channels, locale="zh-CN")


def appeal_event(appeal: str, version: int, message: Any, at: datetime) -> CloudEvent:
    """An event of the copyright case `appeal` as the appeals relay publishes it."""
    message.header.appeal_id = appeal
    message.header.version = version
    return case_event("appeals", f"appeals/{appeal}", version, message, at)


def filed(appeal: str, reach: ev.ContactPreferences, at: datetime = NIGHT) -> CloudEvent:
    """Lin files a takedown notice, asking to hear of it as `reach` says."""
    message = aev.AppealFiled(
        header=aev.AppealEventHeader(state="SUBMITTED", next_step="REVIEW"),
        kind="TAKEDOWN_NOTICE",
        jurisdiction="cn",
        filer=aev.AppealParty(user_id=LIN, legal_name="林工作室", contact=reach),
        work_title="《江南春》舞蹈原创视频",
    )
    return appeal_event(appeal, 1, message, at)


def details_changed(
    appeal: str, version: int, reach: ev.ContactPreferences, at: datetime = LATER_THAT_NIGHT
) -> CloudEvent:
    """Lin changes her contact details with AddAppealInfo."""
    message = aev.AppealInfoAdded(
        header=aev.AppealEventHeader(state="SUBMITTED", next_step="REVIEW"),
        filer=aev.AppealParty(user_id=LIN, legal_name="林工作室", contact=reach),
    )
    return appeal_event(appeal, version, message, at)


def decided(
    appeal: str, version: int, uploader: aev.AppealParty | None = None, at: datetime = NIGHT
) -> CloudEvent:
    """The notice decided: upheld against `uploader`'s video, else rejected."""
    message = aev.AppealDecided(
        header=aev.AppealEventHeader(state="UPHELD" if uploader else "REJECTED"),
        outcome="UPHOLD" if uploader else "REJECT",
        reasons=aev.StatementOfReasons(ground="《信息网络传播权保护条例》第十四条"),
        affected_uploader=uploader,
    )
    return appeal_event(appeal, version, message, at)


def uploader(user_id: str, phone: str) -> aev.AppealParty:
    return aev.AppealParty(
        user_id=user_id,
        legal_name="上传者",
        contact=ev.ContactPreferences(
            email=f"{user_id.rpartition('/')[2]}@example.com",
            phone=phone,
            channels=[SMS],
            locale="zh-CN",
        ),
    )


def jobs(notifier: Notifier, case: str, party: str = "filer") -> list[tuple[Any, ...]]:
    """The party's jobs about the case: template, channel, status, recipient,
    user id and whether any text is kept, in planned order."""
    return notifier.rows(
        "SELECT template, channel, status, recipient, user_id,"
        " (subject || body || html || params::text) NOT IN ('', '{}')"
        f" FROM notification_jobs WHERE case_name = '{case}' AND party = '{party}' ORDER BY seq"
    )


class KeyedProvider:
    """A provider's HTTP API (e-mail or SMS) that honours the Idempotency-Key:
    a request under a key it took before is answered as that one was, and
    nothing more is sent. Its next answer can be lost (`lose_next_answer`):
    the message is taken and sent, and the sender hears nothing back."""

    url = "https://provider.example/v1/messages"

    def __init__(self) -> None:
        # What went out: (recipient, idempotency key).
        self.sent: list[tuple[str, str]] = []
        self.lose_next_answer = False
        self._answers: dict[str, dict[str, str]] = {}

    def _answer(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        if key not in self._answers:
            self.sent.append((json.loads(request.content)["to"], key))
            self._answers[key] = {"id": f"m{len(self.sent)}"}
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json=self._answers[key])

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._answer)


@dataclass
class HeardMidSend:
    """A channel (`inner`) that hears something (`during`: a change planned)
    while its first message is in the provider's hands: the sender has
    begun it, and waits for the answer, which `inner` then gives."""

    inner: Channel
    during: Callable[[], Awaitable[object]]
    # The message in the provider's hands meanwhile.
    in_hand: Outgoing | None = None

    async def send(self, message: Outgoing) -> str:
        if self.in_hand is None:
            self.in_hand = message
            await self.during()
        return await self.inner.send(message)


async def consume_together(notifier: Notifier, events: list[CloudEvent]) -> None:
    """The events planned as one batch (a consumer that received them together)."""
    placed = [(event, Place("casemesh.appeals.v1", 0, n, 0)) for n, event in enumerate(events)]
    async with notifier.pool.connection() as conn, conn.transaction():
        await Planner(memory_sealer()).plan_batch(conn, placed, notifier.clock.now())


async def test_a_text_held_for_the_night_is_not_sent_once_the_filer_chose_e_mail_only(
    notifier: Notifier,
) -> None:
    """At 23:00 Lin files with SMS updates: the receipt waits for the
    morning. At 23:30 she switches to e-mail only. At 08:10 no text goes;
    the case's next step reaches her by e-mail."""
    appeal = str(uuid.uuid4())
    case = f"appeals/{appeal}"
    notifier.clock.time = NIGHT
    await notifier.consume(filed(appeal, contact(SMS)))
    assert await notifier.drain() == 1  # held back for the night
    assert jobs(notifier, case) == [("appeal.received", "SMS", "pending", LIN_PHONE, LIN, True)]

    notifier.clock.time = LATER_THAT_NIGHT
    change = details_changed(appeal, 2, contact(EMAIL))
    assert await notifier.consume(change) == []
    assert await notifier.consume(change, offset=1) == []  # the relay published it again

    notifier.clock.time = MORNING
    assert await notifier.drain() == 0
    assert notifier.sms.delivered == []
    # The text stays as the record that one was planned, its text erased.
    assert jobs(notifier, case) == [("appeal.received", "SMS", "cancelled", "", LIN, False)]

    await notifier.consume(decided(appeal, 3))
    assert await notifier.drain() == 1
    assert [(m.recipient, m.template) for m in notifier.email.delivered] == [
        (LIN_EMAIL, "appeal.rejected")
    ]
    assert notifier.sms.delivered == []


@pytest.mark.parametrize("answer", ["delivered", "refused for now"])
async def test_texts_a_sender_holds_when_she_chooses_e_mail_only_go_no_further(
    notifier: Notifier, answer: str
) -> None:
    """At noon Lin files two takedown notices with SMS updates, and a sender
    claims both receipts. While the SMS provider has the first, she switches
    both cases to e-mail only: the second text is not sent. The first is
    recorded as it went: delivered to her phone, or, refused, not tried
    again."""
    cases = [str(uuid.uuid4()), str(uuid.uuid4())]
    notifier.clock.time = NOON_IN_SHANGHAI
    await consume_together(notifier, [filed(c, contact(SMS), NOON_IN_SHANGHAI) for c in cases])

    async def e_mail_only() -> None:
        if answer != "delivered":
            notifier.sms.failures = [DeliveryError("HTTP 503", permanent=False)]
        changes = [details_changed(c, 2, contact(EMAIL), NOON_IN_SHANGHAI) for c in cases]
        await consume_together(notifier, changes)

    provider = HeardMidSend(notifier.sms, e_mail_only)
    notifier.delivery._channels["SMS"] = provider
    assert await notifier.delivery.deliver_batch() == 2
    assert provider.in_hand is not None
    first = provider.in_hand.job_id
    texts = "SELECT id::text, status, recipient, last_error FROM notification_jobs"
    rows = {row[0]: row[1:] for row in notifier.rows(texts)}
    (second,) = set(rows) - {first}
    given_up = "their contact no longer takes it"
    assert rows[second] == ("cancelled", "", given_up)
    if answer == "delivered":
        assert [m.job_id for m in notifier.sms.delivered] == [first]
        assert rows[first] == ("sent", LIN_PHONE, "")
    else:
        assert notifier.sms.delivered == []
        assert rows[first] == ("cancelled", "", f"HTTP 503; {given_up}")
    notifier.clock.advance(3600)
    assert await notifier.drain() == 0
    assert len(notifier.sms.delivered) == (1 if answer == "delivered" else 0)


@pytest.mark.parametrize("waiting", ["retrying", "parked"])
async def test_a_message_waiting_on_a_mistyped_address_goes_to_the_corrected_one_only(
    notifier: Notifier, waiting: str
) -> None:
    """Lin mistyped her e-mail address: the receipt's first send failed
    (retrying later, or parked after a permanent refusal). She corrects the
    address: the retry, or the operator's replay, reaches the corrected one."""
    appeal = str(uuid.uuid4())
    case = f"appeals/{appeal}"
    notifier.clock.time = NIGHT
    refusal = (
        DeliveryError("SMTP 451 try again later", permanent=False)
        if waiting == "retrying"
        else DeliveryError("SMTP 550 no such domain", permanent=True)
    )
    notifier.email.failures = [refusal]
    await notifier.consume(filed(appeal, contact(EMAIL, email=LIN_TYPO)))
    assert await notifier.drain() == 1
    status = "pending" if waiting == "retrying" else "parked"
    assert jobs(notifier, case) == [("appeal.received", "EMAIL", status, LIN_TYPO, LIN, True)]

    await notifier.consume(details_changed(appeal, 2, contact(EMAIL, email=LIN_EMAIL)))
    assert jobs(notifier, case) == [("appeal.received", "EMAIL", status, LIN_EMAIL, LIN, True)]

    if waiting == "parked":
        assert await replay_parked(notifier.dsn, None, notifier.clock.now()) == 1
    notifier.clock.advance(600)
    assert await notifier.drain() == 1
    assert [(m.recipient, m.template) for m in notifier.email.delivered] == [
        (LIN_EMAIL, "appeal.received")
    ]
    assert jobs(notifier, case) == [("appeal.received", "EMAIL", "sent", LIN_EMAIL, LIN, True)]


async def test_a_first_try_lost_on_a_mistyped_address_still_reaches_the_corrected_one(
    notifier: Notifier,
) -> None:
    """Lin's receipt goes through an e-mail API to her mistyped address: the
    provider takes it, and its answer is lost. She corrects the address: the
    retry goes there under a key of its own (under the first try's, the
    provider would answer from that try and send nothing), and is no repeat
    of anything she received."""
    appeal = str(uuid.uuid4())
    case = f"appeals/{appeal}"
    provider = KeyedProvider()
    api = HttpEmailChannel(
        url=provider.url, sender="support@casemesh.local", transport=provider.transport()
    )
    sender = Delivery(
        pool=notifier.pool,
        conninfo=notifier.dsn,
        channels={"EMAIL": api, "SMS": notifier.sms},
        cfg=notifier.delivery._cfg,
        clock=notifier.clock,
    )
    try:
        notifier.clock.time = NIGHT
        provider.lose_next_answer = True
        (job,) = await notifier.consume(filed(appeal, contact(EMAIL, email=LIN_TYPO)))
        assert await sender.deliver_one()
        assert provider.sent == [(LIN_TYPO, str(job))]
        assert jobs(notifier, case) == [
            ("appeal.received", "EMAIL", "pending", LIN_TYPO, LIN, True)
        ]

        await notifier.consume(details_changed(appeal, 2, contact(EMAIL, email=LIN_EMAIL)))
        notifier.clock.advance(600)
        assert await sender.deliver_one()
        assert provider.sent == [(LIN_TYPO, str(job)), (LIN_EMAIL, f"{job}.1")]
        assert jobs(notifier, case) == [("appeal.received", "EMAIL", "sent", LIN_EMAIL, LIN, True)]
        assert [e.possible_repeat for e in delivered_events(notifier, job)] == [False]
    finally:
        await api.aclose()


@pytest.mark.parametrize("phone", [ZHAO_PHONE, WU_PHONE], ids=["his own", "the family phone"])
async def test_an_uploader_a_later_decision_replaces_is_sent_nothing_of_the_case(
    notifier: Notifier, phone: str
) -> None:
    """At 23:00 Lin's notice is upheld against Wu's video: his text waits for
    the morning. A corrected decision names Zhao instead, whose own text
    goes to his number, even one Wu's text would also have gone to (a
    family phone): in the morning only Zhao's is sent."""
    appeal = str(uuid.uuid4())
    case = f"appeals/{appeal}"
    notifier.clock.time = NIGHT
    await notifier.consume(filed(appeal, contact(EMAIL)))
    await notifier.consume(decided(appeal, 2, uploader(WU, WU_PHONE)))
    await notifier.drain()
    assert jobs(notifier, case, "uploader") == [
        ("appeal.content_removed", "SMS", "pending", WU_PHONE, WU, True)
    ]

    notifier.clock.time = LATER_THAT_NIGHT
    await notifier.consume(decided(appeal, 3, uploader(ZHAO, phone), at=LATER_THAT_NIGHT))
    notifier.clock.time = MORNING
    await notifier.drain()
    assert jobs(notifier, case, "uploader") == [
        ("appeal.content_removed", "SMS", "cancelled", "", WU, False),
        ("appeal.content_removed", "SMS", "sent", phone, ZHAO, True),
    ]
    (sent,) = notifier.sms.delivered
    zhaos = notifier.rows(
        f"SELECT id::text FROM notification_jobs WHERE case_name = '{case}' AND user_id = '{ZHAO}'"
    )
    assert (sent.recipient, [(sent.job_id,)]) == (phone, zhaos)
    # Lin heard of both decisions by e-mail.
    assert [m.template for m in notifier.email.delivered] == [
        "appeal.received",
        "appeal.upheld",
        "appeal.upheld",
    ]


async def test_a_change_heard_with_the_filing_leaves_only_what_she_asked_for(
    notifier: Notifier,
) -> None:
    """The filing (e-mail to a mistyped address and SMS) and the change (the
    address corrected, e-mail only) reach the notifier together: its one
    receipt goes by e-mail to the corrected address."""
    appeal = str(uuid.uuid4())
    notifier.clock.time = NIGHT
    await consume_together(
        notifier,
        [
            filed(appeal, contact(EMAIL, SMS, email=LIN_TYPO)),
            details_changed(appeal, 2, contact(EMAIL)),
        ],
    )
    assert jobs(notifier, f"appeals/{appeal}") == [
        ("appeal.received", "EMAIL", "pending", LIN_EMAIL, LIN, True)
    ]
    notifier.clock.time = MORNING
    assert await notifier.drain() == 1
    assert [m.recipient for m in notifier.email.delivered] == [LIN_EMAIL]
    assert notifier.sms.delivered == []


async def test_an_older_change_heard_late_turns_nothing_back(notifier: Notifier) -> None:
    """Lin's change to e-mail only (version 3) is heard before an earlier one
    keeping SMS (version 2, published late): her case keeps what she chose
    last, and so does what it still has to tell her."""
    appeal = str(uuid.uuid4())
    case = f"appeals/{appeal}"
    notifier.clock.time = NIGHT
    await notifier.consume(filed(appeal, contact(SMS)))
    await notifier.drain()
    await notifier.consume(details_changed(appeal, 3, contact(EMAIL)))
    await notifier.consume(details_changed(appeal, 2, contact(EMAIL, SMS)))
    assert notifier.rows(f"SELECT channels FROM case_parties WHERE case_name = '{case}'") == [
        (["EMAIL"],)
    ]
    notifier.clock.time = MORNING
    await notifier.drain()
    assert notifier.sms.delivered == []
    assert jobs(notifier, case) == [("appeal.received", "SMS", "cancelled", "", LIN, False)]


def measure(standing: str, version: int, reach: ev.ContactPreferences) -> CloudEvent:
    """Lin's reporting standing warned (1) or suspended (2), told at `reach`
    (the contact given with the report just counted)."""
    header = rev.ReportEventHeader(aggregate_id=standing, version=version)
    message: rev.ReporterWarned | rev.ReporterSuspended
    if version == 1:
        header.state = "WARNED"
        message = rev.ReporterWarned(header=header, reporter=LIN, contact=reach)
    else:
        header.state = "SUSPENDED"
        message = rev.ReporterSuspended(header=header, reporter=LIN, contact=reach)
        message.until.FromDatetime(MORNING)
    return case_event("reports", f"reporters/{standing}", version, message, NIGHT)


async def test_a_reporter_measure_given_with_a_later_contact_leaves_the_earlier_text_to_go(
    notifier: Notifier,
) -> None:
    """Lin's warning is texted at night and waits; her suspension comes with
    the contact of a later report, e-mail only. That report's contact says
    nothing of her phone (each report gives its own): the warning, which
    must reach her (DSA Art. 23(1)), is texted in the morning, and the
    suspension is e-mailed."""
    standing = str(uuid.uuid4())
    notifier.clock.time = NIGHT
    await notifier.consume(measure(standing, 1, contact(SMS)))
    await notifier.drain()
    await notifier.consume(measure(standing, 2, contact(EMAIL)))
    notifier.clock.time = MORNING
    await notifier.drain()
    assert [m.recipient for m in notifier.sms.delivered] == [LIN_PHONE]
    assert [m.recipient for m in notifier.email.delivered] == [LIN_EMAIL]
    assert [
        (channel, status)
        for _, channel, status, *_ in jobs(notifier, f"reporters/{standing}", "reporter")
    ] == [("SMS", "sent"), ("EMAIL", "sent")]

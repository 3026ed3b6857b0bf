"""A copyright case's personal data is sealed where it is kept for ever (the
appeals event store, the casemesh.appeals.v1 topic) and clear where people
read it (the case through the gateway, the e-mail and SMS its parties get)."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import psycopg

from casemesh import topics
from casemesh.platform.personal.sealing import CASE_PREFIX
from casemesh.v1 import appeals_pb2 as apb
from tests.conftest import Stack
from tests.e2e.test_appeals import Person, new_people, notice, upheld_and_countered
from tests.e2e.test_personal_data import records_of
from tests.support import plain_text, wait_until


def test_a_copyright_cases_personal_data_is_sealed_at_rest_and_on_the_topic_yet_read_in_clear(
    stack: Stack,
) -> None:
    claimant, _, _, email, phone, _ = new_people(stack)
    mark = uuid.uuid4().hex[:10]
    name = f"Studio {mark}"
    title = f"Spring dance {mark}"
    appeal = notice(claimant, email, phone)
    appeal.filer.legal_name = name
    appeal.notice.work.title = title
    case = claimant.FileAppeal(apb.FileAppealRequest(appeal=appeal, request_id=uuid.uuid4().hex))

    # The filer hears back: the notifier revealed the address, number and title.
    mail = wait_until(lambda: stack.mail.to(email))[0]
    assert title in mail["Subject"] and email in mail["To"]
    assert wait_until(lambda: stack.sms.to(phone))
    # The filer reads the case in the clear, alone and in their list.
    got = claimant.GetAppeal(apb.GetAppealRequest(name=case.name))
    assert (got.filer.legal_name, got.filer.contact.email, got.filer.contact.phone) == (
        name,
        email,
        phone,
    )
    assert got.notice.work.title == title
    assert wait_until(lambda: listed_titles(claimant, case.name)) == [title]

    # On the topic and in the event store: tokens, never the text; the URL
    # of the item concerned stays clear.
    records, stored = kept(stack, case.name)
    assert sealed(records) == sealed(stored) == [True]
    for clear in (mark, email, phone):
        assert not [r for r in records + stored if clear.encode() in r]
    assert b"https://video.example/v/7731" in records[0] + stored[0]


def test_the_uploaders_counter_notice_is_sealed_yet_read_and_mailed_in_clear(
    stack: Stack,
) -> None:
    countered, claimant, _, email, _, uploader_email = upheld_and_countered(stack)
    reason = "I filmed this dance myself in 2024."
    assert (countered.uploader.legal_name, countered.counter_notice.reason) == ("Uma Lee", reason)

    # The uploader was told of the removal at the address the agent named;
    # the claimant gets the counter-notice with the uploader's name and contact.
    removed = wait_until(lambda: mailed(stack, uploader_email, "appeal.content_removed"))
    assert uploader_email in removed["To"]
    copy = plain_text(wait_until(lambda: mailed(stack, email, "appeal.counter_notice_received")))
    assert reason in copy and "Uma Lee" in copy and uploader_email in copy
    got = claimant.GetAppeal(apb.GetAppealRequest(name=countered.name))
    assert (got.uploader.legal_name, got.uploader.contact.email) == ("Uma Lee", uploader_email)
    assert got.counter_notice.reason == reason

    records, stored = kept(stack, countered.name)
    # Filed, Assigned (nothing personal), Decided (the uploader named), the counter-notice.
    assert sealed(records) == sealed(stored) == [True, False, True, True]
    for clear in ("Uma Lee", uploader_email, reason, email):
        assert not [r for r in records + stored if clear.encode() in r]


def mailed(stack: Stack, address: str, template: str) -> EmailMessage | None:
    """The e-mail of `template` sent to `address`, once it arrived."""
    sent = [m for m in stack.mail.to(address) if m["X-Casemesh-Template"] == template]
    return sent[0] if sent else None


def kept(stack: Stack, name: str) -> tuple[list[bytes], list[bytes]]:
    """The case's records on casemesh.appeals.v1 (once all its stored events
    are there) and its rows in the appeals event store, in order."""
    appeal_id = name.split("/")[1]
    with psycopg.connect(stack.appeals_dsn) as conn:
        stored = [
            bytes(row[0])
            for row in conn.execute(
                "SELECT state FROM appeals_events WHERE originator_id = %s"
                " ORDER BY originator_version",
                (appeal_id,),
            )
        ]
    bootstrap = stack.infra.kafka.bootstrap
    records = wait_until(
        lambda: (
            (found := asyncio.run(records_of(bootstrap, appeal_id, topics.APPEALS)))
            and len(found) >= len(stored)
            and found
        ),
        timeout=60,
    )
    return records, stored


def sealed(kept: list[bytes]) -> list[bool]:
    """Which of the stored events or records hold a token (a case's: under
    its person's key and the case's own)."""
    return [CASE_PREFIX.encode() in k for k in kept]


def listed_titles(person: Person, name: str) -> list[str]:
    """The work titles the case shows in its filer's list (once indexed)."""
    appeals = person.ListAppeals(apb.ListAppealsRequest()).appeals
    return [a.notice.work.title for a in appeals if a.name == name]

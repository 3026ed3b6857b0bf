"""What the notifier knows of a case's parties as a batch of events describes
them (`CaseParties`): planned in memory, written back once."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.personal import DataKeys, MasterKeys, MemoryKeyStore, Sealer
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh_notifier.cases import CaseParties, Planning, plan_appeal
from casemesh_notifier.store import Party
from tests.support import case_event

CASE = "appeals/a1"


def contact(email: str, *channels: ev.ContactChannel.ValueType) -> ev.ContactPreferences:
    return ev.ContactPreferences(email=email, channels=channels, locale="zh-CN")


FILER = Party(
    "filer",
    "zh-CN",
    "lin@example.com",
    "",
    ["EMAIL"],
    "《山歌》",
    "FILED",
    user_id="u-1",
    version=1,
)


def filer(**given: Any) -> Party:
    return dataclasses.replace(FILER, **given)


def test_a_party_named_again_is_kept_unless_their_details_are_replaced() -> None:
    book = CaseParties({CASE: {"filer": filer()}})

    book.name(CASE, "filer", "u-2", contact("other@example.com"), "另一个", "X", 9)
    assert book.of(CASE)["filer"] == filer()
    assert book.changed() == []

    new = contact("new@example.com", ev.CONTACT_CHANNEL_EMAIL, ev.CONTACT_CHANNEL_SMS)
    book.name(CASE, "filer", "u-1", new, "", "DECIDED", 5, replace=True)
    # New contact details; the case's subject and status stay as they were.
    assert book.of(CASE)["filer"] == filer(email="new@example.com", channels=["EMAIL", "SMS"])
    assert book.changed() == [(CASE, filer(email="new@example.com", channels=["EMAIL", "SMS"]))]


def test_a_new_party_takes_the_case_as_the_event_describes_it() -> None:
    book = CaseParties({})
    book.name(CASE, "uploader", "u-9", contact("up@example.com"), "《山歌》", "DECIDED", 4)
    [(name, party)] = book.changed()
    assert (name, party.role, party.email, party.status, party.version) == (
        CASE,
        "uploader",
        "up@example.com",
        "DECIDED",
        4,
    )
    assert party.channels == [] and party.locale == "zh-CN"


def test_an_older_event_does_not_turn_the_cases_status_back() -> None:
    book = CaseParties({CASE: {"filer": filer(status="DECIDED", version=5)}})
    book.status(CASE, "IN_REVIEW", 3)
    assert book.of(CASE)["filer"].status == "DECIDED"
    assert book.changed() == []
    book.status(CASE, "CLOSED", 6)
    assert book.of(CASE)["filer"] == filer(status="CLOSED", version=6)


def test_what_a_plan_read_is_not_changed_under_it() -> None:
    """A plan reads the parties as they were before its event, then records
    the event's status: the first stays what it read."""
    book = CaseParties({CASE: {"filer": filer()}})
    before = book.of(CASE)
    book.status(CASE, "DECIDED", 2)
    assert before["filer"].status == "FILED"
    assert book.of(CASE)["filer"].status == "DECIDED"


def test_an_appeal_of_a_copyright_case_is_told_without_the_case_id_as_its_subject() -> None:
    """Its subject would otherwise read `appeals/a3d9…` in the e-mail's
    subject line and text."""
    appealed = "appeals/a3d9e1f7-2c4b-4e8a-b6d0-9f1e3c5a7b21"
    filed = aev.AppealFiled(
        header=aev.AppealEventHeader(appeal_id="b1", version=1, state="SUBMITTED"),
        kind="DECISION_APPEAL",
        appeal_of=appealed,
        filer=aev.AppealParty(
            user_id="u-1", contact=contact("lin@example.com", ev.CONTACT_CHANNEL_EMAIL)
        ),
    )
    event = case_event("appeals", "appeals/b1", 1, filed, datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    at = Planning(now=event.time, zone=ZoneInfo("Asia/Shanghai"))
    jobs = plan_appeal(CaseParties({}), event, filed, at)
    assert jobs and all(appealed not in job.subject + job.body for job in jobs)


def test_a_party_and_its_jobs_keep_the_key_their_contact_was_sealed_under() -> None:
    """The filer's key, read from the event as published, whether her
    contact was sealed under her key alone or with the case's too; none for
    a contact published in clear (an erasure then goes by time alone)."""
    sealer = Sealer(DataKeys(MemoryKeyStore(), MasterKeys.parse(f"t:{new_master_key()}")))
    hers = sealer.keys.current("u-1").key_id
    for email, key in (
        (sealer.seal("lin@example.com", "u-1"), hers),
        (sealer.seal("lin@example.com", "u-1", case=uuid.uuid4()), hers),
        ("lin@example.com", None),
    ):
        published = aev.AppealFiled(
            header=aev.AppealEventHeader(appeal_id="b1", version=1, state="SUBMITTED"),
            kind="TAKEDOWN_NOTICE",
            filer=aev.AppealParty(user_id="u-1", contact=contact(email, ev.CONTACT_CHANNEL_EMAIL)),
        )
        revealed = aev.AppealFiled()
        revealed.CopyFrom(published)
        revealed.filer.contact.email = sealer.reveal(email)
        at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
        event = case_event("appeals", "appeals/b1", 1, published, at)
        book = CaseParties({})
        book.sealed = published
        jobs = plan_appeal(book, event, revealed, Planning(event.time, ZoneInfo("Asia/Shanghai")))
        [(_, party)] = book.changed()
        assert (party.email, party.key_id) == ("lin@example.com", key)
        assert [(job.recipient, job.key_id) for job in jobs] == [("lin@example.com", key)]

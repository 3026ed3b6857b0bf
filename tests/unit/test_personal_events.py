"""Personal fields of events sealed in the event store and revealed for the
application, kept as tokens for the relay, erased with their person; and
event messages revealed for a consumer (`reveal_message`). In memory only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder
from google.protobuf.wrappers_pb2 import BytesValue

from casemesh.events.v1 import tickets_pb2 as events
from casemesh.platform.eventstore import TracedApplication, TracingMapper
from casemesh.platform.personal import (
    ERASED,
    UNREADABLE,
    AsyncSealer,
    DataKeys,
    MasterKeys,
    MemoryKeyStore,
    PersonalEvent,
    PersonalFields,
    Sealer,
    SealingMapper,
    UnknownDataKey,
    is_token,
    reveal_message,
    reveal_message_async,
    reveal_messages_async,
)
from casemesh.platform.personal.keys import Lookup
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.v1 import tickets_pb2 as api

ALICE = "users/alice"
BOB = "users/bob"


def new_sealer() -> Sealer:
    return Sealer(DataKeys(MemoryKeyStore(), MasterKeys.parse(f"m1:{new_master_key()}")))


class Request(Aggregate):
    """A tiny case: opened with the requester's words and contact, then solved."""

    class Opened(Aggregate.Created):
        requester: str
        subject: str
        contact: dict[str, Any]
        evidence: list[dict[str, str]]

    @event(Opened)
    def __init__(
        self,
        requester: str,
        subject: str,
        contact: dict[str, Any],
        evidence: list[dict[str, str]],
    ) -> None:
        self.requester = requester
        self.subject = subject
        self.contact = contact
        self.evidence = evidence
        self.status = "open"

    @event("Solved")
    def solve(self, resolution: str) -> None:
        self.status = "solved"
        self.resolution = resolution


class Requests(TracedApplication):
    personal_fields = PersonalFields(
        {
            Request.Opened: PersonalEvent(
                "requester", ("subject", "contact.email", "contact.phone", "evidence[].name")
            )
        }
    )

    def open(self, requester: str, subject: str, email: str, phone: str) -> Request:
        request = Request(
            requester,
            subject,
            {"email": email, "phone": phone, "channels": ["EMAIL"]},
            [{"name": "screenshot of my bank statement.png", "sha256": "ab" * 32}],
        )
        self.save(request)
        return request


class RelayView(Requests):
    """The relay's view of the same store: reads events, reveals nothing."""

    def __init__(self, recorder: ApplicationRecorder, sealer: Sealer) -> None:
        self._shared = recorder
        super().__init__(sealer=sealer, reveal_personal=False)

    def construct_recorder(self) -> ApplicationRecorder:
        return self._shared


def stored_states(app: Requests) -> list[bytes]:
    assert isinstance(app.recorder, ApplicationRecorder)
    return [n.state for n in app.recorder.select_notifications(start=1, limit=100)]


def open_alices(app: Requests) -> Request:
    return app.open(ALICE, "Charged twice for order 4471", "alice@example.com", "+49 151 2345678")


def test_the_store_holds_tokens_where_the_personal_text_was() -> None:
    app = Requests(sealer=new_sealer())
    request = open_alices(app)
    request.solve("refunded")
    app.save(request)

    opened, solved = stored_states(app)
    for clear in [b"Charged twice", b"alice@example.com", b"+49 151", b"bank statement"]:
        assert clear not in opened
    assert opened.count(b'"pd1.') == 4
    # Who, what kind, and fields nobody declared personal stay readable.
    assert ALICE.encode() in opened and b"EMAIL" in opened and b"ab" * 32 in opened
    assert b"refunded" in solved
    assert isinstance(app.mapper, SealingMapper) and isinstance(app.mapper, TracingMapper)


def test_the_application_reads_its_aggregates_in_the_clear() -> None:
    app = Requests(sealer=new_sealer())
    request = open_alices(app)

    again: Request = app.repository.get(request.id)
    assert again.subject == "Charged twice for order 4471"
    assert again.contact == {
        "email": "alice@example.com",
        "phone": "+49 151 2345678",
        "channels": ["EMAIL"],
    }
    assert again.evidence[0]["name"] == "screenshot of my bank statement.png"
    # Saving sealed a copy: the aggregate the command holds was left alone.
    assert request.subject == "Charged twice for order 4471"
    assert request.contact["email"] == "alice@example.com"


def test_the_relay_reads_the_same_events_with_tokens_in_them() -> None:
    personal = new_sealer()
    app = Requests(sealer=personal)
    request = open_alices(app)
    relay = RelayView(app.recorder, personal)

    seen: Request = relay.repository.get(request.id)
    assert is_token(seen.subject) and is_token(seen.contact["email"])
    assert is_token(seen.evidence[0]["name"])
    assert seen.requester == ALICE and seen.status == "open"
    assert isinstance(relay.recorder, ApplicationRecorder)
    (notification,) = relay.recorder.select_notifications(start=1, limit=10)
    opened = relay.mapper.to_domain_event(notification)
    assert is_token(vars(opened)["contact"]["phone"])
    assert personal.reveal(vars(opened)["contact"]["phone"]) == "+49 151 2345678"


def test_an_erased_persons_fields_read_as_erased_and_the_rest_of_the_case_stays() -> None:
    personal = new_sealer()
    app = Requests(sealer=personal)
    alices = open_alices(app)
    alices.solve("refunded")
    app.save(alices)
    bobs = app.open(BOB, "Account locked", "bob@example.com", "")

    personal.keys.erase(ALICE)

    erased: Request = app.repository.get(alices.id)
    assert erased.subject == ERASED
    assert erased.contact == {"email": ERASED, "phone": ERASED, "channels": ["EMAIL"]}
    assert erased.evidence == [{"name": ERASED, "sha256": "ab" * 32}]
    assert (erased.id, erased.version, erased.requester) == (alices.id, 2, ALICE)
    assert (erased.status, erased.resolution) == ("solved", "refunded")
    untouched: Request = app.repository.get(bobs.id)
    assert (untouched.subject, untouched.contact["email"]) == ("Account locked", "bob@example.com")
    # An empty field had nothing to seal, and stays empty.
    assert untouched.contact["phone"] == ""


class CountingKeys(DataKeys):
    """Counts the look-ups of keys for tokens."""

    lookups = 0

    def find(self, key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Lookup]:
        self.lookups += 1
        return super().find(key_ids)


def test_an_event_is_revealed_with_one_key_look_up() -> None:
    keys = CountingKeys(MemoryKeyStore(), MasterKeys.parse(f"m1:{new_master_key()}"))
    app = Requests(sealer=Sealer(keys))
    request = open_alices(app)

    assert app.repository.get(request.id).contact["email"] == "alice@example.com"
    assert keys.lookups == 1


def test_a_stored_token_that_cannot_be_revealed_is_a_fault_not_a_blank() -> None:
    app = Requests(sealer=new_sealer())
    # Sealed with keys this application's key store never held.
    elsewhere = Requests(sealer=new_sealer())
    request = Request(ALICE, "Where is my parcel", {"email": "a@example.com"}, [])
    stored = elsewhere.mapper.to_stored_event(request.collect_events()[0])

    with pytest.raises(UnknownDataKey, match=f"of {request.id} at version 1"):
        app.mapper.to_domain_event(stored)


def test_personal_text_without_its_person_is_not_stored() -> None:
    app = Requests(sealer=new_sealer())
    with pytest.raises(ValueError, match="names no person"):
        app.open("", "Charged twice", "alice@example.com", "")
    assert stored_states(app) == []


def test_without_a_sealer_the_application_stores_as_before() -> None:
    app = Requests()
    open_alices(app)
    assert type(app.mapper) is TracingMapper
    assert b"alice@example.com" in stored_states(app)[0]


def test_save_takes_aggregates_their_events_alone_and_none_as_the_library_does() -> None:
    app = Requests()
    contact = {"email": "bob@example.com", "phone": "", "channels": ["EMAIL"]}
    first, second = (Request(BOB, subject, contact, []) for subject in ("one", "two"))
    second.solve("done")
    app.save(first, None, *second.collect_events())
    assert len(stored_states(app)) == 3
    assert app.repository.get(first.id).subject == "one"
    assert app.repository.get(second.id).resolution == "done"
    assert app.repository.get(second.id, version=1).status == "open"


# -- messages, as a consumer reveals them -------------------------------------


def ticket_created(personal: Sealer) -> events.TicketCreated:
    return events.TicketCreated(
        header=events.TicketEventHeader(ticket_id=str(uuid.uuid4()), version=1, actor=ALICE),
        requester=ALICE,
        category="account.login",
        subject=personal.seal("Charged twice", ALICE),
        description="pd1.not a token",
        contact=events.ContactPreferences(
            email=personal.seal("alice@example.com", ALICE),
            phone=personal.seal("+49 151 2345678", ALICE),
            locale="de-DE",
        ),
        evidence=[
            events.EvidenceAttachment(name=personal.seal("receipt.png", ALICE), sha256="ab" * 32),
            events.EvidenceAttachment(name=personal.seal("bob's note.txt", BOB), sha256="cd" * 32),
        ],
    )


def test_a_consumer_reads_the_message_as_it_was_written() -> None:
    keys = CountingKeys(MemoryKeyStore(), MasterKeys.parse(f"m1:{new_master_key()}"))
    personal = Sealer(keys)
    sealed = ticket_created(personal)

    revealed = reveal_message(personal, sealed)
    assert keys.lookups == 1  # every field of the message at once

    message = revealed.message
    assert message.subject == "Charged twice"
    assert (message.contact.email, message.contact.phone) == (
        "alice@example.com",
        "+49 151 2345678",
    )
    assert [e.name for e in message.evidence] == ["receipt.png", "bob's note.txt"]
    # Ordinary strings, and text that only looks like a token, are left as they are.
    assert (message.requester, message.category, message.contact.locale) == (
        ALICE,
        "account.login",
        "de-DE",
    )
    assert message.description == "pd1.not a token"
    assert message.header.actor == ALICE and message.evidence[0].sha256 == "ab" * 32
    assert (revealed.erased, dict(revealed.unreadable)) == ((), {})
    # The message given is not changed.
    assert is_token(sealed.subject)


def test_erased_and_unreadable_fields_are_marked_and_the_rest_revealed() -> None:
    personal = new_sealer()
    sealed = ticket_created(personal)
    sealed.contact.phone = new_sealer().seal("+49 151 2345678", ALICE)  # a key never held here
    personal.keys.erase(BOB)

    revealed = reveal_message(personal, sealed)

    message = revealed.message
    assert message.evidence[1].name == ERASED
    assert message.contact.phone == UNREADABLE
    assert (message.subject, message.contact.email) == ("Charged twice", "alice@example.com")
    assert message.evidence[0].name == "receipt.png"
    assert revealed.erased == ("evidence[1].name",)
    assert list(revealed.unreadable) == ["contact.phone"]
    assert isinstance(revealed.unreadable["contact.phone"], UnknownDataKey)


def test_map_values_are_revealed_and_bytes_are_not_touched() -> None:
    personal = new_sealer()
    token = personal.seal("Login problems", ALICE)
    category = api.TicketCategory(id="account.login", labels={"en": token, "de": "Anmeldung"})
    assert reveal_message(personal, category).message.labels == {
        "en": "Login problems",
        "de": "Anmeldung",
    }
    raw = BytesValue(value=token.encode())
    assert reveal_message(personal, raw).message.value == token.encode()


def test_an_asyncio_consumer_reveals_the_same_way() -> None:
    personal = new_sealer()
    sealed = ticket_created(personal)
    personal.keys.erase(BOB)

    revealed = asyncio.run(reveal_message_async(AsyncSealer(personal), sealed))

    assert revealed.message.contact.email == "alice@example.com"
    assert revealed.erased == ("evidence[1].name",)


def test_a_consumers_batch_is_revealed_with_one_key_look_up() -> None:
    keys = CountingKeys(MemoryKeyStore(), MasterKeys.parse(f"m1:{new_master_key()}"))
    personal = Sealer(keys)
    batch = [ticket_created(personal) for _ in range(3)]
    plain = events.TicketCreated(requester=BOB, subject="nothing sealed")
    keys.erase(BOB)
    keys.lookups = 0

    revealed = asyncio.run(reveal_messages_async(AsyncSealer(personal), [*batch, plain]))

    assert keys.lookups == 1  # the whole batch at once
    assert [r.message.subject for r in revealed] == [
        "Charged twice",
        "Charged twice",
        "Charged twice",
        "nothing sealed",
    ]
    assert [r.erased for r in revealed] == [("evidence[1].name",)] * 3 + [()]
    assert revealed[3].message == plain

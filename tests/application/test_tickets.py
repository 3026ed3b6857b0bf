"""The tickets application, told as stories in memory: given what happened,
when someone runs a command, then what it recorded and what they see. No
database, no broker: the application on the library's in-memory store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, timedelta
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from casemesh.events.v1 import tickets_pb2 as tickets_events
from casemesh.platform.caseindex import IndexProjector, MemoryCaseIndex, Page
from casemesh.platform.cases import Retry, fingerprint
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.following import Follower
from casemesh.platform.identity import Identity
from casemesh.platform.personal import (
    ERASED,
    DataKeys,
    MasterKeys,
    MemoryKeyStore,
    PersonalEvent,
    Sealer,
    SealingMapper,
    is_token,
    reveal_message,
)
from casemesh.platform.personal.errors import TokenRefused, UnknownMasterKey
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.platform.pools import DatabaseUnavailable
from casemesh.platform.timers import Timer
from casemesh.v1 import evidence_pb2
from casemesh.v1 import tickets_pb2 as tpb
from casemesh_tickets import api, domain
from casemesh_tickets.application import (
    PAGE_TEXT_BYTES,
    DeadlineKind,
    NewTicket,
    Tickets,
    TicketSearch,
    case_row,
)
from casemesh_tickets.domain import PERSONAL, Ticket
from casemesh_tickets.events import public_message
from casemesh_tickets.views import TicketView
from tests.application.story import (
    AGENT,
    ALICE,
    BOB,
    FakeClock,
    afresh,
    events_of,
    in_memory,
    last_event,
    reads_back,
    sent_again,
)
from tests.support import memory_sealer

EVIDENCE = [{"name": "evidence/e1", "sha256": "ab" * 32}]


def new_ticket(request_id: str = "r1", **changes: Any) -> NewTicket:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "category": "account.login",
        "subject": "  换了手机号无法登录 ",
        "description": "旧号码已停用，收不到验证码",
        "locale": "zh-CN",
        "contact": {"email": "alice@example.com", "phone": "", "channels": ["EMAIL"]},
        "evidence": EVIDENCE,
    }
    return NewTicket(**{**fields, **changes})


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def app(clock: FakeClock) -> Tickets:
    return Tickets(in_memory(), clock=clock, auto_close_after=timedelta(days=4))


def opened(app: Tickets) -> TicketView:
    return app.create_ticket(ALICE, new_ticket())


def test_opening_a_ticket_records_it_for_its_requester(app: Tickets) -> None:
    ticket = opened(app)
    assert (ticket.status, ticket.requester) == ("NEW", "alice")
    assert ticket.subject == "换了手机号无法登录"  # trimmed
    assert ticket.priority == 3  # the category's default
    assert events_of(app, ticket.id) == [Ticket.Created]


def test_opening_again_with_the_same_request_id_answers_with_the_same_ticket(
    app: Tickets,
) -> None:
    first = opened(app)
    assert app.create_ticket(ALICE, new_ticket()) == first
    assert events_of(app, first.id) == [Ticket.Created]
    with pytest.raises(AlreadyExists, match="request_id 'r1'"):
        app.create_ticket(ALICE, new_ticket(subject="another problem"))
    assert app.create_ticket(BOB, new_ticket()).id != first.id  # ids are per requester


def test_a_retry_matches_a_ticket_whose_fingerprint_an_earlier_release_made(
    app: Tickets,
) -> None:
    new = new_ticket()
    app.save(
        Ticket(
            requester="alice",
            request_id=new.request_id,
            # Non-ASCII escaped, as appeals and reports made theirs.
            request_fingerprint=fingerprint(new, ascii_only=True),
            category=new.category,
            subject=new.subject.strip(),
            description=new.description,
            locale=new.locale,
            contact=new.contact,
            priority=3,
            evidence=new.evidence,
        )
    )
    again = app.create_ticket(ALICE, new)
    assert events_of(app, again.id) == [Ticket.Created]
    with pytest.raises(AlreadyExists):
        app.create_ticket(ALICE, new_ticket(description="不同的描述"))


@pytest.mark.parametrize("sealed", [False, True])
def test_a_change_too_large_for_kafka_is_refused_before_it_is_stored(sealed: bool) -> None:
    """Whatever a command's own checks let through, an event its relay could
    not publish (its record can be twice its size, and a topic takes
    4 MiB) is never stored: stored, it
    would stop the relay for good, every later event waiting behind it. The
    refusal names what made it large: a long text, or a list of many items."""
    app = Tickets(in_memory(), sealer=memory_sealer().sealer if sealed else None)
    new = new_ticket()

    def ticket(description: str, evidence: list[dict[str, str]]) -> Ticket:
        made = {k: v for k, v in vars(new).items() if k not in ("description", "evidence")}
        return Ticket(
            requester="alice",
            request_fingerprint="-",
            priority=3,
            description=description,
            evidence=evidence,
            **made,
        )

    many = [{"name": "evidence/e", "sha256": "ab" * 32}] * 8000
    for huge, named in (
        (ticket("长" * 200_000, []), "description"),
        (ticket("x", many), "evidence"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            app.save(huge)
        [violation] = refused.value.violations
        assert violation.field == named
        assert "too large to record" in violation.description
    assert app.recorder.max_notification_id() in (None, 0)
    assert app.create_ticket(ALICE, new_ticket(description="长" * 5000)).status == "NEW"


def test_a_ticket_with_bad_fields_names_each_and_records_nothing(app: Tickets) -> None:
    bad = new_ticket(category="nope", subject="", evidence=[{"name": "x", "sha256": ""}])
    with pytest.raises(InvalidArgument) as refused:
        app.create_ticket(ALICE, bad)
    fields = {v.field for v in refused.value.violations}
    assert {"ticket.category", "ticket.subject", "ticket.evidence[0]"} <= fields
    assert app.recorder.max_notification_id() is None


def test_a_phone_typed_the_national_way_is_kept_and_shown_in_e164(app: Tickets) -> None:
    # As the service reads the request and answers it, minus the wire.
    request = tpb.CreateTicketRequest(
        request_id="r1",
        ticket=tpb.Ticket(
            category="account.login",
            subject="收不到验证码",
            description="请短信联系我",
            locale="zh-CN",
            contact=tpb.Contact(phone="138 0013 8000", channels=[tpb.CHANNEL_SMS]),
            evidence=[evidence_pb2.EvidenceRef(name="evidence/e1", sha256="ab" * 32)],
        ),
    )
    ticket = app.create_ticket(ALICE, api.new_ticket(request))
    assert ticket.contact["phone"] == "+8613800138000"
    assert api.ticket_message(ticket, ALICE).contact.phone == "+8613800138000"
    landline = tpb.CreateTicketRequest()
    landline.CopyFrom(request)
    landline.request_id, landline.ticket.contact.phone = "r2", "010 1234 5678"
    with pytest.raises(InvalidArgument) as refused:
        app.create_ticket(ALICE, api.new_ticket(landline))
    assert [v.field for v in refused.value.violations] == ["ticket.contact.phone"]


def test_an_agent_works_a_ticket_to_solved_and_its_requester_closes_and_rates_it(
    app: Tickets,
) -> None:
    t = opened(app)
    t = app.assign(AGENT, t.id, "", 4, etag=str(t.version))
    assert (t.status, t.assignee, t.priority) == ("OPEN", "li", 4)
    t = app.request_info(AGENT, t.id, "请提供旧手机号", etag="")
    assert t.status == "PENDING"
    t = app.add_comment(ALICE, t.id, "139****0000", internal=False, etag="")
    assert t.status == "OPEN"
    t = app.add_comment(AGENT, t.id, "查过了", internal=True, etag="")
    t = app.put_on_hold(AGENT, t.id, "等待运营商", etag="")
    assert t.status == "ON_HOLD"
    t = app.solve(AGENT, t.id, "已为您更换", etag="")
    assert (t.status, t.resolution) == ("SOLVED", "已为您更换")
    t = app.close_ticket(ALICE, t.id, etag="")
    t = app.rate(ALICE, t.id, 5, "谢谢")
    assert t.status == "CLOSED"
    assert events_of(app, t.id) == [
        Ticket.Created,
        Ticket.Assigned,
        Ticket.InfoRequested,
        Ticket.CommentAdded,
        Ticket.CommentAdded,
        Ticket.PutOnHold,
        Ticket.Solved,
        Ticket.Closed,
        Ticket.Rated,
    ]
    # The requester's history leaves out the agents' internal note.
    mine = [e.type for e in app.history(ALICE, t.id, 0, "").items]
    assert len(mine) == 8 and len(app.history(AGENT, t.id, 0, "").items) == 9


@pytest.mark.parametrize("how", ["reopen", "reply"])
def test_a_ticket_reopened_and_solved_again_is_rated_anew(app: Tickets, how: str) -> None:
    """Alice rates the first outcome 1 ("did not help") and reopens the
    ticket; solved again, its view no longer shows the old score beside the
    new resolution, and she may rate what was done this time. The history
    keeps both ratings."""
    t = opened(app)
    t = app.solve(AGENT, t.id, "请重启应用", etag="")
    t = app.rate(ALICE, t.id, 1, "没用")
    if how == "reopen":
        t = app.reopen(ALICE, t.id, "还是不行", etag="")
    else:
        t = app.add_comment(ALICE, t.id, "还是不行", internal=False, etag="")
    assert (t.status, t.rating) == ("OPEN", None)
    t = app.solve(AGENT, t.id, "已修复账号", etag="")
    assert t.rating is None
    t = app.rate(ALICE, t.id, 5, "谢谢")
    assert t.rating == {"score": 5, "comment": "谢谢"}
    with pytest.raises(FailedPrecondition) as again:
        app.rate(ALICE, t.id, 4, "")
    assert again.value.reason == "TICKET_ALREADY_RATED"
    assert events_of(app, t.id).count(Ticket.Rated) == 2


def test_an_agent_reads_a_ticket_of_their_own_as_its_requester(app: Tickets) -> None:
    """Li opens a ticket about her own account; a colleague's internal note
    on it is the agents' about her, not hers to read."""
    colleague = Identity("wang", frozenset({"agent"}))
    t = app.create_ticket(AGENT, new_ticket())
    app.add_comment(colleague, t.id, "她的账号有风险标记", internal=True, etag="")
    app.add_comment(colleague, t.id, "您好，正在处理", internal=False, etag="")
    hers = [e.text for e in app.history(AGENT, t.id, 0, "").items]
    assert "您好，正在处理" in hers and "她的账号有风险标记" not in hers
    theirs = [e.text for e in app.history(colleague, t.id, 0, "").items]
    assert "她的账号有风险标记" in theirs
    # Nor may she write one on it: told why, not that agents only may.
    with pytest.raises(PermissionDenied) as info:
        app.add_comment(AGENT, t.id, "自己的备注", internal=True, etag="")
    assert info.value.reason == "INTERNAL_NOTE_ON_OWN_TICKET"


def test_a_requester_cannot_tell_that_an_internal_note_was_written_or_when(
    app: Tickets, clock: FakeClock
) -> None:
    """Internal notes are kept from the requester, and so is their trace:
    the etag, the update time and the history's numbering they are shown
    stay as if no note were there, and a reply under the etag they read is
    no stale change."""
    t = app.create_ticket(ALICE, new_ticket())
    clock.advance(minutes=5)
    t = app.add_comment(AGENT, t.id, "您好，正在处理", internal=False, etag="")
    read = api.ticket_message(app.get_ticket(ALICE, t.id), ALICE)
    clock.advance(minutes=5)
    app.add_comment(AGENT, t.id, "她的账号有风险标记", internal=True, etag="")
    app.add_comment(AGENT, t.id, "已上报", internal=True, etag="")
    again = api.ticket_message(app.get_ticket(ALICE, t.id), ALICE)
    assert (
        (again.etag, again.update_time) == (read.etag, read.update_time) == ("2", read.update_time)
    )
    IndexProjector(app, app.index, case_row).catch_up()
    [listed] = app.list_tickets(ALICE, [], 0, "").items
    assert api.ticket_message(listed, ALICE).etag == "2"
    # A row indexed before rows kept what she is shown: read from the ticket.
    assert isinstance(app.index, MemoryCaseIndex)
    for name in ("shown_version", "shown_time"):
        del app.index.rows[t.id].doc[name]
    [listed] = app.list_tickets(ALICE, [], 0, "").items
    assert api.ticket_message(listed, ALICE).etag == "2"
    # An agent (not its requester) reads the notes, and the ticket's version.
    assert api.ticket_message(app.get_ticket(AGENT, t.id), AGENT).etag == "4"
    # Her reply under the etag she read goes through.
    clock.advance(minutes=5)
    replied = app.add_comment(ALICE, t.id, "好的", internal=False, etag=read.etag)
    assert api.ticket_message(replied, ALICE).etag == "3"
    assert [e.sequence for e in app.history(ALICE, t.id, 0, "").items] == [1, 2, 3]
    assert [e.sequence for e in app.history(AGENT, t.id, 0, "").items] == [1, 2, 3, 4, 5]
    # Paged one by one, her pages follow her numbering.
    first = app.history(ALICE, t.id, 1, "")
    second = app.history(ALICE, t.id, 1, first.next_token)
    assert [e.text for e in second.items] == ["您好，正在处理"]
    # A stale etag of hers is still stale.
    with pytest.raises(Aborted):
        app.add_comment(ALICE, t.id, "还在吗", internal=False, etag=read.etag)


def test_an_agents_files_go_on_internal_notes_not_on_replies_the_requester_cannot_open(
    app: Tickets,
) -> None:
    """Files are shown to their uploader and to agents: a reply showing the
    requester an agent's file would show a name they cannot open."""
    t = app.create_ticket(ALICE, new_ticket())
    guide = [{"name": "evidence/guide", "sha256": "ab" * 32}]
    with pytest.raises(InvalidArgument) as info:
        app.add_comment(AGENT, t.id, "见附件", internal=False, etag="", evidence=guide)
    assert [v.field for v in info.value.violations] == ["evidence"]
    assert app.get_ticket(AGENT, t.id).version == 1
    noted = app.add_comment(AGENT, t.id, "截图见附件", internal=True, etag="", evidence=guide)
    assert noted.version == 2


@pytest.mark.parametrize("assignee", ["li\u200b", "#case/x", "a\u2028b", "   ", "\u3000", "\u200b"])
def test_a_ticket_is_assigned_only_to_someone_a_token_could_name(
    app: Tickets, assignee: str
) -> None:
    t = app.create_ticket(ALICE, new_ticket())
    with pytest.raises(InvalidArgument) as info:
        app.assign(AGENT, t.id, assignee, None, etag="")
    assert [v.field for v in info.value.violations] == ["assignee"]
    assert app.get_ticket(AGENT, t.id).version == t.version


def test_the_requesters_words_and_contacts_are_stored_sealed_and_read_clear(
    clock: FakeClock,
) -> None:
    personal = memory_sealer().sealer
    app = Tickets(in_memory(), clock=clock, sealer=personal)
    contact = {"email": "alice@example.com", "phone": "+8613800138000", "channels": ["EMAIL"]}
    draft = new_ticket(contact=contact)
    t = app.create_ticket(ALICE, draft)
    reply = "我的旧号码 139****0000"
    t = app.add_comment(ALICE, t.id, reply, internal=False, etag="", request_id="c1")
    t = app.add_comment(AGENT, t.id, "已转交运营商", internal=False, etag="")
    t = app.solve(AGENT, t.id, "已为您更换", etag="")
    t = app.rate(ALICE, t.id, 5, "谢谢小李", request_id="r1")
    words = ["换了手机号无法登录", "旧号码已停用", "alice@example.com", "+8613800138000"]
    words += ["evidence/e1", "139****0000", "已转交运营商", "谢谢小李"]
    # Hashes of what she sent, which a short text can be found from by trying
    # every candidate: sealed with her words.
    words += [app.fingerprint(draft)]
    words += [
        retry.fingerprint
        for retry in (
            Retry.of("c1", ALICE, "add_comment", body=reply, internal=False, evidence=[]),
            Retry.of("r1", ALICE, "rate", score=5, comment="谢谢小李"),
        )
        if retry is not None
    ]

    stored = app.recorder.select_events(UUID(t.id))
    kept = b"".join(s.state for s in stored)
    assert [w for w in words if w.encode() in kept] == []
    # Read clear, they still answer a retry with what the first call made.
    again = app.add_comment(ALICE, t.id, reply, internal=False, etag="", request_id="c1")
    assert again.version == 2
    # What an agent writes on other events is not the requester's: left clear.
    assert "已为您更换".encode() in kept

    # The application reads them clear.
    seen = app.get_ticket(ALICE, t.id)
    assert (seen.subject, seen.contact["email"], seen.rating) == (
        "换了手机号无法登录",
        "alice@example.com",
        {"score": 5, "comment": "谢谢小李"},
    )
    texts = [e.text for e in app.history(AGENT, t.id, 0, "").items]
    assert "我的旧号码 139****0000" in texts and "已转交运营商" in texts

    # The relay reads tokens, which a consumer reveals from the message.
    relay = SealingMapper(app.mapper.transcoder, sealer=personal, fields=PERSONAL, reveal=False)
    created = relay.to_domain_event(stored[0])
    assert is_token(vars(created)["subject"]) and is_token(vars(created)["contact"]["email"])
    message = public_message(created, "NEW")
    assert message.subject != "换了手机号无法登录"  # type: ignore[attr-defined]
    shown = reveal_message(personal, message).message
    assert (shown.subject, shown.contact.email) == (  # type: ignore[attr-defined]
        "换了手机号无法登录",
        "alice@example.com",
    )


def test_an_erased_requester_is_forgotten_by_the_application_and_its_index(
    clock: FakeClock,
) -> None:
    personal = memory_sealer().sealer
    app = Tickets(in_memory(), clock=clock, sealer=personal)
    alices = app.create_ticket(ALICE, new_ticket("a1"))
    bobs = app.create_ticket(BOB, new_ticket("b1"))
    IndexProjector(app, app.index, case_row).catch_up()
    # Erased elsewhere (the key store is shared): this process still holds the key.
    DataKeys(personal.keys.store, personal.keys.masters).erase(ALICE.subject)
    assert app.get_ticket(ALICE, alices.id).subject == "换了手机号无法登录"

    assert app.forget_person(ALICE.subject, case_row) == 1
    assert app.get_ticket(ALICE, alices.id).subject == ERASED
    [listed] = app.list_tickets(ALICE, [], 0, "").items
    assert (listed.subject, listed.contact["email"]) == (ERASED, ERASED)
    assert app.list_tickets(BOB, [], 0, "").items[0].subject == bobs.subject
    # Heard again (a redelivery): nothing changes.
    assert app.forget_person(ALICE.subject, case_row) == 1
    assert app.list_tickets(ALICE, [], 0, "").items[0].subject == ERASED


def test_a_new_tickets_row_is_rendered_from_the_ticket_made_not_read_back(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Tickets(in_memory(), clock=clock, sealer=memory_sealer().sealer)
    both = {"email": "alice@example.com", "phone": "+8613800138000", "channels": ["EMAIL"]}
    new = UUID(app.create_ticket(ALICE, new_ticket("a1", contact=both)).id)
    changed = UUID(app.create_ticket(BOB, new_ticket("b1")).id)
    app.add_comment(BOB, str(changed), "还是不行", internal=False, etag="")
    read_back = reads_back(app, monkeypatch)
    IndexProjector(app, app.index, case_row).catch_up()
    # Alice's ticket is rendered as it was made; Bob's, changed since, is read back.
    assert read_back == [changed]
    monkeypatch.undo()
    assert isinstance(app.index, MemoryCaseIndex)
    for ident in (new, changed):
        assert app.index.rows[str(ident)] == case_row(app.repository.get(ident))
    # The ticket Bob made is let go with the projection that went past it.
    assert app.created.take(changed, 1) is None


def test_a_ticket_opened_just_before_its_requester_is_erased_is_listed_erased(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    masters = MasterKeys.parse(f"t:{new_master_key()}")
    personal = Sealer(DataKeys(MemoryKeyStore(), masters, clock=lambda: now[0]))
    app = Tickets(in_memory(), clock=clock, sealer=personal)
    app.create_ticket(ALICE, new_ticket("a1"))
    bobs = app.create_ticket(BOB, new_ticket("b1", subject="上传失败"))
    # Erased before the index projected the new tickets: the ticket this
    # process made, which holds her words in the clear, is not what it lists.
    DataKeys(personal.keys.store, personal.keys.masters).erase(ALICE.subject)
    assert app.forget_person(ALICE.subject, case_row) == 0
    # And one she opened as the erasure was heard, between its commit and its
    # keeping (she is erased once more: she came back, a while later, and
    # went again).
    now[0] += personal.keys.cache_seconds + 1
    save = app.save

    def erased_meanwhile(*aggregates: Any, **kwargs: Any) -> Any:
        recordings = save(*aggregates, **kwargs)
        DataKeys(personal.keys.store, personal.keys.masters).erase(ALICE.subject)
        app.forget_keys(ALICE.subject)
        return recordings

    monkeypatch.setattr(app, "save", erased_meanwhile)
    app.create_ticket(ALICE, new_ticket("a2", subject="又被盗号了"))
    monkeypatch.undo()
    IndexProjector(app, app.index, case_row).catch_up()
    listed = app.list_tickets(ALICE, [], 0, "").items
    assert [(t.subject, t.contact["email"]) for t in listed] == [(ERASED, ERASED)] * 2
    assert app.list_tickets(BOB, [], 0, "").items[0].subject == bobs.subject


def test_a_ticket_stored_before_fingerprints_were_sealed_still_expires(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its events keep their request fingerprints in clear (hashes of what
    was asked, written before they were sealed): its texts are all sealed
    under its case key, so its retention erases it all the same."""
    personal = memory_sealer().sealer
    app = Tickets(in_memory(), clock=clock, sealer=personal, retain_for=timedelta(days=30))
    with monkeypatch.context() as before:
        before.setattr(PersonalEvent, "_paths", lambda self, state, hashes=True: self._parsed)
        t = app.create_ticket(ALICE, new_ticket("a1"))
        t = app.solve(AGENT, t.id, "已为您更换", etag="")
        t = app.close_ticket(ALICE, t.id, etag="", request_id="c1")
    stored = b"".join(e.state for e in app.recorder.select_events(UUID(t.id)))
    assert app.fingerprint(new_ticket("a1")).encode() in stored  # as stored back then
    (deadline,) = app.deadlines_of(closing_of(app, t.id))
    clock.now_is(deadline.due)
    app.fire(deadline)
    assert events_of(app, t.id)[-1] == ExpiringCase.Expired
    assert app.get_ticket(ALICE, t.id).subject == ERASED


def test_a_closed_ticket_past_its_retention_period_is_erased_alone(clock: FakeClock) -> None:
    personal = memory_sealer().sealer
    app = Tickets(in_memory(), clock=clock, sealer=personal, retain_for=timedelta(days=30))
    contact = {"email": "alice@example.com", "phone": "+8613800138000", "channels": ["EMAIL"]}
    t = app.create_ticket(ALICE, new_ticket("a1", contact=contact))
    t = app.add_comment(ALICE, t.id, "我的旧号码 139****0000", internal=False, etag="")
    t = app.solve(AGENT, t.id, "已为您更换", etag="")
    t = app.close_ticket(ALICE, t.id, etag="")
    t = app.rate(ALICE, t.id, 5, "谢谢小李")
    other = app.create_ticket(ALICE, new_ticket("a2", subject="另一个问题"))
    cancelled = app.cancel(BOB, app.create_ticket(BOB, new_ticket("b1")).id, "", etag="")
    IndexProjector(app, app.index, case_row).catch_up()

    closing = closing_of(app, t.id)
    (deadline,) = app.deadlines_of(closing)
    assert deadline.kind == DeadlineKind.RETENTION
    assert deadline.due == closing.timestamp + timedelta(days=30)
    (bobs,) = app.deadlines_of(last_event(app, cancelled.id))
    assert bobs.kind == DeadlineKind.RETENTION
    app.fire(deadline)  # not due yet: nothing happens
    assert app.get_ticket(ALICE, t.id).subject == "换了手机号无法登录"

    clock.now_is(deadline.due)
    app.fire(deadline)
    app.fire(deadline)  # firing twice changes nothing more
    assert events_of(app, t.id)[-1] == ExpiringCase.Expired
    assert events_of(app, t.id).count(ExpiringCase.Expired) == 1
    # Its personal fields read as erased, in the ticket and in every step.
    seen = app.get_ticket(ALICE, t.id)
    assert (seen.subject, seen.description, seen.contact["email"], seen.contact["phone"]) == (
        ERASED,
        ERASED,
        ERASED,
        ERASED,
    )
    assert (seen.status, seen.rating) == ("CLOSED", {"score": 5, "comment": ERASED})
    assert seen.evidence[0]["name"] == ERASED
    texts = [e.text for e in app.history(AGENT, t.id, 0, "").items]
    assert "我的旧号码 139****0000" not in texts and ERASED in texts
    assert "已为您更换" in texts  # the agent's own words were never the requester's
    assert app.history(AGENT, t.id, 0, "").items[-1].type == "TicketExpired"
    # A process reading the store afresh (a read model rebuilt) sees the same.
    reader = SealingMapper(app.mapper.transcoder, sealer=afresh(personal), fields=PERSONAL)
    created = vars(reader.to_domain_event(app.recorder.select_events(UUID(t.id))[0]))
    assert (created["subject"], created["contact"]["email"]) == (ERASED, ERASED)
    # Her other ticket, and nobody else's, is untouched.
    assert app.get_ticket(ALICE, other.id).subject == "另一个问题"
    IndexProjector(app, app.index, case_row).catch_up()
    listed = {x.id: x.subject for x in app.list_tickets(ALICE, [], 0, "").items}
    assert listed == {t.id: ERASED, other.id: "另一个问题"}
    # It takes nothing more.
    with pytest.raises(FailedPrecondition):
        app.rate(ALICE, t.id, 4, "再评一次")


def test_a_change_landing_while_a_ticket_expires_destroys_nothing(clock: FakeClock) -> None:
    personal = memory_sealer().sealer
    app = Tickets(in_memory(), clock=clock, sealer=personal, retain_for=timedelta(days=1))
    t = app.create_ticket(ALICE, new_ticket())
    t = app.close_ticket(ALICE, app.solve(AGENT, t.id, "已处理", etag="").id, etag="")
    read_by_the_timer: Ticket = app.repository.get(UUID(t.id))
    app.rate(ALICE, t.id, 5, "谢谢")  # lands between the timer's read and its record
    with pytest.raises(IntegrityError):
        app.expire_case(read_by_the_timer)
    seen = app.get_ticket(ALICE, t.id)
    assert (seen.subject, seen.rating) == ("换了手机号无法登录", {"score": 5, "comment": "谢谢"})
    # Fired again, it reads the ticket as it stands and erases all of it.
    (deadline,) = app.deadlines_of(closing_of(app, t.id))
    clock.now_is(deadline.due)
    app.fire(deadline)
    assert app.get_ticket(ALICE, t.id).rating == {"score": 5, "comment": ERASED}
    texts = [e.text for e in app.history(AGENT, t.id, 0, "").items]
    assert "谢谢" not in texts and "已处理" in texts


def closing_of(app: Tickets, ident: str) -> Ticket.Closed:
    return next(
        e for e in app.repository.event_store.get(UUID(ident)) if isinstance(e, Ticket.Closed)
    )


def test_a_ticket_sealed_before_case_keys_is_not_marked_expired(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    personal = memory_sealer().sealer
    app = Tickets(in_memory(), clock=clock, sealer=personal)
    with monkeypatch.context() as before:
        before.setattr(PERSONAL, "per_case", False)  # the release before case keys
        t = app.create_ticket(ALICE, new_ticket())
    t = app.cancel(ALICE, t.id, "不用了", etag="")
    (deadline,) = app.deadlines_of(last_event(app, t.id))
    clock.now_is(deadline.due)
    app.fire(deadline)
    # Destroying keys could not erase its opening: it is left as it is, not
    # shown as erased while its history reads in clear.
    assert events_of(app, t.id)[-1] == Ticket.Cancelled
    assert app.get_ticket(ALICE, t.id).subject == "换了手机号无法登录"


def test_a_solved_ticket_reopened_goes_back_to_the_agents(app: Tickets) -> None:
    t = opened(app)
    t = app.solve(AGENT, t.id, "已处理", etag="")
    t = app.reopen(ALICE, t.id, "还是不行", etag="")
    assert (t.status, t.resolution) == ("OPEN", "")
    # Reopened by the requester's reply, it no longer shows how it was solved either.
    t = app.solve(AGENT, t.id, "重新发送了验证码", etag="")
    t = app.add_comment(ALICE, t.id, "还是收不到", False, etag="")
    assert (t.status, t.resolution) == ("OPEN", "")
    with pytest.raises(FailedPrecondition):
        app.rate(ALICE, t.id, 4, "")  # only a solved or closed ticket is rated


def test_the_requester_cancels_and_nobody_else_may(app: Tickets) -> None:
    t = opened(app)
    with pytest.raises(PermissionDenied):
        app.cancel(AGENT, t.id, "", etag="")
    t = app.cancel(ALICE, t.id, "自己解决了", etag="")
    assert t.status == "CANCELLED"
    with pytest.raises(FailedPrecondition):
        app.add_comment(ALICE, t.id, "again", internal=False, etag="")


def test_agent_commands_need_an_agent(app: Tickets) -> None:
    t = opened(app)
    commands: list[Callable[[], object]] = [
        lambda: app.assign(ALICE, t.id, "", None, etag=""),
        lambda: app.request_info(ALICE, t.id, "?", etag=""),
        lambda: app.put_on_hold(ALICE, t.id, "", etag=""),
        lambda: app.solve(ALICE, t.id, "done", etag=""),
        lambda: app.add_comment(ALICE, t.id, "note", internal=True, etag=""),
    ]
    for command in commands:
        with pytest.raises(PermissionDenied):
            command()
    assert events_of(app, t.id) == [Ticket.Created]


def test_someone_elses_ticket_is_not_found_and_a_stale_etag_is_aborted(app: Tickets) -> None:
    t = opened(app)
    with pytest.raises(NotFound, match=f"tickets/{t.id}"):
        app.get_ticket(BOB, t.id)
    with pytest.raises(NotFound):
        app.add_comment(BOB, t.id, "hi", internal=False, etag="")
    with pytest.raises(NotFound):
        app.get_ticket(ALICE, "not-a-uuid")
    app.add_comment(ALICE, t.id, "one", internal=False, etag=str(t.version))
    with pytest.raises(Aborted, match="changed since you read it"):
        app.add_comment(ALICE, t.id, "two", internal=False, etag=str(t.version))


def test_a_comment_sent_again_under_its_request_id_is_recorded_once(app: Tickets) -> None:
    t = opened(app)
    etag = str(t.version)
    first = app.add_comment(ALICE, t.id, "新号码 138", internal=False, etag=etag, request_id="c1")
    # The first answer was lost; the retry carries the etag it was sent with.
    again = app.add_comment(ALICE, t.id, "新号码 138", internal=False, etag=etag, request_id="c1")
    assert again == first
    assert events_of(app, t.id) == [Ticket.Created, Ticket.CommentAdded]
    app.add_comment(ALICE, t.id, "one more", internal=False, etag="", request_id="c2")
    assert (
        app.add_comment(ALICE, t.id, "新号码 138", internal=False, etag="", request_id="c1")
        == first
    )
    assert events_of(app, t.id) == [Ticket.Created, Ticket.CommentAdded, Ticket.CommentAdded]


def test_a_ticket_takes_only_so_many_comments_and_agents_can_still_answer_a_flooded_one(
    app: Tickets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command and page of history reads the whole ticket: its
    requester cannot make it grow without end. Past their share they are
    told to open a new ticket, and nothing is stored; agents can still
    reply, up to the ticket's own length, and can always solve it."""
    monkeypatch.setattr(domain, "MAX_REQUESTER_COMMENTS", 3)
    monkeypatch.setattr(domain, "MAX_EVENTS", 6)
    t = opened(app)
    for n in range(2):
        app.add_comment(ALICE, t.id, f"还在等 {n}", internal=False, etag="")
    last = app.add_comment(ALICE, t.id, "还在等", internal=False, etag="", request_id="c3")
    stored = events_of(app, t.id)
    with pytest.raises(FailedPrecondition, match="open a new ticket") as refused:
        app.add_comment(ALICE, t.id, "还在等？", internal=False, etag="")
    assert refused.value.reason == "TICKET_TOO_LONG"
    assert events_of(app, t.id) == stored
    # Its last comment, sent again under its request id, gets its first answer.
    assert app.add_comment(ALICE, t.id, "还在等", internal=False, etag="", request_id="c3") == last
    app.add_comment(AGENT, t.id, "We are on it.", internal=False, etag="")
    app.add_comment(AGENT, t.id, "Asked the SMS team.", internal=True, etag="")
    stored = events_of(app, t.id)
    for internal in (False, True):
        with pytest.raises(FailedPrecondition, match="open a new ticket") as refused:
            app.add_comment(AGENT, t.id, "One more thing.", internal=internal, etag="")
        assert refused.value.reason == "TICKET_TOO_LONG"
    assert events_of(app, t.id) == stored
    assert app.solve(AGENT, t.id, "Fixed.", etag="").status == "SOLVED"


def test_a_page_of_history_reads_the_ticket_no_further_than_it_needs(
    app: Tickets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its events are revealed and replayed once, up to the page and one
    more (which tells that more follow), not to the end of a long ticket;
    whose it is, its first event tells."""
    t = opened(app)
    for n in range(30):
        app.add_comment(ALICE, t.id, f"第 {n} 条", internal=False, etag="")
    read: list[object] = []
    store = app.repository.event_store
    everything = store.get

    def get(*args: Any, **kwargs: Any) -> Any:
        for stored in everything(*args, **kwargs):
            read.append(stored)
            yield stored

    monkeypatch.setattr(store, "get", get)
    page = app.history(ALICE, t.id, 10, "")
    assert [e.sequence for e in page.items] == list(range(1, 11)) and page.next_token == "10"
    assert len(read) == 1 + 11
    read.clear()
    page = app.history(ALICE, t.id, 10, "25")
    assert [e.sequence for e in page.items] == list(range(26, 32)) and page.next_token == ""
    assert len(read) == 1 + 31


def test_another_change_under_a_used_request_id_is_refused_naming_it(app: Tickets) -> None:
    t = opened(app)
    app.add_comment(ALICE, t.id, "one", internal=False, etag="", request_id="c1")
    with pytest.raises(AlreadyExists, match="request_id 'c1'") as refused:
        app.add_comment(ALICE, t.id, "two", internal=False, etag="", request_id="c1")
    assert refused.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(AlreadyExists, match="request_id 'c1'"):
        app.put_on_hold(AGENT, t.id, "one", etag="", request_id="c1")  # another caller, too
    with pytest.raises(InvalidArgument, match="request_id"):
        app.add_comment(ALICE, t.id, "two", internal=False, etag="", request_id="c 1")
    assert events_of(app, t.id) == [Ticket.Created, Ticket.CommentAdded]


def test_asking_for_information_or_holding_again_under_a_request_id_records_once(
    app: Tickets,
) -> None:
    t = opened(app)
    asked = app.request_info(AGENT, t.id, "Your old number?", etag="", request_id="a1")
    assert app.request_info(AGENT, t.id, "Your old number?", etag="", request_id="a1") == asked
    with pytest.raises(AlreadyExists, match="request_id 'a1'"):
        app.request_info(AGENT, t.id, "Your new number?", etag="", request_id="a1")
    held = app.put_on_hold(AGENT, t.id, "the carrier", etag=str(asked.version), request_id="h1")
    assert (
        app.put_on_hold(AGENT, t.id, "the carrier", etag=str(asked.version), request_id="h1")
        == held
    )
    with pytest.raises(AlreadyExists, match="request_id 'h1'"):
        app.put_on_hold(AGENT, t.id, "the bank", etag="", request_id="h1")
    assert events_of(app, t.id) == [Ticket.Created, Ticket.InfoRequested, Ticket.PutOnHold]


def solved(app: Tickets) -> TicketView:
    return app.solve(AGENT, opened(app).id, "已处理", etag="")


# A change under a request id: the ticket `t` it runs on, sent as read, and
# `how` ("first" or "other") the change is made: "other" is another change.
Change = Callable[[Tickets, TicketView, str, str], TicketView]

# Each ticket command the comments' stories do not tell: the ticket it may run
# on, and the command.
CHANGES: dict[str, tuple[Callable[[Tickets], TicketView], Change]] = {
    "assign": (
        opened,
        lambda app, t, rid, how: app.assign(AGENT, t.id, how, None, str(t.version), rid),
    ),
    "solve": (
        opened,
        lambda app, t, rid, how: app.solve(AGENT, t.id, f"{how} 已处理", str(t.version), rid),
    ),
    "reopen": (
        solved,
        lambda app, t, rid, how: app.reopen(ALICE, t.id, f"{how} 还是不行", str(t.version), rid),
    ),
    "close": (
        solved,
        # Nothing to say but who closes it: the agent's is the other change.
        lambda app, t, rid, how: app.close_ticket(
            ALICE if how == "first" else AGENT, t.id, str(t.version), rid
        ),
    ),
    "cancel": (
        opened,
        lambda app, t, rid, how: app.cancel(ALICE, t.id, f"{how} 自己解决了", str(t.version), rid),
    ),
    "rate": (solved, lambda app, t, rid, how: app.rate(ALICE, t.id, 5, f"{how} 谢谢", rid)),
}


@pytest.mark.parametrize("command", sorted(CHANGES))
def test_each_change_sent_again_under_its_request_id_is_recorded_once(
    app: Tickets, command: str
) -> None:
    given, change = CHANGES[command]
    t = given(app)
    # The retry carries the etag it was sent with: it answers as the first
    # call did (not ABORTED, nor refused by the state the first one left).
    first, again = sent_again(app, t.id, lambda rid, how: change(app, t, rid, how))
    assert again == first
    with pytest.raises(InvalidArgument, match="request_id"):
        change(app, t, "x 1", "other")


def test_a_solved_ticket_closes_itself_when_its_deadline_fires(
    app: Tickets, clock: FakeClock
) -> None:
    t = app.solve(AGENT, opened(app).id, "已处理", etag="")
    (deadline,) = app.deadlines_of(last_event(app, t.id))
    assert deadline.kind == DeadlineKind.AUTO_CLOSE
    app.fire(deadline)  # not due yet: nothing happens
    assert app.get_ticket(ALICE, t.id).status == "SOLVED"
    clock.now_is(deadline.due)
    app.fire(deadline)
    app.fire(deadline)  # firing twice changes nothing more
    assert app.get_ticket(ALICE, t.id).status == "CLOSED"
    assert events_of(app, t.id)[-1] == Ticket.Closed


def test_the_published_solve_tells_when_the_ticket_closes_by_itself(
    app: Tickets, clock: FakeClock
) -> None:
    """The requester is told until when a reply reopens the ticket: the solve
    time and the service's setting. Published again after the setting
    changed (a relay replaying its log), the event says what it said."""
    solved_at = clock.now()
    t = app.solve(AGENT, opened(app).id, "已处理", etag="")
    message = public_message(last_event(app, t.id), "SOLVED")
    assert isinstance(message, tickets_events.TicketSolved)
    assert message.auto_close_time.ToDatetime(UTC) == solved_at + timedelta(days=4)
    app.auto_close_after = timedelta(days=2)
    clock.advance(days=1)
    assert public_message(last_event(app, t.id), "SOLVED") == message


def test_a_solve_stored_before_its_closing_time_was_kept_is_published_without_one(
    app: Tickets,
) -> None:
    """Its requester's messages then say the ticket closes after a while."""
    t = app.solve(AGENT, opened(app).id, "已处理", etag="")
    recorder = cast(Any, app.recorder)
    version = last_event(app, t.id).originator_version
    position = recorder._stored_events_index[t.id][version]
    stored = recorder._stored_events[position]
    state = app.mapper.transcoder.decode(stored.state)
    del state["closes_at"], state["class_version"]  # as version 1 stored it
    recorder._stored_events[position] = replace(stored, state=app.mapper.transcoder.encode(state))
    message = public_message(last_event(app, t.id), "SOLVED")
    assert isinstance(message, tickets_events.TicketSolved)
    assert message.resolution == "已处理" and not message.HasField("auto_close_time")


@pytest.mark.parametrize("now_after", [timedelta(days=3), timedelta(days=5)])
def test_a_solved_ticket_closes_though_the_auto_close_setting_changed_since(
    app: Tickets, clock: FakeClock, now_after: timedelta
) -> None:
    """Solved under 4 days; the service restarted with 3 or 5. The deadline
    set at the solve (4 days on) still ends in a close: when it fires, if the
    new setting is shorter; at the solve's new due time if it is longer."""
    t = app.solve(AGENT, opened(app).id, "已处理", etag="")
    (deadline,) = app.deadlines_of(last_event(app, t.id))
    app.auto_close_after = now_after
    clock.now_is(deadline.due)
    moved = app.fire(deadline)
    if now_after < timedelta(days=4):
        assert moved is None and app.get_ticket(ALICE, t.id).status == "CLOSED"
        return
    assert app.get_ticket(ALICE, t.id).status == "SOLVED"
    assert moved is not None and moved.due == deadline.due + timedelta(days=1)
    clock.now_is(moved.due)
    assert app.fire(moved) is None
    assert app.get_ticket(ALICE, t.id).status == "CLOSED"


def test_a_solved_ticket_past_its_time_to_close_is_not_reopened_though_the_timer_is_late(
    app: Tickets, clock: FakeClock
) -> None:
    """The timer was down when the ticket's time to close came: neither a
    reopen nor the requester's reply (which would reopen it) brings it back;
    they open a new ticket, as for a closed one. An agent's note still goes."""
    t = app.solve(AGENT, opened(app).id, "已处理", etag="")
    (deadline,) = app.deadlines_of(last_event(app, t.id))
    clock.now_is(deadline.due - timedelta(seconds=1))
    assert app.reopen(ALICE, t.id, "还是不行", etag="", request_id="r1").status == "OPEN"
    t = app.solve(AGENT, t.id, "已为您更换", etag="")
    (deadline,) = app.deadlines_of(last_event(app, t.id))
    clock.now_is(deadline.due)
    before = len(events_of(app, t.id))
    late_ones: list[Callable[[], object]] = [
        lambda: app.reopen(ALICE, t.id, "又不行了", etag=""),
        lambda: app.add_comment(ALICE, t.id, "又不行了", False, etag=""),
    ]
    for late in late_ones:
        with pytest.raises(FailedPrecondition) as refused:
            late()
        assert refused.value.reason == "TICKET_FINAL"
    assert len(events_of(app, t.id)) == before
    # The first reopen, sent again, gets its first answer.
    assert app.reopen(ALICE, t.id, "还是不行", etag="", request_id="r1").version < before
    app.add_comment(AGENT, t.id, "已关闭", True, etag="")
    app.fire(deadline)
    assert app.get_ticket(ALICE, t.id).status == "CLOSED"


def test_a_deadline_of_an_earlier_solve_waits_for_the_last_solves_own(
    app: Tickets, clock: FakeClock
) -> None:
    t = app.solve(AGENT, opened(app).id, "已处理", etag="")
    (first,) = app.deadlines_of(last_event(app, t.id))
    clock.now_is(first.due - timedelta(days=1))
    app.reopen(ALICE, t.id, "还是不行", etag="")
    t = app.solve(AGENT, t.id, "已为您更换", etag="")
    (second,) = app.deadlines_of(last_event(app, t.id))
    clock.now_is(first.due)
    assert app.fire(first) == second  # not closed a day after the new solve
    assert app.get_ticket(ALICE, t.id).status == "SOLVED"


def test_the_timer_reads_just_the_events_that_set_deadlines(app: Tickets) -> None:
    """A ticket's timer reads only `deadline_events`: every event of a
    ticket's whole life that sets a deadline is one of them, and a follower
    of their topics is handed just those, its position past all the rest."""
    t = opened(app)
    t = app.assign(AGENT, t.id, "", 3, etag="")
    t = app.request_info(AGENT, t.id, "请提供旧手机号", etag="")
    t = app.add_comment(ALICE, t.id, "139****0000", internal=False, etag="")
    t = app.put_on_hold(AGENT, t.id, "等待运营商", etag="")
    t = app.solve(AGENT, t.id, "已处理", etag="")
    t = app.reopen(ALICE, t.id, "还是不行", etag="")
    t = app.solve(AGENT, t.id, "已为您更换", etag="")
    t = app.close_ticket(ALICE, t.id, etag="")
    app.rate(ALICE, t.id, 5, "谢谢")
    bobs = app.create_ticket(BOB, new_ticket("r2"))
    app.cancel(BOB, bobs.id, "", etag="")
    third = app.create_ticket(ALICE, new_ticket("r3"))
    app.add_comment(AGENT, third.id, "稍等", internal=True, etag="")  # sets no deadline
    stored = app.recorder.select_notifications(None, 1000)
    setting = [n.id for n in stored if app.deadlines_of(app.mapper.to_domain_event(n))]
    assert len(setting) == 4  # two solves, the close, the cancel

    handed: list[tuple[list[int], int]] = []
    Follower(
        app,
        "deadlines",
        lambda: handed[-1][1] if handed else None,
        lambda batch, reached: handed.append(([n.id for n in batch], reached)),
        topics=[get_topic(cls) for cls in app.deadline_events],
    ).catch_up()
    assert [i for ids, _ in handed for i in ids] == setting
    assert handed[-1][1] == stored[-1].id > setting[-1]


def test_a_case_this_release_cannot_read_is_set_aside_not_a_stall(
    app: Tickets, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One case whose events this release cannot read (a class gone without
    an upcaster) stopped the case index and the deadline timer for every
    case after it, for good. Each sets that case aside, logged, and goes on."""
    broken = app.create_ticket(ALICE, new_ticket("r1"))
    app.solve(AGENT, broken.id, "已处理", etag="")
    fine = app.create_ticket(BOB, new_ticket("r2"))
    app.solve(AGENT, fine.id, "已处理", etag="")
    read = app.repository.get
    unreadable = UUID(broken.id)

    def get(ident: Any, *args: Any, **kwargs: Any) -> Any:
        if ident == unreadable == UUID(fine.id):
            raise UnknownMasterKey("the key that wrapped it is not in CASEMESH_MASTER_KEYS")
        if ident == unreadable:
            # Altered, for good: set aside like an event this release cannot read.
            raise TokenRefused("a sealed text was altered")
        return read(ident, *args, **kwargs)

    monkeypatch.setattr(app.repository, "get", get)
    # A key not to be had now (a master key missing from the secret) is no
    # reason to set a case aside: the projector stops and reads it again.
    unreadable = UUID(fine.id)
    with pytest.raises(UnknownMasterKey):
        IndexProjector(app, app.index, case_row).catch_up()
    unreadable = UUID(broken.id)
    IndexProjector(app, app.index, case_row).catch_up()
    assert {t.id for t in app.list_tickets(AGENT, [], 0, "").items} == {fine.id}

    scheduled: list[Any] = []
    table = SimpleNamespace(
        max_tracking_id=lambda name: None,
        schedule=lambda deadlines, tracking: scheduled.extend(deadlines),
    )
    deadlines_of = app.deadlines_of

    away = False

    def reading(event: Any) -> Any:
        if away:
            raise DatabaseUnavailable("the database is away")
        if event.originator_id == unreadable:
            raise KeyError("casemesh_tickets.domain:Ticket.Gone")
        return deadlines_of(event)

    timer = Timer(
        app=app, table=cast(Any, table), clock=app.clock, deadlines_of=reading, fire=app.fire,
        events=app.deadline_events,
    )  # fmt: skip
    stored = app.recorder.select_notifications(None, 1000)
    timer._schedule(stored, stored[-1].id)
    assert {d.aggregate_id for d in scheduled} == {fine.id}
    # The database away is waited out, not taken for an unreadable event.
    away, scheduled[:] = True, []
    with pytest.raises(DatabaseUnavailable):
        timer._schedule(stored, stored[-1].id)
    assert scheduled == []


def test_a_follower_overtaken_by_another_replicas_reads_on_from_where_it_got() -> None:
    """Every replica of a writer service follows the same log: the slower
    one's position is refused (its tracking row conflicts). That is no
    failure to log and sleep on; a conflict that leaves the position behind
    is."""
    tracked: list[int | None] = [None]

    def handle(batch: Any, reached: int) -> None:
        raise IntegrityError("tracking row conflict")

    follower = Follower(SimpleNamespace(name="tickets"), "index", lambda: tracked[0], handle)
    tracked[0] = 120  # the other replica got further
    assert follower._handled([], 100) == 120
    tracked[0] = 90  # it did not: the conflict is the batch's own
    with pytest.raises(IntegrityError):
        follower._handled([], 100)


def test_no_event_sets_a_deadline_unless_its_class_is_a_deadline_event(app: Tickets) -> None:
    """What keeps `deadlines_of` and `deadline_events` together: an event
    class of a ticket that sets a deadline but is not listed (a new one, or
    a subclass of a listed one) would never be read by the timer."""
    classes = [
        cls
        for cls in vars(Ticket).values()
        if isinstance(cls, type) and issubclass(cls, Ticket.Event)
    ]
    assert len(classes) > 10
    for cls in classes:
        event = object.__new__(cls)
        object.__setattr__(event, "originator_id", uuid4())
        object.__setattr__(event, "timestamp", FakeClock().now())
        if app.deadlines_of(event):
            assert cls in app.deadline_events, cls.__qualname__


def test_each_user_lists_their_own_tickets_and_agents_list_all_page_by_page(
    app: Tickets,
) -> None:
    mine = [app.create_ticket(ALICE, new_ticket(f"a{n}")) for n in range(3)]
    app.create_ticket(BOB, new_ticket("b0"))
    IndexProjector(app, app.index, case_row).catch_up()
    listed = app.list_tickets(ALICE, [], 2, "")
    assert [t.id for t in listed.items] == [t.id for t in reversed(mine)][:2]
    rest = app.list_tickets(ALICE, [], 2, listed.next_token)
    assert [t.id for t in rest.items] == [mine[0].id] and rest.next_token == ""
    assert len(app.list_tickets(AGENT, [], 0, "").items) == 4
    assert app.list_tickets(AGENT, ["SOLVED"], 0, "").items == []
    with pytest.raises(InvalidArgument, match="page_token"):
        app.list_tickets(ALICE, [], 0, "garbage")


def test_a_page_size_over_the_maximum_is_taken_as_the_maximum_not_refused(
    app: Tickets,
) -> None:
    opened = [app.create_ticket(ALICE, new_ticket(f"a{n}")) for n in range(101)]
    IndexProjector(app, app.index, case_row).catch_up()
    listed = app.list_tickets(ALICE, [], 10_000, "")
    assert len(listed.items) == 100 and listed.next_token
    rest = app.list_tickets(ALICE, [], 10_000, listed.next_token)
    assert [t.id for t in rest.items] == [opened[0].id] and rest.next_token == ""
    busy = opened[-1]
    for n in range(200):
        app.add_comment(ALICE, busy.id, f"still waiting ({n})", internal=False, etag="")
    history = app.history(ALICE, busy.id, 10_000, "")
    assert len(history.items) == 200 and history.next_token
    assert len(app.history(ALICE, busy.id, 10_000, history.next_token).items) == 1
    for refused in (
        lambda: app.list_tickets(ALICE, [], -1, ""),
        lambda: app.history(ALICE, busy.id, -1, ""),
    ):
        with pytest.raises(InvalidArgument) as info:
            refused()
        assert [v.field for v in info.value.violations] == ["page_size"]


def test_a_page_of_long_comments_is_cut_short_to_fit_what_a_client_receives(
    app: Tickets,
) -> None:
    """200 comments of 10,000 Chinese characters would be a 6 MB answer,
    which a gRPC client refuses (4 MiB by default): pages stop at about
    1 MiB of text, and the next page goes on where it stopped."""
    busy = app.create_ticket(ALICE, new_ticket("long"))
    for n in range(80):
        app.add_comment(ALICE, busy.id, f"{n:03d}" + "测" * 9_997, internal=False, etag="")
    seen: list[int] = []
    token = ""
    while True:
        page = app.history(ALICE, busy.id, 200, token)
        assert sum(len(e.text.encode()) for e in page.items) <= PAGE_TEXT_BYTES + 30_000
        seen += [e.sequence for e in page.items]
        if not (token := page.next_token):
            break
    assert seen == list(range(1, 82))  # every entry once, in order, over several pages
    assert len(app.history(ALICE, busy.id, 200, "").items) < 40


def test_a_row_a_newer_release_wrote_is_listed_by_this_one(app: Tickets) -> None:
    """During a rollout, replicas of this release list rows a newer one wrote,
    with fields it added: they list them with what they know."""
    t = app.create_ticket(ALICE, new_ticket())
    IndexProjector(app, app.index, case_row).catch_up()
    assert isinstance(app.index, MemoryCaseIndex)
    app.index.rows[t.id].doc["sla_due"] = "2026-12-06T08:00:00+00:00"
    [listed] = app.list_tickets(ALICE, [], 0, "").items
    assert listed.id == t.id and listed.subject == t.subject


def test_a_page_of_long_tickets_is_cut_short_to_fit_what_a_client_receives(
    app: Tickets,
) -> None:
    """100 tickets of the longest words and the most evidence make a 4.3 MB
    ListTickets answer, which a gRPC client refuses (4 MiB by default), for
    good: pages stop short instead, and the next goes on where one stopped."""
    evidence = [{"name": f"evidence/e{n}", "sha256": f"{n:02d}" * 32} for n in range(20)]
    opened = [
        app.create_ticket(
            ALICE,
            new_ticket(
                f"long{n}", subject="😀" * 200, description="😀" * 10_000, evidence=evidence
            ),
        )
        for n in range(100)
    ]
    IndexProjector(app, app.index, case_row).catch_up()
    lists: dict[str, Callable[[str], Page[TicketView]]] = {
        "listed": lambda token: app.list_tickets(AGENT, [], 100, token),
        "found": lambda token: app.search_tickets(
            AGENT, TicketSearch(requester=ALICE.subject), 100, token
        ),
    }
    for read in lists.values():
        seen: list[str] = []
        token = ""
        while True:
            page = read(token)
            answer = api._listed(page, AGENT).SerializeToString()
            assert len(answer) < 4 * 1024 * 1024
            seen += [t.id for t in page.items]
            if not (token := page.next_token):
                break
        assert seen == [t.id for t in reversed(opened)]  # each once, newest first
        assert len(read("").items) < 100


def test_agents_search_tickets_by_requester_category_and_words(app: Tickets) -> None:
    login = app.create_ticket(ALICE, new_ticket("a1"))
    upload = app.create_ticket(
        ALICE,
        new_ticket("a2", category="content.upload_failed", subject="上传失败", description="卡住"),
    )
    theirs = app.create_ticket(BOB, new_ticket("b1", subject="Cannot LOG IN"))
    wide = app.create_ticket(BOB, new_ticket("b2", subject="ＶＩＰ 账号", description="ÉCRAN noir"))
    IndexProjector(app, app.index, case_row).catch_up()

    def found(**filters: Any) -> list[str]:
        return [t.id for t in app.search_tickets(AGENT, TicketSearch(**filters), 0, "").items]

    assert found(requester=ALICE.subject) == [upload.id, login.id]
    assert found(category="content.upload_failed") == [upload.id]
    assert found(text="log in") == [theirs.id]
    # Compared folded, as the case index on PostgreSQL compares them: case,
    # and full-width letters as the half-width ones, either way round.
    assert found(text="vip écran") == found(text="ｖｉｐ Écran") == [wide.id]
    assert found(text="无法登录", requester=BOB.subject) == []
    with pytest.raises(PermissionDenied):
        app.search_tickets(ALICE, TicketSearch(), 0, "")
    with pytest.raises(InvalidArgument, match="category"):
        app.search_tickets(AGENT, TicketSearch(category="nope"), 0, "")

"""The appeals application, told as stories in memory: copyright cases filed,
completed, decided, countered, held in court, restored or abandoned by their
deadlines, and appealed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from eventsourcing.persistence import IntegrityError

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.platform.caseindex import IndexProjector, MemoryCaseIndex
from casemesh.platform.cases import Retry
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.identity import Identity
from casemesh.platform.personal import ERASED, SealingMapper, is_token, reveal_message
from casemesh.platform.personal.mapper import leaving_sealed
from casemesh.platform.relay import StreamFollower
from casemesh.platform.timers import Deadline, UnknownDeadlineKind
from casemesh.rules import tickets as rules
from casemesh.rules.deadlines import months_end
from casemesh.v1 import appeals_pb2 as apb
from casemesh_appeals import policy
from casemesh_appeals.api import appeal_message, counter_dict, for_viewer, index_doc
from casemesh_appeals.application import (
    ITEM_LIMIT,
    LIST_LIMIT,
    MAX_APPEAL_ROUNDS,
    TEXT_LIMIT,
    TOO_LONG_ITEM,
    TOO_MANY_REMOVED,
    AppealDraft,
    Appeals,
    DeadlineKind,
    RowSource,
)
from casemesh_appeals.domain import MAX_INFO_ADDED, PERSONAL, CopyrightAppeal, Kind, State, Step
from casemesh_appeals.events import Translator, public_message
from tests.application.story import (
    AGENT,
    ALICE,
    BOB,
    FakeClock,
    events_of,
    in_memory,
    last_event,
    reads_back,
    sent_again,
)
from tests.support import memory_sealer

URSULA = Identity("ursula", frozenset({"user"}))
EVIDENCE = [{"name": "evidence/a", "sha256": "a" * 64}]
CONTACT = {"email": "alice@example.com", "channels": ["EMAIL"]}


def restore_deadline(app: Appeals, ident: str) -> Deadline:
    """The forwarded case's restore, as its last event schedules it."""
    (restore,) = [
        d
        for d in app.deadlines_of(last_event(app, ident))
        if d.kind == DeadlineKind.RESTORE_AFTER_GRACE
    ]
    return restore


def party(name: str, user_id: str = "") -> dict[str, Any]:
    return {"legal_name": name, "locale": "zh-CN", "contact": CONTACT, "user_id": user_id}


def notice(request_id: str = "n1", **notice_changes: Any) -> AppealDraft:
    content = {
        "notice": {
            "relationship": "OWNER",
            "work": {"title": "Dance #1", "creation_time": "2026-01-01T00:00:00+00:00"},
            "originality_evidence": EVIDENCE,
            "infringing_items": ["https://video.example/v/123"],
            "infringement_evidence": EVIDENCE,
            **notice_changes,
        },
        "good_faith_statement": True,
        "accuracy_statement": True,
    }
    return AppealDraft(request_id, "TAKEDOWN_NOTICE", "cn", party("Alice Studio"), content)


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def app(clock: FakeClock) -> Appeals:
    return Appeals(in_memory(), clock=clock, policies=policy.load())


def upheld(app: Appeals, ident: str = "") -> str:
    """A complete notice against Ursula's video (Alice's first, or `ident`),
    upheld by an agent."""
    ident = ident or str(app.file(ALICE, notice()).id)
    app.assign(AGENT, ident, "")
    app.decide(
        AGENT,
        ident,
        True,
        {"ground": "著作权法第十条", "facts": "同一支舞"},
        party("Ursula", "ursula"),
        etag="",
    )
    return ident


def counter(app: Appeals, ident: str) -> None:
    app.file_counter_notice(
        URSULA,
        ident,
        party("Ursula"),
        {"removed_item": "https://video.example/v/123", "reason": "我自己编的舞"},
        good_faith=True,
        accuracy=True,
    )


def test_a_complete_notice_waits_for_review_and_a_retry_gets_the_same_case(
    app: Appeals, clock: FakeClock
) -> None:
    case = app.file(ALICE, notice())
    assert (case.state, case.next_step, case.missing) == ("SUBMITTED", "REVIEW", [])
    assert case.next_step_due is not None and case.next_step_due > clock.now()
    assert app.file(ALICE, notice()).id == case.id
    with pytest.raises(AlreadyExists):
        app.file(ALICE, notice(relationship="LICENSEE"))
    assert events_of(app, case.id) == [CopyrightAppeal.Filed]


def test_an_appeals_retry_gets_it_after_a_notice_took_its_request_id(app: Appeals) -> None:
    """An appeal's request id is its own within the decision it appeals:
    Ursula's notice filed later under it is a case of its own, and a retry
    of the appeal still gets the appeal, not ALREADY_EXISTS. An appeal of
    another body under that id is still refused."""
    appeal = decision_appeal(upheld(app))
    first = app.file(URSULA, appeal)
    own_notice = app.file(URSULA, replace(notice(appeal.request_id), filer=party("Ursula")))
    assert own_notice.id != first.id
    assert app.file(URSULA, appeal).id == first.id
    assert app.file(URSULA, replace(notice(appeal.request_id), filer=party("Ursula"))).id == (
        own_notice.id
    )
    with pytest.raises(AlreadyExists, match="request_id 'a1'"):
        app.file(URSULA, replace(appeal, content={"grounds": "另有证据"}))


def test_an_appeal_filed_before_appeals_took_rounds_is_found_by_its_retry(app: Appeals) -> None:
    """An appeal stored under its request id alone, as appeals were before
    they took rounds: a retry gets it, and no round is filed."""
    appeal = decision_appeal(upheld(app))
    opening = app._opening(URSULA, appeal, Kind.DECISION_APPEAL, "cn")
    stored = app._save_filed(CopyrightAppeal(**opening), appeal)
    assert stored.id == CopyrightAppeal.create_id(URSULA.subject, appeal.request_id)
    assert app.file(URSULA, appeal).id == stored.id
    assert app._appeals_of(URSULA.subject, appeal.appeal_of) == []


def test_an_incomplete_notice_asks_for_what_is_missing_and_completing_it_sends_it_to_review(
    app: Appeals,
) -> None:
    case = app.file(ALICE, notice(work={}, infringement_evidence=[]))
    assert case.state == "INFO_REQUESTED"
    assert case.missing == [
        "notice.work.title",
        "notice.work.creation_time",
        "notice.infringement_evidence",
    ]
    ident = str(case.id)
    completion = {
        "notice": {
            "work": {"title": "Dance #1", "creation_time": "2026-01-01T00:00:00+00:00"},
            "infringement_evidence": EVIDENCE,
        }
    }
    case = app.add_info(ALICE, ident, "补充了作品信息", completion, etag=str(case.version))
    assert (case.state, case.missing) == ("SUBMITTED", [])
    assert events_of(app, ident) == [CopyrightAppeal.Filed, CopyrightAppeal.InfoAdded]


def test_information_sent_again_under_its_request_id_is_added_once(app: Appeals) -> None:
    case = app.file(ALICE, notice(work={}))
    ident, etag = str(case.id), str(case.version)
    completion = {"notice": {"work": {"title": "Dance #1"}}}
    first = app.add_info(ALICE, ident, "补充了标题", completion, etag=etag, request_id="i1")
    again = app.add_info(ALICE, ident, "补充了标题", completion, etag=etag, request_id="i1")
    assert (again.version, again.state, again.missing) == (
        first.version,
        first.state,
        first.missing,
    )
    assert events_of(app, ident) == [CopyrightAppeal.Filed, CopyrightAppeal.InfoAdded]
    with pytest.raises(AlreadyExists, match="request_id 'i1'"):
        app.add_info(ALICE, ident, "another message", completion, etag="", request_id="i1")
    with pytest.raises(InvalidArgument, match="request_id"):
        app.add_info(ALICE, ident, "补充了标题", completion, etag="", request_id="i 1")
    assert events_of(app, ident) == [CopyrightAppeal.Filed, CopyrightAppeal.InfoAdded]


def test_a_counter_notice_sent_again_under_its_request_id_answers_as_the_first_time(
    app: Appeals,
) -> None:
    ident = upheld(app)
    removed = {"removed_item": "https://video.example/v/123", "reason": "我自己编的舞"}

    def counter_under(request_id: str, reason: str = "我自己编的舞") -> Any:
        return app.file_counter_notice(
            URSULA,
            ident,
            party("Ursula"),
            {**removed, "reason": reason},
            good_faith=True,
            accuracy=True,
            request_id=request_id,
        )

    first = counter_under("c1")
    again = counter_under("c1")  # not FAILED_PRECONDITION: the first answer again
    assert (again.version, again.state) == (first.version, "FORWARDED_TO_CLAIMANT")
    with pytest.raises(AlreadyExists, match="request_id 'c1'"):
        counter_under("c1", reason="另一个理由")
    with pytest.raises(FailedPrecondition):
        counter_under("c2")  # a second counter-notice is still refused
    assert events_of(app, ident)[-2:] == [
        CopyrightAppeal.Decided,
        CopyrightAppeal.CounterNoticeFiled,
    ]


def test_a_counter_notice_for_an_item_the_notice_never_listed_is_refused(
    app: Appeals, clock: FakeClock
) -> None:
    """A counter-notice restores the item it names: one the notice did not
    take down would be restored (and told to the claimant) as if it had
    been. It is refused, naming the field, after the refusals of the case's
    state, of a caller who is not its uploader and of a closed window."""
    elsewhere = {"removed_item": "https://video.example/v/999", "reason": "我自己编的舞"}

    def counter_as(who: Identity, ident: str, removed: dict[str, str]) -> Any:
        return app.file_counter_notice(
            who, ident, party("Ursula"), removed, good_faith=True, accuracy=True
        )

    not_upheld = str(app.file(ALICE, notice("n2")).id)
    with pytest.raises(FailedPrecondition) as not_yet:
        counter_as(ALICE, not_upheld, elsewhere)
    assert not_yet.value.reason == "NOT_AN_UPHELD_NOTICE"
    ident = upheld(app)
    before = events_of(app, ident)
    with pytest.raises(PermissionDenied):
        counter_as(ALICE, ident, elsewhere)
    with pytest.raises(InvalidArgument) as refused:
        counter_as(URSULA, ident, elsewhere)
    assert [v.field for v in refused.value.violations] == ["counter_notice.removed_item"]
    assert events_of(app, ident) == before
    listed = {**elsewhere, "removed_item": "https://video.example/v/123"}
    assert counter_as(URSULA, ident, listed).state == "FORWARDED_TO_CLAIMANT"

    late = upheld(app, str(app.file(ALICE, notice("n3")).id))
    window_end = app.get(ALICE, late).next_step_due
    assert window_end is not None
    clock.now_is(window_end + timedelta(seconds=1))
    with pytest.raises(FailedPrecondition) as closed:
        counter_as(URSULA, late, elsewhere)
    assert closed.value.reason == "COUNTER_NOTICE_WINDOW_CLOSED"


def filed(app: Appeals) -> str:
    return str(app.file(ALICE, notice()).id)


def countered(app: Appeals) -> str:
    ident = upheld(app)
    counter(app, ident)
    return ident


def held(app: Appeals) -> str:
    ident = countered(app)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    return ident


# A change under a request id on the case `ident`; `how` ("first" or "other")
# the change is made: "other" is another change.
Change = Callable[[Appeals, str, str, str], Any]

# Each appeals command the stories above do not tell: the case it may run on,
# and the command.
CHANGES: dict[str, tuple[Callable[[Appeals], str], Change]] = {
    "assign": (filed, lambda app, ident, rid, how: app.assign(AGENT, ident, how, rid)),
    "request_info": (
        filed,
        lambda app, ident, rid, how: app.request_info(
            AGENT,
            ident,
            f"{how}: 原作的链接?",
            "1",  # the etag it was read with
            rid,
        ),
    ),
    "decide": (
        filed,
        lambda app, ident, rid, how: app.decide(
            AGENT,
            ident,
            how == "first",
            {"ground": "著作权法第十条", "facts": "同一支舞"},
            party("Ursula", "ursula"),
            "1",  # the etag it was read with
            rid,
        ),
    ),
    "withdraw": (filed, lambda app, ident, rid, how: app.withdraw(ALICE, ident, how, rid)),
    "record_court_action": (
        countered,
        lambda app, ident, rid, how: app.record_court_action(
            AGENT, ident, f"{how}: 起诉书已送达", EVIDENCE, rid
        ),
    ),
    "record_court_outcome": (
        held,
        lambda app, ident, rid, how: app.record_court_outcome(
            AGENT, ident, how == "first", f"{how}: 判决书", EVIDENCE, rid
        ),
    ),
}


@pytest.mark.parametrize("command", sorted(CHANGES))
def test_each_change_sent_again_under_its_request_id_is_recorded_once(
    app: Appeals, command: str
) -> None:
    given, change = CHANGES[command]
    ident = given(app)
    # Not refused by the state the first one left.
    first, again = sent_again(app, ident, lambda rid, how: change(app, ident, rid, how))
    assert (again.version, again.state) == (first.version, first.state)


def test_a_notice_with_bad_fields_names_each_and_files_nothing(app: Appeals) -> None:
    bad = AppealDraft("n!", "TAKEDOWN", "mars", {"locale": "xx"}, {"notice": {"x": "\x00"}})
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, bad)
    fields = {v.field for v in refused.value.violations}
    assert {"request_id", "appeal.kind", "appeal.jurisdiction", "appeal.filer.locale"} <= fields
    assert app.recorder.max_notification_id() is None


def test_a_work_created_in_the_future_is_refused_naming_its_creation_time(
    app: Appeals, clock: FakeClock
) -> None:
    """A notice claiming a work dated 2090 is complete in name only: refused,
    naming the field, at filing and when completing a notice, and nothing is
    stored. A work dated a few hours ahead (a filer's clock running fast) is
    taken."""
    future = {"title": "Dance #1", "creation_time": "2090-01-01T00:00:00+00:00"}
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, notice(work=future))
    assert [v.field for v in refused.value.violations] == ["appeal.notice.work.creation_time"]
    assert app.list_appeals(ALICE, 10, "").items == []

    case = app.file(ALICE, notice(work={"title": "Dance #1"}))
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, str(case.id), "", {"notice": {"work": future}}, etag="")
    assert [v.field for v in refused.value.violations] == ["completion.notice.work.creation_time"]
    assert events_of(app, case.id) == [CopyrightAppeal.Filed]

    ahead = (clock.now() + timedelta(hours=3)).isoformat()
    completion = {"notice": {"work": {"creation_time": ahead}}}
    assert app.add_info(ALICE, str(case.id), "", completion, etag="").missing == []


def test_an_item_in_the_form_of_sealed_personal_data_is_refused_and_nothing_filed(
    app: Appeals,
) -> None:
    """An infringing item travels in the clear: shaped like a token, every
    consumer of the case's events would wait for its key for ever."""
    token = memory_sealer().sealer.sealing("mallory", None)("hello")
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, notice(infringing_items=["https://video.example/v/1", token]))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("appeal.notice.infringing_items[1]", rules.SEALED_FORM)
    ]
    assert app.recorder.max_notification_id() is None


def test_an_upheld_notice_is_countered_and_the_content_restored_when_the_window_passes(
    app: Appeals, clock: FakeClock
) -> None:
    ident = upheld(app)
    case = app.get(URSULA, ident)  # the uploader named in the decision now sees it
    assert (case.state, case.next_step) == ("UPHELD", "COUNTER_NOTICE_OR_APPEAL")
    counter(app, ident)
    case = app.get(ALICE, ident)
    assert (case.state, case.next_step) == ("FORWARDED_TO_CLAIMANT", "RESTORE")
    (deadline,) = app.deadlines_of(last_event(app, ident))
    assert deadline.kind == DeadlineKind.RESTORE_AFTER_GRACE
    # The claimant's deadline passed, the content comes back the day after
    # (`court_notice_grace`): time to record a court action reported by then.
    assert case.next_step_due == datetime(2026, 3, 18, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert deadline.due == datetime(2026, 3, 19, tzinfo=ZoneInfo("Asia/Shanghai"))
    app.fire(deadline)  # not yet due
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    clock.now_is(deadline.due)
    app.fire(deadline)
    app.fire(deadline)  # idempotent
    assert app.get(ALICE, ident).state == "RESTORED"
    assert events_of(app, ident)[-3:] == [
        CopyrightAppeal.Decided,
        CopyrightAppeal.CounterNoticeFiled,
        CopyrightAppeal.Restored,
    ]


KEEP = timedelta(days=90)


def retaining(clock: FakeClock) -> Appeals:
    """The service sealing its cases and keeping ended ones for `KEEP`."""
    personal = memory_sealer().sealer
    return Appeals(
        in_memory(), clock=clock, policies=policy.load(), sealer=personal, retain_for=KEEP
    )


def test_a_deadline_of_a_kind_this_release_does_not_know_is_left_to_one_that_does(
    app: Appeals, clock: FakeClock
) -> None:
    """A newer release's deadline, after a rollback: the timer passes it over
    (`UnknownDeadlineKind`), rather than retrying it as a failure."""
    ident = upheld(app)
    with pytest.raises(UnknownDeadlineKind):
        app.fire(Deadline(ident, "escalate", clock.now()))


def test_an_ended_case_past_its_retention_period_is_erased_and_an_open_one_is_not(
    clock: FakeClock,
) -> None:
    app, keep = retaining(clock), KEEP
    ident = upheld(app)
    counter(app, ident)
    # Decided, its window open: the retention counts from the window's end.
    decided = next(
        e
        for e in app.repository.event_store.get(UUID(ident))
        if isinstance(e, CopyrightAppeal.Decided)
    )
    window = [d for d in app.deadlines_of(decided) if d.kind == DeadlineKind.DECISION_RETENTION]
    assert decided.next_step_due is not None
    assert [d.due for d in window] == [decided.next_step_due + keep]
    # Countered (forwarded to the claimant), it has not ended: nothing to retain yet.
    kinds = [d.kind for d in app.deadlines_of(last_event(app, ident))]
    assert kinds == [DeadlineKind.RESTORE_AFTER_GRACE]
    (restore,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(restore.due)
    app.fire(restore)
    (retention,) = app.deadlines_of(last_event(app, ident))
    assert retention.due == app.get(ALICE, ident).modified_on + keep
    still_open = str(app.file(BOB, notice("b1")).id)

    # The window's deadline fires first, but the case moved on: it stands no more.
    clock.now_is(window[0].due)
    app.fire(window[0])
    assert events_of(app, ident)[-1] == CopyrightAppeal.Restored
    clock.now_is(retention.due)
    app.fire(retention)
    app.fire(retention)  # firing twice changes nothing more
    assert events_of(app, ident)[-2:] == [CopyrightAppeal.Restored, ExpiringCase.Expired]
    case = appeal_message(app.get(ALICE, ident))
    assert {case.filer.legal_name, case.notice.work.title, case.uploader.legal_name} == {ERASED}
    assert (case.counter_notice.reason, case.filer.contact.email) == (ERASED, ERASED)
    assert app.get(ALICE, ident).state == "RESTORED"  # the case itself stays
    assert [h.type for h in app.history(AGENT, ident).items][-1] == "AppealExpired"
    assert appeal_message(app.get(BOB, still_open)).filer.legal_name == "Alice Studio"
    with pytest.raises(FailedPrecondition, match="not ended"):
        app.expire_case(app.get(BOB, still_open))  # open: refused before any key is touched
    assert appeal_message(app.get(BOB, still_open)).filer.legal_name == "Alice Studio"


@pytest.mark.parametrize(
    "user_id",
    [
        "#case/1",  # a case key's owner
        "\u2068ursula\u2069",  # pasted from a chat app, in direction isolates
        "ursula\u200b",
        " ursula",
    ],
)
def test_an_uploader_named_by_no_account_id_is_refused(app: Appeals, user_id: str) -> None:
    """An uploader's account named with invisible characters or spaces
    around it is no account: the real one could not see the case, nor
    would an erasure of them reach what it holds."""
    ident = str(app.file(ALICE, notice()).id)
    app.assign(AGENT, ident, "")
    reasons = {"ground": "著作权法第十条", "facts": "同一支舞"}
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, ident, True, reasons, party("Ursula", user_id), etag="")
    assert [v.field for v in refused.value.violations] == ["affected_uploader.user_id"]
    assert app.get(ALICE, ident).state == "UNDER_REVIEW"


def test_a_retention_deadline_keeps_the_period_it_was_scheduled_with(clock: FakeClock) -> None:
    personal = memory_sealer().sealer
    app = Appeals(in_memory(), clock=clock, policies=policy.load(), sealer=personal)
    ident = str(app.file(ALICE, notice()).id)
    app.withdraw(ALICE, ident, "已私下解决")
    (deadline,) = app.deadlines_of(last_event(app, ident))
    assert deadline.kind == DeadlineKind.RETENTION
    # A release shortens or lengthens the period: cases ended before keep theirs.
    app.retain_for = timedelta(days=1)
    clock.now_is(deadline.due)
    app.fire(deadline)
    assert events_of(app, ident)[-1] == ExpiringCase.Expired


def test_court_action_within_the_window_holds_the_restore(app: Appeals, clock: FakeClock) -> None:
    ident = upheld(app)
    counter(app, ident)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    case = app.get(ALICE, ident)
    assert (case.state, case.next_step) == ("HELD", "COURT")
    assert app.deadlines_of(last_event(app, ident)) == []


# What US law asks of a counter-notice besides (17 U.S.C. 512(g)(3)): the
# uploader's signature, address and telephone number, their consent to a
# federal court's jurisdiction and their acceptance of service of process.
US_ADDRESS = "1 Main St\nSpringfield, IL 62701\nUSA"
US_PHONE = "+12025550143"
US_STATEMENTS = {
    "consent_to_jurisdiction": True,
    "accepts_service_of_process": True,
    "signature": "Ursula Uploader",
}


def us_party(name: str) -> dict[str, Any]:
    """A party giving what a US counter-notice needs of them."""
    given = party(name)
    return {**given, "postal_address": US_ADDRESS, "contact": {**CONTACT, "phone": US_PHONE}}


def countered_under(app: Appeals, jurisdiction: str) -> str:
    """Alice's notice under `jurisdiction`, upheld, and Ursula's counter-notice to it."""
    ident = upheld(app, str(app.file(ALICE, replace(notice(), jurisdiction=jurisdiction)).id))
    app.file_counter_notice(
        URSULA,
        ident,
        us_party("Ursula"),
        {"removed_item": "https://video.example/v/123", "reason": "我自己编的舞", **US_STATEMENTS},
        good_faith=True,
        accuracy=True,
    )
    return ident


@pytest.mark.parametrize("jurisdiction", ["cn", "us", "eu"])
def test_a_court_action_reported_by_the_deadline_is_recorded_after_it_and_nothing_comes_back(
    app: Appeals, clock: FakeClock, jurisdiction: str
) -> None:
    """Alice opened a ticket hours before her deadline to say she sued; an
    agent answers it an hour after the deadline. The court action is
    recorded, and the content stays down: the restore, due once the grace
    after the deadline has run, finds the case held."""
    ident = countered_under(app, jurisdiction)
    deadline = app.get(ALICE, ident).next_step_due
    assert deadline is not None
    (restore,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(deadline + timedelta(hours=1))
    app.fire(restore)  # not due yet: the grace runs
    case = app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    assert (case.state, case.next_step) == ("HELD", "COURT")
    clock.now_is(restore.due)
    app.fire(restore)
    assert app.get(ALICE, ident).state == "HELD"
    assert CopyrightAppeal.Restored not in events_of(app, ident)


@pytest.mark.parametrize("jurisdiction", ["cn", "us", "eu"])
def test_a_court_action_recorded_after_the_grace_is_refused_and_the_content_comes_back(
    app: Appeals, clock: FakeClock, jurisdiction: str
) -> None:
    ident = countered_under(app, jurisdiction)
    (restore,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(restore.due)
    with pytest.raises(FailedPrecondition) as refused:
        app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    assert refused.value.reason == "COURT_ACTION_WINDOW_CLOSED"
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    app.fire(restore)
    assert app.get(ALICE, ident).state == "RESTORED"


@pytest.mark.parametrize(
    ("jurisdiction", "zone", "deadline", "restored"),
    [
        # Forwarded on Monday 2 March 2026, 17:00 Beijing time: told until
        # 24:00 on 17 March (E-Commerce Law Art. 43's 15 days); restored at
        # 24:00 on the 18th.
        ("cn", "Asia/Shanghai", datetime(2026, 3, 18), datetime(2026, 3, 19)),
        # 04:00 in New York: told until the end of the 10th business day
        # (Monday 16 March); restored after the 12th (Wednesday 18 March),
        # within DMCA 512(g)'s 14.
        ("us", "America/New_York", datetime(2026, 3, 17), datetime(2026, 3, 19)),
        # 14 days by policy, and a day more.
        ("eu", "UTC", datetime(2026, 3, 16, 9), datetime(2026, 3, 17, 9)),
    ],
)
def test_the_content_comes_back_when_the_grace_after_the_deadline_has_run(
    app: Appeals,
    clock: FakeClock,
    jurisdiction: str,
    zone: str,
    deadline: datetime,
    restored: datetime,
) -> None:
    """Both parties are told the claimant's deadline (`next_step_due`);
    the content does not come back at it, but once the grace has run."""
    ident = countered_under(app, jurisdiction)
    case = app.get(ALICE, ident)
    assert case.next_step_due == deadline.replace(tzinfo=ZoneInfo(zone))
    (restore,) = app.deadlines_of(last_event(app, ident))
    assert (restore.kind, restore.due) == (
        DeadlineKind.RESTORE_AFTER_GRACE,
        restored.replace(tzinfo=ZoneInfo(zone)),
    )
    clock.now_is(case.next_step_due)
    app.fire(restore)
    clock.now_is(restore.due - timedelta(seconds=1))
    app.fire(restore)
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    clock.now_is(restore.due)
    app.fire(restore)
    assert app.get(ALICE, ident).state == "RESTORED"


def test_a_restore_scheduled_at_the_deadline_before_the_grace_still_restores_then(
    app: Appeals, clock: FakeClock
) -> None:
    """A case forwarded by a release without the grace has its timer row at
    the claimant's deadline, and no other: its parties were told the
    content comes back then, and it does. One this release forwarded (its
    restore time recorded) is not restored by a row at the deadline (an
    older release's timer during a rollout): that row moves to its time."""
    ident = countered(app)
    deadline = app.get(ALICE, ident).next_step_due
    assert deadline is not None
    scheduled_before = Deadline(ident, DeadlineKind.RESTORE, deadline)
    clock.now_is(deadline)
    moved = app.fire(scheduled_before)
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    assert moved == restore_deadline(app, ident)
    stored_as_first_version(app, ident)
    assert app.fire(scheduled_before) is None
    assert app.get(ALICE, ident).state == "RESTORED"


def test_a_restore_scheduled_under_another_grace_moves_to_the_cases_own(
    app: Appeals, clock: FakeClock
) -> None:
    """A restore row of a time that is neither the deadline nor the end of
    the grace (scheduled under another grace) restores nothing; the timer
    is given the case's own time (`restores_at`, as recorded)."""
    ident = countered(app)
    (restore,) = app.deadlines_of(last_event(app, ident))
    longer = Deadline(ident, DeadlineKind.RESTORE, restore.due + timedelta(days=2))
    shorter = Deadline(ident, DeadlineKind.RESTORE, restore.due - timedelta(hours=12))
    clock.now_is(shorter.due)
    assert app.fire(shorter) == restore
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    clock.now_is(longer.due)
    assert app.fire(longer) == restore
    assert app.fire(restore) is None
    assert app.get(ALICE, ident).state == "RESTORED"


def with_grace(app: Appeals, days: int) -> None:
    """The service restarted with China's grace after the claimant's
    deadline changed to `days` whole days (its policy file edited)."""
    cn = app.policies["cn"]
    grace = policy.Period(days, whole_days=True)
    app.policies = {**app.policies, "cn": replace(cn, court_notice_grace=grace)}


@pytest.mark.parametrize("days", [0, 3])
def test_a_grace_changed_after_forwarding_keeps_the_restore_time_the_case_was_given(
    app: Appeals, clock: FakeClock, days: int
) -> None:
    """Forwarded under a day's grace; the grace changed since (or another
    replica's policy file says otherwise). The content comes back when the
    case was given, neither earlier nor later."""
    ident = countered(app)
    deadline = app.get(ALICE, ident).next_step_due
    assert deadline is not None
    (restore,) = app.deadlines_of(last_event(app, ident))
    with_grace(app, days)
    assert app.deadlines_of(last_event(app, ident)) == [restore]
    clock.now_is(deadline + timedelta(hours=1))
    assert app.fire(restore) is None
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    clock.now_is(restore.due)
    assert app.fire(restore) is None
    assert app.get(ALICE, ident).state == "RESTORED"


def test_a_grace_shortened_after_forwarding_still_takes_a_court_action_within_the_cases(
    app: Appeals, clock: FakeClock
) -> None:
    """Alice reported her court action by her deadline; the grace was cut
    to nothing before an agent answered her ticket an hour after it. Her
    case was given a day: the action is recorded and the content stays
    down."""
    ident = countered(app)
    deadline = app.get(ALICE, ident).next_step_due
    assert deadline is not None
    (restore,) = app.deadlines_of(last_event(app, ident))
    with_grace(app, 0)
    clock.now_is(deadline + timedelta(hours=1))
    case = app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    assert (case.state, case.next_step) == ("HELD", "COURT")
    clock.now_is(restore.due)
    app.fire(restore)
    assert app.get(ALICE, ident).state == "HELD"


def test_a_forwarded_counter_notice_is_published_with_when_the_content_comes_back(
    app: Appeals,
) -> None:
    """Consumers are told both times: the claimant's deadline to report
    court action, and when the content comes back unless one is recorded."""
    ident = countered(app)
    case = app.get(ALICE, ident)
    (restore,) = app.deadlines_of(last_event(app, ident))
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.CounterNoticeFiled)
    assert message.restore_time.ToDatetime(UTC) == case.next_step_due
    assert message.header.next_step_due == message.restore_time
    assert message.restores_at.ToDatetime(UTC) == restore.due > case.next_step_due


def stored_as_first_version(app: Appeals, ident: str) -> None:
    """The case's last event (its counter-notice) as stored before the
    forwarding kept when the content comes back."""
    recorder = cast(Any, app.recorder)
    version = last_event(app, ident).originator_version
    position = recorder._stored_events_index[ident][version]
    stored = recorder._stored_events[position]
    state = app.mapper.transcoder.decode(stored.state)
    del state["restores_at"], state["class_version"]
    recorder._stored_events[position] = replace(stored, state=app.mapper.transcoder.encode(state))


def test_a_counter_notice_forwarded_before_its_restore_time_was_kept_follows_the_policy(
    app: Appeals, clock: FakeClock
) -> None:
    """Forwarded by a release that did not keep when the content comes back:
    published without it, and restored when the grace as the policy has it
    now has run after the claimant's deadline, as that release did."""
    ident = countered(app)
    stored_as_first_version(app, ident)
    message = public_message(last_event(app, ident), app.get(ALICE, ident))
    assert isinstance(message, aev.CounterNoticeFiled)
    assert message.HasField("restore_time") and not message.HasField("restores_at")
    with_grace(app, 3)
    deadline = app.get(ALICE, ident).next_step_due
    assert deadline is not None
    (restore,) = app.deadlines_of(last_event(app, ident))
    assert restore.due == app.policies["cn"].court_action_until(deadline)
    assert restore.due == deadline + timedelta(days=3)
    clock.now_is(restore.due - timedelta(seconds=1))
    app.fire(restore)
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"
    clock.now_is(restore.due)
    assert app.fire(restore) is None
    assert app.get(ALICE, ident).state == "RESTORED"


def test_a_held_case_ends_with_its_court_outcome_and_is_erased_after_its_retention(
    clock: FakeClock,
) -> None:
    app = retaining(clock)
    ident = held(app)
    with pytest.raises(InvalidArgument) as refused:
        app.record_court_outcome(AGENT, ident, None, " ", [])
    assert {v.field for v in refused.value.violations} == {"outcome", "details"}
    assert app.get(ALICE, ident).state == "HELD"
    with pytest.raises(PermissionDenied):
        app.record_court_outcome(ALICE, ident, True, "判决书", [])

    app.record_court_outcome(AGENT, ident, True, "（2026）京0491民初1号：驳回上传者", EVIDENCE)
    case = app.get(ALICE, ident)
    assert (case.state, case.next_step, case.next_step_due) == ("UPHELD_BY_COURT", "", None)
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.CourtOutcomeRecorded)
    assert (message.outcome, message.removed_item) == ("CONTENT_STAYS_DOWN", "")
    assert [h.type for h in app.history(URSULA, ident).items][-1] == "CourtOutcomeRecorded"
    (retention,) = app.deadlines_of(last_event(app, ident))
    assert (retention.kind, retention.due) == (DeadlineKind.RETENTION, case.modified_on + KEEP)
    clock.now_is(retention.due)
    app.fire(retention)
    assert events_of(app, ident)[-1] == ExpiringCase.Expired
    expired = appeal_message(app.get(ALICE, ident))
    assert (expired.filer.legal_name, expired.counter_notice.reason) == (ERASED, ERASED)


def test_an_agents_text_longer_than_the_contract_allows_is_refused_and_changes_nothing(
    app: Appeals,
) -> None:
    """Requests and court details are held to 2,000 characters, as the
    contract says, by the service itself (not only by the gateway)."""
    too_long = "长" * 2001
    ident = held(app)
    before = len(events_of(app, ident))
    refusals: list[tuple[str, Callable[[], object]]] = [
        ("details", lambda: app.record_court_outcome(AGENT, ident, True, too_long, [])),
        ("details", lambda: app.record_court_action(AGENT, ident, too_long, [])),
        ("message", lambda: app.request_info(AGENT, ident, too_long)),
    ]
    for field, refuse in refusals:
        with pytest.raises(InvalidArgument) as refused:
            refuse()
        assert [v.field for v in refused.value.violations] == [field]
    assert len(events_of(app, ident)) == before
    app.record_court_outcome(AGENT, ident, True, "长" * 2000, [])
    assert app.get(ALICE, ident).state == "UPHELD_BY_COURT"


def test_an_agents_request_and_court_action_are_kept_as_trimmed(app: Appeals) -> None:
    """The white space around an agent's request or court details is not
    part of it: the filer is sent, and the history shows, the text alone."""
    ident = countered(app)
    case = app.record_court_action(AGENT, ident, "\t起诉书已送达  ", EVIDENCE)
    assert case.court_action == "起诉书已送达"
    assert app.history(ALICE, ident).items[-1].text == "起诉书已送达"
    asked = str(app.file(ALICE, notice("n2")).id)
    app.request_info(AGENT, asked, "  请提供原作的链接\n\n")
    message = public_message(last_event(app, asked), app.get(ALICE, asked))
    assert isinstance(message, aev.AppealInfoRequested)
    assert message.message == "请提供原作的链接"
    assert app.history(ALICE, asked).items[-1].text == "请提供原作的链接"


def test_a_filers_text_that_breaks_the_text_rules_is_refused_and_changes_nothing(
    app: Appeals,
) -> None:
    """The answer to a request and the reason for withdrawing are held to
    5,000 characters with no control characters, like every text the
    history shows (a reason of a million characters was once stored)."""
    ident = str(app.file(ALICE, notice()).id)
    before = len(events_of(app, ident))
    for bad in ("长" * 5001, "撤回\x00\x1b[2J"):
        with pytest.raises(InvalidArgument) as refused:
            app.withdraw(ALICE, ident, bad)
        assert [v.field for v in refused.value.violations] == ["reason"]
        with pytest.raises(InvalidArgument) as refused:
            app.add_info(ALICE, ident, bad, {}, etag="")
        assert [v.field for v in refused.value.violations] == ["message"]
    assert len(events_of(app, ident)) == before
    app.add_info(ALICE, ident, "长" * 5000, {}, etag="")
    assert app.withdraw(ALICE, ident, "和解了\n谢谢").state == "WITHDRAWN"


def test_a_court_outcome_that_restores_the_content_names_the_item_to_restore(
    app: Appeals,
) -> None:
    ident = held(app)
    app.record_court_outcome(AGENT, ident, False, "原告撤诉", [])
    case = app.get(ALICE, ident)
    assert case.state == "RESTORED"
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.CourtOutcomeRecorded)
    assert message.outcome == "CONTENT_RESTORED"
    assert message.removed_item == "https://video.example/v/123"  # the counter-notice's


def test_a_case_carries_only_the_parts_of_its_kind_and_restores_the_uploaders_item(
    app: Appeals, clock: FakeClock
) -> None:
    """A claimant who puts a counter-notice in their own notice (or in what
    they add to it) is refused, naming the part: it would show the uploader
    one she never filed, and the restoration would name its item, not hers."""
    draft = notice("n2")
    planted = {"removed_item": "https://video.example/v/999", "reason": "x"}
    for kind_draft, field in (
        (replace(draft, content={**draft.content, "counter_notice": planted}), "counter_notice"),
        (replace(draft, content={**draft.content, "grounds": "不服"}), "grounds"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            app.file(ALICE, kind_draft)
        assert [v.field for v in refused.value.violations] == [f"appeal.{field}"]
    ident = upheld(app)
    before = len(events_of(app, ident))
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, ident, "补充", {"counter_notice": planted}, etag="")
    assert [v.field for v in refused.value.violations] == ["completion.counter_notice"]
    assert len(events_of(app, ident)) == before
    counter(app, ident)
    (restore,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(restore.due)
    app.fire(restore)
    case = app.get(ALICE, ident)
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.ContentRestored)
    assert message.removed_item == "https://video.example/v/123"


def test_an_unanswered_request_abandons_the_case_when_its_deadline_passes(
    app: Appeals, clock: FakeClock
) -> None:
    ident = str(app.file(ALICE, notice()).id)
    app.request_info(AGENT, ident, "请提供作品首次发表的链接")
    case = app.get(ALICE, ident)
    assert (case.state, case.next_step) == ("INFO_REQUESTED", "YOUR_INFORMATION")
    (deadline,) = app.deadlines_of(last_event(app, ident))
    assert deadline.kind == DeadlineKind.ABANDON
    clock.now_is(deadline.due + timedelta(seconds=1))
    app.fire(deadline)
    assert app.get(ALICE, ident).state == "ABANDONED"


def test_a_request_for_information_from_a_stale_page_is_refused_and_changes_nothing(
    app: Appeals, clock: FakeClock
) -> None:
    """The agent opens a notice waiting for the infringing link; Alice sends
    it, and the case is up for review again. Asking her again from the page
    as the agent read it is refused as stale (ABORTED): she is not asked
    twice, and no deadline will abandon her complete case. Read again, the
    agent may ask."""
    ident = str(app.file(ALICE, notice(infringing_items=[])).id)
    read = app.get(AGENT, ident)
    assert (read.state, read.missing) == ("INFO_REQUESTED", ["notice.infringing_items"])
    links = {"notice": {"infringing_items": ["https://video.example/v/123"]}}
    assert app.add_info(ALICE, ident, "链接在此", links, etag="").state == "SUBMITTED"
    before = events_of(app, ident)
    with pytest.raises(Aborted) as refused:
        app.request_info(AGENT, ident, "请提供侵权链接", etag=str(read.version))
    assert refused.value.reason == "STALE_ETAG"
    assert events_of(app, ident) == before
    case = app.get(ALICE, ident)
    assert (case.state, case.next_step) == ("SUBMITTED", "REVIEW")
    assert not any(d.kind == DeadlineKind.ABANDON for d in app.deadlines_of(last_event(app, ident)))
    fresh = app.get(AGENT, ident)
    asked = app.request_info(AGENT, ident, "请提供首次发表的链接", etag=str(fresh.version))
    assert asked.state == "INFO_REQUESTED"


def test_an_answer_that_completes_something_gives_the_filer_a_new_response_period(
    app: Appeals, clock: FakeClock
) -> None:
    """Two elements missing; an hour before the deadline the filer sends one.
    The case waits for the other from then, not from the filing: the first
    deadline no longer abandons it. An answer that completes nothing keeps
    the deadline it had."""
    ident = str(app.file(ALICE, notice(work={}, infringement_evidence=[])).id)
    (first,) = app.deadlines_of(last_event(app, ident))
    assert first.kind == DeadlineKind.ABANDON
    clock.now_is(first.due - timedelta(hours=1))
    work = {"notice": {"work": {"title": "Dance #1", "creation_time": "2026-01-01T00:00:00+00:00"}}}
    case = app.add_info(ALICE, ident, "补充了作品", work, etag="")
    assert (case.state, case.missing) == ("INFO_REQUESTED", ["notice.infringement_evidence"])
    (renewed,) = app.deadlines_of(last_event(app, ident))
    assert renewed.kind == DeadlineKind.ABANDON and renewed.due > first.due
    clock.now_is(first.due)
    app.fire(first)
    assert app.get(ALICE, ident).state == "INFO_REQUESTED"
    app.add_info(ALICE, ident, "稍后补充", {}, etag="")  # completes nothing
    assert app.deadlines_of(last_event(app, ident)) == [renewed]
    clock.now_is(renewed.due)
    app.fire(renewed)
    assert app.get(ALICE, ident).state == "ABANDONED"


def test_elements_sent_later_add_to_those_the_case_has(app: Appeals) -> None:
    """Alice sends more evidence of originality, and another video, after
    filing: the case holds both pieces of evidence and both videos (one sent
    again is held once), and Ursula may counter the removal of the first."""
    later = [{"name": "evidence/b", "sha256": "b" * 64}]
    ident = str(app.file(ALICE, notice()).id)
    more = {
        "originality_evidence": EVIDENCE + later,
        "infringing_items": ["https://video.example/v/999"],
    }
    held = app.add_info(ALICE, ident, "还有一个视频", {"notice": more}, etag="").content["notice"]
    assert held["originality_evidence"] == EVIDENCE + later
    assert held["infringing_items"] == [
        "https://video.example/v/123",
        "https://video.example/v/999",
    ]
    upheld(app, ident)
    counter(app, ident)  # names v/123
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"


def test_information_added_when_lists_replaced_the_cases_reads_as_it_was(app: Appeals) -> None:
    """Information stored when a list sent replaced the one the case had
    (version 1) reads as it did then: the case held the later evidence
    alone, and was decided on it."""
    ident = str(app.file(ALICE, notice()).id)
    later = [{"name": "evidence/b", "sha256": "b" * 64}]
    app.add_info(ALICE, ident, "换一份证据", {"notice": {"originality_evidence": later}}, etag="")
    assert app.get(ALICE, ident).content["notice"]["originality_evidence"] == EVIDENCE + later
    recorder = cast(Any, app.recorder)
    position = recorder._stored_events_index[ident][last_event(app, ident).originator_version]
    stored = recorder._stored_events[position]
    state = app.mapper.transcoder.decode(stored.state)
    assert (state.pop("class_version"), state.pop("add_to_lists")) == (2, True)
    recorder._stored_events[position] = replace(stored, state=app.mapper.transcoder.encode(state))
    assert app.get(ALICE, ident).content["notice"]["originality_evidence"] == later


def test_a_list_completed_holds_at_most_fifty_items(app: Appeals) -> None:
    """Alice's notice names one video; she sends 49 more, which the case
    holds. One more would make 51 (though she never sent more than 50 at
    once): it is refused, naming the list, and nothing changes. Sending
    again a video the case holds adds nothing and is not refused."""
    ident = str(app.file(ALICE, notice()).id)
    videos = [f"https://video.example/v/{n}" for n in range(1000, 1049)]
    case = app.add_info(ALICE, ident, "", {"notice": {"infringing_items": videos}}, etag="")
    assert len(case.content["notice"]["infringing_items"]) == 50
    before = events_of(app, ident)
    one_more = {"notice": {"infringing_items": ["https://video.example/v/2000"]}}
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, ident, "还有一个", one_more, etag="")
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("completion.notice.infringing_items", "at most 50 items")
    ]
    assert events_of(app, ident) == before
    assert len(app.get(ALICE, ident).content["notice"]["infringing_items"]) == 50
    again = {"notice": {"infringing_items": videos[:1]}}
    case = app.add_info(ALICE, ident, "", again, etag="")
    assert len(case.content["notice"]["infringing_items"]) == 50


def test_a_case_an_earlier_release_let_past_fifty_items_may_be_sent_what_it_holds(
    app: Appeals,
) -> None:
    """A notice holding 60 videos (three completions under the release that
    checked each alone): sending one it holds changes no count and is taken;
    one more is refused."""
    ident = str(app.file(ALICE, notice()).id)
    videos = [f"https://video.example/v/{n}" for n in range(1000, 1060)]
    stored_with(app, ident, lambda content: content["notice"].update(infringing_items=videos))
    case = app.add_info(ALICE, ident, "", {"notice": {"infringing_items": videos[:1]}}, etag="")
    assert len(case.content["notice"]["infringing_items"]) == 60
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, ident, "", {"notice": {"infringing_items": ["v/2000"]}}, etag="")
    assert [v.field for v in refused.value.violations] == ["completion.notice.infringing_items"]


def test_a_filer_asked_for_one_detail_sends_it_alone(app: Appeals) -> None:
    """Asked for her legal name, Alice sends it alone: her language and
    channels stay as the case has them, and the case goes to review. A bad
    value she sends, or one that leaves her details wrong together (SMS with
    no phone), is refused, naming it, and nothing changes."""
    ident = str(app.file(ALICE, replace(notice(), filer=party(""))).id)
    case = app.get(ALICE, ident)
    assert (case.state, case.missing) == ("INFO_REQUESTED", ["filer.legal_name"])
    before = events_of(app, ident)
    for bad, field in (
        ({"legal_name": "Alice Studio", "locale": "fr"}, "completion.filer.locale"),
        ({"contact": {"channels": ["SMS"]}}, "completion.filer.contact.phone"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            app.add_info(ALICE, ident, "", {"filer": bad}, etag="")
        assert [v.field for v in refused.value.violations] == [field]
    assert events_of(app, ident) == before
    case = app.add_info(ALICE, ident, "", {"filer": {"legal_name": "Alice Studio"}}, etag="")
    assert (case.state, case.missing) == ("SUBMITTED", [])
    assert case.content["filer"] == party("Alice Studio", "alice")
    # Her channels are the ones she sends, not more: SMS alone gives up e-mail.
    sms = {"channels": ["SMS"], "phone": "+8613800138000"}
    case = app.add_info(ALICE, ident, "", {"filer": {"contact": sms}}, etag="")
    assert case.content["filer"]["contact"] == {**CONTACT, **sms}


def stored_with(app: Appeals, ident: str, change: Callable[[dict[str, Any]], object]) -> None:
    """The case `ident` as filed by an earlier release whose rules let
    through what `change` makes of its content: written into its stored
    Filed event."""
    stored_event_with(app, ident, 1, lambda state: change(state["content"]))


def stored_event_with(
    app: Appeals, ident: str, version: int, change: Callable[[dict[str, Any]], object]
) -> None:
    """The case `ident`'s event `version` as an earlier release stored it:
    what `change` makes of its state."""
    recorder = cast(Any, app.recorder)
    position = recorder._stored_events_index[ident][version]
    stored = recorder._stored_events[position]
    state = app.mapper.transcoder.decode(stored.state)
    change(state)
    recorder._stored_events[position] = replace(stored, state=app.mapper.transcoder.encode(state))


def stored_with_contact(app: Appeals, ident: str, contact: dict[str, Any]) -> None:
    """The case `ident` as filed by an earlier release whose rules let the
    filer's `contact` through."""
    stored_with(app, ident, lambda content: content["filer"].update(contact=contact))


@pytest.mark.parametrize("email", ["alice@example.com\u200b", "alice@ex_ample.com"])
def test_a_filer_is_not_refused_for_a_stored_detail_they_did_not_send(
    app: Appeals, email: str
) -> None:
    """Alice filed when the e-mail rule let her address through (a zero-width
    space pasted after it, an `_` in its host); today's refuses it. Asked for
    her legal name, she sends it alone and the case goes to review. What she
    sends is still checked with what the case holds: SMS chosen with no phone
    anywhere is refused, naming the phone only; once her phone is there, SMS
    alone is taken."""
    ident = str(app.file(ALICE, replace(notice(), filer=party(""))).id)
    stored_with_contact(app, ident, {"email": email, "channels": ["EMAIL"]})
    case = app.add_info(ALICE, ident, "", {"filer": {"legal_name": "Alice Studio"}}, etag="")
    assert (case.state, case.missing) == ("SUBMITTED", [])
    assert case.content["filer"]["legal_name"] == "Alice Studio"
    before = events_of(app, ident)
    sms = {"filer": {"contact": {"channels": ["SMS"]}}}
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, ident, "", sms, etag="")
    assert [v.field for v in refused.value.violations] == ["completion.filer.contact.phone"]
    assert events_of(app, ident) == before
    phone = {"filer": {"contact": {"phone": "+8613800138000"}}}
    app.add_info(ALICE, ident, "", phone, etag="")
    case = app.add_info(ALICE, ident, "", sms, etag="")
    assert case.content["filer"]["contact"] == {
        "email": email,
        "channels": ["SMS"],
        "phone": "+8613800138000",
    }
    # E-mail chosen again: its address is hers to answer for now.
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, ident, "", {"filer": {"contact": {"channels": ["EMAIL"]}}}, etag="")
    assert [v.field for v in refused.value.violations] == ["completion.filer.contact.email"]


def test_the_filer_withdraws_and_nobody_else_may(app: Appeals) -> None:
    ident = str(app.file(ALICE, notice()).id)
    with pytest.raises(NotFound):
        app.withdraw(URSULA, ident, "")  # not a party: the case is not there for them
    assert app.withdraw(ALICE, ident, "和解了").state == "WITHDRAWN"
    with pytest.raises(FailedPrecondition):
        app.assign(AGENT, ident, "")


def decision_appeal(ident: str) -> AppealDraft:
    """Ursula's appeal of the decision on the case `ident`."""
    return AppealDraft(
        "a1",
        "DECISION_APPEAL",
        "cn",
        party("Ursula", "ursula"),
        {"grounds": "舞蹈是我原创的"},
        appeal_of=f"appeals/{ident}",
    )


def test_a_decision_is_appealed_within_its_window_and_not_after(
    app: Appeals, clock: FakeClock
) -> None:
    ident = upheld(app)
    appeal = decision_appeal(ident)
    filed = app.file(URSULA, appeal)
    assert (filed.kind, filed.state) == ("DECISION_APPEAL", "SUBMITTED")
    deadline = app.get(ALICE, ident).decision["appeal_deadline"]  # type: ignore[index]
    clock.now_is(deadline + timedelta(seconds=1))
    late = AppealDraft(**{**vars(appeal), "request_id": "a2"})
    assert refusal(app, URSULA, late) == "APPEAL_WINDOW_CLOSED"
    # A report decision's window is the one the gateway vouches for ("" when
    # there is no decision): refused alike, naming what the appeal appeals.
    of_report = replace(late, appeal_of="report-cases/" + ident)
    assert refusal(app, URSULA, of_report, "") == "NO_DECISION_TO_APPEAL"
    closed = (deadline - timedelta(days=1)).isoformat()
    assert refusal(app, URSULA, of_report, closed) == "APPEAL_WINDOW_CLOSED"


@pytest.mark.parametrize(
    ("scope", "jurisdiction"),
    [("DE,FR", "eu"), ("CN,DE", "eu"), ("", "eu"), ("CN", "cn"), ("US", "cn"), (None, "cn")],
)
def test_an_appeal_of_a_report_decision_runs_under_the_law_where_it_applies(
    app: Appeals, clock: FakeClock, scope: str | None, jurisdiction: str
) -> None:
    """A decision that applies in the EU is appealed under the DSA (six
    months, the out-of-court bodies of Art. 21 named at the end), whatever the
    filer left empty; China's alone under China's; the service's default
    otherwise, or when the gateway does not say where it applies."""
    until = (clock.now() + timedelta(days=30)).isoformat()
    draft = AppealDraft(
        **{
            **vars(decision_appeal("")),
            "jurisdiction": "",
            "appeal_of": f"report-cases/{uuid.uuid4()}",
        }
    )
    assert app.file(URSULA, draft, until, scope).jurisdiction == jurisdiction


def test_an_appeal_of_an_eu_report_decision_cannot_choose_chinas_law(
    app: Appeals, clock: FakeClock
) -> None:
    until = (clock.now() + timedelta(days=30)).isoformat()
    draft = AppealDraft(
        **{**vars(decision_appeal("")), "appeal_of": f"report-cases/{uuid.uuid4()}"}
    )
    with pytest.raises(InvalidArgument) as refused:
        app.file(URSULA, draft, until, "DE")
    assert "appeal.jurisdiction" in str(refused.value)


def test_an_appeal_is_decided_by_a_person_and_names_no_uploader(app: Appeals) -> None:
    """Only upholding a notice takes someone's content down: an uploader
    named on an appeal would be told of a removal that never was. And an
    appeal may not be decided solely by automated means (DSA Art. 20(6))."""
    appeal = str(app.file(URSULA, decision_appeal(upheld(app))).id)
    app.assign(AGENT, appeal, "")
    before = len(events_of(app, appeal))
    reasons = {"ground": "原创", "facts": "同一支舞"}
    for uploader, automated, field in (
        (party("Ursula", "ursula"), False, "affected_uploader"),
        (None, True, "reasons.automated_decision"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            app.decide(
                AGENT, appeal, True, {**reasons, "automated_decision": automated}, uploader, etag=""
            )
        assert [v.field for v in refused.value.violations] == [field]
    assert len(events_of(app, appeal)) == before
    assert app.decide(AGENT, appeal, True, reasons, None, etag="").state == "UPHELD"


def test_a_rejected_notice_names_no_uploader(app: Appeals) -> None:
    """Rejecting a notice takes nobody's content down: an uploader named with
    it would be dropped unsaid, the agent believing them named. It is
    refused, naming `affected_uploader` as on an appeal, and the case stays
    as it was."""
    ident = str(app.file(ALICE, notice()).id)
    app.assign(AGENT, ident, "")
    before = events_of(app, ident)
    reasons = {"ground": "证据不足", "facts": "无法比对"}
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, ident, False, reasons, party("Ursula", "ursula"), etag="")
    assert [(v.field, v.description) for v in refused.value.violations] == [
        (
            "affected_uploader",
            "only upholding a TAKEDOWN_NOTICE, or an appeal of its rejection, names one",
        )
    ]
    assert events_of(app, ident) == before
    case = app.get(ALICE, ident)
    assert (case.state, case.decision, case.uploader) == ("UNDER_REVIEW", None, None)


def test_an_upheld_appeal_of_the_uploader_restores_what_the_notice_took_down(
    app: Appeals,
) -> None:
    """Ursula appeals the decision that took her video down, and wins: the
    notice's case is reversed in the same change, its content restored
    (every item it took down), and the claimant told (ContentRestored)."""
    ident = upheld(app)
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    app.decide(AGENT, appeal, False, {"ground": "原创", "facts": "不成立"}, None, etag="")
    assert app.get(ALICE, ident).state == "UPHELD"  # a rejected appeal changes nothing
    second = str(app.file(URSULA, replace(decision_appeal(ident), request_id="a2")).id)
    app.assign(AGENT, second, "")
    app.decide(AGENT, second, True, {"ground": "原创", "facts": "舞蹈为其原创"}, None, etag="")
    case = app.get(ALICE, ident)
    assert case.state == "RESTORED"
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.ContentRestored)
    assert list(message.restored_items) == ["https://video.example/v/123"]
    assert message.removed_item == "https://video.example/v/123"  # as consumers read it
    assert message.outcome_of == f"appeals/{second}"
    assert [h.type for h in app.history(URSULA, ident).items][-1] == "ContentRestored"


def test_content_restored_on_appeal_shows_the_claimant_no_contact_of_the_uploader(
    app: Appeals,
) -> None:
    """The claimant receives the uploader's contact with a forwarded
    counter-notice, and only then: restored on the uploader's appeal, with no
    counter-notice filed, the notice shows her only the uploader's name."""
    private = {"email": "ursula@example.com", "phone": "+8613900139000", "channels": ["EMAIL"]}
    ident = str(app.file(ALICE, notice()).id)
    app.assign(AGENT, ident, "")
    reasons = {"ground": "著作权法第十条", "facts": "同一支舞"}
    named = {**party("Ursula", "ursula"), "contact": private}
    app.decide(AGENT, ident, True, reasons, named, etag="")
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    app.decide(AGENT, appeal, True, {"ground": "原创", "facts": "舞蹈为其原创"}, None, etag="")

    def uploader_seen(case: str) -> Any:
        return for_viewer(appeal_message(app.get(ALICE, case)), ALICE).uploader

    assert app.get(ALICE, ident).state == "RESTORED"
    seen = uploader_seen(ident)
    assert (seen.legal_name, seen.HasField("contact")) == ("Ursula", False)
    assert for_viewer(appeal_message(app.get(AGENT, ident)), AGENT).uploader.contact.phone
    # Countered, the claimant has the contact the counter-notice gives.
    other = upheld(app, str(app.file(ALICE, notice("n2")).id))
    counter(app, other)
    assert uploader_seen(other).contact.email == CONTACT["email"]


def test_an_upheld_appeal_of_the_claimant_upholds_the_notice_naming_the_uploader(
    app: Appeals,
) -> None:
    """Alice's notice was rejected; she appeals and wins. The agent names
    the uploader (refused without one, nothing changed): the notice is upheld
    after all, and the uploader may answer it with a counter-notice."""
    ident = str(app.file(ALICE, notice()).id)
    app.assign(AGENT, ident, "")
    app.decide(AGENT, ident, False, {"ground": "证据不足", "facts": "无法比对"}, None, etag="")
    appeal = str(app.file(ALICE, replace(decision_appeal(ident), filer=party("Alice"))).id)
    app.assign(AGENT, appeal, "")
    before = (len(events_of(app, ident)), len(events_of(app, appeal)))
    reasons = {"ground": "著作权法第十条", "facts": "补充证据可比对"}
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, appeal, True, reasons, None, etag="")
    assert [v.field for v in refused.value.violations] == ["affected_uploader"]
    assert (len(events_of(app, ident)), len(events_of(app, appeal))) == before
    app.decide(AGENT, appeal, True, reasons, party("Ursula", "ursula"), etag="")
    case = app.get(URSULA, ident)
    assert (case.state, case.next_step) == ("UPHELD", "COUNTER_NOTICE_OR_APPEAL")
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.AppealDecided)
    assert (message.outcome, message.affected_uploader.user_id) == ("UPHOLD", "ursula")
    assert message.outcome_of == f"appeals/{appeal}"
    assert app.history(ALICE, ident).items[-1].text == "补充证据可比对"
    assert app.get(ALICE, appeal).uploader is None  # named on the notice, not the appeal
    counter(app, ident)
    assert app.get(ALICE, ident).state == "FORWARDED_TO_CLAIMANT"


def test_the_decision_on_an_appeal_is_final_and_an_appeal_of_it_is_refused(
    app: Appeals,
) -> None:
    """Upholding an appeal of an appeal, or of a notice an appeal restored,
    would change nothing: both are refused, storing nothing. The decision on
    an appeal names no further appeal: nothing is due after it, and its
    redress lies beyond the platform; its retention runs from then."""
    ident = upheld(app)
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    app.decide(AGENT, appeal, False, {"ground": "原创", "facts": "不成立"}, None, etag="")
    decided = app.get(URSULA, appeal)
    assert (decided.state, decided.next_step, decided.next_step_due) == ("REJECTED", "", None)
    shown = appeal_message(decided).decision_reasons
    assert shown.redress == policy.load()["cn"].final_redress["zh-CN"]
    assert "申诉期限" not in shown.redress and not shown.HasField("appeal_deadline")
    (retention,) = app.deadlines_of(last_event(app, appeal))
    assert retention.due == decided.modified_on + app.retain_for

    stored = app.recorder.max_notification_id()
    again = replace(decision_appeal(appeal), request_id="a2")
    with pytest.raises(FailedPrecondition) as refused:
        app.file(URSULA, again)
    assert refused.value.reason == "APPEAL_DECISION_FINAL"
    assert app.recorder.max_notification_id() == stored

    second = str(app.file(URSULA, replace(decision_appeal(ident), request_id="a3")).id)
    app.assign(AGENT, second, "")
    app.decide(AGENT, second, True, {"ground": "原创", "facts": "舞蹈为其原创"}, None, etag="")
    assert app.get(ALICE, ident).state == "RESTORED"
    stored = app.recorder.max_notification_id()
    claimants = replace(decision_appeal(ident), request_id="a4", filer=party("Alice"))
    with pytest.raises(FailedPrecondition) as refused:
        app.file(ALICE, claimants)
    assert refused.value.reason == "APPEAL_DECISION_FINAL"
    assert app.recorder.max_notification_id() == stored


def test_an_appeal_decided_before_such_decisions_were_final_may_be_appealed_until_its_deadline(
    app: Appeals, clock: FakeClock
) -> None:
    """Its parties were told they could appeal it until its deadline: they
    still may, and not after."""
    ident = upheld(app)
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    before: CopyrightAppeal = app.repository.get(UUID(appeal))
    deadline = clock.now() + timedelta(days=180)
    before._decided(  # as a decision on an appeal was recorded then
        actor=AGENT.subject,
        outcome="REJECT",
        state=State.REJECTED,
        next_step=Step.APPEAL,
        next_step_due=deadline,
        reasons={"ground": "原创", "facts": "不成立"},
        uploader=None,
    )
    app.save(before)
    assert app.file(URSULA, replace(decision_appeal(appeal), request_id="a2")).state
    clock.now_is(deadline + timedelta(seconds=1))
    with pytest.raises(FailedPrecondition) as closed:
        app.file(URSULA, replace(decision_appeal(appeal), request_id="a3"))
    assert closed.value.reason == "APPEAL_WINDOW_CLOSED"


def test_a_rejected_notice_upheld_on_appeal_is_kept_for_its_new_window_not_its_old(
    clock: FakeClock,
) -> None:
    """The rejection's retention deadline was set when the notice was
    rejected; upheld on appeal since, the notice has a new window (for a
    counter-notice), and the old deadline firing does not erase it: it
    moves to the new window's end."""
    app = retaining(clock)
    ident = str(app.file(ALICE, notice()).id)
    app.assign(AGENT, ident, "")
    app.decide(AGENT, ident, False, {"ground": "证据不足", "facts": "无法比对"}, None, etag="")
    (old,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(old.due - KEEP - timedelta(days=1))  # just before the appeal window closes
    appeal = str(app.file(ALICE, replace(decision_appeal(ident), filer=party("Alice"))).id)
    app.assign(AGENT, appeal, "")
    reasons = {"ground": "著作权法第十条", "facts": "补充证据可比对"}
    app.decide(AGENT, appeal, True, reasons, party("Ursula", "ursula"), etag="")
    (new,) = app.deadlines_of(last_event(app, ident))
    assert new.due > old.due
    clock.now_is(old.due)
    assert app.fire(old) == new
    case = app.get(URSULA, ident)
    assert (case.state, case.expired) == ("UPHELD", False)
    clock.now_is(new.due)
    assert app.fire(new) is None
    assert app.repository.get(UUID(ident)).expired


def test_handing_a_case_to_another_agent_or_adding_to_it_keeps_its_review_date(
    app: Appeals, clock: FakeClock
) -> None:
    """The filer was told when the review ends: a new assignee, or more words
    from the filer on a complete case, do not move it back."""
    case = app.file(ALICE, notice())
    ident, promised = str(case.id), case.next_step_due
    clock.now_is(clock.now() + timedelta(days=3))
    assert app.assign(AGENT, ident, "").next_step_due == promised
    clock.now_is(clock.now() + timedelta(days=3))
    assert app.assign(AGENT, ident, "agent-2").next_step_due == promised
    assert app.add_info(ALICE, ident, "再补充一点", {}, etag="").next_step_due == promised


@pytest.mark.parametrize("blank", ["   ", "\u3000", "\u200b"])
def test_a_blank_assignee_is_refused_not_read_as_the_caller(app: Appeals, blank: str) -> None:
    """An assignee of white space alone (an ideographic space typed by a
    Chinese input method) names no one: it is refused, naming `assignee`,
    rather than handing the case to the calling agent without a word. Left
    empty, it means the caller."""
    ident = str(app.file(ALICE, notice()).id)
    before = events_of(app, ident)
    with pytest.raises(InvalidArgument) as refused:
        app.assign(AGENT, ident, blank)
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("assignee", "must not be blank (leave it empty for yours)")
    ]
    assert events_of(app, ident) == before
    case = app.get(ALICE, ident)
    assert (case.state, case.assignee) == ("SUBMITTED", "")
    assert app.assign(AGENT, ident, "").assignee == AGENT.subject


@pytest.mark.parametrize("court", ["HELD", "UPHELD_BY_COURT", "RESTORED"])
def test_a_notice_before_a_court_is_not_appealed_on_the_platform(app: Appeals, court: str) -> None:
    """Once the claimant shows court action over the video Ursula's
    counter-notice named (the only one the notice took down), the court
    decides: upholding her appeal could not bring it back, and would tell
    her UPHELD while it stays down. Her appeal is refused, naming what it
    appeals, and nothing is stored; so is one against how the court action
    ended."""
    ident = held(app)
    if court != "HELD":
        app.record_court_outcome(AGENT, ident, court == "UPHELD_BY_COURT", "判决书", [])
    assert app.get(URSULA, ident).state == court
    stored = app.recorder.max_notification_id()
    with pytest.raises(FailedPrecondition) as refused:
        app.file(URSULA, decision_appeal(ident))
    assert (refused.value.reason, refused.value.metadata) == (
        "DECISION_BEFORE_COURT",
        {"field": "appeal.appeal_of"},
    )
    assert app.recorder.max_notification_id() == stored


@pytest.mark.parametrize("court", ["HELD", "UPHELD_BY_COURT"])
def test_what_a_counter_notice_did_not_name_is_appealed_whatever_the_court_holds(
    app: Appeals, court: str
) -> None:
    """The notice took down two of Ursula's videos; she countered for the
    first alone, and the claimant went to court over it. Her second video
    was never before the court: her appeal, while the case is held or after
    the court kept the first down, is taken, and upheld it brings back the
    second alone. The first stays the court's: the case stays as the court
    left it, and a held one still takes the court's outcome."""
    filed = str(app.file(ALICE, notice("n-two", infringing_items=[V1, V2])).id)
    assert items_shown(app, filed, (ALICE,)) == ([], [])  # nothing taken down yet
    ident = upheld(app, filed)
    assert items_shown(app, ident) == ([], [V1, V2])
    first = {"removed_item": V1, "reason": "这支是我编的舞"}
    app.file_counter_notice(URSULA, ident, party("Ursula"), first, good_faith=True, accuracy=True)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    if court == "UPHELD_BY_COURT":
        app.record_court_outcome(AGENT, ident, True, "判决支持原告", EVIDENCE)
    assert items_shown(app, ident) == ([], [V1, V2])
    appeal = app.file(URSULA, decision_appeal(ident))
    assert (app.get(URSULA, ident).state, appeal.state) == (court, "SUBMITTED")
    assert items_shown(app, str(appeal.id), (URSULA,)) == ([], [])  # it takes nothing down
    app.assign(AGENT, str(appeal.id), "")
    assert app.decide(AGENT, str(appeal.id), True, REASONS, None, etag="").state == "UPHELD"
    case = app.get(ALICE, ident)
    assert (case.state, case.restored_on_appeal, case.still_down()) == (court, [V2], [V1])
    # The state alone reads as before the appeal: the items say what it changed.
    assert items_shown(app, ident) == ([V2], [V1])
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.ContentRestored)
    assert (list(message.restored_items), message.outcome_of) == ([V2], f"appeals/{appeal.id}")
    again = replace(decision_appeal(ident), request_id="a2")
    assert refusal(app, URSULA, again) == "APPEAL_DECISION_FINAL"
    if court == "HELD":
        app.record_court_outcome(AGENT, ident, True, "判决支持原告", EVIDENCE)
        case = app.get(ALICE, ident)
        assert (case.state, case.still_down()) == ("UPHELD_BY_COURT", [V1])
        assert items_shown(app, ident) == ([V2], [V1])


def test_an_appeal_of_no_case_says_both_names_a_decided_case_may_have(app: Appeals) -> None:
    for appeal_of in ("appeals/xyz", "report-cases/xyz", "tickets/" + str(uuid.uuid4())):
        draft = AppealDraft(**{**vars(decision_appeal("")), "appeal_of": appeal_of})
        with pytest.raises(InvalidArgument) as refused:
            app.file(URSULA, draft)
        assert [(v.field, v.description) for v in refused.value.violations] == [
            ("appeal.appeal_of", "must be appeals/{id} or report-cases/{id}")
        ], appeal_of


def refusal(
    app: Appeals, who: Identity, draft: AppealDraft, report_decision_until: str | None = None
) -> str:
    """The reason filing `draft` is refused with (of a report decision, whose
    window the gateway says is `report_decision_until`), checking that the
    refusal names `appeal.appeal_of` and stores nothing."""
    stored = app.recorder.max_notification_id()
    with pytest.raises(FailedPrecondition) as refused:
        app.file(who, draft, report_decision_until)
    assert refused.value.metadata == {"field": "appeal.appeal_of"}
    assert app.recorder.max_notification_id() == stored
    return refused.value.reason


def test_only_the_party_a_decision_went_against_may_appeal_it(
    app: Appeals, clock: FakeClock
) -> None:
    """Alice's notice was upheld, her way: her appeal of it could only be
    "upheld" with nothing changing, and is refused. Once the content is back
    (Ursula's counter-notice, no court action in time), neither may appeal
    the notice's decision: for Ursula there is nothing left to reverse. A
    filer whose own counter-notice was upheld has nothing to appeal either."""
    ident = upheld(app)
    alices = replace(decision_appeal(ident), filer=party("Alice"))
    assert refusal(app, ALICE, alices) == "DECISION_NOT_AGAINST_APPELLANT"
    counter(app, ident)
    assert refusal(app, ALICE, alices) == "DECISION_NOT_AGAINST_APPELLANT"
    (restore,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(restore.due)
    app.fire(restore)
    assert app.get(URSULA, ident).state == "RESTORED"
    assert refusal(app, URSULA, decision_appeal(ident)) == "NOTHING_TO_REVERSE"
    assert refusal(app, ALICE, alices) == "DECISION_NOT_AGAINST_APPELLANT"

    countered_alone = str(app.file(URSULA, counter_notice_draft()).id)
    app.assign(AGENT, countered_alone, "")
    app.decide(AGENT, countered_alone, True, {"ground": "原创", "facts": "自编舞"}, None, etag="")
    assert refusal(app, URSULA, decision_appeal(countered_alone)) == (
        "DECISION_NOT_AGAINST_APPELLANT"
    )


REASONS = {"ground": "原创", "facts": "舞蹈为其原创"}


def appealed_then_countered(app: Appeals) -> tuple[str, str]:
    """An upheld notice Ursula appealed (an agent has the appeal), then
    countered: the notice's id and her appeal's."""
    ident = upheld(app)
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    counter(app, ident)
    return ident, appeal


def upholding_is_refused(app: Appeals, appeal: str) -> None:
    """Upholding the appeal is refused as changing nothing, and stores nothing."""
    stored = app.recorder.max_notification_id()
    with pytest.raises(FailedPrecondition) as refused:
        app.decide(AGENT, appeal, True, REASONS, None, etag="")
    assert refused.value.reason == "NOTHING_TO_REVERSE"
    assert app.recorder.max_notification_id() == stored


def test_upholding_an_appeal_the_notice_can_no_longer_reverse_is_refused(app: Appeals) -> None:
    """Ursula appealed the notice, then countered it, and the claimant went
    to court: the notice is HELD. Upholding her appeal would tell her UPHELD
    while her video stays down; it is refused and nothing is stored. The
    agent may still reject it."""
    ident, appeal = appealed_then_countered(app)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    upholding_is_refused(app, appeal)
    assert app.get(URSULA, ident).state == "HELD"
    assert app.decide(AGENT, appeal, False, REASONS, None, etag="").state == "REJECTED"


def test_an_appeal_of_a_notice_whose_content_came_back_meanwhile_may_be_upheld(
    app: Appeals, clock: FakeClock
) -> None:
    """Ursula appealed the notice and countered it; the claimant did not go
    to court in time, and her video came back. Her appeal asked for that:
    upheld, it is UPHELD, and nothing more follows (the notice stays
    RESTORED, by the counter-notice)."""
    ident, appeal = appealed_then_countered(app)
    (deadline,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(deadline.due)
    app.fire(deadline)
    assert app.get(ALICE, ident).state == "RESTORED"
    assert app.decide(AGENT, appeal, True, REASONS, None, etag="").state == "UPHELD"
    assert app.get(ALICE, ident).state == "RESTORED"


def test_an_appeal_of_a_notice_a_court_restored_is_not_upheld_on_the_platform(
    app: Appeals,
) -> None:
    """The same, but the claimant went to court and the court restored the
    content: the court decided, and the platform's appeal cannot be upheld
    (nothing stored); it may be rejected."""
    ident, appeal = appealed_then_countered(app)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    app.record_court_outcome(AGENT, ident, False, "（2026）京0491民初2号：驳回原告", EVIDENCE)
    assert app.get(ALICE, ident).state == "RESTORED"
    upholding_is_refused(app, appeal)


def test_an_open_appeal_has_no_decision_to_appeal_yet(app: Appeals) -> None:
    """Appealing an appeal still under review is refused because nothing was
    decided, not because "the decision on an appeal is final"."""
    appeal = str(app.file(URSULA, decision_appeal(upheld(app))).id)
    again = replace(decision_appeal(appeal), request_id="a2")
    assert refusal(app, URSULA, again) == "NO_DECISION_TO_APPEAL"


def test_a_second_appeal_of_a_decision_waits_until_the_first_is_decided_or_withdrawn(
    app: Appeals,
) -> None:
    """Ursula's two appeals of one decision, both open, could be decided two
    ways (one rejected as final, the other upheld): while her first is open,
    another is refused, naming what it appeals; a retry of the first still
    gets it. Withdrawn, or decided, the first leaves the way open to another
    within the window."""
    ident = upheld(app)
    first = app.file(URSULA, decision_appeal(ident))
    second = replace(decision_appeal(ident), request_id="a2")
    assert refusal(app, URSULA, second) == "APPEAL_PENDING"
    assert app.file(URSULA, decision_appeal(ident)).id == first.id
    app.withdraw(URSULA, str(first.id), "写错了")
    filed = app.file(URSULA, second)
    assert filed.id != first.id
    assert refusal(app, URSULA, replace(second, request_id="a3")) == "APPEAL_PENDING"
    assert app.file(URSULA, second).id == filed.id


def test_a_party_files_a_bounded_number_of_appeals_of_a_decision(
    app: Appeals, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ursula files and withdraws appeal after appeal of one decision: each
    filing reads her earlier ones, and each is a case in the agents' queue.
    Past `MAX_APPEAL_ROUNDS` another is refused, naming what it appeals,
    reading no more of them, and nothing is stored; a retry of one she
    filed still gets it."""
    ident = upheld(app)
    rounds = []
    for n in range(MAX_APPEAL_ROUNDS):
        filed = app.file(URSULA, replace(decision_appeal(ident), request_id=f"r{n}"))
        app.withdraw(URSULA, str(filed.id), "换个理由")
        rounds.append(filed.id)
    asked = reads_back(app, monkeypatch)
    one_more = replace(decision_appeal(ident), request_id="one-more")
    assert refusal(app, URSULA, one_more) == "TOO_MANY_APPEALS"
    # Her rounds, the notice, and the request id's own case (none).
    assert len(asked) <= MAX_APPEAL_ROUNDS + 2
    monkeypatch.undo()
    assert app.file(URSULA, replace(decision_appeal(ident), request_id="r3")).id == rounds[3]


@pytest.mark.parametrize("same_grounds", [True, False])
def test_two_appeals_of_a_decision_filed_at_the_same_moment_store_one(
    app: Appeals, monkeypatch: pytest.MonkeyPatch, same_grounds: bool
) -> None:
    """Two replicas take Ursula's two appeals at once, each reading no appeal
    of hers before the other stores its own: the first stored wins, the
    other is refused as pending, and stores nothing."""
    ident = upheld(app)
    first = app.file(URSULA, decision_appeal(ident))
    second = replace(decision_appeal(ident), request_id="a2")
    if not same_grounds:
        second = replace(second, content={"grounds": "另有证据"})
    monkeypatch.setattr(app, "_appeals_of", lambda filer, decision: [])  # read before `first`
    assert refusal(app, URSULA, second) == "APPEAL_PENDING"
    monkeypatch.undo()
    assert [a.id for a in app._appeals_of("ursula", f"appeals/{ident}")] == [first.id]


def counter_notice_draft() -> AppealDraft:
    """Ursula's counter-notice filed as a case of its own."""
    content = {
        "counter_notice": {"removed_item": "https://video.example/v/123", "reason": "自编舞"},
        "good_faith_statement": True,
        "accuracy_statement": True,
    }
    return AppealDraft("c1", "COUNTER_NOTICE", "cn", party("Ursula"), content)


def test_a_counter_notice_is_decided_by_a_person(app: Appeals) -> None:
    """A counter-notice is the uploader's complaint against a removal: like
    an appeal, it may not be decided solely by automated means (DSA Art.
    20(6)); refused, naming the field, and nothing is stored."""
    ident = str(app.file(URSULA, counter_notice_draft()).id)
    app.assign(AGENT, ident, "")
    before = len(events_of(app, ident))
    reasons = {"ground": "原创", "facts": "自编舞", "automated_decision": True}
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, ident, True, reasons, None, etag="")
    assert [v.field for v in refused.value.violations] == ["reasons.automated_decision"]
    assert len(events_of(app, ident)) == before
    reasons["automated_decision"] = False
    assert app.decide(AGENT, ident, True, reasons, None, etag="").state == "UPHELD"


# The elements US law adds to a counter-notice, as a case filed without them
# lists them missing.
US_ELEMENTS = [
    "counter_notice.consent_to_jurisdiction",
    "counter_notice.accepts_service_of_process",
    "counter_notice.signature",
    "filer.postal_address",
    "filer.contact.phone",
]


def test_a_us_counter_notice_filed_as_a_case_waits_for_what_us_law_requires(
    app: Appeals,
) -> None:
    """Under US law a counter-notice carries the uploader's signature,
    address and telephone number, their consent to a federal court's
    jurisdiction and their acceptance of service of process from the
    claimant (17 U.S.C. 512(g)(3)(A), (D)), whether it answers a notice or is
    filed as a case of its own: without them, the case asks for each and
    cannot be decided; what she sends completes it, and sending the rest
    sends it to review. A Chinese one needs none of them."""
    draft = replace(counter_notice_draft(), jurisdiction="us")
    case = app.file(URSULA, draft)
    assert case.state == "INFO_REQUESTED"
    assert case.missing == US_ELEMENTS
    ident = str(case.id)
    app.assign(AGENT, ident, "")
    with pytest.raises(FailedPrecondition, match="consent_to_jurisdiction"):
        app.decide(AGENT, ident, True, {"ground": "原创", "facts": "自编舞"}, None, etag="")
    consent = {"counter_notice": {"consent_to_jurisdiction": True}}
    case = app.add_info(URSULA, ident, "", consent, etag="")
    assert (case.state, case.missing) == ("INFO_REQUESTED", US_ELEMENTS[1:])
    details = {"postal_address": US_ADDRESS, "contact": {"phone": US_PHONE}}
    case = app.add_info(URSULA, ident, "", {"filer": details}, etag="")
    assert (case.state, case.missing) == ("INFO_REQUESTED", US_ELEMENTS[1:3])
    statements = {"accepts_service_of_process": True, "signature": "Ursula Uploader"}
    case = app.add_info(URSULA, ident, "", {"counter_notice": statements}, etag="")
    assert (case.state, case.missing) == ("UNDER_REVIEW", [])
    assert case.content["filer"]["postal_address"] == US_ADDRESS
    assert app.file(URSULA, replace(counter_notice_draft(), request_id="c2")).missing == []


def test_a_us_counter_notice_to_a_notice_lacking_what_us_law_requires_is_refused(
    app: Appeals,
) -> None:
    """Answering a US notice, a counter-notice without its signature,
    statements, address or telephone number is refused, naming each, and
    the notice stays as it was; with them it is forwarded, and the claimant
    is given the uploader's address with her contact."""
    ident = upheld(app, str(app.file(ALICE, replace(notice(), jurisdiction="us")).id))
    bare = {"removed_item": "https://video.example/v/123", "reason": "我自己编的舞"}
    with pytest.raises(InvalidArgument) as refused:
        app.file_counter_notice(
            URSULA, ident, party("Ursula"), bare, good_faith=True, accuracy=True
        )
    assert [v.field for v in refused.value.violations] == [
        "counter_notice.consent_to_jurisdiction",
        "counter_notice.accepts_service_of_process",
        "counter_notice.signature",
        "uploader.postal_address",
        "uploader.contact.phone",
    ]
    assert "512(g)(3)(A)" in refused.value.violations[2].description
    assert app.get(URSULA, ident).state == "UPHELD"
    for lacking in ("accepts_service_of_process", "signature"):
        almost = {**bare, **{k: v for k, v in US_STATEMENTS.items() if k != lacking}}
        with pytest.raises(InvalidArgument) as refused:
            app.file_counter_notice(
                URSULA, ident, us_party("Ursula"), almost, good_faith=True, accuracy=True
            )
        assert [v.field for v in refused.value.violations] == [f"counter_notice.{lacking}"]
    case = app.file_counter_notice(
        URSULA,
        ident,
        us_party("Ursula"),
        {**bare, **US_STATEMENTS},
        good_faith=True,
        accuracy=True,
    )
    assert case.state == "FORWARDED_TO_CLAIMANT"
    shown = for_viewer(appeal_message(case), ALICE)
    assert (shown.uploader.postal_address, shown.uploader.contact.phone) == (US_ADDRESS, US_PHONE)
    assert (shown.counter_notice.signature, shown.counter_notice.accepts_service_of_process) == (
        "Ursula Uploader",
        True,
    )
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.CounterNoticeFiled)
    assert message.uploader.postal_address == US_ADDRESS
    assert (message.signature, message.consent_to_jurisdiction) == ("Ursula Uploader", True)
    assert message.accepts_service_of_process


def test_a_signature_or_address_that_breaks_the_text_rules_is_refused_naming_it(
    app: Appeals,
) -> None:
    """A signature is a name, on one line; an address may take lines, up to
    500 characters."""
    ident = upheld(app, str(app.file(ALICE, replace(notice(), jurisdiction="us")).id))
    counter_notice = {
        "removed_item": "https://video.example/v/123",
        "reason": "我自己编的舞",
        **US_STATEMENTS,
        "signature": "Ursula\nUploader",
    }
    uploader = {**us_party("Ursula"), "postal_address": "街" * 501}
    with pytest.raises(InvalidArgument) as refused:
        app.file_counter_notice(
            URSULA, ident, uploader, counter_notice, good_faith=True, accuracy=True
        )
    assert [v.field for v in refused.value.violations] == [
        "uploader.postal_address",
        "counter_notice.signature",
    ]
    assert app.get(URSULA, ident).state == "UPHELD"


def test_a_us_counter_notice_filed_before_consent_was_asked_stays_complete(
    app: Appeals, clock: FakeClock
) -> None:
    """Ursula's US counter-notice, filed as a case of its own before consent
    to a federal court's jurisdiction was asked of one, was complete without
    it and is under review; its review is overdue. She sends one more piece
    of evidence: the case stays under review, missing nothing, its review
    still due when it was, nothing set to abandon it, and it is decided.
    One filed now without consent still waits for it."""
    draft = replace(counter_notice_draft(), jurisdiction="us")
    counter_notice = {**draft.content["counter_notice"], **US_STATEMENTS}
    consenting = replace(
        draft,
        content={**draft.content, "counter_notice": counter_notice},
        filer=us_party("Ursula"),
    )
    ident = str(app.file(URSULA, consenting).id)

    def as_stored_before(content: dict[str, Any]) -> None:
        for statement in US_STATEMENTS:
            content["counter_notice"].pop(statement)
        content["filer"].pop("postal_address")
        content["filer"]["contact"].pop("phone")

    # As an older release stored it: complete without what US law adds.
    stored_with(app, ident, as_stored_before)
    case = app.get(URSULA, ident)
    assert (case.state, case.missing) == ("SUBMITTED", [])
    assert "consent_to_jurisdiction" not in case.content["counter_notice"]
    app.assign(AGENT, ident, "")
    review_due = app.get(URSULA, ident).next_step_due
    assert review_due is not None
    clock.now_is(review_due + timedelta(days=1))

    more = {"counter_notice": {"evidence": [{"name": "evidence/c", "sha256": "c" * 64}]}}
    case = app.add_info(URSULA, ident, "补充一份证据", more, etag="")
    assert (case.state, case.missing) == ("UNDER_REVIEW", [])
    assert (case.next_step, case.next_step_due) == ("REVIEW", review_due)
    assert app.deadlines_of(last_event(app, ident)) == []
    reasons = {"ground": "原创", "facts": "自编舞"}
    assert app.decide(AGENT, ident, True, reasons, None, etag="").state == "UPHELD"

    new = app.file(URSULA, replace(draft, request_id="c2"))
    case = app.add_info(URSULA, str(new.id), "补充一份证据", more, etag="")
    assert (case.state, case.missing) == ("INFO_REQUESTED", US_ELEMENTS)


def test_agent_commands_need_an_agent_and_change_nothing(app: Appeals) -> None:
    ident = str(app.file(ALICE, notice()).id)
    commands: list[Callable[[], object]] = [
        lambda: app.assign(ALICE, ident, ""),
        lambda: app.request_info(ALICE, ident, "?"),
        lambda: app.decide(ALICE, ident, True, {"ground": "g", "facts": "f"}, None, etag=""),
        lambda: app.record_court_action(ALICE, ident, "court", []),
        lambda: app.record_court_outcome(ALICE, ident, True, "court", []),
    ]
    for command in commands:
        with pytest.raises(PermissionDenied):
            command()
    assert events_of(app, ident) == [CopyrightAppeal.Filed]


# An agent who is no party to the cases below.
WANG = Identity("wang", frozenset({"agent"}))


def own_case_refused(command: Callable[[], object]) -> str:
    """The refusal of `command`, an agent working a case they are a party to."""
    with pytest.raises(PermissionDenied) as refused:
        command()
    assert refused.value.reason == "OWN_CASE"
    return refused.value.message


def test_an_agent_who_is_a_party_to_a_case_does_not_work_it(app: Appeals) -> None:
    """Li, an agent, uploaded the video Alice's notice is about, and appeals
    the decision that took it down: deciding their own appeal would be no
    review (DSA Art. 20(6)). Li may not name themselves the uploader on the
    notice, take or be given the appeal, ask its filer for more or decide
    it; another agent does, and that restores the video. A notice Li files
    is not theirs to take, nor its court action theirs to record."""
    reasons = {"ground": "著作权法第十条", "facts": "同一支舞"}
    ident = str(app.file(ALICE, notice()).id)
    app.assign(WANG, ident, "")
    own_case_refused(lambda: app.decide(AGENT, ident, True, reasons, party("Li", "li"), etag=""))
    app.decide(WANG, ident, True, reasons, party("Li", "li"), etag="")
    draft = AppealDraft(
        "a1", "DECISION_APPEAL", "", party("Li"), {"grounds": "我自己编的舞"}, f"appeals/{ident}"
    )
    appeal = str(app.file(AGENT, draft).id)
    said = own_case_refused(lambda: app.assign(AGENT, appeal, ""))
    assert said.startswith("you are a party to this case")
    assert own_case_refused(lambda: app.assign(WANG, appeal, "li")).startswith("li is a party")
    own_case_refused(lambda: app.request_info(AGENT, appeal, "请补充原创证明"))
    own_case_refused(lambda: app.decide(AGENT, appeal, True, reasons, None, etag=""))
    assert events_of(app, appeal) == [CopyrightAppeal.Filed]

    app.assign(WANG, appeal, "")
    assert app.decide(WANG, appeal, True, reasons, None, etag="").state == "UPHELD"
    assert app.get(ALICE, ident).state == "RESTORED"
    filed_by_li = str(app.file(AGENT, replace(notice("n-li"), filer=party("Li"))).id)
    own_case_refused(lambda: app.assign(AGENT, filed_by_li, ""))
    app.assign(WANG, filed_by_li, "")
    app.decide(WANG, filed_by_li, True, reasons, party("Ursula", "ursula"), etag="")
    counter(app, filed_by_li)
    own_case_refused(lambda: app.record_court_action(AGENT, filed_by_li, "已起诉", []))
    assert app.get(AGENT, filed_by_li).state == "FORWARDED_TO_CLAIMANT"


def test_an_agent_who_appealed_a_report_decision_does_not_work_anothers_appeal_of_it(
    app: Appeals, clock: FakeClock
) -> None:
    """Kim, an agent, reported a video with Ursula; both appeal the decision
    that left it up. Kim is a party to that decision: Kim may not take
    Ursula's appeal, be given it, ask her for more or decide it, and
    nothing is stored; Wang, who is no party, works it."""
    decision = f"report-cases/{uuid.uuid4()}"
    until = (clock.now() + timedelta(days=30)).isoformat()
    draft = replace(decision_appeal(""), appeal_of=decision)
    kim = Identity("kim", frozenset({"agent"}))
    app.file(kim, replace(draft, filer=party("Kim")), until, "CN")
    ursulas = str(app.file(URSULA, draft, until, "CN").id)
    reasons = {"ground": "社区规范", "facts": "视频宣扬暴力"}
    said = own_case_refused(lambda: app.assign(kim, ursulas, ""))
    assert said.startswith("you are a party to this case")
    assert "or to the decision it appeals" in said
    assert own_case_refused(lambda: app.assign(WANG, ursulas, "kim")).startswith("kim is a party")
    own_case_refused(lambda: app.request_info(kim, ursulas, "请补充说明"))
    own_case_refused(lambda: app.decide(kim, ursulas, True, reasons, None, etag=""))
    assert events_of(app, ursulas) == [CopyrightAppeal.Filed]

    app.assign(WANG, ursulas, "")
    assert app.decide(WANG, ursulas, True, reasons, None, etag="").state == "UPHELD"


def test_parties_list_their_cases_and_read_their_history(app: Appeals) -> None:
    first = upheld(app)
    second = str(app.file(ALICE, notice("n2")).id)
    IndexProjector(app, app.index, RowSource(lambda a: {"id": str(a.id), **_doc(a)})).catch_up()
    assert [d["id"] for d in app.list_appeals(ALICE, 0, "").items] == [second, first]
    assert [d["id"] for d in app.list_appeals(URSULA, 0, "").items] == [first]
    assert [d["id"] for d in app.list_appeals(AGENT, 0, "", ["SUBMITTED"]).items] == [second]
    history = app.history(ALICE, first).items
    assert [h.type for h in history] == ["AppealFiled", "AppealAssigned", "AppealDecided"]
    assert history[-1].text == "同一支舞"


def test_a_cases_history_is_read_a_page_at_a_time(app: Appeals) -> None:
    """A case whose steps carry more than a page holds is read in pages
    (each step once, in order); a token the API never gave is refused,
    naming it."""
    ident = upheld(app)
    whole = app.history(ALICE, ident).items
    pages, token = [], ""
    while True:
        page = app.history(ALICE, ident, page_size=1, page_token=token)
        pages.append([h.sequence for h in page.items])
        if not (token := page.next_token):
            break
    assert pages == [[h.sequence] for h in whole] and len(pages) == 3
    # Only a step's sequence in ASCII digits, as `next_token` gives it.
    for token in ("the end", "-5", " 2", "1_0", "٣", "0", "01", "9" * 19):
        with pytest.raises(InvalidArgument) as refused:
            app.history(ALICE, ident, page_token=token)
        assert [v.field for v in refused.value.violations] == ["page_token"], token


def test_a_party_sees_the_other_partys_steps_by_role_not_by_account(app: Appeals) -> None:
    """The case shows each party only the other's name: its history does
    not give away the other's account, nor the other's words (what the
    claimant added, with her home number in it). Agents see it all."""
    ident = str(app.file(ALICE, notice(work={})).id)
    words = "补充：作品名 Dance #1，我的电话 13800138000"
    work = {"title": "Dance #1", "creation_time": "2026-01-01T00:00:00+00:00"}
    app.add_info(ALICE, ident, words, {"notice": {"work": work}}, etag="")
    counter(app, upheld(app, ident))
    assert words not in [h.text for h in app.history(URSULA, ident).items]
    assert words in [h.text for h in app.history(ALICE, ident).items]
    assert words in [h.text for h in app.history(AGENT, ident).items]
    actors = {
        who.subject: [(h.type, h.actor) for h in app.history(who, ident).items]
        for who in (ALICE, URSULA, AGENT)
    }
    assert actors["ursula"][0] == ("AppealFiled", "filer")
    assert actors["alice"][0] == ("AppealFiled", "alice")
    assert actors["alice"][-1] == ("CounterNoticeFiled", "uploader")
    assert actors["ursula"][-1] == ("CounterNoticeFiled", "ursula")
    assert actors[AGENT.subject][0] == ("AppealFiled", "alice")
    assert actors[AGENT.subject][-1] == ("CounterNoticeFiled", "ursula")
    assert "alice" not in {actor for _, actor in actors["ursula"]}


def test_a_new_cases_row_is_rendered_from_the_case_filed_as_from_its_stored_events(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Appeals(in_memory(), clock=clock, policies=policy.load(), sealer=memory_sealer().sealer)
    ident = app.file(ALICE, notice()).id
    read_back = reads_back(app, monkeypatch)
    to_row = RowSource(index_doc)
    IndexProjector(app, app.index, to_row).catch_up()
    assert read_back == []  # rendered from the case as it was filed
    monkeypatch.undo()
    assert isinstance(app.index, MemoryCaseIndex)
    assert app.index.rows[str(ident)] == to_row(app.repository.get(ident))


def _doc(a: Any) -> dict[str, Any]:
    return {"create_time": a.created_on.isoformat(), "state": str(a.state)}


def test_the_parties_details_and_words_are_stored_sealed_read_clear_and_erased_alone(
    clock: FakeClock,
) -> None:
    personal = memory_sealer().sealer
    app = Appeals(in_memory(), clock=clock, policies=policy.load(), sealer=personal)
    alice = {
        "legal_name": "爱丽丝工作室",
        "locale": "zh-CN",
        "contact": {
            "email": "alice.studio@example.com",
            "phone": "+8613800138000",
            "channels": ["EMAIL", "SMS"],
        },
    }
    draft = notice(
        work={"title": "月光下的舞", "creation_time": "2026-01-01T00:00:00+00:00"},
        originality_evidence=[{"name": "evidence/原稿.pdf", "sha256": "c" * 64}],
    )
    filed = app.file(ALICE, replace(draft, filer=alice))
    ident = str(filed.id)
    app.add_info(ALICE, ident, "补充：首发于二〇二五年", {}, etag="")
    named = {**party("乌苏拉", "ursula"), "contact": {**CONTACT, "email": "ursula@example.com"}}
    reasons = {"ground": "著作权法第十条", "facts": "同一支舞"}
    app.decide(AGENT, ident, True, reasons, named, etag="")
    app.file_counter_notice(
        URSULA,
        ident,
        {**party("乌苏拉本人"), "contact": {"phone": "+8613900139000", "channels": ["SMS"]}},
        {"removed_item": "https://video.example/v/123", "reason": "我自己编的舞"},
        good_faith=True,
        accuracy=True,
    )
    bobs = str(app.file(BOB, replace(draft, filer=party("鲍勃影业"))).id)
    before = appeal_message(app.get(BOB, bobs))
    words = ["爱丽丝工作室", "alice.studio@example.com", "+8613800138000", "月光下的舞"]
    words += ["evidence/原稿.pdf", "补充：首发于二〇二五年", "乌苏拉", "ursula@example.com"]
    words += ["+8613900139000", "我自己编的舞"]

    stored = app.recorder.select_events(UUID(ident))
    kept = b"".join(s.state for s in stored)
    assert [w for w in words if w.encode() in kept] == []
    # The agent's statement of reasons and the item's URL are left clear.
    assert "同一支舞".encode() in kept and b"https://video.example/v/123" in kept

    # The application reads them clear.
    case = appeal_message(app.get(ALICE, ident))
    assert (case.filer.legal_name, case.filer.contact.email, case.filer.contact.phone) == (
        "爱丽丝工作室",
        "alice.studio@example.com",
        "+8613800138000",
    )
    assert case.notice.work.title == "月光下的舞"
    assert case.notice.originality_evidence[0].name == "evidence/原稿.pdf"
    assert (case.uploader.legal_name, case.counter_notice.reason) == ("乌苏拉本人", "我自己编的舞")
    texts = [h.text for h in app.history(AGENT, ident).items]
    assert texts == ["", "补充：首发于二〇二五年", "同一支舞", ""]

    # The relay reads tokens, which a consumer reveals from the message.
    relay = SealingMapper(app.mapper.transcoder, sealer=personal, fields=PERSONAL, reveal=False)
    first = relay.to_domain_event(stored[0])
    assert is_token(vars(first)["content"]["filer"]["contact"]["email"])
    message = public_message(first, first.mutate(None))  # type: ignore[attr-defined]
    assert message.work_title != "月光下的舞"  # type: ignore[attr-defined]
    shown = reveal_message(personal, message).message
    assert (shown.work_title, shown.filer.contact.phone) == (  # type: ignore[attr-defined]
        "月光下的舞",
        "+8613800138000",
    )

    # Alice erased: what she gave and wrote reads erased, on her case and in
    # its history; the uploader's words on it, and Bob's case, are unchanged.
    personal.keys.erase(ALICE.subject)
    case = appeal_message(app.get(ALICE, ident))
    assert {case.filer.legal_name, case.filer.contact.email, case.notice.work.title} == {ERASED}
    assert case.notice.originality_evidence[0].name == ERASED
    assert (case.uploader.legal_name, case.counter_notice.reason) == ("乌苏拉本人", "我自己编的舞")
    texts = [h.text for h in app.history(AGENT, ident).items]
    assert texts == ["", ERASED, "同一支舞", ""]
    assert appeal_message(app.get(BOB, bobs)) == before
    assert before.filer.legal_name == "鲍勃影业"


def test_a_us_counter_notices_address_and_signature_are_sealed_and_erased_with_the_uploader(
    clock: FakeClock,
) -> None:
    """The address and signature a US counter-notice gives are the
    uploader's, as her name and contact are: stored and published sealed,
    read clear, erased when she is; the claimant's details stay."""
    personal = memory_sealer().sealer
    app = Appeals(in_memory(), clock=clock, policies=policy.load(), sealer=personal)
    ident = upheld(app, str(app.file(ALICE, replace(notice(), jurisdiction="us")).id))
    address, signature = "42 Wallaby Way\nSydney NSW 2000", "乌苏拉·签名"
    app.file_counter_notice(
        URSULA,
        ident,
        {**us_party("Ursula"), "postal_address": address},
        {"removed_item": VIDEO, "reason": "我自己编的舞", **US_STATEMENTS, "signature": signature},
        good_faith=True,
        accuracy=True,
    )
    own = str(app.file(URSULA, replace(counter_notice_draft(), jurisdiction="us")).id)
    app.add_info(URSULA, own, "", {"filer": {"postal_address": address}}, etag="")
    app.add_info(URSULA, own, "", {"counter_notice": {"signature": signature}}, etag="")
    for case in (ident, own):
        kept = b"".join(s.state for s in app.recorder.select_events(UUID(case)))
        assert address.encode() not in kept and signature.encode() not in kept
    shown = appeal_message(app.get(AGENT, ident))
    assert (shown.uploader.postal_address, shown.counter_notice.signature) == (address, signature)
    relay = SealingMapper(app.mapper.transcoder, sealer=personal, fields=PERSONAL, reveal=False)
    forwarded = relay.to_domain_event(app.recorder.select_events(UUID(ident))[-1])
    message = public_message(forwarded, app.get(AGENT, ident))
    assert isinstance(message, aev.CounterNoticeFiled)
    assert is_token(message.uploader.postal_address) and is_token(message.signature)
    revealed = reveal_message(personal, message).message
    assert (revealed.uploader.postal_address, revealed.signature) == (address, signature)

    personal.keys.erase(URSULA.subject)
    shown = appeal_message(app.get(AGENT, ident))
    assert (shown.uploader.postal_address, shown.counter_notice.signature) == (ERASED, ERASED)
    assert shown.filer.legal_name == "Alice Studio"
    mine = appeal_message(app.get(AGENT, own))
    assert (mine.filer.postal_address, mine.counter_notice.signature) == (ERASED, ERASED)


def test_a_case_stored_before_sealing_reads_as_it_was(app: Appeals) -> None:
    """Events stored in the clear, before the service sealed, are read
    unchanged by the sealing mapper (and stay as they are in the store)."""
    ident = upheld(app)
    stored = app.recorder.select_events(UUID(ident))
    reader = SealingMapper(app.mapper.transcoder, sealer=memory_sealer().sealer, fields=PERSONAL)
    read = [vars(reader.to_domain_event(s)) for s in stored]
    assert read[0]["content"]["filer"]["legal_name"] == "Alice Studio"
    assert read[0]["content"]["notice"]["work"]["title"] == "Dance #1"
    assert read[2]["uploader"]["legal_name"] == "Ursula"


def test_a_filer_adds_to_a_case_a_bounded_number_of_times(app: Appeals) -> None:
    """Every change reads the whole case: one flooded with messages would
    slow everyone who works it. After 200 additions the filer is refused,
    told what to do instead, and nothing is stored; a retry of an addition
    made is still answered, and the case may still be taken for review or
    withdrawn."""
    ident = str(app.file(ALICE, notice()).id)
    app.add_info(ALICE, ident, "补充说明 0", {}, etag="", request_id="i0")
    for n in range(1, MAX_INFO_ADDED):
        app.add_info(ALICE, ident, f"补充说明 {n}", {}, etag="")
    stored = len(events_of(app, ident))
    with pytest.raises(FailedPrecondition) as refused:
        app.add_info(ALICE, ident, "还有一点", {}, etag="")
    assert refused.value.reason == "APPEAL_TOO_LONG"
    assert "withdraw it and file a new one" in refused.value.message
    assert len(events_of(app, ident)) == stored
    again = app.add_info(ALICE, ident, "补充说明 0", {}, etag="", request_id="i0")
    assert again.version == 2
    app.assign(AGENT, ident, "")
    assert app.withdraw(ALICE, ident, "重新提交").state == "WITHDRAWN"


def test_an_answer_that_says_nothing_is_refused_and_the_request_still_waits(
    app: Appeals,
) -> None:
    """An AddAppealInfo with no message and nothing to complete would have
    counted as the filer's answer to an agent's request (back to review, the
    abandon deadline gone): it is refused, naming `message`."""
    ident = str(app.file(ALICE, notice()).id)
    app.request_info(AGENT, ident, "请提供作品首次发表的链接")
    before = events_of(app, ident)
    for message, completion in (("", {}), ("  \n", {"notice": {"work": {"title": ""}}})):
        with pytest.raises(InvalidArgument) as refused:
            app.add_info(ALICE, ident, message, completion, etag="")
        assert [v.field for v in refused.value.violations] == ["message"]
    assert events_of(app, ident) == before
    case = app.get(ALICE, ident)
    assert (case.state, case.next_step) == ("INFO_REQUESTED", "YOUR_INFORMATION")


def test_text_of_invisible_characters_alone_says_nothing(app: Appeals) -> None:
    """A zero-width space shows nothing: as an answer it answers nothing, as
    an element (a work's title, an appeal's grounds, a counter-notice's
    reason) it is missing, and it does not replace what the case has."""
    blank = "\u200b\u2060 "
    ident = str(app.file(ALICE, notice()).id)
    app.request_info(AGENT, ident, "请提供作品首次发表的链接")
    before = events_of(app, ident)
    for completion in ({}, {"notice": {"work": {"title": blank}, "infringing_items": [blank]}}):
        with pytest.raises(InvalidArgument) as refused:
            app.add_info(ALICE, ident, blank, completion, etag="")
        assert [v.field for v in refused.value.violations] == ["message"]
    assert events_of(app, ident) == before
    case = app.add_info(ALICE, ident, "补充", {"notice": {"work": {"title": blank}}}, etag="")
    assert (case.content["notice"]["work"]["title"], case.missing) == ("Dance #1", [])

    work = {"title": blank, "creation_time": "2026-01-01T00:00:00+00:00"}
    untitled = app.file(ALICE, notice("n2", work=work))
    assert (untitled.state, untitled.missing) == ("INFO_REQUESTED", ["notice.work.title"])
    decided = upheld(app, str(app.file(ALICE, notice("n3")).id))
    groundless = replace(decision_appeal(decided), content={"grounds": blank})
    assert app.file(URSULA, groundless).missing == ["grounds"]
    with pytest.raises(InvalidArgument) as refused:
        app.file_counter_notice(
            URSULA,
            decided,
            party("Ursula"),
            {"removed_item": "https://video.example/v/123", "reason": blank},
            good_faith=True,
            accuracy=True,
        )
    assert [v.field for v in refused.value.violations] == ["counter_notice.reason"]


def test_evidence_added_to_a_counter_notice_is_published_as_attached(app: Appeals) -> None:
    """The evidence service keeps a file while an event of a live case
    carries it: a counter-notice's evidence sent with AddAppealInfo is in
    the AppealInfoAdded it publishes (it was left out, so the file went)."""
    draft = AppealDraft(
        "c1",
        "COUNTER_NOTICE",
        "cn",
        party("Ursula", "ursula"),
        {"counter_notice": {"removed_item": "https://video.example/v/123", "reason": "原创"}},
    )
    ident = str(app.file(URSULA, draft).id)
    added = [{"name": "evidence/later", "sha256": "b" * 64}]
    case = app.add_info(URSULA, ident, "", {"counter_notice": {"evidence": added}}, etag="")
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.AppealInfoAdded)
    assert [(e.name, e.sha256) for e in message.evidence] == [("evidence/later", "b" * 64)]


def rejected_eu_notice(app: Appeals, request_id: str) -> tuple[str, AppealDraft]:
    """Alice's notice under EU law, rejected; her appeal of it, naming no
    jurisdiction (not yet filed)."""
    ident = str(app.file(ALICE, replace(notice(request_id), jurisdiction="eu")).id)
    app.assign(AGENT, ident, "")
    app.decide(AGENT, ident, False, {"ground": "不构成侵权", "facts": "不同的舞"}, None, etag="")
    draft = AppealDraft(
        f"{request_id}-appeal",
        "DECISION_APPEAL",
        "",
        party("Alice Studio"),
        {"grounds": "是同一支舞"},
        appeal_of=f"appeals/{ident}",
    )
    return ident, draft


def test_an_appeal_of_a_decision_runs_under_the_appealed_cases_law(app: Appeals) -> None:
    """An EU notice, rejected; the claimant appeals without naming a
    jurisdiction: the appeal is the notice's (EU), so upholding it gives the
    uploader the EU's time to answer, not the default's. Naming another is
    refused, naming the field."""
    ident, draft = rejected_eu_notice(app, "eu1")
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, replace(draft, jurisdiction="cn"))
    assert [v.field for v in refused.value.violations] == ["appeal.jurisdiction"]
    appeal = app.file(ALICE, draft)
    assert appeal.jurisdiction == "eu"
    app.assign(AGENT, str(appeal.id), "")
    reasons = {"ground": "构成侵权", "facts": "同一支舞"}
    app.decide(AGENT, str(appeal.id), True, reasons, party("Ursula", "ursula"), etag="")
    eu = policy.load()["eu"]
    reversed_notice = app.get(ALICE, ident)
    assert reversed_notice.state == "UPHELD"
    assert reversed_notice.next_step_due == eu.due(eu.appeal_window, app.clock.now())


def test_an_eu_decision_may_be_appealed_to_the_end_of_the_day_six_months_on(
    app: Appeals, clock: FakeClock
) -> None:
    """Two EU notices rejected at noon on 2 March: their claimant has six
    months to the day, to its end (DSA Art. 20(1); Regulation 1182/71 Art. 3),
    not to noon. Appealing one late on 2 September is taken; the other, the
    next day, is refused."""
    clock.now_is(datetime(2027, 3, 2, 12, 0, tzinfo=UTC))
    _, appeal_of_first = rejected_eu_notice(app, "eu-day1")
    second, appeal_of_second = rejected_eu_notice(app, "eu-day2")
    clock.now_is(datetime(2027, 9, 2, 23, 30, tzinfo=ZoneInfo("Europe/Lisbon")))
    assert app.file(ALICE, appeal_of_first).state == "SUBMITTED"
    clock.now_is(datetime(2027, 9, 3, 9, 0, tzinfo=ZoneInfo("America/Martinique")))
    with pytest.raises(FailedPrecondition) as refused:
        app.file(ALICE, appeal_of_second)
    assert refused.value.reason == "APPEAL_WINDOW_CLOSED"
    assert events_of(app, second)[-1] is CopyrightAppeal.Decided


@pytest.mark.parametrize("jurisdiction", ["cn", "us"])
def test_a_takedown_under_any_law_may_be_appealed_for_the_eus_six_months(
    app: Appeals, clock: FakeClock, jurisdiction: str
) -> None:
    """A removal applies in the EU too, whatever law it was decided under:
    upheld at noon on 2 March, a Chinese or US notice may be appealed until
    24:00 on 2 September wherever in the EU that comes last (DSA Art. 20(1)),
    as an EU one may; the statement says so, and an appeal late that evening
    in Lisbon is taken."""
    decided = datetime(2027, 3, 2, 12, 0, tzinfo=UTC)
    clock.now_is(decided)
    ident = upheld(app, str(app.file(ALICE, replace(notice(), jurisdiction=jurisdiction)).id))
    case = app.get(ALICE, ident)
    assert case.next_step_due is not None
    assert case.next_step_due >= months_end(decided, 6)
    assert case.next_step_due == datetime(2027, 9, 3, 4, 0, tzinfo=UTC)
    assert case.decision is not None
    assert case.decision["appeal_deadline"] == case.next_step_due
    clock.now_is(datetime(2027, 9, 2, 23, 30, tzinfo=ZoneInfo("Europe/Lisbon")))
    appeal = replace(decision_appeal(ident), jurisdiction=jurisdiction)
    assert app.file(URSULA, appeal).state == "SUBMITTED"


@pytest.mark.parametrize("jurisdiction", ["cn", "us", "eu"])
def test_six_months_ending_on_a_sunday_may_be_appealed_through_the_monday(
    app: Appeals, clock: FakeClock, jurisdiction: str
) -> None:
    """Upheld at noon on Friday 5 March 2027, a notice's six months would
    end on Sunday 5 September: under any law its uploader may appeal until
    24:00 on Monday the 6th wherever in the EU that comes last (Regulation
    1182/71 Art. 3(4)), and an appeal that Monday evening in Martinique is
    taken."""
    clock.now_is(datetime(2027, 3, 5, 12, 0, tzinfo=UTC))
    ident = upheld(app, str(app.file(ALICE, replace(notice(), jurisdiction=jurisdiction)).id))
    assert app.get(ALICE, ident).next_step_due == datetime(2027, 9, 7, 4, 0, tzinfo=UTC)
    clock.now_is(datetime(2027, 9, 6, 23, 30, tzinfo=ZoneInfo("America/Martinique")))
    appeal = replace(decision_appeal(ident), jurisdiction=jurisdiction)
    assert app.file(URSULA, appeal).state == "SUBMITTED"


@pytest.mark.parametrize("uphold", [True, False])
def test_an_appeal_filed_under_another_law_is_decided_under_the_notices(
    app: Appeals, monkeypatch: pytest.MonkeyPatch, uphold: bool
) -> None:
    """Appeals filed before they took their notice's jurisdiction may carry
    the default: deciding one, either way, gives the redress of the appealed
    EU notice's law (beyond the platform: the decision is final), and the
    notice it upholds the EU's deadline."""
    ident, draft = rejected_eu_notice(app, "eu2")
    draft = replace(draft, jurisdiction="cn")
    with monkeypatch.context() as before:  # as filed before the check
        before.setattr(app, "_check_appealable", lambda *args: None)
        old = app.file(ALICE, draft)
    assert old.jurisdiction == "cn"
    app.assign(AGENT, str(old.id), "")
    uploader = party("Ursula", "ursula") if uphold else None
    reasons = {"ground": "构成侵权", "facts": "同一支舞"}
    decided = app.decide(AGENT, str(old.id), uphold, reasons, uploader, etag="")
    eu = policy.load()["eu"]
    due = eu.due(eu.appeal_window, app.clock.now())
    assert decided.decision is not None
    assert decided.decision["reasons"]["redress"] == eu.final_redress["zh-CN"]
    if uphold:
        assert app.get(ALICE, ident).next_step_due == due


def test_the_redress_is_written_in_the_language_of_the_party_it_is_for(app: Appeals) -> None:
    """The statement's redress goes to the party the decision went against:
    the claimant of a rejected notice reads it in their language; the
    (Chinese-speaking) uploader of an upheld notice in theirs."""
    english = {**party("Alice Studio"), "locale": "en"}
    redress = policy.load()["cn"].redress
    reasons = {"ground": "著作权法第十条", "facts": "不同的舞"}
    rejected = str(app.file(ALICE, replace(notice("n-en"), filer=english)).id)
    app.assign(AGENT, rejected, "")
    app.decide(AGENT, rejected, False, reasons, None, etag="")
    shown = appeal_message(app.get(ALICE, rejected)).decision_reasons
    assert shown.redress == redress["en"]

    second = replace(notice("n-en2", infringing_items=["v/2"]), filer=english)
    kept = str(app.file(ALICE, second).id)
    app.assign(AGENT, kept, "")
    app.decide(AGENT, kept, True, reasons, party("Ursula", "ursula"), etag="")
    assert appeal_message(app.get(URSULA, kept)).decision_reasons.redress == redress["zh-CN"]


V1, V2, V3 = (f"https://video.example/v/{n}" for n in (1, 2, 3))


def items_shown(
    app: Appeals, ident: str, parties: tuple[Identity, ...] = (ALICE, URSULA)
) -> tuple[list[str], list[str]]:
    """What the case `ident` shows its `parties` came back and is still
    down (each sees the same: the items name content, not a person)."""
    seen = {
        (tuple(m.restored_items), tuple(m.still_down_items))
        for m in (for_viewer(appeal_message(app.get(who, ident)), who) for who in parties)
    }
    ((came_back, down),) = seen
    return list(came_back), list(down)


def test_one_counter_notice_answers_for_several_removed_items_and_restores_them_all(
    app: Appeals, clock: FakeClock
) -> None:
    """A notice took down three of Ursula's videos: her counter-notice names
    two of them; when the window passes both come back, as the claimant and
    the topic are told."""
    ident = upheld(app, str(app.file(ALICE, notice("n-many", infringing_items=[V1, V2, V3])).id))
    app.file_counter_notice(
        URSULA,
        ident,
        party("Ursula"),
        {"removed_items": [V1, V3], "reason": "两支都是我编的舞"},
        good_faith=True,
        accuracy=True,
    )
    shown = appeal_message(app.get(ALICE, ident)).counter_notice
    assert (shown.removed_item, list(shown.removed_items)) == (V1, [V1, V3])
    restore = restore_deadline(app, ident)
    clock.now_is(restore.due)
    app.fire(restore)
    case = app.get(URSULA, ident)
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.ContentRestored)
    assert (message.removed_item, list(message.restored_items)) == (V1, [V1, V3])


def test_a_court_outcome_restoring_a_counter_notices_items_names_each(app: Appeals) -> None:
    ident = upheld(app, str(app.file(ALICE, notice("n-court", infringing_items=[V1, V2, V3])).id))
    counter = {"removed_items": [V1, V3], "reason": "两支都是我编的舞"}
    app.file_counter_notice(URSULA, ident, party("Ursula"), counter, good_faith=True, accuracy=True)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    app.record_court_outcome(AGENT, ident, False, "原告撤诉", [])
    message = public_message(last_event(app, ident), app.get(URSULA, ident))
    assert isinstance(message, aev.CourtOutcomeRecorded)
    assert message.outcome == "CONTENT_RESTORED"
    assert (message.removed_item, list(message.restored_items)) == (V1, [V1, V3])


def test_the_removed_items_a_counter_notice_names_are_checked_one_by_one(app: Appeals) -> None:
    """Each item named is one the notice took down, and named once: each
    refusal names its field, and nothing is stored. `removed_item` alone is
    still a counter-notice, and may be listed again among `removed_items`."""
    ident = upheld(app, str(app.file(ALICE, notice("n-check", infringing_items=[V1, V2])).id))
    before = events_of(app, ident)

    def refused_fields(counter_notice: dict[str, Any]) -> list[str]:
        with pytest.raises(InvalidArgument) as refused:
            app.file_counter_notice(
                URSULA, ident, party("Ursula"), counter_notice, good_faith=True, accuracy=True
            )
        return [v.field for v in refused.value.violations]

    reason = {"reason": "原创"}
    assert refused_fields({**reason, "removed_items": [V1, " ", V1]}) == [
        "counter_notice.removed_items[1]",
        "counter_notice.removed_items[2]",
    ]
    assert refused_fields({**reason, "removed_item": V3, "removed_items": [V2, V3]}) == [
        "counter_notice.removed_item",
        "counter_notice.removed_items[1]",
    ]
    assert refused_fields({**reason, "removed_items": []}) == ["counter_notice.removed_item"]
    assert events_of(app, ident) == before
    both = {**reason, "removed_item": V2, "removed_items": [V1, V2]}
    app.file_counter_notice(URSULA, ident, party("Ursula"), both, good_faith=True, accuracy=True)
    assert list(appeal_message(app.get(ALICE, ident)).counter_notice.removed_items) == [V2, V1]


def test_a_counter_notice_filed_as_a_case_may_name_several_items(app: Appeals) -> None:
    """Filed as a case of its own, naming its items in `removed_items` only,
    it misses nothing, and is published naming each; a repeated one is
    refused, naming it. One filed naming none names them when its filer
    adds them, and is published naming them then."""
    several = {"removed_items": [V1, V2], "reason": "自编舞"}
    draft = counter_notice_draft()
    content = {**draft.content, "counter_notice": several}
    case = app.file(URSULA, replace(draft, request_id="c-many", content=content))
    assert (case.state, case.missing) == ("SUBMITTED", [])
    assert list(appeal_message(case).counter_notice.removed_items) == [V1, V2]
    filed = public_message(last_event(app, str(case.id)), case)
    assert isinstance(filed, aev.AppealFiled)
    assert (filed.removed_item, list(filed.removed_items)) == (V1, [V1, V2])

    unnamed = {**content, "counter_notice": {"reason": "自编舞"}}
    case = app.file(URSULA, replace(draft, request_id="c-later", content=unnamed))
    assert case.missing == ["counter_notice.removed_item"]
    filed = public_message(last_event(app, case.id), case)
    assert isinstance(filed, aev.AppealFiled) and list(filed.removed_items) == []
    named = {"counter_notice": {"removed_items": [V2, V3]}}
    case = app.add_info(URSULA, str(case.id), "", named, etag="")
    added = public_message(last_event(app, case.id), case)
    assert isinstance(added, aev.AppealInfoAdded)
    assert list(added.removed_items) == [V2, V3]
    case = app.add_info(URSULA, str(case.id), "原视频链接", {}, etag="")
    untouched = public_message(last_event(app, case.id), case)
    assert isinstance(untouched, aev.AppealInfoAdded) and list(untouched.removed_items) == []
    repeated = {**content, "counter_notice": {**several, "removed_items": [V1, V1]}}
    with pytest.raises(InvalidArgument) as refused:
        app.file(URSULA, replace(draft, request_id="c-twice", content=repeated))
    fields = [v.field for v in refused.value.violations]
    assert fields == ["appeal.counter_notice.removed_items[1]"]


def test_a_counter_notice_sent_without_removed_items_keeps_its_request() -> None:
    """Sent without `removed_items`, a counter-notice reads as it did before
    the field existed (a retry then still matches its first request)."""
    one = counter_dict(apb.CounterNotice(removed_item=f" {V1} ", reason="原创"))
    assert "removed_items" not in one and one["removed_item"] == V1
    several = counter_dict(apb.CounterNotice(removed_items=[f"{V1} ", V2], reason="原创"))
    assert several["removed_items"] == [V1, V2]


def countered_in_part(app: Appeals, clock: FakeClock, appealed_first: bool) -> tuple[str, str]:
    """A notice that took down two of Ursula's videos, upheld; she countered
    for the first alone, which came back when the window passed. Her appeal
    of the removal, filed before her counter-notice or after the video came
    back, is with an agent. The notice's id and her appeal's."""
    ident = upheld(app, str(app.file(ALICE, notice("n-part", infringing_items=[V1, V2])).id))
    appeal = str(app.file(URSULA, decision_appeal(ident)).id) if appealed_first else ""
    first = {"removed_item": V1, "reason": "这支是我编的舞"}
    app.file_counter_notice(URSULA, ident, party("Ursula"), first, good_faith=True, accuracy=True)
    restore = restore_deadline(app, ident)
    clock.now_is(restore.due)
    app.fire(restore)
    assert app.get(URSULA, ident).state == "RESTORED"
    appeal = appeal or str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    return ident, appeal


@pytest.mark.parametrize("appealed_first", [True, False])
def test_what_a_counter_notice_left_down_may_be_appealed_after_a_court_restored_the_rest(
    app: Appeals, clock: FakeClock, appealed_first: bool
) -> None:
    """Ursula countered for her first video alone; the claimant went to
    court over it, and the court restored it. Her second video was never
    before the court: her appeal (filed before, or after) may bring it
    back, and upheld it does."""
    ident = upheld(app, str(app.file(ALICE, notice("n-court", infringing_items=[V1, V2])).id))
    appeal = str(app.file(URSULA, decision_appeal(ident)).id) if appealed_first else ""
    first = {"removed_item": V1, "reason": "这支是我编的舞"}
    app.file_counter_notice(URSULA, ident, party("Ursula"), first, good_faith=True, accuracy=True)
    app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
    app.record_court_outcome(AGENT, ident, False, "（2026）京0491民初3号：驳回原告", EVIDENCE)
    case = app.get(URSULA, ident)
    assert (case.state, case.still_down()) == ("RESTORED", [V2])
    appeal = appeal or str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    assert app.decide(AGENT, appeal, True, REASONS, None, etag="").state == "UPHELD"
    case = app.get(ALICE, ident)
    assert (case.restored_on_appeal, case.still_down()) == ([V2], [])


@pytest.mark.parametrize("appealed_first", [True, False])
def test_an_upheld_appeal_restores_what_a_counter_notice_left_down(
    app: Appeals, clock: FakeClock, appealed_first: bool
) -> None:
    """The second video is down still: Ursula's appeal upheld brings it back,
    and only it (the first is up already), in the same change. Everything is
    back up then, and the decision on her appeal final."""
    ident, appeal = countered_in_part(app, clock, appealed_first)
    # RESTORED, yet only the video the counter-notice named came back.
    assert items_shown(app, ident) == ([V1], [V2])
    assert app.decide(AGENT, appeal, True, REASONS, None, etag="").state == "UPHELD"
    case = app.get(ALICE, ident)
    assert (case.state, case.restored_by_appeal) == ("RESTORED", f"appeals/{appeal}")
    assert (case.restored_on_appeal, case.still_down()) == ([V2], [])
    assert items_shown(app, ident) == ([V1, V2], [])
    assert events_of(app, ident)[-2:] == [
        CopyrightAppeal.Restored,
        CopyrightAppeal.RestoredOnAppeal,
    ]
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.ContentRestored)
    assert (list(message.restored_items), message.removed_item) == ([V2], V2)
    again = replace(decision_appeal(ident), request_id="a2")
    assert refusal(app, URSULA, again) == "APPEAL_DECISION_FINAL"


def test_an_appeal_of_a_notice_whose_counter_notice_restored_everything_changes_nothing(
    app: Appeals, clock: FakeClock
) -> None:
    """Countered for both videos, both came back: her appeal upheld is
    UPHELD and nothing more follows; another has nothing left to reverse."""
    ident = upheld(app, str(app.file(ALICE, notice("n-all", infringing_items=[V1, V2])).id))
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    both = {"removed_items": [V1, V2], "reason": "两支都是我编的舞"}
    app.file_counter_notice(URSULA, ident, party("Ursula"), both, good_faith=True, accuracy=True)
    restore = restore_deadline(app, ident)
    clock.now_is(restore.due)
    app.fire(restore)
    assert app.decide(AGENT, appeal, True, REASONS, None, etag="").state == "UPHELD"
    assert events_of(app, ident)[-1] is CopyrightAppeal.Restored
    again = replace(decision_appeal(ident), request_id="a2")
    assert refusal(app, URSULA, again) == "NOTHING_TO_REVERSE"


def test_a_notice_listing_an_item_twice_is_refused_naming_the_repeat(app: Appeals) -> None:
    """Each item a notice names is taken down, and comes back, once: one
    listed again (spaces around it or not), at filing or when completing
    the notice, is refused, naming it, and nothing changes. An item the case holds sent again adds
    nothing and is not refused."""
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, notice("n-twice", infringing_items=[V1, V1, V2]))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("appeal.notice.infringing_items[1]", "names an item listed before it")
    ]
    assert CopyrightAppeal.create_id(ALICE.subject, "n-twice") not in app.repository
    ident = str(app.file(ALICE, notice("n-once", infringing_items=[V1])).id)
    before = events_of(app, ident)
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(
            ALICE, ident, "", {"notice": {"infringing_items": [V2, V3, f" {V2}"]}}, etag=""
        )
    assert [v.field for v in refused.value.violations] == ["completion.notice.infringing_items[2]"]
    assert events_of(app, ident) == before
    case = app.add_info(ALICE, ident, "", {"notice": {"infringing_items": [V1, V2]}}, etag="")
    assert case.content["notice"]["infringing_items"] == [V1, V2]


def test_a_notice_stored_listing_an_item_twice_restores_it_once(app: Appeals) -> None:
    """Filed when an item listed twice was let through: upheld, then
    reversed on the uploader's appeal, it restores each item once."""
    ident = str(app.file(ALICE, notice("n-stored", infringing_items=[V1, V2])).id)
    stored_with(app, ident, lambda content: content["notice"].update(infringing_items=[V1, V1, V2]))
    upheld(app, ident)
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.assign(AGENT, appeal, "")
    app.decide(AGENT, appeal, True, {"ground": "原创", "facts": "舞蹈为其原创"}, None, etag="")
    case = app.get(ALICE, ident)
    message = public_message(last_event(app, ident), case)
    assert isinstance(message, aev.ContentRestored)
    assert list(message.restored_items) == [V1, V2]
    assert case.restored_items == [V1, V2]


def wide(length: int, seed: int) -> str:
    """A text of `length` characters of four UTF-8 bytes each (CJK
    Extension B), different for each `seed`."""
    return "".join(chr(0x20000 + (seed * length + n) % 0xA6D0) for n in range(length))


def test_an_item_longer_than_a_url_is_refused_naming_it_and_nothing_changes(app: Appeals) -> None:
    """An item is a URL or a content id: one longer than 2,048 characters,
    in a notice or a counter-notice filed or completed, is refused naming
    it, and nothing is stored (the audited counter-notice, of items of
    5,000 characters, among them). One of 2,048 is taken."""
    long_item = "https://video.example/v/" + "9" * (ITEM_LIMIT - 23)
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, notice("n-long", infringing_items=[V1, long_item]))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("appeal.notice.infringing_items[1]", TOO_LONG_ITEM)
    ]
    assert TOO_LONG_ITEM == "must be at most 2,048 characters (a URL or a content id)"
    assert CopyrightAppeal.create_id(ALICE.subject, "n-long") not in app.repository

    draft = counter_notice_draft()
    audited = {"removed_item": wide(TEXT_LIMIT, 0), "removed_items": [wide(TEXT_LIMIT, 1)]}
    content = {**draft.content, "counter_notice": {**audited, "reason": "自编舞"}}
    with pytest.raises(InvalidArgument) as refused:
        app.file(URSULA, replace(draft, request_id="c-long", content=content))
    assert [v.field for v in refused.value.violations] == [
        "appeal.counter_notice.removed_item",
        "appeal.counter_notice.removed_items[0]",
    ]

    ident = str(app.file(ALICE, notice("n-short", infringing_items=[V1])).id)
    before = events_of(app, ident)
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(ALICE, ident, "", {"notice": {"infringing_items": [long_item]}}, etag="")
    assert [v.field for v in refused.value.violations] == ["completion.notice.infringing_items[0]"]
    assert events_of(app, ident) == before
    case = app.add_info(
        ALICE, ident, "", {"notice": {"infringing_items": [long_item[1:]]}}, etag=""
    )
    assert case.content["notice"]["infringing_items"] == [V1, long_item[1:]]


def test_a_counter_notice_names_at_most_fifty_items_its_removed_item_among_them(
    app: Appeals,
) -> None:
    """`removed_item` and 50 more `removed_items` are 51 items: refused,
    filed as a case, completed, or answering a notice (one an earlier
    release let hold 51), naming the list, and nothing changes. Named among
    the 50 too, it is one of them."""
    items = [f"https://video.example/v/{n}" for n in range(1000, 1051)]
    draft = counter_notice_draft()
    fifty_one = {"removed_item": items[50], "removed_items": items[:50], "reason": "自编舞"}
    with pytest.raises(InvalidArgument) as refused:
        app.file(URSULA, replace(draft, content={**draft.content, "counter_notice": fifty_one}))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("appeal.counter_notice.removed_items", TOO_MANY_REMOVED)
    ]
    assert TOO_MANY_REMOVED == "at most 50 items in all, removed_item among them"
    fifty = {**fifty_one, "removed_item": items[0]}
    case = app.file(URSULA, replace(draft, content={**draft.content, "counter_notice": fifty}))
    assert len(appeal_message(case).counter_notice.removed_items) == 50

    forty_nine = {"removed_item": items[50], "removed_items": items[:49], "reason": "自编舞"}
    content = {**draft.content, "counter_notice": forty_nine}
    ident = str(app.file(URSULA, replace(draft, request_id="c-49", content=content)).id)
    before = events_of(app, ident)
    one_more = {"counter_notice": {"removed_items": [items[49]]}}
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(URSULA, ident, "还有一个", one_more, etag="")
    assert [v.field for v in refused.value.violations] == [
        "completion.counter_notice.removed_items"
    ]
    assert events_of(app, ident) == before
    case = app.add_info(
        URSULA, ident, "", {"counter_notice": {"removed_items": items[:1]}}, etag=""
    )
    assert len(appeal_message(case).counter_notice.removed_items) == 50

    ident = str(app.file(ALICE, notice("n-51", infringing_items=items[:50])).id)
    stored_with(app, ident, lambda content: content["notice"].update(infringing_items=items))
    upheld(app, ident)
    before = events_of(app, ident)
    with pytest.raises(InvalidArgument) as refused:
        app.file_counter_notice(
            URSULA, ident, party("Ursula"), fifty_one, good_faith=True, accuracy=True
        )
    assert [v.field for v in refused.value.violations] == ["counter_notice.removed_items"]
    assert events_of(app, ident) == before


def test_a_notice_stored_with_an_item_longer_than_a_url_is_completed_countered_and_restored(
    app: Appeals, clock: FakeClock
) -> None:
    """A notice filed when an item could be 5,000 characters: the claimant
    may send it again (it adds nothing), its uploader's counter-notice may
    name it, and it comes back when the window passes, as the topic is told."""
    long_item = "https://video.example/v/" + "9" * (TEXT_LIMIT - 24)
    ident = str(app.file(ALICE, notice("n-old", infringing_items=[V1])).id)
    stored_with(app, ident, lambda content: content["notice"].update(infringing_items=[long_item]))
    case = app.add_info(ALICE, ident, "", {"notice": {"infringing_items": [long_item]}}, etag="")
    assert case.content["notice"]["infringing_items"] == [long_item]
    upheld(app, ident)
    countered = {"removed_item": long_item, "reason": "我自己编的舞"}
    app.file_counter_notice(
        URSULA, ident, party("Ursula"), countered, good_faith=True, accuracy=True
    )
    restore = restore_deadline(app, ident)
    clock.now_is(restore.due)
    app.fire(restore)
    message = public_message(last_event(app, ident), app.get(URSULA, ident))
    assert isinstance(message, aev.ContentRestored)
    assert list(message.restored_items) == [long_item]


def filed_by_an_earlier_release(app: Appeals, ident: str, draft: AppealDraft) -> None:
    """The case `ident` as an earlier release filed it from `draft`, which
    its rules let through: the draft's content and request written into its
    stored Filed event, as a retry of `draft` is matched against them."""

    def filed(state: dict[str, Any]) -> None:
        state["content"].update(draft.content)
        state["request_fingerprint"] = app.fingerprint(draft)

    stored_event_with(app, ident, 1, filed)


def test_a_filing_an_earlier_release_took_past_todays_limits_is_answered_with_its_case(
    app: Appeals,
) -> None:
    """A retry gets the case it filed, whatever limits came in since: a
    notice filed when an item could be 5,000 characters, and a
    counter-notice filed as a case naming 51 items in all, each sent again
    under its request id. Another filing under the id is refused as before,
    and so is the same filing under a new id; nothing is stored."""
    long_item = "https://video.example/v/" + "9" * (3000 - 24)
    old = notice("n-old", infringing_items=[V1, long_item])
    ident = str(app.file(ALICE, notice("n-old", infringing_items=[V1])).id)
    filed_by_an_earlier_release(app, ident, old)
    case = app.file(ALICE, old)
    assert (str(case.id), case.content["notice"]["infringing_items"]) == (ident, [V1, long_item])
    with pytest.raises(AlreadyExists, match="request_id 'n-old'") as reused:
        app.file(ALICE, notice("n-old", infringing_items=[V2]))
    assert reused.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, notice("n-old", infringing_items=[V2, long_item + "0"]))
    assert [v.field for v in refused.value.violations] == ["appeal.notice.infringing_items[1]"]
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, replace(old, request_id="n-new"))
    assert [v.field for v in refused.value.violations] == ["appeal.notice.infringing_items[1]"]
    assert CopyrightAppeal.create_id(ALICE.subject, "n-new") not in app.repository
    assert events_of(app, ident) == [CopyrightAppeal.Filed]

    items = [f"https://video.example/v/{n}" for n in range(1000, 1051)]
    draft = counter_notice_draft()
    fifty_one = {"removed_item": items[50], "removed_items": items[:50], "reason": "自编舞"}
    old = replace(draft, request_id="c-51", content={**draft.content, "counter_notice": fifty_one})
    fifty = {**fifty_one, "removed_item": items[0]}
    ident = str(app.file(URSULA, replace(old, content={**old.content, "counter_notice": fifty})).id)
    filed_by_an_earlier_release(app, ident, old)
    case = app.file(URSULA, old)
    assert str(case.id) == ident
    assert len(appeal_message(case).counter_notice.removed_items) == 51
    with pytest.raises(AlreadyExists, match="request_id 'c-51'"):
        app.file(URSULA, replace(old, content={**old.content, "counter_notice": fifty}))
    with pytest.raises(InvalidArgument) as refused:
        app.file(URSULA, replace(old, request_id="c-new"))
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("appeal.counter_notice.removed_items", TOO_MANY_REMOVED)
    ]
    assert CopyrightAppeal.create_id(URSULA.subject, "c-new") not in app.repository
    assert events_of(app, ident) == [CopyrightAppeal.Filed]


def test_a_counter_notice_an_earlier_release_took_past_fifty_items_answers_again_as_then(
    app: Appeals,
) -> None:
    """The uploader's counter-notice to a notice of 51 items, naming them
    all, taken by an earlier release: sent again under its request id, it
    gets its first answer. Another under the id is refused as before, and
    so is the same one under a new id; nothing changes."""
    items = [f"https://video.example/v/{n}" for n in range(1000, 1051)]
    ident = str(app.file(ALICE, notice("n-51", infringing_items=items[:50])).id)
    stored_with(app, ident, lambda content: content["notice"].update(infringing_items=items))
    upheld(app, ident)
    fifty_one = {"removed_item": items[50], "removed_items": items[:50], "reason": "自编舞"}

    def counter_under(request_id: str, counter_notice: dict[str, Any]) -> CopyrightAppeal:
        return app.file_counter_notice(
            URSULA,
            ident,
            party("Ursula"),
            counter_notice,
            good_faith=True,
            accuracy=True,
            request_id=request_id,
        )

    first = counter_under("c-51", {**fifty_one, "removed_item": items[0]})
    # As the earlier release stored it: all 51 items, under the request.
    retry = Retry.of(
        "c-51",
        URSULA,
        "file_counter_notice",
        uploader=party("Ursula"),
        counter_notice=fifty_one,
        good_faith=True,
        accuracy=True,
    )
    assert retry is not None

    def countered(state: dict[str, Any]) -> None:
        state["counter_notice"] = fifty_one
        state["change_request_fingerprint"] = retry.fingerprint

    stored_event_with(app, ident, first.version, countered)
    before = events_of(app, ident)
    again = counter_under("c-51", fifty_one)
    assert (again.version, again.state) == (first.version, "FORWARDED_TO_CLAIMANT")
    assert len(appeal_message(again).counter_notice.removed_items) == 51
    with pytest.raises(AlreadyExists, match="request_id 'c-51'"):
        counter_under("c-51", {**fifty_one, "removed_item": items[0]})
    with pytest.raises(InvalidArgument) as refused:
        counter_under("c-51", {**fifty_one, "reason": "另一个理由"})
    assert [v.field for v in refused.value.violations] == ["counter_notice.removed_items"]
    with pytest.raises(InvalidArgument) as refused:
        counter_under("c-new", fifty_one)
    assert [v.field for v in refused.value.violations] == ["counter_notice.removed_items"]
    assert events_of(app, ident) == before


def test_a_removed_item_sent_alone_past_fifty_items_is_refused_naming_it(app: Appeals) -> None:
    """A counter-notice filed as a case naming 50 items, its removed_item
    among its removed_items: a new removed_item sent alone makes 51, refused
    naming removed_item, the field the filer sent, and nothing changes."""
    items = [f"https://video.example/v/{n}" for n in range(1000, 1051)]
    draft = counter_notice_draft()
    fifty = {"removed_item": items[0], "removed_items": items[:50], "reason": "自编舞"}
    content = {**draft.content, "counter_notice": fifty}
    ident = str(app.file(URSULA, replace(draft, content=content)).id)
    before = events_of(app, ident)
    with pytest.raises(InvalidArgument) as refused:
        app.add_info(URSULA, ident, "", {"counter_notice": {"removed_item": items[50]}}, etag="")
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("completion.counter_notice.removed_item", TOO_MANY_REMOVED)
    ]
    assert events_of(app, ident) == before


# The largest record aiokafka's producer sends by default (`max_request_size`).
KAFKA_RECORD_LIMIT = 1024 * 1024


def published_sizes(app: Appeals) -> list[tuple[str, int]]:
    """Each event `app` stored as the relay publishes it on casemesh.appeals.v1
    (personal texts sealed, translated with the case after it): its type and
    the size of its record, as the producer reckons it against its limit."""
    sealed = leaving_sealed(app.mapper)
    translate = Translator(StreamFollower(app, mapper=sealed))
    sizes = []
    for stored in app.recorder.select_notifications(start=1, limit=1000):
        record = translate(stored, sealed.to_domain_event(stored))
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            record.key.encode(), record.data, record.kafka_headers()
        )
        sizes.append((record.type, size))
    return sizes


def taken_until_refused(*steps: Callable[[], object]) -> list[str]:
    """Takes `steps` in turn until one is refused (INVALID_ARGUMENT): the
    fields its refusal names, none when every step was taken."""
    for step in steps:
        try:
            step()
        except InvalidArgument as refused:
            return [v.field for v in refused.violations]
    return []


def test_every_event_of_cases_filled_to_their_limits_is_published_well_within_a_record(
    clock: FakeClock,
) -> None:
    """Each event a counter-notice filed as a case publishes names all its
    items: an audit filed one naming 51 items of 5,000 four-byte characters,
    completed twice, whose last AppealInfoAdded (over 1 MiB) the relay could
    never publish, nor anything after it. That case is refused at its
    filing now. Cases filled to every limit (50 items of 2,048 four-byte
    characters, the longest texts, the most evidence, the filer's details
    corrected) publish every event within half of Kafka's record: a
    counter-notice completed up to its 50 items, one filed with them, and a
    notice of 50 items countered for all of them and restored."""
    personal = memory_sealer().sealer
    app = Appeals(in_memory(), clock=clock, policies=policy.load(), sealer=personal)
    draft = counter_notice_draft()
    audited = [wide(TEXT_LIMIT, n) for n in range(51)]
    opening = {"removed_item": audited[0], "removed_items": audited[1:25], "reason": "mine"}
    audit = str(CopyrightAppeal.create_id(URSULA.subject, "c-audit"))
    refused = taken_until_refused(
        lambda: app.file(
            URSULA,
            replace(
                draft, request_id="c-audit", content={**draft.content, "counter_notice": opening}
            ),
        ),
        lambda: app.add_info(
            URSULA, audit, "", {"counter_notice": {"removed_items": audited[25:49]}}, etag=""
        ),
        lambda: app.add_info(
            URSULA,
            audit,
            wide(TEXT_LIMIT, 51),
            {"counter_notice": {"removed_items": audited[49:]}, "filer": party(wide(500, 52))},
            etag="",
        ),
    )

    items = [wide(ITEM_LIMIT, n) for n in range(LIST_LIMIT)]
    evidence = [{"name": f"evidence/{uuid.uuid4()}", "sha256": "e" * 64} for _ in range(50)]
    words, filer = wide(TEXT_LIMIT, 99), party(wide(500, 98), "ursula")
    first = {"removed_item": items[0], "removed_items": items[1:25], "reason": words}
    content = {**draft.content, "counter_notice": first}
    ident = str(app.file(URSULA, replace(draft, content=content, filer=filer)).id)
    app.add_info(URSULA, ident, words, {"counter_notice": {"removed_items": items[25:49]}}, etag="")
    last = {
        "counter_notice": {"removed_items": items[49:], "evidence": evidence},
        "filer": party(wide(500, 95)),
    }
    case = app.add_info(URSULA, ident, words, last, etag="")
    assert len(appeal_message(case).counter_notice.removed_items) == LIST_LIMIT

    full = {"removed_item": items[0], "removed_items": items, "reason": words, "evidence": evidence}
    content = {**draft.content, "counter_notice": full}
    app.file(URSULA, replace(draft, request_id="c-full", content=content, filer=filer))

    work = {"title": wide(TEXT_LIMIT, 97), "creation_time": "2026-01-01T00:00:00+00:00"}
    taken = notice(
        "n-full",
        work=work,
        infringing_items=items,
        originality_evidence=evidence,
        infringement_evidence=evidence,
    )
    ident = upheld(app, str(app.file(ALICE, replace(taken, filer=party(wide(500, 96)))).id))
    app.file_counter_notice(URSULA, ident, filer, full, good_faith=True, accuracy=True)
    restore = restore_deadline(app, ident)
    clock.now_is(restore.due)
    app.fire(restore)

    sizes = published_sizes(app)
    published = {kind.split(".")[2] for kind, _ in sizes}
    assert {"AppealInfoAdded", "AppealFiled", "CounterNoticeFiled", "ContentRestored"} <= published
    assert [(kind, size) for kind, size in sizes if size > KAFKA_RECORD_LIMIT // 2] == []
    assert refused[:2] == [
        "appeal.counter_notice.removed_item",
        "appeal.counter_notice.removed_items[0]",
    ]


# -- one item taken down by several notices ---------------------------------

# The video every story's notice takes down (`notice`).
VIDEO = "https://video.example/v/123"


def bobs_notice(app: Appeals) -> str:
    """Bob's notice against the same video as Alice's, filed (not decided)."""
    return str(app.file(BOB, replace(notice("nb"), filer=party("Bob Films"))).id)


def held_elsewhere(message: Any) -> list[tuple[str, list[str]]]:
    return [(held.item, list(held.held_by)) for held in message.held_elsewhere]


def restoration(app: Appeals, ident: str) -> aev.ContentRestored | aev.CourtOutcomeRecorded:
    """The public event of the case's last event, a restoration."""
    message = public_message(last_event(app, ident), app.get(AGENT, ident))
    assert isinstance(message, aev.ContentRestored | aev.CourtOutcomeRecorded)
    return message


def let_go(
    app: Appeals, clock: FakeClock, ident: str, how: str
) -> aev.ContentRestored | aev.CourtOutcomeRecorded:
    """Lets the notice `ident` go of Ursula's video `how`: its counter-notice's
    window passing, a court, or her appeal upheld. Returns the event that
    published it."""
    if how == "appeal":
        appeal = str(app.file(URSULA, decision_appeal(ident)).id)
        app.assign(AGENT, appeal, "")
        app.decide(AGENT, appeal, True, {"ground": "原创", "facts": "舞蹈为其原创"}, None, "")
    else:
        counter(app, ident)
        if how == "court":
            app.record_court_action(AGENT, ident, "起诉书已送达", EVIDENCE)
            app.record_court_outcome(AGENT, ident, False, "原告撤诉", [])
        else:
            restore = restore_deadline(app, ident)
            clock.now_is(restore.due)
            app.fire(restore)
    return restoration(app, ident)


@pytest.mark.parametrize("how", ["window", "court", "appeal"])
def test_an_item_another_notice_keeps_down_does_not_come_back_with_the_first(
    app: Appeals, clock: FakeClock, how: str
) -> None:
    """Alice's and Bob's notices both took Ursula's video down. Alice's
    lets it go (her counter-notice's window passed, a court or an appeal):
    Alice's case ends, but the video stays down by Bob's takedown, which
    nobody contested. The topic says so, not to restore it, and which case
    holds it; the parties see it too. Bob's case records each change of
    Alice's, its own takedown as it was. Once Bob's lets it go too, the
    video comes back."""
    alices = upheld(app)
    bobs = upheld(app, bobs_notice(app))
    # Bob's takedown is noted on Alice's case, which kept the video down first.
    noted = public_message(last_event(app, alices), app.get(AGENT, alices))
    assert isinstance(noted, aev.TakedownOverlapChanged)
    assert (noted.other_notice, list(noted.items), noted.keeps_down) == (
        f"appeals/{bobs}",
        [VIDEO],
        True,
    )
    assert (noted.header.actor, noted.header.state) == ("system", "UPHELD")

    message = let_go(app, clock, alices, how)
    assert (message.removed_item, list(message.restored_items)) == ("", [])
    assert held_elsewhere(message) == [(VIDEO, [f"appeals/{bobs}"])]
    assert message.header.state == "RESTORED"
    for who in (ALICE, URSULA):
        shown = for_viewer(appeal_message(app.get(who, alices)), who)
        assert (list(shown.restored_items), list(shown.still_down_items)) == ([], [])
        assert held_elsewhere(shown) == [(VIDEO, [f"appeals/{bobs}"])]
    bob_case = app.get(BOB, bobs)
    assert (bob_case.state, bob_case.keeps_down()) == ("UPHELD", [VIDEO])
    noted = public_message(last_event(app, bobs), bob_case)
    assert isinstance(noted, aev.TakedownOverlapChanged)
    assert (noted.other_notice, list(noted.items), noted.keeps_down) == (
        f"appeals/{alices}",
        [VIDEO],
        False,
    )
    assert [h.type for h in app.history(BOB, bobs).items][-1] == "TakedownOverlapChanged"

    message = let_go(app, clock, bobs, how)
    assert (message.removed_item, list(message.restored_items)) == (VIDEO, [VIDEO])
    assert held_elsewhere(message) == []
    assert events_of(app, alices)[-1] is not CopyrightAppeal.OverlapChanged


@pytest.mark.parametrize("projected", [False, True])
def test_a_notice_keeping_the_item_down_is_found_whether_the_index_has_it_yet_or_not(
    app: Appeals, clock: FakeClock, projected: bool
) -> None:
    """Bob's notice is found through the case index once it has taken it,
    and in the event log before: either way the video stays down."""
    alices = upheld(app)
    IndexProjector(app, app.index, RowSource(index_doc)).catch_up()
    bobs = upheld(app, bobs_notice(app))
    if projected:
        IndexProjector(app, app.index, RowSource(index_doc)).catch_up()
        assert app._naming_since(app.index.max_tracking_id(app.name) or 0, [VIDEO]) == set()
    message = let_go(app, clock, alices, "window")
    assert held_elsewhere(message) == [(VIDEO, [f"appeals/{bobs}"])]


def test_only_the_items_another_notice_keeps_down_stay_down(app: Appeals, clock: FakeClock) -> None:
    """Alice's notice took down two videos, Bob's one of them: Ursula's
    counter-notice to Alice's brings back the other."""
    alices = upheld(app, str(app.file(ALICE, notice("n-two", infringing_items=[V1, VIDEO])).id))
    bobs = upheld(app, bobs_notice(app))
    both = {"removed_items": [V1, VIDEO], "reason": "两支都是我编的舞"}
    app.file_counter_notice(URSULA, alices, party("Ursula"), both, good_faith=True, accuracy=True)
    restore = restore_deadline(app, alices)
    clock.now_is(restore.due)
    app.fire(restore)
    message = restoration(app, alices)
    assert (message.removed_item, list(message.restored_items)) == (V1, [V1])
    assert held_elsewhere(message) == [(VIDEO, [f"appeals/{bobs}"])]
    assert items_shown(app, alices) == ([V1], [])


def test_a_notice_rejected_withdrawn_or_still_open_keeps_nothing_down(
    app: Appeals, clock: FakeClock
) -> None:
    """Other notices of the video that took nothing down do not hold it."""
    open_one = bobs_notice(app)
    rejected = str(app.file(BOB, replace(notice("nb2"), filer=party("Bob Films"))).id)
    app.decide(AGENT, rejected, False, {"ground": "不构成侵权", "facts": "原创"}, None, "")
    withdrawn = str(app.file(BOB, replace(notice("nb3"), filer=party("Bob Films"))).id)
    app.withdraw(BOB, withdrawn, "")
    message = let_go(app, clock, upheld(app), "window")
    assert (list(message.restored_items), held_elsewhere(message)) == ([VIDEO], [])
    for other in (open_one, rejected, withdrawn):
        assert events_of(app, other)[-1] is not CopyrightAppeal.OverlapChanged


def lost_race(
    app: Appeals, monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Any]
) -> Callable[[], Any]:
    """The next save `app` makes waits while `meanwhile` runs and saves (as
    another replica would between the first one's reads and its save)."""
    save = app.save

    def late(*aggregates: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(app, "save", save)
        meanwhile()
        return save(*aggregates, **kwargs)

    monkeypatch.setattr(app, "save", late)
    return save


def test_two_notices_letting_go_of_an_item_at_once_bring_it_back_with_the_second(
    app: Appeals, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both counter-notices' windows end together, the timer firing each on
    another replica: each reads the other still keeping the video down.
    Both record on the other's case, so one is refused (its deadline stays
    due); fired again, it finds the video held by nobody and brings it back."""
    alices, bobs = upheld(app), upheld(app, bobs_notice(app))
    counter(app, alices)
    counter(app, bobs)
    first, second = restore_deadline(app, alices), restore_deadline(app, bobs)
    clock.now_is(max(first.due, second.due))
    lost_race(app, monkeypatch, lambda: app.fire(second))
    with pytest.raises(IntegrityError):
        app.fire(first)
    assert app.get(ALICE, alices).state == "FORWARDED_TO_CLAIMANT"
    bobs_restored = public_message(last_event(app, bobs), app.get(BOB, bobs))
    assert held_elsewhere(bobs_restored) == [(VIDEO, [f"appeals/{alices}"])]
    app.fire(first)
    message = restoration(app, alices)
    assert (list(message.restored_items), held_elsewhere(message)) == ([VIDEO], [])


def test_a_takedown_at_the_moment_the_item_comes_back_keeps_it_down(
    app: Appeals, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent upholds Bob's notice just as the timer brings the video back
    for Alice's: the takedown records on Alice's case, so the restoration,
    read before it, is refused; fired again, it leaves the video down."""
    alices, bobs = countered(app), bobs_notice(app)
    restore = restore_deadline(app, alices)
    clock.now_is(restore.due)
    lost_race(app, monkeypatch, lambda: upheld(app, bobs))
    with pytest.raises(IntegrityError):
        app.fire(restore)
    app.fire(restore)
    message = restoration(app, alices)
    assert list(message.restored_items) == []
    assert held_elsewhere(message) == [(VIDEO, [f"appeals/{bobs}"])]


def test_an_agent_whose_takedown_meets_a_restoration_is_told_to_read_again(
    app: Appeals, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: the restoration goes first, the agent's
    decision (read while the video was down by Alice's notice) is refused
    ABORTED and changes nothing; decided again, it takes the video down
    after it came back."""
    alices, bobs = countered(app), bobs_notice(app)
    app.assign(AGENT, bobs, "")
    restore = restore_deadline(app, alices)
    clock.now_is(restore.due)
    lost_race(app, monkeypatch, lambda: app.fire(restore))
    with pytest.raises(Aborted, match="a notice naming one of its items") as refused:
        app.decide(AGENT, bobs, True, REASONS, party("Ursula", "ursula"), "")
    assert refused.value.reason == "CONCURRENT_CHANGE"
    assert app.get(BOB, bobs).state == "UNDER_REVIEW"
    restored = restoration(app, alices)
    assert list(restored.restored_items) == [VIDEO]
    app.decide(AGENT, bobs, True, REASONS, party("Ursula", "ursula"), "")
    assert events_of(app, alices)[-1] is CopyrightAppeal.Restored


@pytest.mark.parametrize("how", ["window", "court", "appeal"])
def test_content_restored_before_other_takedowns_were_looked_at_reads_as_published(
    app: Appeals, clock: FakeClock, how: str
) -> None:
    """A restoration stored by an earlier release records no items held
    elsewhere: it loads, and publishes every item back, as it did."""
    ident = upheld(app)
    let_go(app, clock, ident, how)
    recorder = cast(Any, app.recorder)
    version = last_event(app, ident).originator_version
    position = recorder._stored_events_index[ident][version]
    stored = recorder._stored_events[position]
    state = app.mapper.transcoder.decode(stored.state)
    assert state.pop("held_elsewhere") == {}
    del state["class_version"]
    recorder._stored_events[position] = replace(stored, state=app.mapper.transcoder.encode(state))
    case = app.get(ALICE, ident)
    assert (case.held_elsewhere, case.came_back()) == ({}, [VIDEO])
    message = restoration(app, ident)
    assert (list(message.restored_items), held_elsewhere(message)) == ([VIDEO], [])


# -- a claimant withdrawing an upheld notice -----------------------------------


@pytest.mark.parametrize("forwarded", [False, True])
def test_a_claimant_withdraws_an_upheld_notice_and_the_content_comes_back(
    app: Appeals, clock: FakeClock, forwarded: bool
) -> None:
    """Alice settles with Ursula and withdraws her upheld notice, before or
    after Ursula's counter-notice was forwarded: the case is WITHDRAWN and
    the video comes back at once, as the topic is told (AppealWithdrawn,
    then ContentRestored); the restore the counter-notice waited for finds
    nothing left to do, and the case's retention runs from now. Ursula may
    not withdraw Alice's notice."""
    ident = countered(app) if forwarded else upheld(app)
    restore = restore_deadline(app, ident) if forwarded else None
    with pytest.raises(PermissionDenied):
        app.withdraw(URSULA, ident, "")
    case = app.withdraw(ALICE, ident, "已与上传者和解")
    assert (case.state, case.next_step, case.next_step_due) == ("WITHDRAWN", "", None)
    assert events_of(app, ident)[-2:] == [
        CopyrightAppeal.Withdrawn,
        CopyrightAppeal.RestoredOnWithdrawal,
    ]
    stored = list(app.repository.event_store.get(UUID(ident)))
    withdrawn = public_message(stored[-2], app.repository.get(UUID(ident), version=len(stored) - 1))
    assert isinstance(withdrawn, aev.AppealWithdrawn)
    restored = public_message(stored[-1], case)
    assert isinstance(restored, aev.ContentRestored)
    assert (restored.removed_item, list(restored.restored_items)) == (VIDEO, [VIDEO])
    assert (restored.header.state, restored.header.actor, restored.outcome_of) == (
        "WITHDRAWN",
        "alice",
        "",
    )
    assert items_shown(app, ident) == ([VIDEO], [])
    assert [h.type for h in app.history(URSULA, ident).items][-2:] == [
        "AppealWithdrawn",
        "ContentRestored",
    ]
    (retention,) = app.deadlines_of(last_event(app, ident))
    assert retention.kind == DeadlineKind.RETENTION
    if restore is not None:
        clock.now_is(restore.due)
        assert app.fire(restore) is None
        assert events_of(app, ident)[-1] is CopyrightAppeal.RestoredOnWithdrawal


def test_a_notice_before_a_court_or_ended_is_not_withdrawn(app: Appeals) -> None:
    """Once a court is seized of it (HELD) the court's outcome ends the case,
    and a case that ended stays as it ended: each refusal says why and
    changes nothing."""
    held_one = held(app)
    before = events_of(app, held_one)
    with pytest.raises(FailedPrecondition) as refused:
        app.withdraw(ALICE, held_one, "和解了")
    assert refused.value.reason == "CASE_BEFORE_COURT"
    assert "court" in refused.value.message
    assert (events_of(app, held_one), app.get(ALICE, held_one).state) == (before, "HELD")
    app.record_court_outcome(AGENT, held_one, True, "判决：维持下架", [])
    with pytest.raises(FailedPrecondition) as refused:
        app.withdraw(ALICE, held_one, "和解了")
    assert refused.value.reason == "CASE_CLOSED"
    rejected = str(app.file(ALICE, notice("n-rejected")).id)
    app.decide(AGENT, rejected, False, REASONS, None, "")
    with pytest.raises(FailedPrecondition) as refused:
        app.withdraw(ALICE, rejected, "")
    assert refused.value.reason == "CASE_CLOSED"


def test_a_withdrawn_notices_item_another_notice_keeps_down_stays_down(
    app: Appeals,
) -> None:
    """Alice withdraws her notice while Bob's keeps the same video down: it
    stays down by Bob's, as the topic is told, and Bob's case notes it."""
    alices, bobs = upheld(app), upheld(app, bobs_notice(app))
    app.withdraw(ALICE, alices, "已和解")
    restored = restoration(app, alices)
    assert (restored.removed_item, list(restored.restored_items)) == ("", [])
    assert held_elsewhere(restored) == [(VIDEO, [f"appeals/{bobs}"])]
    assert items_shown(app, alices) == ([], [])
    assert app.get(BOB, bobs).keeps_down() == [VIDEO]
    assert events_of(app, bobs)[-1] is CopyrightAppeal.OverlapChanged


def test_the_uploaders_appeal_of_a_notice_withdrawn_meanwhile_is_upheld_and_nothing_follows(
    app: Appeals,
) -> None:
    """Ursula appealed the takedown; Alice withdrew the notice before an
    agent decided: the video is back, the appeal may still be upheld, and
    the withdrawn notice stays as it is."""
    ident = upheld(app)
    appeal = str(app.file(URSULA, decision_appeal(ident)).id)
    app.withdraw(ALICE, ident, "已和解")
    before = events_of(app, ident)
    assert app.decide(AGENT, appeal, True, REASONS, None, "").state == "UPHELD"
    assert events_of(app, ident) == before


def test_an_expired_notice_is_not_withdrawn(clock: FakeClock) -> None:
    """A notice upheld and never countered ended when its window closed, and
    its retention ran out: it accepts nothing more."""
    app = retaining(clock)
    ident = upheld(app)
    (window,) = app.deadlines_of(last_event(app, ident))
    clock.now_is(window.due)
    app.fire(window)
    assert app.get(ALICE, ident).expired
    with pytest.raises(FailedPrecondition) as refused:
        app.withdraw(ALICE, ident, "")
    assert refused.value.reason == "CASE_EXPIRED"
    assert app.get(ALICE, ident).state == "UPHELD"

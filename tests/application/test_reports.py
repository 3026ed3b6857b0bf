"""The reports application, told as stories in memory: reports of one item
joining one case, a reasoned decision and what it does to each report and
reporter, voiding, appeals that reverse a decision, trusted flaggers, and the
lists and figures read from its view."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from casemesh.events.v1.reports_pb2 import ReportCaseDecided, ReportResolved
from casemesh.platform.callers import _VOUCHED
from casemesh.platform.caseindex import Projector
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.identity import Identity, Vouched
from casemesh.platform.localized import field_words
from casemesh.platform.paging import fitting
from casemesh.platform.personal import (
    ERASED,
    PersonalEvent,
    PersonalFields,
    SealingMapper,
    is_token,
    reveal_message,
)
from casemesh.platform.relay import StreamFollower
from casemesh.platform.timers import Deadline, UnknownDeadlineKind
from casemesh.topics import MAX_RECORD_BYTES
from casemesh.v1 import reports_pb2 as rpb
from casemesh_appeals.policy import POLICIES
from casemesh_reports import filing
from casemesh_reports.api import (
    CASE_REPORT_NAMES,
    ReportServicer,
    appellants,
    case_message,
    for_viewer,
    index_doc,
    listed_case,
    queue_priority,
    report_message,
    standing_message,
)
from casemesh_reports.application import ReportDraft, Reports
from casemesh_reports.domain import (
    PERSONAL,
    REPORTERS,
    AbuseReport,
    ReportCase,
    Reporter,
    TrustedFlagger,
)
from casemesh_reports.events import PUBLISHED_REPORT_IDS, Translator, public_message
from casemesh_reports.policy import Misuse, ReportsPolicy, load_taxonomy
from casemesh_reports.views import MemoryReportsView
from tests.application.story import (
    AGENT,
    ALICE,
    BOB,
    FakeClock,
    afresh,
    events_of,
    in_memory,
    last_event,
)
from tests.support import memory_sealer

UPLOADER = {
    "user_id": "ursula",
    "legal_name": "Ursula",
    "locale": "zh-CN",
    "contact": {"email": "ursula@example.com", "channels": ["EMAIL"]},
}


def report(request_id: str = "r1", video: str = "7731", **changes: Any) -> ReportDraft:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "target": {"type": "VIDEO", "id": video},
        "category": "violence_terrorism",
        "subcategory": "terrorism",
        "explanation": "视频宣扬恐怖组织",
        "evidence": [{"name": "evidence/e1", "sha256": "ab" * 32}],
        "good_faith": True,
        "contact": {"locale": "zh-CN", "email": "r@example.com", "channels": ["EMAIL"]},
    }
    return ReportDraft(**{**fields, **changes})


def action_taken(clock: FakeClock) -> dict[str, Any]:
    """A complete statement of reasons for removing the video."""
    return {
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": "社区自律公约 第 3.2 条",
        "incompatible_content_explanation": "视频美化恐怖袭击。",
        "category_specification": ["KEYWORD_TERRORIST_CONTENT"],
        "content_type": ["CONTENT_TYPE_VIDEO"],
        "content_date": "2026-03-01",
        "application_date": clock.now().date().isoformat(),
        "decision_facts": "人工审核确认视频第 12 秒起出现袭击画面。",
        "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
        "restrictions": [
            {
                "field": "visibility",
                "type": "DECISION_VISIBILITY_CONTENT_REMOVED",
                "other": "",
                "end_time": "",
            }
        ],
        "territorial_scope": ["CN"],
        "content_language": "zh",
    }


NO_VIOLATION = {"decision_facts": "普通的舞蹈视频，没有任何违规内容。"}


def seen(app: Reports) -> None:
    """The view catches up with what the application recorded (a service
    projects it in the background)."""
    Projector(
        app, app.view, lambda a, tracking: app.view.apply(a, tracking, index_doc(a)), "reports_view"
    ).catch_up()


def names(docs: list[dict[str, Any]], kind: str) -> list[str]:
    return [doc[kind]["name"] for doc in docs]


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def app(clock: FakeClock) -> Reports:
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=1, window_days=180, suspension_days=30),
    )
    return Reports(in_memory(), clock=clock, policy=policy)


def test_reports_of_one_video_join_one_case_and_a_reporter_cannot_report_it_twice(
    app: Reports,
) -> None:
    first = app.file(ALICE, report())
    assert app.file(ALICE, report()).id == first.id  # a retry
    with pytest.raises(AlreadyExists, match="request_id 'r1'"):
        app.file(ALICE, report(explanation="something else"))
    with pytest.raises(AlreadyExists, match="already reported"):
        app.file(ALICE, report("r2"))
    second = app.file(BOB, report("b1"))
    assert second.case_id == first.case_id
    case = app.get_case(AGENT, first.case_id)
    assert (case.state, case.lane, len(case.reports)) == ("OPEN", "ORDINARY", 2)
    assert events_of(app, first.case_id) == [ReportCase.Opened, ReportCase.ReportAdded]
    # Both are the case's parties, named on its topic (the queue gives
    # neither its work: they may not do it).
    opening, added = app.repository.event_store.get(UUID(first.case_id))
    assert public_message(opening, case).first_reporter == "alice"  # type: ignore[attr-defined]
    assert public_message(added, case).reporter == "bob"  # type: ignore[attr-defined]


def test_a_retry_sent_while_its_report_is_being_saved_gets_that_report(
    app: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's app sends her report again, under the same request id, while
    the first call is still saving it: the retry, which looked for the
    report before it was saved, answers with that report, not with "you
    already reported this"."""
    ident = AbuseReport.create_id(ALICE.subject, "r1")
    saving, retry_looked = threading.Event(), threading.Event()
    save, get = app.save, app.repository.get
    looks = 0

    def slow_save(*aggregates: Any, **kwargs: Any) -> Any:
        saving.set()
        assert retry_looked.wait(5)
        return save(*aggregates, **kwargs)

    def looked_up(aggregate_id: UUID, **kwargs: Any) -> Any:
        nonlocal looks
        if aggregate_id == ident:
            looks += 1
            if looks == 2:  # the retry's look, before the first call saved
                retry_looked.set()
        return get(aggregate_id, **kwargs)

    monkeypatch.setattr(app, "save", slow_save)
    monkeypatch.setattr(app.repository, "get", looked_up)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(app.file, ALICE, report())
        assert saving.wait(5)
        retry = pool.submit(app.file, ALICE, report())
        assert first.result(10).id == retry.result(10).id == ident
    assert app.get_case(AGENT, first.result().case_id).reporters == ["alice"]


def test_a_retry_gets_its_report_after_the_reasons_offered_changed(app: Reports) -> None:
    """Alice reported a video for terrorism; the reason was then withdrawn
    from the list (the taxonomy changed, the service restarted). Her app's
    retry of that report gets it back, not a complaint about a reason she
    may no longer pick; a new report for it is refused."""
    filed = app.file(ALICE, report())
    violence = app.taxonomy.categories["violence_terrorism"]
    without = replace(
        violence, reasons={k: r for k, r in violence.reasons.items() if k != "terrorism"}
    )
    app.taxonomy = replace(
        app.taxonomy, categories={**app.taxonomy.categories, "violence_terrorism": without}
    )
    assert app.file(ALICE, report()).id == filed.id
    with pytest.raises(InvalidArgument, match="not a reason of violence_terrorism"):
        app.file(BOB, report("b1"))


def test_a_popular_video_takes_every_report_filed_on_it_at_once(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hundred and twenty people report one video from twelve threads, what
    each read 5 ms old by the time it saves: filings of one target take
    turns in a process, so none loses a race to another, and every report is
    filed, into one case."""
    app = Reports(in_memory(), clock=clock, policy=ReportsPolicy(taxonomy=load_taxonomy()))
    get = app.repository.get

    def slow_read(ident: UUID, **kwargs: Any) -> Any:
        read = get(ident, **kwargs)
        time.sleep(0.005)  # the case ages before it is saved
        return read

    monkeypatch.setattr(app.repository, "get", slow_read)

    def reported(i: int) -> str:
        try:
            return app.file(Identity(f"u{i}", frozenset({"user"})), report(f"r{i}")).case_id
        except Aborted:
            return "ABORTED"

    with ThreadPoolExecutor(12) as pool:
        cases = list(pool.map(reported, range(120)))
    assert Counter(cases) == {cases[0]: 120}
    assert len(app.get_case(AGENT, cases[0]).reporters) == 120


def reported_by_a_crowd(app: Reports, clock: FakeClock, people: int) -> tuple[str, list[str]]:
    """A video Alice and `people` others reported: its case and its reports'
    ids, oldest first. Built in one save (filed one by one, they would take
    minutes)."""
    first = app.file(ALICE, report())
    case: ReportCase = app.repository.get(UUID(first.case_id))
    reports = []
    for i in range(people):
        filed = AbuseReport(
            reporter=f"u{i}",
            request_id="r1",
            request_fingerprint="",
            target=first.target,
            category=first.category,
            subcategory=first.subcategory,
            explanation="我也看到了",
            evidence=[],
            contact={"locale": "zh-CN", "channels": []},
            source="ARTICLE_16",
            case_id=first.case_id,
            filed_at=clock.now(),
        )
        joined = {"id": str(filed.id), "reporter": f"u{i}", "at": clock.now(), "trusted": False}
        case.add_report(report=joined, base_priority=case.base_priority)
        reports.append(filed)
    app.save(case, *reports)
    return first.case_id, [str(first.id), *(str(r.id) for r in reports)]


@pytest.mark.parametrize("outcome", ["ACTION_TAKEN", "NO_VIOLATION"])
def test_a_video_reported_by_fourteen_thousand_people_is_decided_and_published(
    app: Reports, clock: FakeClock, outcome: str
) -> None:
    """A viral video's case is decided like any other (its decision does not
    carry every report's id into the store, where it would be too large to
    record), and its ReportCaseDecided lists the case's first reports,
    oldest first, in a record the topic takes."""
    ident, reports = reported_by_a_crowd(app, clock, 14_000)
    removed = outcome == "ACTION_TAKEN"
    statement = action_taken(clock) if removed else NO_VIOLATION
    uploader = UPLOADER if removed else None
    case = app.decide(AGENT, ident, outcome, statement, uploader, [], etag="")
    assert case.state == outcome
    for each in (reports[0], reports[-1]):
        assert app.get_report(AGENT, each).state == outcome

    published = Translator(StreamFollower(app))(cast(Any, None), last_event(app, ident))
    assert published.type == "casemesh.reports.ReportCaseDecided.v1"
    decided = ReportCaseDecided.FromString(published.data)
    assert decided.outcome == outcome
    assert list(decided.report_ids) == reports[:PUBLISHED_REPORT_IDS]
    assert decided.report_count == len(reports)
    assert len(published.data) < MAX_RECORD_BYTES


def test_a_case_with_more_reports_than_it_names_says_how_many_and_shows_each_reporter_theirs(
    app: Reports, clock: FakeClock
) -> None:
    """A video reported by more people than a case names (naming all of a
    viral video's 100,000 reports, the case would pass the 4 MiB a gRPC
    message carries, and nobody could open it): an agent opening its case,
    or listing the queue, sees its first reports, oldest first, and how many
    there are in all (ListReports pages them all); a reporter whose report
    came after the first ones still sees theirs."""
    people = CASE_REPORT_NAMES + 50
    ident, reports = reported_by_a_crowd(app, clock, people)
    seen(app)
    servicer = ReportServicer(app)
    name = f"report-cases/{ident}"
    late = Identity(f"u{people - 1}", frozenset({"user"}))

    async def read_by(who: Identity) -> rpb.ReportCase:
        _VOUCHED.set(Vouched(who))
        return await servicer.GetReportCase(rpb.GetReportCaseRequest(name=name), cast(Any, None))

    async def queue() -> list[rpb.ReportCase]:
        _VOUCHED.set(Vouched(AGENT))
        listed = await servicer.ListReportCases(rpb.ListReportCasesRequest(), cast(Any, None))
        return list(listed.report_cases)

    first = [f"reports/{r}" for r in reports[:CASE_REPORT_NAMES]]
    opened = asyncio.run(read_by(AGENT))
    assert list(opened.reports) == first
    assert opened.reporter_count == len(reports) == people + 1
    [listed] = asyncio.run(queue())
    assert (list(listed.reports), listed.reporter_count) == (first, people + 1)
    theirs = asyncio.run(read_by(late))
    assert list(theirs.reports) == [f"reports/{reports[-1]}"]
    assert theirs.reporter_count == people + 1

    # A row the view projected before cases named only their first reports
    # names every one; the queue lists the case as it is read now.
    def as_projected_before(aggregate: Any) -> dict[str, Any] | None:
        doc = index_doc(aggregate)
        if doc is not None and isinstance(aggregate, ReportCase):
            doc["case"]["reports"] = [f"reports/{r}" for r in reports]
        return doc

    app.view = MemoryReportsView(app.taxonomy.triage)
    Projector(
        app, app.view, lambda a, t: app.view.apply(a, t, as_projected_before(a)), "reports_view"
    ).catch_up()
    [listed] = asyncio.run(queue())
    assert (list(listed.reports), listed.reporter_count) == (first, people + 1)


def test_a_filing_that_loses_races_pauses_longer_after_each_loss(
    app: Reports, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each lost race is followed by a pause at random up to a ceiling that
    doubles (here: the ceiling itself), up to a cap; the report then joins
    the latest round's case."""
    first = app.file(ALICE, report()).case_id
    app.decide(AGENT, first, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    second = app.file(BOB, report("b1")).case_id  # the next round
    losses = 3
    save = app.save

    def losing(*aggregates: Any, **kwargs: Any) -> Any:
        nonlocal losses
        if losses:
            losses -= 1
            raise IntegrityError("another report joined the case first")
        return save(*aggregates, **kwargs)

    paused: list[float] = []
    turn = filing._turn_of({"type": "VIDEO", "id": "7731", "url": ""}, "violence_terrorism")
    held_while_paused: list[bool] = []

    def pause(seconds: float) -> None:
        paused.append(seconds)
        held_while_paused.append(turn.locked())  # others file meanwhile

    monkeypatch.setattr(app, "save", losing)
    monkeypatch.setattr("casemesh_reports.filing.random.uniform", lambda low, high: high)
    monkeypatch.setattr("casemesh_reports.filing.time.sleep", pause)
    carol = Identity("carol", frozenset({"user"}))
    assert app.file(carol, report("c1")).case_id == second
    assert paused == [0.005, 0.01, 0.02]
    assert held_while_paused == [False] * 3
    ceilings = [filing.retry_pause(n) for n in range(1, filing.FILING_ATTEMPTS)]
    assert ceilings[-1] == filing.LONGEST_PAUSE and sum(ceilings) < 1.5
    # Losing every race, it gives up, and says so.
    losses = filing.FILING_ATTEMPTS
    with pytest.raises(Aborted) as gave_up:
        app.file(carol, report("c2", "8842"))
    assert gave_up.value.reason == "CONCURRENT_CHANGE"


def test_reporters_and_uploaders_words_and_contacts_are_stored_sealed_each_under_their_own_key(
    clock: FakeClock,
) -> None:
    personal = memory_sealer().sealer
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=9, window_days=180, suspension_days=30),
    )
    app = Reports(in_memory(), clock=clock, policy=policy, sealer=personal)
    alices_contact = {
        "locale": "zh-CN",
        "email": "alice.sealed@example.com",
        "phone": "+8613800138000",
        "channels": ["EMAIL"],
    }
    mine = app.file(
        ALICE,
        report(
            explanation="爱丽丝看到第 12 秒的袭击画面",
            evidence=[{"name": "evidence/alice-proof", "sha256": "ab" * 32}],
            contact=alices_contact,
        ),
    )
    bobs = app.file(BOB, report("b1", explanation="鲍勃也看到了"))
    ident = mine.case_id
    uploader = {**UPLOADER, "legal_name": "Ursula Upload Ltd"}
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), uploader, [], etag="")
    # Alice's report of another video, judged manifestly unfounded: her warning
    # repeats her contact.
    second = report("r2", "8842", explanation="爱丽丝的第二次举报", contact=alices_contact)
    other = app.file(ALICE, second)
    unfounded = [f"reports/{other.id}"]
    app.decide(AGENT, other.case_id, "NO_VIOLATION", NO_VIOLATION, None, unfounded, "")
    standing = Reporter.create_id("alice")
    words = ["爱丽丝", "alice.sealed@example.com", "+8613800138000", "evidence/alice-proof"]
    words += ["鲍勃也看到了", "r@example.com", "Ursula Upload Ltd", "ursula@example.com"]

    stored = [
        s
        for aggregate in (mine.id, bobs.id, UUID(ident), other.id, standing)
        for s in app.recorder.select_events(aggregate)
    ]
    kept = b"".join(s.state for s in stored)
    assert [w for w in words if w.encode() in kept] == []
    # What an agent writes (the statement of reasons, copied into each
    # report's outcome) names nobody and is left clear; so are the ids.
    assert "人工审核确认视频第 12 秒起出现袭击画面。".encode() in kept
    assert b'"reporter":"alice"' in kept and b'"user_id":"ursula"' in kept

    # The application reads them clear.
    got = app.get_report(ALICE, str(mine.id))
    assert (got.explanation, got.contact, got.evidence[0]["name"]) == (
        "爱丽丝看到第 12 秒的袭击画面",
        alices_contact,
        "evidence/alice-proof",
    )
    case = app.get_case(AGENT, ident)
    assert case.uploader == uploader
    warned: Reporter = app.repository.get(standing)
    assert (warned.standing_at(datetime.now(UTC)), warned.contact["email"]) == (
        "WARNED",
        "alice.sealed@example.com",
    )

    # The relay reads tokens, which a consumer reveals from the message.
    relay = SealingMapper(app.mapper.transcoder, sealer=personal, fields=PERSONAL, reveal=False)
    filed = relay.to_domain_event(app.recorder.select_events(mine.id)[0])
    assert is_token(vars(filed)["explanation"]) and is_token(vars(filed)["contact"]["email"])
    message = public_message(filed, got)
    assert is_token(message.explanation)  # type: ignore[attr-defined]
    shown = reveal_message(personal, message).message
    assert (shown.explanation, shown.contact.email) == (  # type: ignore[attr-defined]
        "爱丽丝看到第 12 秒的袭击画面",
        "alice.sealed@example.com",
    )

    # Alice erased: her words and contact read as erased, wherever she wrote
    # them; Bob's report and the uploader's details are as they were.
    seen(app)
    personal.keys.erase("alice")
    gone = app.get_report(ALICE, str(mine.id))
    assert (gone.explanation, gone.contact["email"], gone.contact["phone"]) == (ERASED,) * 3
    assert gone.evidence[0]["name"] == ERASED
    assert (gone.state, gone.contact["locale"], gone.reporter) == ("ACTION_TAKEN", "zh-CN", "alice")
    assert app.get_report(ALICE, str(other.id)).explanation == ERASED
    erased: Reporter = app.repository.get(standing)
    assert (erased.standing_at(datetime.now(UTC)), erased.contact["email"]) == ("WARNED", ERASED)
    kept_by_bob = app.get_report(BOB, str(bobs.id))
    assert kept_by_bob.explanation == "鲍勃也看到了"
    assert kept_by_bob.contact["email"] == "r@example.com"
    assert app.get_case(AGENT, ident).uploader == uploader

    # The view keeps what people were shown, in clear, until the service
    # hears of the erasure and renders Alice's rows again.
    listed = {d["report"]["name"]: d["report"] for d in app.list_reports(AGENT, 0, "", "").items}
    assert listed[f"reports/{mine.id}"]["explanation"] == "爱丽丝看到第 12 秒的袭击画面"
    assert app.forget_in_view("alice", index_doc) == 4  # her two reports, their two cases
    listed = {d["report"]["name"]: d["report"] for d in app.list_reports(AGENT, 0, "", "").items}
    assert listed[f"reports/{mine.id}"]["explanation"] == ERASED
    assert listed[f"reports/{mine.id}"]["contact"]["email"] == ERASED
    assert listed[f"reports/{other.id}"]["explanation"] == ERASED
    assert listed[f"reports/{bobs.id}"]["explanation"] == "鲍勃也看到了"
    # The uploader erased: the case's document no longer names them.
    personal.keys.erase("ursula")
    assert app.forget_in_view("ursula", index_doc) == 1
    cases = app.list_cases(AGENT, 0, "", "", ["ACTION_TAKEN"], "").items
    [case_doc] = [d["case"] for d in cases if d["id"] == ident]
    assert case_doc["affectedUploader"]["legalName"] == ERASED


def test_an_erasure_heard_while_the_view_is_behind_leaves_the_lists_to_the_projector(
    app: Reports, clock: FakeClock
) -> None:
    """Alice's erasure is handled before the view has applied the case's
    latest events: the lists must still follow the case once the view
    catches up (a decided case leaves the queue and its removal shows
    among the uploader's restrictions; a case reopened on appeal goes back
    to the agents)."""
    ursula = Identity("ursula", frozenset({"user"}))
    decided = app.file(ALICE, report())
    reopened = app.file(ALICE, report(request_id="r2", video="8842"))
    app.decide(AGENT, reopened.case_id, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    app.lodge_appeal(reopened.case_id, "appeals/a2", "alice")
    seen(app)
    # Neither of these is in the view yet.
    app.decide(AGENT, decided.case_id, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.reverse(reopened.case_id, "appeals/a2")  # back to review

    app.forget_in_view("alice", index_doc)
    seen(app)

    queue = [d["id"] for d in app.list_cases(AGENT, 0, "", "", [], "").items]
    assert queue == [reopened.case_id], "the queue lists what is open, as the cases say"
    assert len(app.my_restrictions(ursula)) == 1


def test_reports_stored_before_sealing_read_as_they_were(clock: FakeClock) -> None:
    """Events stored in the clear, before reports sealed anything, are read
    unchanged once it does; a reporter's warning stored before it named the
    reporter (version 1) too."""
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=9, window_days=180, suspension_days=30),
    )
    before = Reports(in_memory(), clock=clock, policy=policy)
    filed = before.file(ALICE, report())
    unfounded = [f"reports/{filed.id}"]
    before.decide(AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, unfounded, "")
    transcoder = before.mapper.transcoder
    stored = list(before.recorder.select_events(filed.id))
    warned = before.recorder.select_events(Reporter.create_id("alice"))[-1]
    state = transcoder.decode(warned.state)
    assert (state.pop("class_version"), state.pop("user_id")) == (3, "alice")
    assert UUID(state.pop("record"))
    stored.append(replace(warned, state=transcoder.encode(state)))  # as version 1 kept it

    personal = memory_sealer().sealer
    mapper = SealingMapper(transcoder, sealer=personal, fields=PERSONAL)
    read = [vars(mapper.to_domain_event(s)) for s in stored]
    assert (read[0]["explanation"], read[0]["contact"]) == (
        "视频宣扬恐怖组织",
        {"locale": "zh-CN", "email": "r@example.com", "channels": ["EMAIL"]},
    )
    assert (read[-1]["user_id"], read[-1]["contact"]["email"]) == ("", "r@example.com")
    assert read[-1]["record"] == ""


def test_a_report_stored_before_it_said_when_it_was_filed_reads_as_filed_when_stored(
    app: Reports, clock: FakeClock
) -> None:
    """A report says when it was filed by the service's clock, which the
    figures count from; one stored before it said so was filed when its
    event was stored."""
    clock.advance(hours=5)
    filed = app.file(ALICE, report())
    assert filed.received_at == clock.now()
    first = app.recorder.select_events(filed.id)[0]
    transcoder = app.mapper.transcoder
    state = transcoder.decode(first.state)
    del state["filed_at"]
    older = cast(
        AbuseReport.Filed,
        app.mapper.to_domain_event(replace(first, state=transcoder.encode(state))),
    )
    read = older.mutate(None)
    assert isinstance(read, AbuseReport) and read.received_at == older.timestamp


def test_a_decision_stored_listing_its_cases_reports_reads_and_publishes_as_before(
    app: Reports, clock: FakeClock
) -> None:
    """A decision stored by an earlier release listed every report of its
    case; read now, the case is decided as it was and its ReportCaseDecided
    lists the same reports."""
    mine, bobs = app.file(ALICE, report()), app.file(BOB, report("b1"))
    ident = mine.case_id
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    as_now = Translator(StreamFollower(app))(cast(Any, None), last_event(app, ident))
    case_as_now = app.get_case(AGENT, ident)

    recorder = cast(Any, app.recorder)
    decided = last_event(app, ident)
    position = recorder._stored_events_index[ident][decided.originator_version]
    stored_now = recorder._stored_events[position]
    transcoder = app.mapper.transcoder
    state = transcoder.decode(stored_now.state)
    assert state["report_ids"] == []
    state["report_ids"] = [str(mine.id), str(bobs.id)]
    recorder._stored_events[position] = replace(stored_now, state=transcoder.encode(state))

    case = app.get_case(AGENT, ident)
    assert (case.state, case.decision, case.uploader) == (
        "ACTION_TAKEN",
        case_as_now.decision,
        case_as_now.uploader,
    )
    as_then = Translator(StreamFollower(app))(cast(Any, None), last_event(app, ident))
    assert as_then == as_now
    published = ReportCaseDecided.FromString(as_then.data)
    assert list(published.report_ids) == [str(mine.id), str(bobs.id)]


def test_a_report_with_bad_fields_names_each_and_files_nothing(app: Reports) -> None:
    bad = report("r!", target={"type": "PLANET", "id": ""}, evidence=[], good_faith=False)
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, bad)
    fields = {v.field for v in refused.value.violations}
    assert {
        "request_id",
        "report.target.type",
        "report.evidence",
        "report.good_faith_statement",
    } <= fields
    assert app.recorder.max_notification_id() is None


def test_a_child_safety_report_needs_and_takes_no_copy_of_the_material(clock: FakeClock) -> None:
    """The link identifies the content: a reporter of child sexual abuse is
    never asked to capture and upload it (itself an offence), and a copy
    attached is refused, in Chinese too. Every other category still needs
    evidence."""
    app = Reports(
        in_memory(),
        clock=clock,
        policy=ReportsPolicy(taxonomy=load_taxonomy()),
        link_hosts=("www.casemesh.example",),
        sealer=memory_sealer().sealer,
    )
    linked = {"type": "VIDEO", "id": "", "url": "https://www.casemesh.example/video/7731"}
    abuse = report(
        target=linked, category="child_safety", subcategory="sexual_exploitation", evidence=[]
    )
    with pytest.raises(InvalidArgument) as refused:
        app.file(ALICE, replace(abuse, evidence=report().evidence))
    [copy] = refused.value.violations
    assert (copy.field, copy.description) == ("report.evidence", filing.CHILD_SAFETY_EVIDENCE)
    assert field_words(copy.description, "zh-CN").startswith("儿童安全类举报不能添加附件")
    assert app.recorder.max_notification_id() is None  # nothing filed
    filed = app.file(ALICE, abuse)
    assert (filed.evidence, filed.target["id"]) == ([], "7731")
    case = app.get_case(AGENT, filed.case_id)
    assert (case.lane, case.reporters) == ("CHILD_SAFETY", ["alice"])
    seen(app)
    [listed] = app.list_reports(ALICE, 0, "", "").items
    assert listed["report"]["state"] == "REPORT_STATE_SUBMITTED"
    with pytest.raises(InvalidArgument) as refused:
        app.file(BOB, report("b1", evidence=[]))
    assert [v.field for v in refused.value.violations] == ["report.evidence"]


def test_removing_the_video_resolves_every_report_of_its_case(
    app: Reports, clock: FakeClock
) -> None:
    mine, bobs = app.file(ALICE, report()), app.file(BOB, report("b1"))
    ident = mine.case_id
    case = app.assign(AGENT, ident, "")
    assert (case.state, case.assignee) == ("IN_REVIEW", "li")
    with pytest.raises(Aborted):
        app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="1")
    case = app.decide(
        AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag=str(case.version)
    )
    assert case.state == "ACTION_TAKEN"
    assert case.decision is not None
    assert case.decision["statement"]["puid"] == "7731"
    for filed in (mine, bobs):
        got = app.get_report(AGENT, str(filed.id))
        assert got.state == "ACTION_TAKEN" and got.outcome is not None
    # The uploader is now a party and sees the case; someone else does not.
    assert app.get_case(Identity("ursula", frozenset({"user"})), ident).id == case.id
    with pytest.raises(NotFound, match=f"report-cases/{ident}"):
        app.get_case(Identity("mallory", frozenset({"user"})), ident)
    # A report's id named as a case is no case, for its reporter or an agent.
    for who in (ALICE, AGENT):
        with pytest.raises(NotFound, match=f"report-cases/{mine.id}"):
            app.get_case(who, str(mine.id))


def test_a_reporter_is_told_whether_automated_means_were_used_and_when_restrictions_end(
    app: Reports, clock: FakeClock
) -> None:
    """DSA Art. 16(6): the reporter hears whether automated means detected
    the content and took the decision, and until when each restriction
    holds; a report resolved before this was kept says nothing of either."""
    filed = app.file(ALICE, report())
    week = clock.now() + timedelta(days=7)
    statement = {
        **action_taken(clock),
        "automated_detection": True,
        "automated_decision": "AUTOMATED_DECISION_PARTIALLY",
        "restrictions": [
            *action_taken(clock)["restrictions"],
            {
                "field": "account",
                "type": "DECISION_ACCOUNT_SUSPENDED",
                "end_time": week.isoformat(),
            },
        ],
    }
    app.decide(AGENT, filed.case_id, "ACTION_TAKEN", statement, UPLOADER, [], etag="")
    outcome = report_message(app.get_report(ALICE, str(filed.id))).outcome
    assert outcome.HasField("automated_detection") and outcome.automated_detection
    assert outcome.automated_decision == rpb.AUTOMATED_DECISION_PARTIALLY
    terms = outcome.restriction_terms
    assert list(terms.visibility) == [rpb.DECISION_VISIBILITY_CONTENT_REMOVED]
    assert not terms.HasField("visibility_end_time")  # permanent
    assert terms.account == rpb.DECISION_ACCOUNT_SUSPENDED
    assert terms.account_end_time.ToDatetime(UTC) == week
    # The same on the topic, for the notifier to tell.
    resolved = public_message(last_event(app, filed.id), app.get_report(ALICE, str(filed.id)))
    assert isinstance(resolved, ReportResolved)
    assert (resolved.automated_detection, resolved.automated_decision) == (
        True,
        "AUTOMATED_DECISION_PARTIALLY",
    )
    assert [
        (r.type, r.end_time.ToDatetime(UTC) if r.HasField("end_time") else None)
        for r in resolved.restriction_terms
    ] == [
        ("DECISION_VISIBILITY_CONTENT_REMOVED", None),
        ("DECISION_ACCOUNT_SUSPENDED", week),
    ]

    # A report resolved before: its outcome lacks them, and reads as unstated.
    older = app.file(BOB, report("b1", "7732"))
    earlier: AbuseReport = app.repository.get(older.id)
    earlier.resolve(
        actor=AGENT.subject,
        outcome={
            "outcome": "ACTION_TAKEN",
            "restrictions": ["DECISION_ACCOUNT_SUSPENDED"],
            "decision_facts": "f",
            "manifestly_unfounded": False,
            "redress": "r",
            "appeal_deadline": week.isoformat(),
            "case_id": older.case_id,
        },
        at=clock.now(),
    )
    app.save(earlier)
    outcome = report_message(app.get_report(BOB, str(older.id))).outcome
    assert list(outcome.restrictions) == ["DECISION_ACCOUNT_SUSPENDED"]
    assert not outcome.HasField("automated_detection")
    assert outcome.automated_decision == rpb.AUTOMATED_DECISION_UNSPECIFIED
    assert not outcome.HasField("restriction_terms")
    resolved = public_message(last_event(app, older.id), earlier)
    assert isinstance(resolved, ReportResolved)
    assert not resolved.HasField("automated_detection") and resolved.automated_decision == ""
    assert list(resolved.restriction_terms) == []


def test_a_statement_missing_its_fields_is_refused_naming_each(
    app: Reports, clock: FakeClock
) -> None:
    ident = app.file(ALICE, report()).case_id
    statement = {**action_taken(clock), "decision_ground": "", "content_type": []}
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, ident, "ACTION_TAKEN", statement, UPLOADER, [], etag="")
    fields = {v.field for v in refused.value.violations}
    assert {"statement.decision_ground", "statement.content_type"} <= fields
    assert events_of(app, ident) == [ReportCase.Opened]


def test_a_report_named_twice_as_manifestly_unfounded_is_refused_at_each_repeat(
    app: Reports,
) -> None:
    filed = app.file(ALICE, report())
    names = [f"reports/{filed.id}"] * 3
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, names, "")
    assert [v.field for v in refused.value.violations] == [
        "manifestly_unfounded_reports[1]",
        "manifestly_unfounded_reports[2]",
    ]
    assert events_of(app, filed.case_id) == [ReportCase.Opened]


def test_manifestly_unfounded_reports_count_against_their_reporter_until_suspended(
    app: Reports, clock: FakeClock
) -> None:
    for n, video in enumerate(("1", "2")):
        filed = app.file(ALICE, report(f"r{n}", video))
        app.decide(
            AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, [f"reports/{filed.id}"], ""
        )
        assert app.get_report(ALICE, str(filed.id)).state == "NO_VIOLATION"
    standing: Reporter = app.repository.get(Reporter.create_id("alice"))
    assert standing.suspended(clock.now()) is not None
    with pytest.raises(FailedPrecondition, match="suspended") as refused:
        app.file(ALICE, report("r9", "3"))
    assert refused.value.reason == "REPORTING_SUSPENDED"
    clock.advance(days=31)
    assert app.file(ALICE, report("r10", "3")).state == "SUBMITTED"


def test_only_reports_filed_after_the_warning_suspend_their_reporter(clock: FakeClock) -> None:
    """Alice files eight reports one morning; an agent judges them
    manifestly unfounded one an hour. The policy warns after two and
    suspends after three more: she is warned once, and the six judged after
    the warning do not suspend her, for she filed them before it (DSA Art.
    23: a suspension follows a warning that went unheeded). Of six she files
    after the warning, the first three judged unfounded suspend her; the
    other three, filed before that suspension began, do not suspend her
    again."""
    app = Reports(in_memory(), clock=clock, policy=ReportsPolicy(taxonomy=load_taxonomy()))
    window = timedelta(days=app.policy.misuse.window_days)

    def judged_unfounded(filed: list[Any]) -> None:
        for f in filed:
            clock.advance(hours=1)
            unfounded = [f"reports/{f.id}"]
            app.decide(AGENT, f.case_id, "NO_VIOLATION", NO_VIOLATION, None, unfounded, "")

    morning = [app.file(ALICE, report(f"m{n}", f"10{n}")) for n in range(8)]
    judged_unfounded(morning)
    standing = standing_message(app.my_standing(ALICE), clock.now(), window)
    assert standing.state == rpb.REPORTING_STANDING_STATE_WARNED
    assert len(standing.unfounded_reports) == 8
    assert list(standing.counting_reports) == [] and list(standing.suspensions) == []

    after = [app.file(ALICE, report(f"a{n}", f"20{n}")) for n in range(6)]
    judged_unfounded(after[:3])
    suspended_at = clock.now()
    judged_unfounded(after[3:])
    suspended = standing_message(app.my_standing(ALICE), clock.now(), window)
    assert suspended.state == rpb.REPORTING_STANDING_STATE_SUSPENDED
    [suspension] = suspended.suspensions
    assert list(suspension.reports) == [f"reports/{f.id}" for f in after[:3]]
    assert suspended.suspended_until.ToDatetime(UTC) == suspended_at + timedelta(days=30)
    with pytest.raises(FailedPrecondition) as refused:
        app.file(ALICE, report("a9", "300"))
    assert refused.value.reason == "REPORTING_SUSPENDED"


def test_the_reports_a_lifted_suspension_was_taken_for_still_count_towards_the_next(
    clock: FakeClock,
) -> None:
    """Alice is warned after two unfounded reports and suspended after three
    more. The first of those three is reversed on appeal: the suspension is
    lifted, but the other two, filed after the warning, still count, and her
    next unfounded report suspends her again (DSA Art. 23)."""
    app = Reports(in_memory(), clock=clock, policy=ReportsPolicy(taxonomy=load_taxonomy()))
    window = timedelta(days=app.policy.misuse.window_days)

    def unfounded(n: int) -> Any:
        filed = app.file(ALICE, report(f"r{n}", f"10{n}"))
        clock.advance(hours=1)
        counted = [f"reports/{filed.id}"]
        app.decide(AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, counted, "")
        return filed

    def standing() -> rpb.ReportingStanding:
        return standing_message(app.my_standing(ALICE), clock.now(), window)

    unfounded(1), unfounded(2)
    assert standing().state == rpb.REPORTING_STANDING_STATE_WARNED
    r3, r4, r5 = unfounded(3), unfounded(4), unfounded(5)
    assert standing().state == rpb.REPORTING_STANDING_STATE_SUSPENDED
    app.lodge_appeal(r3.case_id, "appeals/a1", "alice")
    app.reverse(r3.case_id, "appeals/a1")
    lifted = standing()
    assert lifted.state == rpb.REPORTING_STANDING_STATE_WARNED
    assert list(lifted.counting_reports) == [f"reports/{r.id}" for r in (r4, r5)]

    r6 = unfounded(6)
    suspended = standing()
    assert suspended.state == rpb.REPORTING_STANDING_STATE_SUSPENDED
    assert list(suspended.suspensions[-1].reports) == [f"reports/{r.id}" for r in (r4, r5, r6)]
    assert list(suspended.counting_reports) == []  # the new suspension used them up
    with pytest.raises(FailedPrecondition) as refused:
        app.file(ALICE, report("r9", "300"))
    assert refused.value.reason == "REPORTING_SUSPENDED"


def test_counts_stored_before_they_said_when_their_report_was_filed_count_as_they_did(
    clock: FakeClock,
) -> None:
    """Alice was warned, and two more of her reports were judged unfounded,
    counted when counts did not yet say when their report was filed: they
    still count towards a suspension, as they did then."""
    app = Reports(in_memory(), clock=clock, policy=ReportsPolicy(taxonomy=load_taxonomy()))
    filed = [app.file(ALICE, report(f"m{n}", f"10{n}")) for n in range(4)]
    for f in filed:
        clock.advance(hours=1)
        unfounded = [f"reports/{f.id}"]
        app.decide(AGENT, f.case_id, "NO_VIOLATION", NO_VIOLATION, None, unfounded, "")
    recorder = cast(Any, app.recorder)
    transcoder = app.mapper.transcoder
    for position in recorder._stored_events_index[str(STANDING)].values():
        stored = recorder._stored_events[position]
        state = transcoder.decode(stored.state)
        state.pop("filed_at", None)
        recorder._stored_events[position] = replace(stored, state=transcoder.encode(state))
    window = timedelta(days=app.policy.misuse.window_days)
    standing = standing_message(app.my_standing(ALICE), clock.now(), window)
    assert list(standing.counting_reports) == [f"reports/{f.id}" for f in filed[2:]]


def test_an_upheld_appeal_of_the_uploader_lifts_the_removal(app: Reports, clock: FakeClock) -> None:
    filed = app.file(ALICE, report())
    ident = filed.case_id
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    assert app.lodge_appeal(ident, "appeals/a1", "ursula") is True
    assert app.lodge_appeal(ident, "appeals/a1", "ursula") is False  # the event again
    assert app.reverse(ident, "appeals/a1") is True
    assert app.reverse(ident, "appeals/a1") is False
    assert app.get_case(AGENT, ident).state == "REVERSED"
    assert app.get_report(ALICE, str(filed.id)).state == "REVERSED"
    assert events_of(app, ident)[-2:] == [ReportCase.Appealed, ReportCase.DecisionReversed]


def test_a_reporters_upheld_appeal_sends_the_case_back_to_review(
    app: Reports, clock: FakeClock
) -> None:
    filed = app.file(ALICE, report())
    ident = filed.case_id
    app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    app.lodge_appeal(ident, "appeals/a2", "alice")
    assert app.reverse(ident, "appeals/a2") is True
    assert app.get_case(AGENT, ident).state == "OPEN"
    assert app.get_report(ALICE, str(filed.id)).state == "SUBMITTED"


def test_a_reporters_upheld_appeal_leaves_a_round_reported_since_to_review_the_target(
    app: Reports, clock: FakeClock
) -> None:
    """Alice's report was judged manifestly unfounded; she appealed, and
    meanwhile Bob reported the video again, which opened the next round. Her
    appeal upheld does not reopen the first round beside the second (one
    video and category never has two cases open, and a third report joins the
    open one), but it does reverse the decision: her report is no longer
    counted against her."""
    filed = app.file(ALICE, report())
    first = filed.case_id
    app.decide(AGENT, first, "NO_VIOLATION", NO_VIOLATION, None, [f"reports/{filed.id}"], "")
    assert app.my_standing(ALICE) is not None
    app.lodge_appeal(first, "appeals/a2", "alice")
    second = app.file(BOB, report("b1")).case_id
    assert second != first
    assert app.reverse(first, "appeals/a2") is True
    assert app.get_case(AGENT, first).state == "NO_VIOLATION"  # not back in review
    assert app.get_report(ALICE, str(filed.id)).state == "REVERSED"
    standing = app.my_standing(ALICE)
    assert standing is not None and standing.counted == []
    assert app.get_case(AGENT, second).state == "OPEN"
    assert app.get_case(AGENT, first).next_case_id == second  # saved with Bob's report
    carol = Identity("carol", frozenset({"user"}))
    assert app.file(carol, report("c1")).case_id == second


def test_a_reversal_and_a_report_at_the_same_moment_leave_one_round_open(
    app: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's appeal of a no-violation decision is upheld while, on another
    replica, Bob reports the video again: the reversal looked for a later
    round before Bob's report opened one, and Bob's report is saved first.
    The first round records the next one it opened, so the reversal loses
    its race on the first round and reads it again: reported since, it is
    not reviewed anew beside Bob's round, as when Bob had reported before.
    One video and category still has one case open, Bob's; Alice's report
    is overturned (it no longer counts against her)."""
    first = app.file(ALICE, report()).case_id
    app.decide(AGENT, first, "NO_VIOLATION", NO_VIOLATION, None, [], "")
    app.lodge_appeal(first, "appeals/a1", "alice")
    reverse = ReportCase.reverse
    bobs: list[AbuseReport] = []

    def bob_reports_meanwhile(case: ReportCase, **kwargs: Any) -> Any:
        if not bobs:
            bobs.append(app.file(BOB, report("b1")))
        return reverse(case, **kwargs)

    monkeypatch.setattr(ReportCase, "reverse", bob_reports_meanwhile)
    assert app.reverse(first, "appeals/a1") is True
    rounds = [app.get_case(AGENT, c) for c in {first, bobs[0].case_id}]
    still_open = [c for c in rounds if c.state in ("OPEN", "IN_REVIEW")]
    assert len(still_open) == 1
    assert (str(still_open[0].id), still_open[0].reporters) == (bobs[0].case_id, ["bob"])
    assert app.get_case(AGENT, first).state == "NO_VIOLATION"
    alices = app.get_case(AGENT, first).reports[0]["id"]
    assert app.get_report(ALICE, alices).state == "REVERSED"


def test_a_report_and_a_reversal_at_the_same_moment_leave_one_round_open(
    app: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: Bob's report found the first round decided, and
    before it was saved Alice's upheld appeal sent that round back to
    review. Bob's report, which would open the next round, loses its race on
    the first round, looks again and joins it: one case open, holding both
    reporters' reports."""
    first = app.file(ALICE, report()).case_id
    app.decide(AGENT, first, "NO_VIOLATION", NO_VIOLATION, None, [], "")
    app.lodge_appeal(first, "appeals/a1", "alice")
    current_case = app._current_case
    reversed_meanwhile: list[bool] = []

    def reversal_upheld_meanwhile(*args: Any, **kwargs: Any) -> ReportCase | None:
        found = current_case(*args, **kwargs)
        if not reversed_meanwhile:
            reversed_meanwhile.append(app.reverse(first, "appeals/a1"))
        return found

    monkeypatch.setattr(app, "_current_case", reversal_upheld_meanwhile)
    bobs = app.file(BOB, report("b1"))
    assert reversed_meanwhile == [True]
    assert bobs.case_id == first
    case = app.get_case(AGENT, first)
    assert (case.state, case.reporters, case.next_case_id) == ("OPEN", ["alice", "bob"], "")
    later = ReportCase.create_id(case.target, case.category, case.round_no + 1)
    assert later not in app.repository


def test_a_round_whose_next_one_was_opened_before_rounds_recorded_it_is_not_reopened(
    app: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob reported the video again under a release whose filings did not
    record the next round on the round before: the first round does not
    say it was reported since, but the second round is found, so Alice's
    upheld appeal still leaves it to the second round to review the video,
    and later reports still join the second round."""
    first = app.file(ALICE, report()).case_id
    app.decide(AGENT, first, "NO_VIOLATION", NO_VIOLATION, None, [], "")
    app.lodge_appeal(first, "appeals/a1", "alice")
    with monkeypatch.context() as older_release:
        older_release.setattr(ReportCase, "record_next_round", lambda case, **kwargs: None)
        second = app.file(BOB, report("b1")).case_id
    assert second != first
    assert ReportCase.Succeeded not in events_of(app, first)
    assert app.reverse(first, "appeals/a1") is True
    assert app.get_case(AGENT, first).state == "NO_VIOLATION"
    assert app.get_case(AGENT, second).state == "OPEN"
    carol = Identity("carol", frozenset({"user"}))
    assert app.file(carol, report("c1")).case_id == second


def test_an_appeal_upheld_after_its_decision_was_replaced_changes_nothing(
    app: Reports, clock: FakeClock
) -> None:
    """Alice's and Bob's appeals, and the uploader's, each lodged against the
    first decision. Alice's reopens the case, and a second decision stands:
    Bob's, upheld later, does not reopen the case again, nor does the
    uploader's lift what the second decision imposed. Each is recorded; an
    appeal of the second decision acts on it."""
    alices = app.file(ALICE, report())
    bobs = app.file(BOB, report("b1"))
    ident = alices.case_id
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    for appeal, by in (
        ("appeals/alice", "alice"),
        ("appeals/bob", "bob"),
        ("appeals/u1", "ursula"),
    ):
        app.lodge_appeal(ident, appeal, by)
    assert app.reverse(ident, "appeals/alice") is True
    assert app.get_case(AGENT, ident).state == "OPEN"
    second = app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    assert app.reverse(ident, "appeals/bob") is True
    assert app.reverse(ident, "appeals/u1") is True
    case = app.get_case(AGENT, ident)
    assert (case.state, case.in_effect) == ("ACTION_TAKEN", second.in_effect)
    assert app.get_report(BOB, str(bobs.id)).state == "ACTION_TAKEN"
    assert events_of(app, ident)[-1] == ReportCase.DecisionReversed  # recorded all the same
    app.lodge_appeal(ident, "appeals/u2", "ursula")
    assert app.reverse(ident, "appeals/u2") is True
    assert app.get_case(AGENT, ident).state == "REVERSED"


def test_an_appeal_heard_late_appeals_the_decision_standing_when_it_was_filed(
    app: Reports, clock: FakeClock
) -> None:
    """Bob filed his appeal of the first decision; it was heard only after
    Alice's had reopened the case and a second decision stood. Upheld, it
    changes nothing: he appealed the first."""
    app.file(ALICE, report())
    ident = app.file(BOB, report("b1")).case_id
    app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    clock.advance(hours=1)
    bob_filed_at = clock.now()
    app.lodge_appeal(ident, "appeals/alice", "alice")
    app.reverse(ident, "appeals/alice")
    clock.advance(hours=1)
    app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    clock.advance(hours=1)
    app.lodge_appeal(ident, "appeals/bob", "bob", filed_at=bob_filed_at)  # heard now
    assert app.reverse(ident, "appeals/bob") is True
    assert app.get_case(AGENT, ident).state == "NO_VIOLATION"


def test_voiding_a_case_voids_its_open_reports(app: Reports) -> None:
    filed = app.file(ALICE, report())
    case = app.void(AGENT, filed.case_id, "举报对象已被平台删除")
    assert case.state == "VOID"
    assert app.get_report(ALICE, str(filed.id)).state == "VOID"
    # A new report of the item opens a new round.
    assert app.file(BOB, report("b1")).case_id != filed.case_id


@pytest.mark.parametrize(
    ("scope", "named", "not_named"),
    [
        (["DE", "FR"], ("《数字服务法》第21条", "DSA Art. 21"), ("人民法院", "People's Court")),
        (["CN"], ("人民法院", "People's Court"), ("数字服务法", "DSA")),
        ([], ("数字服务法", "DSA Art. 21"), ("人民法院", "People's Court")),
    ],
    ids=["eu", "china", "everywhere"],
)
def test_the_redress_a_statement_names_is_that_of_where_the_decision_applies(
    app: Reports,
    clock: FakeClock,
    scope: list[str],
    named: tuple[str, str],
    not_named: tuple[str, str],
) -> None:
    """A decision applying in Germany names the DSA's out-of-court bodies to
    a Chinese-speaking uploader, and one applying in China the People's
    Courts to an English-speaking reporter: the redress is the
    jurisdiction's, the words the reader's."""
    english = report(contact={"locale": "en", "email": "r@example.com", "channels": ["EMAIL"]})
    filed = app.file(ALICE, english)
    statement = {**action_taken(clock), "territorial_scope": scope}
    case = app.decide(AGENT, filed.case_id, "ACTION_TAKEN", statement, UPLOADER, [], etag="")
    assert case.decision is not None
    to_uploader = case.decision["statement"]["redress"]  # zh-CN
    outcome = app.get_report(ALICE, str(filed.id)).outcome
    assert outcome is not None
    to_reporter = outcome["redress"]  # en
    assert named[0] in to_uploader and not_named[0] not in to_uploader
    assert named[1] in to_reporter and not_named[1] not in to_reporter


def test_a_case_reopened_with_restrictions_in_effect_is_decided_not_voided(
    app: Reports, clock: FakeClock
) -> None:
    """Reopened on a reporter's appeal, a case keeps its decision's
    restrictions until it is decided again: voiding it would leave them on
    the uploader for good, with no decision left to appeal."""
    ident = app.file(ALICE, report()).case_id
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.lodge_appeal(ident, "appeals/alice", "alice")
    clock.advance(hours=60 * 24)  # the appeal decided two months on
    assert app.reverse(ident, "appeals/alice") is True
    reopened = app.get_case(AGENT, ident)
    assert reopened.state == "OPEN" and reopened.in_effect
    # It waits for review from now: the months it spent decided were no wait,
    # and do not put it above every case reported today.
    assert reopened.waiting_since == clock.now()
    assert app.taxonomy.triage.priority(
        reopened.waiting_since, reopened.base_priority, clock.now()
    ) == pytest.approx(reopened.base_priority)
    with pytest.raises(FailedPrecondition, match="decide it") as refused:
        app.void(AGENT, ident, "举报对象已被平台删除")
    assert refused.value.reason == "RESTRICTIONS_IN_EFFECT"
    assert app.get_case(AGENT, ident).version == reopened.version  # nothing changed
    lifted = app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    assert (lifted.state, lifted.in_effect) == ("NO_VIOLATION", [])


def test_the_queue_lists_a_reopened_case_at_the_priority_it_shows(
    app: Reports, clock: FakeClock
) -> None:
    """Reopened on appeal two months on, a case waits from its reopening:
    the queue lists it at the priority GetReportCase shows (and ranks it by),
    not at two months' growth since its first report."""
    ident = app.file(ALICE, report()).case_id
    app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    app.lodge_appeal(ident, "appeals/alice", "alice")
    clock.advance(days=60)
    assert app.reverse(ident, "appeals/alice") is True
    clock.advance(hours=3)
    seen(app)
    servicer = ReportServicer(app)

    async def agent_reads() -> tuple[rpb.ListReportCasesResponse, rpb.ReportCase]:
        _VOUCHED.set(Vouched(AGENT))
        listed = await servicer.ListReportCases(rpb.ListReportCasesRequest(), cast(Any, None))
        name = f"report-cases/{ident}"
        shown = await servicer.GetReportCase(rpb.GetReportCaseRequest(name=name), cast(Any, None))
        return listed, shown

    listed, shown = asyncio.run(agent_reads())
    base = app.get_case(AGENT, ident).base_priority
    assert shown.priority == pytest.approx(base + 3)
    assert [c.priority for c in listed.report_cases] == [shown.priority]
    # A row projected before the view kept when its case began waiting: the
    # queue rank it was given from that tells it.
    [doc] = app.list_cases(AGENT, 0, "", "", [], "").items
    del doc["waiting_since"]
    assert queue_priority(doc, app.taxonomy.triage, clock.now()) == shown.priority


def test_only_agents_see_how_the_queue_ranks_a_case(app: Reports, clock: FakeClock) -> None:
    """Wang, a trusted flagger, and Alice report a video; removed, it goes
    back to review on Alice's appeal. An agent reading it sees its priority,
    which counts Wang's report; the reporters and the uploader, each reading
    the case, see none (it would tell them a trusted flagger reported it)."""
    app.set_flagger(AGENT, "wang", "Safe Video Alliance", ["violence_terrorism"])
    wang = Identity("wang", frozenset({"user"}))
    ursula = Identity("ursula", frozenset({"user"}))
    ident = app.file(wang, report("w1")).case_id
    app.file(ALICE, report("a1"))
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.lodge_appeal(ident, "appeals/alice", "alice")
    assert app.reverse(ident, "appeals/alice") is True
    clock.advance(hours=3)
    servicer = ReportServicer(app)

    async def priority_seen_by(who: Identity) -> float:
        _VOUCHED.set(Vouched(who))
        name = f"report-cases/{ident}"
        case = await servicer.GetReportCase(rpb.GetReportCaseRequest(name=name), cast(Any, None))
        return case.priority

    base = app.get_case(AGENT, ident).base_priority
    assert base > app.taxonomy.triage.trusted_flagger_points
    assert asyncio.run(priority_seen_by(AGENT)) == pytest.approx(base + 3)
    assert [asyncio.run(priority_seen_by(who)) for who in (wang, ALICE, ursula)] == [0, 0, 0]


def test_a_reopened_case_whose_restrictions_have_all_run_out_may_be_voided(
    app: Reports, clock: FakeClock
) -> None:
    ident = app.file(ALICE, report()).case_id
    week = action_taken(clock)
    week["restrictions"][0]["end_time"] = (clock.now() + timedelta(days=7)).isoformat()
    app.decide(AGENT, ident, "ACTION_TAKEN", week, UPLOADER, [], etag="")
    app.lodge_appeal(ident, "appeals/alice", "alice")
    assert app.reverse(ident, "appeals/alice") is True
    with pytest.raises(FailedPrecondition):  # the week still runs
        app.void(AGENT, ident, "举报对象已被平台删除")
    clock.advance(hours=7 * 24 + 1)
    assert app.void(AGENT, ident, "举报对象已被平台删除").state == "VOID"


@pytest.mark.parametrize("blank", ["   ", "\u3000"])
def test_a_case_is_not_assigned_to_the_caller_for_a_blank_assignee(
    app: Reports, blank: str
) -> None:
    """White space alone names no one: refused, not read as "the caller"."""
    ident = app.file(ALICE, report()).case_id
    before = app.get_case(AGENT, ident)
    with pytest.raises(InvalidArgument) as refused:
        app.assign(AGENT, ident, blank)
    assert [v.field for v in refused.value.violations] == ["assignee"]
    after = app.get_case(AGENT, ident)
    assert (after.version, after.assignee) == (before.version, before.assignee)
    assert app.assign(AGENT, ident, "").assignee == AGENT.subject  # empty: the caller


def test_an_agents_change_sent_again_under_its_request_id_is_made_once(
    app: Reports, clock: FakeClock
) -> None:
    mine, bobs = app.file(ALICE, report()), app.file(BOB, report("b1"))
    ident = mine.case_id
    assigned = app.assign(AGENT, ident, "", request_id="a1")
    assert app.assign(AGENT, ident, "", request_id="a1").version == assigned.version
    with pytest.raises(AlreadyExists, match="request_id 'a1'"):
        app.assign(AGENT, ident, "wang", request_id="a1")

    def decide(request_id: str, outcome: str = "ACTION_TAKEN") -> Any:
        removed = outcome == "ACTION_TAKEN"
        statement = action_taken(clock) if removed else NO_VIOLATION
        uploader = UPLOADER if removed else None
        etag = str(assigned.version)  # as read before the first call
        return app.decide(AGENT, ident, outcome, statement, uploader, [], etag, request_id)

    first = decide("d1")
    recorded = {name: events_of(app, name) for name in (ident, mine.id, bobs.id)}
    again = decide("d1")  # the first answer was lost
    assert (again.version, again.state) == (first.version, "ACTION_TAKEN")
    with pytest.raises(AlreadyExists, match="request_id 'd1'"):
        decide("d1", "NO_VIOLATION")
    with pytest.raises(AlreadyExists, match="request_id 'd1'"):
        app.void(AGENT, ident, "举报对象已被平台删除", request_id="d1")
    # The case decided once, and each of its reports resolved once.
    assert {name: events_of(app, name) for name in recorded} == recorded


def test_a_decision_sent_again_days_later_gets_its_first_answer(
    app: Reports, clock: FakeClock
) -> None:
    # Its statement's application date was today; sent again two days later
    # (past today in every time zone), it would be refused as in the past if
    # it were checked again.
    ident = app.file(ALICE, report()).case_id
    statement = action_taken(clock)
    first = app.decide(AGENT, ident, "ACTION_TAKEN", statement, UPLOADER, [], "", "d1")
    clock.advance(days=2)
    again = app.decide(AGENT, ident, "ACTION_TAKEN", statement, UPLOADER, [], "", "d1")
    assert (again.version, again.state) == (first.version, "ACTION_TAKEN")
    with pytest.raises(InvalidArgument, match="statement"):
        app.decide(AGENT, ident, "ACTION_TAKEN", statement, UPLOADER, [], "", "d2")


def test_voiding_again_under_its_request_id_voids_once(app: Reports) -> None:
    filed = app.file(ALICE, report())
    first = app.void(AGENT, filed.case_id, "举报对象已被平台删除", request_id="v1")
    again = app.void(AGENT, filed.case_id, "举报对象已被平台删除", request_id="v1")
    assert (again.version, again.state) == (first.version, "VOID")
    with pytest.raises(AlreadyExists, match="request_id 'v1'"):
        app.void(AGENT, filed.case_id, "另一个理由", request_id="v1")
    assert events_of(app, filed.id)[-1] == AbuseReport.Voided
    assert events_of(app, filed.id).count(AbuseReport.Voided) == 1


def test_a_trusted_flaggers_report_is_marked_as_theirs_until_removed(app: Reports) -> None:
    flagger = app.set_flagger(AGENT, "bob", "Safe Web Foundation", ["violence_terrorism"])
    assert flagger.active and flagger.areas == ["violence_terrorism"]
    first = app.file(BOB, report("b1"))
    assert first.source == "TRUSTED_FLAGGER"
    app.remove_flagger(AGENT, "bob")
    with pytest.raises(NotFound):
        app.remove_flagger(AGENT, "bob")
    assert app.file(BOB, report("b2", "9")).source == "ARTICLE_16"


def test_an_agent_may_not_make_themselves_a_trusted_flagger(app: Reports) -> None:
    """Reports of theirs would weigh more in the triage they work: another
    agent may designate them, they may not."""
    with pytest.raises(PermissionDenied, match="themselves") as refused:
        app.set_flagger(AGENT, AGENT.subject, "Me", ["violence_terrorism"])
    assert refused.value.metadata == {"field": "flagger.user_id"}
    assert app.list_flaggers(AGENT) == []
    assert app.file(AGENT, report("a1")).source == "ARTICLE_16"


def test_trusted_flagger_changes_are_safe_to_retry_under_a_request_id(app: Reports) -> None:
    areas = ["violence_terrorism"]
    first = app.set_flagger(AGENT, "bob", "Safe Web Foundation", areas, request_id="s1")
    ident = first.id
    again = app.set_flagger(AGENT, "bob", "Safe Web Foundation", areas, request_id="s1")
    assert (again.version, again.display_name) == (first.version, "Safe Web Foundation")
    with pytest.raises(AlreadyExists, match="request_id 's1'") as reused:
        app.set_flagger(AGENT, "bob", "Another Name", areas, request_id="s1")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    assert "to this trusted flagger" in str(reused.value)
    assert events_of(app, ident) == [TrustedFlagger.Designated]

    app.remove_flagger(AGENT, "bob", request_id="x1")
    app.remove_flagger(AGENT, "bob", request_id="x1")  # answers as the first did
    with pytest.raises(NotFound):  # without the id, a second removal finds none
        app.remove_flagger(AGENT, "bob")
    with pytest.raises(AlreadyExists, match="request_id 'x1'"):
        app.set_flagger(AGENT, "bob", "Safe Web Foundation", areas, request_id="x1")
    assert events_of(app, ident) == [TrustedFlagger.Designated, TrustedFlagger.Removed]
    # A retry of the first designation still answers as it did, while removed.
    assert app.set_flagger(AGENT, "bob", "Safe Web Foundation", areas, request_id="s1").active
    assert events_of(app, ident) == [TrustedFlagger.Designated, TrustedFlagger.Removed]


def test_a_designation_that_changed_nothing_keeps_its_request_id(app: Reports) -> None:
    """A repeat of what the list already says, sent under a request id of its
    own, is a change all the same: its retry answers as it did and undoes no
    later change, and the id sent for another change is ALREADY_EXISTS."""
    areas = ["violence_terrorism"]
    app.set_flagger(AGENT, "bob", "Safe Web", areas, request_id="f1")
    same = app.set_flagger(AGENT, "bob", "Safe Web", areas, request_id="f2")
    li = Identity("li", frozenset({"agent"}))
    app.set_flagger(li, "bob", "Safe Web Foundation", areas, request_id="f3")
    retried = app.set_flagger(AGENT, "bob", "Safe Web", areas, request_id="f2")
    assert (retried.version, retried.display_name) == (same.version, "Safe Web")
    with pytest.raises(AlreadyExists, match="request_id 'f2'"):
        app.set_flagger(AGENT, "bob", "Safe Web Foundation", areas, request_id="f2")
    seen(app)
    assert [f["display_name"] for f in app.list_flaggers(AGENT)] == ["Safe Web Foundation"]


def test_agent_commands_need_an_agent_and_change_nothing(app: Reports) -> None:
    ident = app.file(ALICE, report()).case_id
    commands: list[Callable[[], object]] = [
        lambda: app.assign(ALICE, ident, ""),
        lambda: app.decide(ALICE, ident, "NO_VIOLATION", NO_VIOLATION, None, [], ""),
        lambda: app.void(ALICE, ident, "no"),
        lambda: app.set_flagger(ALICE, "alice", "Me", ["violence_terrorism"]),
        lambda: app.remove_flagger(ALICE, "bob"),
    ]
    for command in commands:
        with pytest.raises(PermissionDenied):
            command()
    assert events_of(app, ident) == [ReportCase.Opened]
    with pytest.raises(NotFound):
        app.get_report(BOB, str(app.file(ALICE, report("r2", "8")).id))


def test_an_agent_who_reported_the_case_may_not_work_it(app: Reports, clock: FakeClock) -> None:
    """A reporter deciding their own report is no review: they could count
    the other reporters' reports as manifestly unfounded. They may hand the
    case to a colleague, not take it, decide it or void it; a colleague may
    not hand it to them."""
    alice = Identity("alice", frozenset({"agent"}))
    ident = app.file(alice, report()).case_id
    bobs = f"reports/{app.file(BOB, report('b1')).id}"
    yours = "you are a party to this case (one of its reporters or the uploader)"
    commands: list[tuple[Callable[[], object], str]] = [
        (lambda: app.assign(alice, ident, ""), yours),
        (lambda: app.assign(AGENT, ident, "alice"), "alice is a party to this case"),
        (lambda: app.decide(alice, ident, "NO_VIOLATION", NO_VIOLATION, None, [bobs], ""), yours),
        (lambda: app.void(alice, ident, "duplicate"), yours),
    ]
    for command, told in commands:
        with pytest.raises(PermissionDenied) as refused:
            command()
        assert (refused.value.reason, told in str(refused.value)) == ("OWN_CASE", True)
    assert events_of(app, ident) == [ReportCase.Opened, ReportCase.ReportAdded]
    assert app.assign(alice, ident, "li").assignee == "li"
    decided = app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    assert decided.state == "ACTION_TAKEN"


def test_an_agent_who_uploaded_the_content_may_not_lift_its_restrictions(
    app: Reports, clock: FakeClock
) -> None:
    """Once a decision named them the uploader, an agent may not decide
    the case reopened on appeal (lifting their own removal), nor void it,
    nor name themselves the uploader of a case they decide."""
    ursula = Identity("ursula", frozenset({"agent"}))
    ident = app.file(ALICE, report()).case_id
    with pytest.raises(PermissionDenied, match="you are a party") as refused:
        app.decide(ursula, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    assert refused.value.reason == "OWN_CASE"
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.lodge_appeal(ident, "appeals/alice", "alice")
    app.reverse(ident, "appeals/alice")  # back to review, the removal still in effect
    commands: list[Callable[[], object]] = [
        lambda: app.decide(ursula, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag=""),
        lambda: app.void(ursula, ident, "no longer relevant"),
        lambda: app.assign(ursula, ident, ""),
    ]
    for command in commands:
        with pytest.raises(PermissionDenied, match="another agent must work it"):
            command()
    case = app.get_case(AGENT, ident)
    assert (case.state, [r["type"] for r in case.in_effect]) == (
        "OPEN",
        ["DECISION_VISIBILITY_CONTENT_REMOVED"],
    )


def test_a_decision_at_noon_may_be_appealed_until_the_last_eu_midnight_six_months_on(
    app: Reports, clock: FakeClock
) -> None:
    """Six months as Regulation 1182/71 counts them (DSA Art. 20): to 24:00
    of the matching day, for a reporter or uploader on any EU clock; the
    last to reach it is Martinique's (UTC-4), not noon on 5 September."""
    filed = app.file(ALICE, report())
    clock.now_is(datetime(2026, 3, 3, 12, 0, tzinfo=UTC))
    app.decide(AGENT, filed.case_id, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    midnight_in_martinique = datetime(2026, 9, 4, 4, 0, tzinfo=UTC)  # 24:00 on Thursday the 3rd
    # What the reporter is shown of their report, and what the uploader and
    # the reporter are shown of the decision (the gateway vouches for the
    # latter when either appeals).
    outcome = report_message(app.get_report(ALICE, str(filed.id))).outcome
    assert outcome.appeal_deadline.ToDatetime(UTC) == midnight_in_martinique
    case = app.get_case(AGENT, filed.case_id)
    ursula = Identity("ursula", frozenset({"user"}))
    for who in (ursula, ALICE):
        shown = for_viewer(case_message(case), who, set(), appellants(case))
        assert shown.decision.appeal_deadline.ToDatetime(UTC) == midnight_in_martinique


def test_six_months_ending_on_a_saturday_may_be_appealed_through_the_monday(
    app: Reports, clock: FakeClock
) -> None:
    """Regulation 1182/71 Art. 3(4): a period whose last day is a Saturday
    or Sunday ends with the next working day. Decided on 5 March 2026, six
    months end on Saturday 5 September: the window runs to 24:00 on Monday
    the 7th, on the last EU clock to reach it (Martinique's), as the
    appeals service counts it."""
    filed = app.file(ALICE, report())
    clock.now_is(datetime(2026, 3, 5, 12, 0, tzinfo=UTC))
    app.decide(AGENT, filed.case_id, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    outcome = report_message(app.get_report(ALICE, str(filed.id))).outcome
    assert outcome.appeal_deadline.ToDatetime(UTC) == datetime(2026, 9, 8, 4, 0, tzinfo=UTC)
    assert POLICIES["eu"].appeal_deadline(clock.now()) == outcome.appeal_deadline.ToDatetime(UTC)


def test_a_report_may_name_its_item_by_a_link_kept_without_its_query(clock: FakeClock) -> None:
    policy = ReportsPolicy(taxonomy=load_taxonomy())
    app = Reports(in_memory(), clock=clock, policy=policy, link_hosts=("www.example.com",))
    link = "https://www.example.com/@ursula/video/7731?share_from=alice"
    filed = app.file(ALICE, report(target={"type": "VIDEO", "url": link}))
    assert filed.target == {
        "type": "VIDEO",
        "id": "7731",
        "url": "https://www.example.com/@ursula/video/7731",
    }
    # Named by its id, the same video joins the same case.
    assert app.file(BOB, report("b1")).case_id == filed.case_id
    elsewhere = report("r2", target={"type": "VIDEO", "url": "https://evil.example/video/1"})
    mismatch = report("r3", target={"type": "VIDEO", "id": "8", "url": link})
    for bad, description in (
        (elsewhere, "must be a link to this platform (www.example.com)"),
        (mismatch, "links to video 7731, not to report.target.id 8"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            app.file(ALICE, bad)
        assert [(v.field, v.description) for v in refused.value.violations] == [
            ("report.target.url", description)
        ]


def test_queue_and_figure_requests_are_checked_before_anything_is_read(app: Reports) -> None:
    refusals: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: app.list_cases(ALICE, 0, "", "", [], ""), PermissionDenied, ""),
        (
            lambda: app.list_cases(AGENT, 0, "not-a-token", "", [], ""),
            InvalidArgument,
            "page_token",
        ),
        (lambda: app.list_cases(AGENT, -1, "", "", [], ""), InvalidArgument, "page_size"),
        (lambda: app.list_cases(AGENT, 0, "", "", [], "nope"), InvalidArgument, "category"),
        (lambda: app.list_reports(ALICE, 0, "", "report-cases/x"), PermissionDenied, ""),
        (lambda: app.list_flaggers(ALICE), PermissionDenied, ""),
        (lambda: app.transparency(ALICE, None, None), PermissionDenied, ""),
    ]
    now = datetime(2026, 3, 2, tzinfo=UTC)
    refusals.append((lambda: app.transparency(AGENT, now, now), InvalidArgument, "end_time"))
    for call, error, field in refusals:
        with pytest.raises(error) as refused:
            call()
        if isinstance(refused.value, InvalidArgument):
            assert [v.field for v in refused.value.violations] == [field]


def test_a_reporter_lists_their_own_reports_newest_first_and_an_agent_a_cases(
    app: Reports,
) -> None:
    first = app.file(ALICE, report("r1", "1"))
    second = app.file(ALICE, report("r2", "2"))
    bobs = app.file(BOB, report("b1", "1"))
    seen(app)
    page = app.list_reports(ALICE, 1, "", "")
    assert names(page.items, "report") == [f"reports/{second.id}"]
    rest = app.list_reports(ALICE, 1, page.next_token, "")
    assert (names(rest.items, "report"), rest.next_token) == ([f"reports/{first.id}"], "")
    assert names(app.list_reports(BOB, 0, "", "").items, "report") == [f"reports/{bobs.id}"]
    # An agent lists every report, or a case's.
    assert len(app.list_reports(AGENT, 0, "", "").items) == 3
    of_case = app.list_reports(AGENT, 0, "", f"report-cases/{first.case_id}")
    assert names(of_case.items, "report") == [f"reports/{bobs.id}", f"reports/{first.id}"]


def test_the_triage_queue_puts_child_safety_first_and_drops_decided_cases(
    app: Reports, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ordinary = app.file(ALICE, report("r1", "1")).case_id
    spam = app.file(ALICE, report("r2", "2", category="other", subcategory="spam")).case_id
    child = app.file(
        BOB,
        report("b1", "3", category="child_safety", subcategory="sexual_exploitation", evidence=[]),
    ).case_id
    seen(app)
    queue = app.list_cases(AGENT, 0, "", "", [], "")
    assert names(queue.items, "case") == [f"report-cases/{c}" for c in (child, ordinary, spam)]
    assert [doc["ordinary"] for doc in queue.items] == [False, True, True]
    page = app.list_cases(AGENT, 2, "", "", [], "")
    rest = app.list_cases(AGENT, 2, page.next_token, "", [], "")
    assert names(page.items + rest.items, "case") == names(queue.items, "case")
    assert rest.next_token == ""
    assert names(app.list_cases(AGENT, 0, "", "", [], "other").items, "case") == [
        f"report-cases/{spam}"
    ]
    assert names(app.list_cases(AGENT, 0, "", "CHILD_SAFETY", [], "").items, "case") == [
        f"report-cases/{child}"
    ]
    # A page stops short of what a client takes (a viral target's case names
    # thousands of reports): here one case a page, each once, in order.
    token, cut = "", []
    with monkeypatch.context() as tiny:
        tiny.setattr(
            "casemesh_reports.queries.fitting", lambda sizes, limit: fitting(sizes, limit, budget=1)
        )
        while True:
            short = app.list_cases(AGENT, 100, token, "", [], "")
            assert len(short.items) == 1
            cut += names(short.items, "case")
            if not (token := short.next_token):
                break
    assert cut == names(queue.items, "case")

    app.decide(AGENT, ordinary, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    seen(app)
    open_now = app.list_cases(AGENT, 0, "", "", [], "")
    assert names(open_now.items, "case") == [f"report-cases/{c}" for c in (child, spam)]
    decided = app.list_cases(AGENT, 0, "", "", ["NO_VIOLATION"], "")
    assert names(decided.items, "case") == [f"report-cases/{ordinary}"]


def test_the_trusted_flagger_list_shows_those_in_office(app: Reports) -> None:
    app.set_flagger(AGENT, "wang", "Child Online Safety", ["child_safety"])
    app.set_flagger(AGENT, "bob", "Safe Web Foundation", ["violence_terrorism"])
    app.set_flagger(AGENT, "bob", "Safe Web", ["violence_terrorism", "other"])
    seen(app)
    listed = app.list_flaggers(AGENT)
    assert [(f["user_id"], f["display_name"], f["areas"]) for f in listed] == [
        ("bob", "Safe Web", ["other", "violence_terrorism"]),
        ("wang", "Child Online Safety", ["child_safety"]),
    ]
    app.remove_flagger(AGENT, "bob")
    seen(app)
    assert [f["user_id"] for f in app.list_flaggers(AGENT)] == ["wang"]


def test_a_case_reopened_on_appeal_is_not_decided_against_another_uploader(
    app: Reports, clock: FakeClock
) -> None:
    """Decided against Ursula and reopened on a reporter's appeal, the case
    stays hers: a new decision naming another uploader is refused, and she
    keeps her restriction, her statement and the case in her lists (nobody
    would otherwise tell her the restriction ended)."""
    ursula = Identity("ursula", frozenset({"user"}))
    ident = app.file(ALICE, report()).case_id
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.lodge_appeal(ident, "appeals/alice", "alice")
    assert app.reverse(ident, "appeals/alice") is True
    reopened = app.get_case(AGENT, ident)
    someone_else = {**UPLOADER, "user_id": "ulrich", "legal_name": "Ulrich"}
    with pytest.raises(InvalidArgument) as refused:
        app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), someone_else, [], etag="")
    [violation] = refused.value.violations
    assert violation.field == "affected_uploader.user_id"
    assert "ursula" in violation.description
    assert field_words(violation.description, "zh-CN").startswith("必须是 ursula")
    assert app.get_case(AGENT, ident).version == reopened.version  # nothing changed
    seen(app)
    assert (app.get_case(ursula, ident).uploader or {}).get("user_id") == "ursula"
    assert names(app.my_restrictions(ursula), "case") == [f"report-cases/{ident}"]
    again = app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    assert (again.state, (again.uploader or {}).get("user_id")) == ("ACTION_TAKEN", "ursula")


def test_an_uploader_sees_the_restrictions_on_them_until_an_appeal_lifts_them(
    app: Reports, clock: FakeClock
) -> None:
    ursula = Identity("ursula", frozenset({"user"}))
    ident = app.file(ALICE, report()).case_id
    other = app.file(ALICE, report("r2", "2")).case_id
    seen(app)
    assert app.my_restrictions(ursula) == []
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.decide(AGENT, other, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    seen(app)
    assert names(app.my_restrictions(ursula), "case") == [f"report-cases/{ident}"]
    assert app.my_restrictions(ALICE) == []
    app.lodge_appeal(ident, "appeals/a1", "ursula")
    app.reverse(ident, "appeals/a1")
    seen(app)
    assert app.my_restrictions(ursula) == []
    # Every case that named her stays hers to see (and to export), in pages.
    clock.advance(minutes=1)
    later = app.file(BOB, report("b1", "3")).case_id
    app.decide(AGENT, later, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    seen(app)
    first = app.my_cases(ursula, 1, "")
    rest = app.my_cases(ursula, 1, first.next_token)
    assert names(first.items + rest.items, "case") == [
        f"report-cases/{later}",
        f"report-cases/{ident}",
    ]
    assert rest.next_token == "" or app.my_cases(ursula, 1, rest.next_token).items == []
    assert app.my_cases(ALICE, 0, "").items == []
    with pytest.raises(InvalidArgument, match="page_token"):
        app.my_cases(ursula, 0, "not-a-token")


def test_the_transparency_figures_count_what_happened_in_the_period(
    app: Reports, clock: FakeClock
) -> None:
    removed = app.file(ALICE, report("r1", "1"))
    app.file(BOB, report("b1", "1"))
    app.set_flagger(AGENT, "wang", "Child Online Safety", ["child_safety"])
    wang = Identity("wang", frozenset({"user"}))
    app.file(
        wang,
        report("w1", "2", category="child_safety", subcategory="sexual_exploitation", evidence=[]),
    )
    voided = app.file(BOB, report("b2", "4"))
    clock.advance(hours=2)
    app.decide(AGENT, removed.case_id, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], "")
    app.void(AGENT, voided.case_id, "举报对象已被平台删除")
    # Two manifestly unfounded reports: a warning, then a suspension (the
    # fixture's policy).
    spam = {"category": "other", "subcategory": "spam"}
    unfounded = [app.file(ALICE, report(f"u{n}", f"5{n}", **spam)) for n in (1, 2)]
    for filed in unfounded:
        app.decide(
            AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, [f"reports/{filed.id}"], ""
        )
    app.lodge_appeal(removed.case_id, "appeals/a1", "ursula")
    app.lodge_appeal(unfounded[0].case_id, "appeals/a2", "alice")
    app.reverse(removed.case_id, "appeals/a1")
    seen(app)
    figures = app.transparency(AGENT, None, None)
    assert figures["by_category"] == [
        ("child_safety", "TRUSTED_FLAGGER", 1),
        ("other", "ARTICLE_16", 2),
        ("violence_terrorism", "ARTICLE_16", 3),
    ]
    assert figures["received"] == 6
    assert figures["by_restriction"] == [
        ("DECISION_VISIBILITY_CONTENT_REMOVED", 1),
        ("NO_VIOLATION", 2),
    ]
    assert (figures["decided"], figures["void"], figures["suspended"]) == (3, 1, 1)
    assert (figures["appeals"], figures["reversals"]) == (2, 1)
    assert figures["median_seconds"] > 0
    # Nothing happened in a period before it all.
    before = datetime(2020, 1, 1, tzinfo=UTC)
    earlier = app.transparency(AGENT, before, datetime(2021, 1, 1, tzinfo=UTC))
    assert (earlier["received"], earlier["decided"], earlier["median_seconds"]) == (0, 0, 0.0)
    assert app.transparency(AGENT, before, None)["received"] == 6


def test_an_upheld_appeal_that_changed_nothing_is_no_reversal_in_the_figures(
    app: Reports, clock: FakeClock
) -> None:
    """Alice's report led to the video's removal; she appealed, asking for
    more, and meanwhile Bob reported it again, which opened the next round:
    her appeal upheld leaves the decision as it stands (that round is its
    review). The transparency figures count her appeal, and no decision
    reversed (DSA Art. 24: reversals are decisions overturned)."""
    filed = app.file(ALICE, report())
    first = filed.case_id
    app.decide(AGENT, first, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], "")
    app.lodge_appeal(first, "appeals/a3", "alice")
    app.file(BOB, report("b1"))
    assert app.reverse(first, "appeals/a3") is True
    assert app.get_case(AGENT, first).state == "ACTION_TAKEN"  # nothing changed
    seen(app)
    figures = app.transparency(AGENT, None, None)
    assert (figures["appeals"], figures["reversals"]) == (1, 0)


def test_a_decision_two_appeals_overturned_is_one_reversal_in_the_figures(
    app: Reports, clock: FakeClock
) -> None:
    """Alice and Bob reported a video, decided to break no rules; both
    appealed, and meanwhile Carol reported it again, which opened the next
    round. Alice's appeal upheld overturns the decision; Bob's, upheld after
    it, finds nothing left to overturn. The figures count two appeals and
    one decision reversed."""
    first = app.file(ALICE, report()).case_id
    app.file(BOB, report("b1"))
    app.decide(AGENT, first, "NO_VIOLATION", NO_VIOLATION, None, [], "")
    app.lodge_appeal(first, "appeals/alice", "alice")
    app.lodge_appeal(first, "appeals/bob", "bob")
    app.file(Identity("carol", frozenset({"user"})), report("c1"))
    for appeal in ("appeals/alice", "appeals/bob"):
        clock.advance(hours=1)
        assert app.reverse(first, appeal) is True
    seen(app)
    figures = app.transparency(AGENT, None, None)
    assert (figures["appeals"], figures["reversals"]) == (2, 1)


def a_season_of_reports(project_each_step: bool) -> Reports:
    """A removal the uploader appeals and has reversed, a case voided, and
    Alice suspended after two manifestly unfounded reports, then reinstated
    on appeal; an hour between steps. The view is projected after each step,
    or once at the end (a projector reads each case as it stands after the
    last of its events in a batch)."""
    clock = FakeClock()
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=1, window_days=180, suspension_days=30),
    )
    app = Reports(in_memory(), clock=clock, policy=policy)

    def then() -> None:
        clock.advance(hours=1)
        if project_each_step:
            seen(app)

    removed = app.file(ALICE, report("r1", "1"))
    then()
    app.decide(AGENT, removed.case_id, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], "")
    then()
    app.lodge_appeal(removed.case_id, "appeals/u1", "ursula")
    then()
    app.reverse(removed.case_id, "appeals/u1")
    then()
    voided = app.file(BOB, report("b1", "2"))
    then()
    app.void(AGENT, voided.case_id, "举报对象已被平台删除")
    then()
    spam = {"category": "other", "subcategory": "spam"}
    for n in (1, 2):
        filed = app.file(ALICE, report(f"u{n}", f"5{n}", **spam))
        then()
        unfounded = [f"reports/{filed.id}"]
        app.decide(AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, unfounded, "")
        then()
    app.lodge_appeal(filed.case_id, "appeals/a2", "alice")
    then()
    app.reverse(filed.case_id, "appeals/a2")
    seen(app)
    return app


def test_the_transparency_figures_do_not_depend_on_how_the_view_was_projected() -> None:
    """The same story, its view projected step by step or all at once: every
    fact the figures are counted from, and every figure, in any period, is
    the same. Each decided report was decided an hour after it was filed."""
    step_by_step, at_once = a_season_of_reports(True), a_season_of_reports(False)
    for facts in (
        "report_facts",
        "decision_facts",
        "void_facts",
        "appeal_facts",
        "suspension_facts",
    ):
        assert getattr(at_once.view, facts) == getattr(step_by_step.view, facts), facts
    start = FakeClock().now()
    for period in (
        (None, None),
        (start, start + timedelta(hours=2)),
        (start + timedelta(hours=2), start + timedelta(hours=4)),
    ):
        figures = at_once.transparency(AGENT, *period)
        assert figures == step_by_step.transparency(AGENT, *period), period
    figures = at_once.transparency(AGENT, None, None)
    assert figures["median_seconds"] == 3600
    assert [figures[k] for k in ("decided", "void", "appeals", "reversals", "suspended")] == [
        3,
        1,
        2,
        2,
        1,
    ]
    # The removal was decided in the second hour, and reversed in the fourth.
    second_hour = at_once.transparency(
        AGENT, start + timedelta(hours=1), start + timedelta(hours=2)
    )
    assert (second_hour["decided"], second_hour["reversals"]) == (1, 0)


def retaining(clock: FakeClock) -> Reports:
    """Reports that seal personal data, and keep an ended case's for 30 days."""
    policy = ReportsPolicy(taxonomy=load_taxonomy())
    return Reports(
        in_memory(),
        clock=clock,
        policy=policy,
        sealer=memory_sealer().sealer,
        retain_for=timedelta(days=30),
    )


@pytest.mark.parametrize("kind", ["escalate", "retention", "retention@"])
def test_a_deadline_of_a_kind_this_release_does_not_know_is_left_to_one_that_does(
    clock: FakeClock, kind: str
) -> None:
    """A newer release's deadline, after a rollback: the timer passes it over
    (`UnknownDeadlineKind`), rather than retrying it as a failure."""
    app = retaining(clock)
    filed = app.file(ALICE, report())
    with pytest.raises(UnknownDeadlineKind):
        app.fire(Deadline(str(filed.case_id), kind, clock.now()))


def test_a_decided_case_past_its_window_and_retention_has_its_peoples_words_erased(
    clock: FakeClock,
) -> None:
    app = retaining(clock)
    alices = app.file(ALICE, report(explanation="爱丽丝看到了袭击画面"))
    bobs = app.file(BOB, report("b1", explanation="鲍勃也看到了"))
    hers_elsewhere = app.file(ALICE, report("r2", "8842", explanation="另一个视频的举报"))
    ident = alices.case_id
    uploader = {**UPLOADER, "legal_name": "Ursula Upload Ltd"}
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), uploader, [], etag="")

    app.lodge_appeal(ident, "appeals/bob", "bob")
    app.lodge_appeal(ident, "appeals/ursula", "ursula")
    decided = next(e for e in stored(app, ident) if isinstance(e, ReportCase.Decided))
    (deadline,) = app.deadlines_of(decided)
    window_closes = app.policy.appeal_deadline(decided.at)
    assert deadline.due == window_closes + timedelta(days=30)
    clock.now_is(window_closes)
    app.fire(deadline)  # the window just closed: not due yet
    assert app.get_report(ALICE, str(alices.id)).explanation == "爱丽丝看到了袭击画面"

    clock.now_is(deadline.due)
    app.fire(deadline)
    app.fire(deadline)  # again: nothing more
    for each in (ident, alices.id, bobs.id):  # though appeals are still open
        assert events_of(app, each).count(ExpiringCase.Expired) == 1
    # The reports' words and contacts, and the uploader's name, read as erased;
    # the decision, its statement of reasons and every state stay.
    mine = app.get_report(ALICE, str(alices.id))
    assert (mine.explanation, mine.contact["email"], mine.evidence[0]["name"]) == (ERASED,) * 3
    assert mine.state == "ACTION_TAKEN"
    assert app.get_report(BOB, str(bobs.id)).explanation == ERASED
    case = app.get_case(AGENT, ident)
    assert case.uploader is not None
    assert (case.uploader["legal_name"], case.uploader["contact"]["email"]) == (ERASED, ERASED)
    assert case.state == "ACTION_TAKEN"
    assert case.decision is not None and case.decision["statement"]["decision_facts"]
    # A reader of the store afresh (a view rebuilt, the relay) sees the same.
    assert app.sealer is not None
    reader = SealingMapper(app.mapper.transcoder, sealer=afresh(app.sealer), fields=PERSONAL)
    filed = vars(reader.to_domain_event(app.recorder.select_events(alices.id)[0]))
    assert (filed["explanation"], filed["contact"]["email"]) == (ERASED, ERASED)
    # The steps say so, on the topic and in the report's history.
    relay = Translator(StreamFollower(app))
    published = [relay(cast(Any, None), last_event(app, i)) for i in (ident, alices.id)]
    assert [(e.type, e.subject) for e in published] == [
        ("casemesh.reports.ReportCaseExpired.v1", f"report-cases/{ident}"),
        ("casemesh.reports.ReportExpired.v1", f"reports/{alices.id}"),
    ]
    assert app.report_history(ALICE, str(alices.id))[-1].type == "ReportExpired"
    # Her report of another video is as it was; the view shows both as they are.
    assert app.get_report(ALICE, str(hers_elsewhere.id)).explanation == "另一个视频的举报"
    seen(app)
    listed = {d["report"]["name"]: d["report"] for d in app.list_reports(ALICE, 0, "", "").items}
    assert listed[f"reports/{alices.id}"]["explanation"] == ERASED
    assert listed[f"reports/{hers_elsewhere.id}"]["explanation"] == "另一个视频的举报"
    # Appeals lodged in time but upheld only now: the reporter's does not
    # send it back to review (the reports' words are gone); the uploader's
    # still lifts the removal.
    assert app.reverse(ident, "appeals/bob") is True
    assert app.get_case(AGENT, ident).state == "ACTION_TAKEN"
    assert app.reverse(ident, "appeals/ursula") is True
    assert app.get_case(AGENT, ident).state == "REVERSED"
    assert app.get_report(BOB, str(bobs.id)).state == "REVERSED"
    assert app.lodge_appeal(ident, "appeals/ursula", "ursula") is False  # read again


def test_a_case_reopened_on_appeal_expires_only_from_its_new_end(clock: FakeClock) -> None:
    app = retaining(clock)
    filed = app.file(ALICE, report())
    ident = filed.case_id
    app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    (first,) = app.deadlines_of(last_event(app, ident))
    app.lodge_appeal(ident, "appeals/a2", "alice")
    app.reverse(ident, "appeals/a2")  # back to review: it has not ended
    assert app.deadlines_of(last_event(app, ident)) == []
    clock.now_is(first.due)
    app.fire(first)
    assert ExpiringCase.Expired not in events_of(app, ident)
    # Decided again, it ends when its new window closes.
    app.decide(AGENT, ident, "NO_VIOLATION", NO_VIOLATION, None, [], etag="")
    (second,) = app.deadlines_of(last_event(app, ident))
    assert second.due > first.due
    app.fire(first)  # the old end no longer stands
    assert ExpiringCase.Expired not in events_of(app, ident)
    clock.now_is(second.due)
    app.fire(second)
    assert events_of(app, ident)[-1] == ExpiringCase.Expired
    assert app.get_report(ALICE, str(filed.id)).explanation == ERASED


def stored(app: Reports, ident: str | UUID) -> list[Any]:
    return list(app.repository.event_store.get(UUID(str(ident))))


def test_a_voided_or_reversed_case_expires_from_when_it_ended_by_the_period_then(
    clock: FakeClock,
) -> None:
    app = retaining(clock)
    voided = app.file(ALICE, report())
    app.void(AGENT, voided.case_id, "举报对象已被平台删除")
    (deadline,) = app.deadlines_of(last_event(app, voided.case_id))
    assert deadline.due == clock.now() + timedelta(days=30)
    app.retain_for = timedelta(days=60)  # a longer period from now on
    lifted = app.file(BOB, report("b1", "9001"))
    app.decide(AGENT, lifted.case_id, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], "")
    app.lodge_appeal(lifted.case_id, "appeals/a1", "ursula")
    clock.advance(days=3)
    app.reverse(lifted.case_id, "appeals/a1")  # the uploader's: REVERSED, final
    (reversal,) = app.deadlines_of(last_event(app, lifted.case_id))
    assert reversal.due == clock.now() + timedelta(days=60)
    clock.now_is(deadline.due)  # 30 days on, as scheduled
    app.fire(deadline)
    assert app.get_report(ALICE, str(voided.id)).explanation == ERASED
    assert app.get_report(BOB, str(lifted.id)).explanation != ERASED
    clock.now_is(reversal.due)
    app.fire(reversal)
    assert app.get_report(BOB, str(lifted.id)).explanation == ERASED
    assert app.get_case(AGENT, lifted.case_id).state == "REVERSED"


def test_a_case_whose_report_was_sealed_before_case_keys_is_left_as_it_was(
    clock: FakeClock,
) -> None:
    """Destroying case keys cannot erase a report sealed under its
    reporter's key alone (filed before this release): the case is not
    recorded expired while its report still reads in clear."""
    app = retaining(clock)
    assert isinstance(app.mapper, SealingMapper)
    app.mapper.fields = PersonalFields({AbuseReport.Filed: PersonalEvent("reporter", REPORTERS)})
    filed = app.file(ALICE, report())
    app.mapper.fields = PERSONAL
    app.void(AGENT, filed.case_id, "举报对象已被平台删除")
    (deadline,) = app.deadlines_of(last_event(app, filed.case_id))
    clock.now_is(deadline.due)
    app.fire(deadline)
    assert ExpiringCase.Expired not in events_of(app, filed.case_id)
    assert app.get_report(ALICE, str(filed.id)).explanation == "视频宣扬恐怖组织"


def misusing(clock: FakeClock) -> tuple[Reports, Callable[[str, str], None]]:
    """Reports that seal personal data, warn at the first manifestly
    unfounded report and suspend at each after it, and keep a standing's
    contact 60 days after its last measure; and Alice filing an unfounded
    report with a contact of its own."""
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=1, suspend_after=1, window_days=180, suspension_days=30),
    )
    app = Reports(
        in_memory(),
        clock=clock,
        policy=policy,
        sealer=memory_sealer().sealer,
        standing_retain_for=timedelta(days=60),
    )

    def unfounded(request_id: str, email: str) -> None:
        contact = {"locale": "zh-CN", "email": email, "channels": ["EMAIL"]}
        filed = app.file(ALICE, report(request_id, request_id, contact=contact))
        counted = [f"reports/{filed.id}"]
        app.decide(AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, counted, "")

    return app, unfounded


def standing_contacts(app: Reports) -> list[str]:
    """The e-mail each measure of Alice's standing was sent to, as a reader
    of the store afresh (a relay, a view rebuilt) reads it."""
    assert app.sealer is not None
    reader = SealingMapper(app.mapper.transcoder, sealer=afresh(app.sealer), fields=PERSONAL)
    read = [reader.to_domain_event(s) for s in app.recorder.select_events(STANDING)]
    return [vars(e)["contact"]["email"] for e in read if "contact" in vars(e)]


STANDING = Reporter.create_id("alice")


def test_a_reporters_standing_keeps_the_contact_it_told_them_on_until_its_period_ran_out(
    clock: FakeClock,
) -> None:
    app, unfounded = misusing(clock)
    unfounded("r1", "first@example.com")  # warned
    (warned,) = app.deadlines_of(last_event(app, STANDING))
    assert warned.due == clock.now() + timedelta(days=60)
    clock.advance(days=1)
    unfounded("r2", "second@example.com")  # suspended for 30 days
    (suspended,) = app.deadlines_of(last_event(app, STANDING))
    assert suspended.due == clock.now() + timedelta(days=30 + 60)
    clock.now_is(warned.due)
    app.fire(warned)  # the suspension ends later: its deadline stands instead
    assert Reporter.RecordExpired not in events_of(app, STANDING)
    assert standing_contacts(app) == ["first@example.com", "second@example.com"]

    clock.now_is(suspended.due)
    app.fire(suspended)
    app.fire(suspended)  # again: nothing more
    assert events_of(app, STANDING).count(Reporter.RecordExpired) == 1
    assert standing_contacts(app) == [ERASED, ERASED]
    # The standing and what it counted stay; her reports keep their own
    # contacts until their cases' retention.
    standing: Reporter = app.repository.get(STANDING)
    assert standing.suspensions and standing.standing_at(clock.now()) == "WARNED"  # it ran out
    assert (len(standing.counted), standing.contact) == (2, {})
    mine = [app.get_report(ALICE, str(r)) for r in standing.counted]
    assert [r.contact["email"] for r in mine] == ["first@example.com", "second@example.com"]
    relay = Translator(StreamFollower(app))
    published = relay(cast(Any, None), last_event(app, STANDING))
    assert (published.type, published.subject) == (
        "casemesh.reports.ReporterContactExpired.v1",
        f"reporters/{STANDING}",
    )

    # A later measure starts a record of its own, told on its own contact.
    unfounded("r3", "third@example.com")
    assert standing_contacts(app) == [ERASED, ERASED, "third@example.com"]
    assert app.repository.get(STANDING).record not in ("", standing.expired_record)


def test_a_standing_record_recorded_expired_has_its_keys_destroyed_when_fired_again(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between recording a record expired and destroying its keys:
    the deadline fires again and destroys them, those of a record begun
    since untouched."""
    app, unfounded = misusing(clock)
    unfounded("r1", "first@example.com")
    (warned,) = app.deadlines_of(last_event(app, STANDING))
    clock.now_is(warned.due)
    assert app.sealer is not None
    keys = app.sealer.keys
    with monkeypatch.context() as patched:
        patched.setattr(keys, "destroy", lambda ids: (_ for _ in ()).throw(OSError("gone")))
        with pytest.raises(OSError):
            app.fire(warned)
    assert events_of(app, STANDING)[-1] == Reporter.RecordExpired
    assert standing_contacts(app) == ["first@example.com"]
    unfounded("r2", "second@example.com")  # suspended: a new record
    app.fire(warned)
    assert standing_contacts(app) == [ERASED, "second@example.com"]


def test_a_standing_warned_before_records_keeps_that_contact_and_expires_its_later_record(
    clock: FakeClock,
) -> None:
    """A warning stored before standings had records (version 2: its
    contact sealed under the reporter's key alone) cannot be erased by
    destroying keys: its deadline leaves the standing as it was. The
    suspension that follows starts a record, whose expiry erases its own
    contact; the warning's stays until the reporter is erased."""
    app, unfounded = misusing(clock)
    assert isinstance(app.mapper, SealingMapper)
    app.mapper.fields = PersonalFields(
        {Reporter.Warned: PersonalEvent("user_id", ("contact.email",))}
    )
    unfounded("r1", "first@example.com")
    app.mapper.fields = PERSONAL
    as_v2(app, last_event(app, STANDING))
    assert app.repository.get(STANDING).record == ""
    (warned,) = app.deadlines_of(last_event(app, STANDING))
    clock.now_is(warned.due)
    app.fire(warned)
    assert Reporter.RecordExpired not in events_of(app, STANDING)
    assert standing_contacts(app) == ["first@example.com"]

    unfounded("r2", "second@example.com")  # suspended: its record's first measure
    (suspended,) = app.deadlines_of(last_event(app, STANDING))
    clock.now_is(suspended.due)
    app.fire(suspended)
    assert events_of(app, STANDING)[-1] == Reporter.RecordExpired
    assert standing_contacts(app) == ["first@example.com", ERASED]


def as_v2(app: Reports, stored_as_now: Any) -> None:
    """Rewrites a standing's stored measure as version 2 stored it: without
    the record it was sealed for (and a lifting without when)."""
    recorder = cast(Any, app.recorder)
    ident = stored_as_now.originator_id
    position = recorder._stored_events_index[str(ident)][stored_as_now.originator_version]
    stored = recorder._stored_events[position]
    transcoder = app.mapper.transcoder
    state = transcoder.decode(stored.state)
    state.pop("record")
    if isinstance(stored_as_now, Reporter.SuspensionLifted):
        state.pop("at")
    state["class_version"] = 2
    recorder._stored_events[position] = replace(stored, state=transcoder.encode(state))


def test_a_lifted_suspension_counts_from_when_it_was_lifted(clock: FakeClock) -> None:
    """A suspension lifted early (its report's decision reversed on appeal)
    ends then: its contacts expire the period after the lifting, and the
    suspension's own end no longer counts."""
    app, unfounded = misusing(clock)
    unfounded("r1", "first@example.com")
    clock.advance(days=1)
    unfounded("r2", "second@example.com")
    (suspended,) = app.deadlines_of(last_event(app, STANDING))
    clock.advance(days=2)
    case_id = app.get_report(ALICE, str(app.repository.get(STANDING).counted[-1])).case_id
    app.lodge_appeal(case_id, "appeals/a1", "alice")
    app.reverse(case_id, "appeals/a1")
    lifting = last_event(app, STANDING)
    assert isinstance(lifting, Reporter.SuspensionLifted)
    (lifted,) = app.deadlines_of(lifting)
    assert lifted.due == clock.now() + timedelta(days=60) < suspended.due
    clock.now_is(lifted.due)
    app.fire(suspended)  # not due yet, and no longer the last end
    app.fire(lifted)
    assert standing_contacts(app) == [ERASED, ERASED, ERASED]
    clock.now_is(suspended.due)
    app.fire(suspended)
    assert events_of(app, STANDING).count(Reporter.RecordExpired) == 1


def test_a_reporter_sees_what_counts_against_them_and_what_it_led_to(
    app: Reports, clock: FakeClock
) -> None:
    def standing() -> rpb.ReportingStanding:
        window = timedelta(days=app.policy.misuse.window_days)
        return standing_message(app.my_standing(ALICE), clock.now(), window)

    assert standing().state == rpb.REPORTING_STANDING_STATE_GOOD
    first = app.file(ALICE, report("r0", "1"))
    app.decide(
        AGENT, first.case_id, "NO_VIOLATION", NO_VIOLATION, None, [f"reports/{first.id}"], ""
    )
    warned = standing()  # this policy warns at the first
    assert warned.state == rpb.REPORTING_STANDING_STATE_WARNED
    assert list(warned.unfounded_reports) == [f"reports/{first.id}"]
    assert list(warned.counting_reports) == []  # the warning used it up
    assert warned.warn_time.ToDatetime(UTC) == clock.now()
    second = app.file(ALICE, report("r1", "2"))
    app.decide(
        AGENT, second.case_id, "NO_VIOLATION", NO_VIOLATION, None, [f"reports/{second.id}"], ""
    )
    suspended = standing()
    assert suspended.state == rpb.REPORTING_STANDING_STATE_SUSPENDED
    assert suspended.suspended_until.ToDatetime(UTC) == clock.now() + timedelta(days=30)
    [suspension] = suspended.suspensions
    assert list(suspension.reports) == [f"reports/{second.id}"]
    clock.advance(days=31)
    served = standing()
    assert served.state == rpb.REPORTING_STANDING_STATE_WARNED
    assert not served.HasField("suspended_until") and len(served.suspensions) == 1
    assert app.my_standing(BOB) is None


def test_an_unfounded_report_stops_counting_once_past_the_misuse_window(
    clock: FakeClock,
) -> None:
    policy = ReportsPolicy(
        taxonomy=load_taxonomy(),
        misuse=Misuse(warn_after=3, suspend_after=5, window_days=180, suspension_days=30),
    )
    app = Reports(in_memory(), clock=clock, policy=policy)
    filed = app.file(ALICE, report())
    app.decide(
        AGENT, filed.case_id, "NO_VIOLATION", NO_VIOLATION, None, [f"reports/{filed.id}"], ""
    )
    window = timedelta(days=180)
    counted = standing_message(app.my_standing(ALICE), clock.now(), window)
    assert counted.state == rpb.REPORTING_STANDING_STATE_COUNTED
    assert list(counted.counting_reports) == [f"reports/{filed.id}"]
    clock.advance(days=181)
    later = standing_message(app.my_standing(ALICE), clock.now(), window)
    assert list(later.counting_reports) == []
    assert list(later.unfounded_reports) == [f"reports/{filed.id}"]  # still on record


def test_each_party_sees_only_the_appeals_they_lodged(app: Reports, clock: FakeClock) -> None:
    ident = app.file(ALICE, report()).case_id
    app.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    app.lodge_appeal(ident, "appeals/u1", "ursula")
    app.lodge_appeal(ident, "appeals/a1", "alice")
    seen(app)
    ursula = Identity("ursula", frozenset({"user"}))
    [doc] = app.my_cases(ursula, 0, "").items  # a list read from the view
    assert list(listed_case(doc, ursula).appeals) == ["appeals/u1"]
    case = app.get_case(AGENT, ident)  # one read from the store
    as_alice = for_viewer(case_message(case), ALICE, set(), appellants(case))
    assert list(as_alice.appeals) == ["appeals/a1"]
    as_agent = for_viewer(case_message(case), AGENT, set(), appellants(case))
    assert set(as_agent.appeals) == {"appeals/u1", "appeals/a1"}


def test_a_reporter_sees_no_decision_on_a_case_not_yet_decided(app: Reports) -> None:
    ident = app.file(ALICE, report()).case_id
    case = app.get_case(AGENT, ident)
    as_alice = for_viewer(case_message(case), ALICE, set(), appellants(case))
    assert not as_alice.HasField("decision")


def test_a_restriction_that_has_ended_is_no_longer_listed_as_on_the_uploader(
    app: Reports, clock: FakeClock
) -> None:
    ursula = Identity("ursula", frozenset({"user"}))
    ident = app.file(ALICE, report()).case_id
    week = (clock.now() + timedelta(days=7)).isoformat()
    suspended = {
        **action_taken(clock),
        "restrictions": [
            {"field": "account", "type": "DECISION_ACCOUNT_SUSPENDED", "end_time": week}
        ],
    }
    app.decide(AGENT, ident, "ACTION_TAKEN", suspended, UPLOADER, [], etag="")
    seen(app)
    assert names(app.my_restrictions(ursula), "case") == [f"report-cases/{ident}"]
    clock.advance(days=8)
    assert app.my_restrictions(ursula) == []
    assert names(app.my_cases(ursula, 0, "").items, "case") == [f"report-cases/{ident}"]


def test_a_removal_in_force_is_listed_however_many_suspensions_ended_since(
    app: Reports, clock: FakeClock
) -> None:
    """A hundred week-long suspensions, all run out, decided after a removal
    that has no end: the removal still restricts the uploader, and is listed."""
    ursula = Identity("ursula", frozenset({"user"}))
    removed = app.file(ALICE, report("r0", "v0")).case_id
    app.decide(AGENT, removed, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], etag="")
    for i in range(1, 101):
        clock.advance(minutes=1)
        week = (clock.now() + timedelta(days=7)).isoformat()
        suspended = {
            **action_taken(clock),
            "restrictions": [
                {"field": "account", "type": "DECISION_ACCOUNT_SUSPENDED", "end_time": week}
            ],
        }
        ident = app.file(ALICE, report(f"r{i}", f"v{i}")).case_id
        app.decide(AGENT, ident, "ACTION_TAKEN", suspended, UPLOADER, [], etag="")
    seen(app)
    assert len(app.my_restrictions(ursula)) == 100  # the newest hundred, all in force
    clock.advance(days=8)
    assert names(app.my_restrictions(ursula), "case") == [f"report-cases/{removed}"]

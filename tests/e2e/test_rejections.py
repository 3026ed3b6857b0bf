"""Every input a client can send either works or gets a clear status naming
the problem, and a rejected call stores nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import status_pb2

from casemesh.platform.grpcutil import STATUS_DETAILS_KEY, field_violations
from casemesh.platform.identity import mint_token
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import evidence_pb2_grpc as epb_grpc
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import helpcenter_pb2_grpc as hpb_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import reports_pb2_grpc as rpb_grpc
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from tests.conftest import Stack
from tests.e2e.test_casequeue import Agent
from tests.e2e.test_evidence import png
from tests.support import Client, rejected, violated_fields

# A number no enum in the contract defines (clients can send any number).
UNDEFINED: Any = 42


def stored_events(stack: Stack, dsn: str = "", table: str = "tickets_events") -> int:
    with psycopg.connect(dsn or stack.tickets_dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def ticket(**overrides: Any) -> pb.Ticket:
    t = pb.Ticket(
        category="content.review_rejected",
        subject="视频审核未通过",
        description="原因不明",
        locale="zh-CN",
        contact=pb.Contact(email="dora@example.com", channels=[pb.CHANNEL_EMAIL]),
    )
    for k, v in overrides.items():
        if k == "contact":
            t.contact.CopyFrom(v)
        else:
            setattr(t, k, v)
    return t


@pytest.fixture()
def owner(stack: Stack) -> Client:
    return Client(stack.gateway, stack.secret, f"owner-{uuid.uuid4().hex[:8]}")


@pytest.fixture()
def opened(owner: Client) -> pb.Ticket:
    created: pb.Ticket = owner.CreateTicket(
        pb.CreateTicketRequest(ticket=ticket(), request_id=uuid.uuid4().hex)
    )
    return created


def test_another_user_cannot_see_or_change_the_ticket(stack: Stack, opened: pb.Ticket) -> None:
    mallory = Client(stack.gateway, stack.secret, "mallory")
    before = stored_events(stack)
    err = rejected(lambda: mallory.GetTicket(pb.GetTicketRequest(name=opened.name)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rejected(lambda: mallory.AddComment(pb.AddCommentRequest(name=opened.name, body="hi")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = rejected(lambda: mallory.ListTicketEvents(pb.ListTicketEventsRequest(name=opened.name)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    listed = mallory.ListTickets(pb.ListTicketsRequest()).tickets
    assert opened.name not in [t.name for t in listed]
    assert stored_events(stack) == before


def test_a_user_cannot_act_as_an_agent(stack: Stack, owner: Client, opened: pb.Ticket) -> None:
    before = stored_events(stack)
    for call in (
        lambda: owner.SolveTicket(pb.SolveTicketRequest(name=opened.name, resolution="done")),
        lambda: owner.AssignTicket(pb.AssignTicketRequest(name=opened.name)),
        lambda: owner.RequestInfo(pb.RequestInfoRequest(name=opened.name, message="?")),
        lambda: owner.AddComment(
            pb.AddCommentRequest(name=opened.name, body="note", internal=True)
        ),
    ):
        assert rejected(call).code() == grpc.StatusCode.PERMISSION_DENIED
    assert stored_events(stack) == before
    assert owner.GetTicket(pb.GetTicketRequest(name=opened.name)).status == pb.TICKET_STATUS_NEW


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "   "}, "ticket.subject"),
        ({"category": "account.nope"}, "ticket.category"),
        ({"locale": "fr"}, "ticket.locale"),
        ({"description": ""}, "ticket.description"),
        ({"contact": pb.Contact(channels=[pb.CHANNEL_SMS])}, "ticket.contact.phone"),
        (
            {"contact": pb.Contact(email="not-an-address", channels=[pb.CHANNEL_EMAIL])},
            "ticket.contact.email",
        ),
        (
            {"contact": pb.Contact(phone="12345", email="a@b.cn", channels=[pb.CHANNEL_EMAIL])},
            "ticket.contact.phone",
        ),
        ({"contact": pb.Contact(email="a@b.cn")}, "ticket.contact.channels"),
        ({"subject": "长" * 201}, "ticket.subject"),
    ],
)
def test_bad_ticket_fields_are_named(
    stack: Stack, owner: Client, change: dict[str, Any], field: str
) -> None:
    before = stored_events(stack)
    err = rejected(
        lambda: owner.CreateTicket(
            pb.CreateTicketRequest(ticket=ticket(**change), request_id=uuid.uuid4().hex)
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violated_fields(err)
    assert stored_events(stack) == before


def test_other_bad_requests(stack: Stack, owner: Client, opened: pb.Ticket) -> None:
    agent = Client(stack.gateway, stack.secret, "agent-zhao", ("agent",))
    before = stored_events(stack)
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: owner.GetTicket(pb.GetTicketRequest(name="tickets/../../etc")), "name"),
        (lambda: owner.GetTicket(pb.GetTicketRequest(name="")), "name"),
        (
            lambda: owner.CreateTicket(pb.CreateTicketRequest(ticket=ticket(), request_id="")),
            "request_id",
        ),
        (lambda: owner.CreateTicket(pb.CreateTicketRequest(request_id="x1")), "ticket"),
        (lambda: owner.AddComment(pb.AddCommentRequest(name=opened.name, body=" ")), "body"),
        (lambda: owner.RateTicket(pb.RateTicketRequest(name=opened.name, score=6)), "score"),
        (lambda: owner.ListTickets(pb.ListTicketsRequest(page_size=-1)), "page_size"),
        (lambda: owner.ListTickets(pb.ListTicketsRequest(page_token="garbage")), "page_token"),
        (lambda: agent.SolveTicket(pb.SolveTicketRequest(name=opened.name)), "resolution"),
        (
            lambda: owner.AddComment(pb.AddCommentRequest(name=opened.name, body="x", etag="v1")),
            "etag",
        ),
    ]
    for call, field in cases:
        err = rejected(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violated_fields(err)
    assert stored_events(stack) == before


def test_a_page_size_over_the_maximum_is_capped_not_refused(stack: Stack) -> None:
    """AIP-158: a page size over a list's maximum gets the maximum, and the token
    says more remain. 101 tickets of three requesters (each within the rate limit)
    share a word only they hold; they are cancelled after, leaving the agents' queue."""
    run = uuid.uuid4().hex[:8]
    requesters = [Client(stack.gateway, stack.secret, f"pager-{run}-{n}") for n in range(3)]
    agent = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    queue = Agent(stack, f"agent-{run}")
    opened: list[tuple[Client, pb.Ticket]] = []

    def open_one(n: int) -> tuple[Client, pb.Ticket]:
        who = requesters[n % 3]
        request = pb.CreateTicketRequest(
            ticket=ticket(subject=f"翻页 {run}"), request_id=f"{run}-{n}"
        )
        return who, who.CreateTicket(request)

    try:
        with ThreadPoolExecutor(8) as pool:
            opened += pool.map(open_one, range(101))
        every = {t.name for _, t in opened}
        search = pb.SearchTicketsRequest(text=run, page_size=10_000)
        first = agent.SearchTickets(search)
        assert len(first.tickets) == 100 and first.next_page_token
        search.page_token = first.next_page_token
        rest = agent.SearchTickets(search)
        assert len(rest.tickets) == 1 and not rest.next_page_token
        assert {t.name for t in [*first.tickets, *rest.tickets]} == every

        mine = requesters[0].ListTickets(pb.ListTicketsRequest(page_size=10_000))
        assert len(mine.tickets) == 34 and not mine.next_page_token
        name = opened[0][1].name
        history = requesters[0].ListTicketEvents(
            pb.ListTicketEventsRequest(name=name, page_size=10_000)
        )
        assert history.events and not history.next_page_token
        queued = queue.ListQueueCases(qpb.ListQueueCasesRequest(page_size=10_000))
        assert len(queued.queue_cases) <= 500
    finally:
        for who, t in opened:
            who.CancelTicket(pb.CancelTicketRequest(name=t.name, reason="测试结束"))
        for client in (*requesters, agent, queue.client):
            client.close()


def test_illegal_state_changes_say_why(stack: Stack, owner: Client, opened: pb.Ticket) -> None:
    before = stored_events(stack)
    err = rejected(lambda: owner.RateTicket(pb.RateTicketRequest(name=opened.name, score=5)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "solved" in err.details()
    err = rejected(lambda: owner.CloseTicket(pb.CloseTicketRequest(name=opened.name)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stored_events(stack) == before
    owner.CancelTicket(pb.CancelTicketRequest(name=opened.name, reason="自己解决了"))
    err = rejected(lambda: owner.AddComment(pb.AddCommentRequest(name=opened.name, body="again")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cancelled" in err.details()


def test_a_stale_etag_is_aborted(stack: Stack, owner: Client, opened: pb.Ticket) -> None:
    owner.AddComment(pb.AddCommentRequest(name=opened.name, body="first", etag=opened.etag))
    err = rejected(
        lambda: owner.AddComment(
            pb.AddCommentRequest(name=opened.name, body="second", etag=opened.etag)
        )
    )
    assert err.code() == grpc.StatusCode.ABORTED


def test_create_is_idempotent_on_request_id(stack: Stack, owner: Client) -> None:
    request = pb.CreateTicketRequest(ticket=ticket(), request_id=f"retry-{uuid.uuid4().hex}")
    first = owner.CreateTicket(request)
    before = stored_events(stack)
    again = owner.CreateTicket(request)
    assert again.name == first.name and again.create_time == first.create_time
    changed = pb.CreateTicketRequest(
        ticket=ticket(subject="另一个问题"), request_id=request.request_id
    )
    err = rejected(lambda: owner.CreateTicket(changed))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stored_events(stack) == before
    # The same request id from another user is another user's ticket.
    other = Client(stack.gateway, stack.secret, f"other-{uuid.uuid4().hex[:6]}")
    assert other.CreateTicket(request).name != first.name


def test_no_or_bad_token_is_unauthenticated(stack: Stack, opened: pb.Ticket) -> None:
    before = stored_events(stack)
    with grpc.insecure_channel(stack.gateway) as channel:
        stub = pb_grpc.TicketServiceStub(channel)
        for metadata in (
            [],
            [("authorization", "Bearer not.a.token")],
            [("authorization", "Basic YWxpY2U6cHc=")],
        ):
            with pytest.raises(grpc.RpcError) as info:
                stub.CreateTicket(
                    pb.CreateTicketRequest(ticket=ticket(), request_id="anon"), metadata=metadata
                )
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stored_events(stack) == before


def test_listing_pages_through_own_tickets_newest_first(stack: Stack) -> None:
    erin = Client(stack.gateway, stack.secret, f"erin-{uuid.uuid4().hex[:8]}")
    made = [
        erin.CreateTicket(
            pb.CreateTicketRequest(ticket=ticket(subject=f"问题 {i}"), request_id=f"list-{i}")
        ).name
        for i in range(5)
    ]
    seen: list[str] = []
    token = ""
    while True:
        page = erin.ListTickets(pb.ListTicketsRequest(page_size=2, page_token=token))
        assert len(page.tickets) <= 2
        seen += [t.name for t in page.tickets]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "line one\nline two"}, "ticket.subject"),
        ({"subject": "bad\x00subject"}, "ticket.subject"),
        ({"description": "nul\x00inside"}, "ticket.description"),
        (
            {"contact": pb.Contact(email="a,b@example.com", channels=[pb.CHANNEL_EMAIL])},
            "ticket.contact.email",
        ),
        (
            {"contact": pb.Contact(email="a<b@example.com", channels=[pb.CHANNEL_EMAIL])},
            "ticket.contact.email",
        ),
        (
            {"contact": pb.Contact(email="a@example.com", channels=[UNDEFINED])},
            "ticket.contact.channels",
        ),
    ],
)
def test_text_that_would_break_mail_or_storage_is_refused(
    stack: Stack, owner: Client, change: dict[str, Any], field: str
) -> None:
    before = stored_events(stack)
    err = rejected(
        lambda: owner.CreateTicket(
            pb.CreateTicketRequest(ticket=ticket(**change), request_id=uuid.uuid4().hex)
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violated_fields(err)
    assert stored_events(stack) == before


def test_undefined_enum_values_and_bad_agent_input_are_named(
    stack: Stack, owner: Client, opened: pb.Ticket
) -> None:
    agent = Client(stack.gateway, stack.secret, "agent-qian", ("agent",))
    before = stored_events(stack)
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: owner.ListTickets(pb.ListTicketsRequest(statuses=[UNDEFINED])), "statuses"),
        (
            lambda: agent.AssignTicket(
                pb.AssignTicketRequest(name=opened.name, priority=UNDEFINED)
            ),
            "priority",
        ),
        (
            lambda: agent.AssignTicket(pb.AssignTicketRequest(name=opened.name, assignee="a\x00b")),
            "assignee",
        ),
        (lambda: owner.AddComment(pb.AddCommentRequest(name=opened.name, body="x\x00y")), "body"),
    ]
    for call, field in cases:
        err = rejected(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violated_fields(err)
    assert stored_events(stack) == before


def test_many_bad_items_are_named_and_counted_not_refused_for_size(stack: Stack) -> None:
    """A request with a hundred bad repeated items gets INVALID_ARGUMENT naming
    the first of them and counting the rest, small enough for any client."""
    run = uuid.uuid4().hex[:6]
    agent = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    claimant = Client(stack.gateway, stack.secret, f"claimant-{run}")
    reports = rpb_grpc.ReportServiceStub(agent._channel)
    appeals = apb_grpc.AppealServiceStub(claimant._channel)
    reports_before = stored_events(stack, stack.reports_dsn, "reports_events")
    appeals_before = stored_events(stack, stack.appeals_dsn, "appeals_events")

    flagger = rpb.TrustedFlagger(
        user_id=f"flagger-{run}",
        display_name="反网络欺凌中心",
        areas=[f"no-such-area-{i}-" + "x" * 80 for i in range(100)],
    )
    err = rejected(
        lambda: reports.SetTrustedFlagger(
            rpb.SetTrustedFlaggerRequest(flagger=flagger), metadata=agent.metadata, timeout=15
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    named = violated_fields(err)
    assert named[0] == "flagger.areas[0]" and len(named) <= 10
    assert err.details().endswith(f"… and {100 - len(named)} more")

    appeal = apb.Appeal(
        kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE,
        jurisdiction="cn",
        filer=apb.Party(legal_name="晴川工作室", locale="zh-CN", contact=ticket().contact),
        notice=apb.TakedownNotice(
            relationship=apb.RIGHTS_RELATIONSHIP_OWNER,
            work=apb.CopyrightWork(title="《江南春》舞蹈原创视频"),
            infringing_items=[f"https://video.example/v/{i}\x07搬运" for i in range(120)],
        ),
        good_faith_statement=True,
        accuracy_statement=True,
    )
    err = rejected(
        lambda: appeals.FileAppeal(
            apb.FileAppealRequest(appeal=appeal, request_id=f"many-{run}"),
            metadata=claimant.metadata,
            timeout=15,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    named = violated_fields(err)
    assert "appeal.notice.infringing_items[0]" in named and len(named) <= 10
    # Too many items, and each of them holds a control character.
    assert err.details().endswith(f"… and {1 + 120 - len(named)} more")

    assert stored_events(stack, stack.reports_dsn, "reports_events") == reports_before
    assert stored_events(stack, stack.appeals_dsn, "appeals_events") == appeals_before


def test_a_refused_upload_is_refused_as_sent_to_an_asyncio_client(stack: Stack) -> None:
    """An upload refused at its first message, while the rest is still being
    sent, gets INVALID_ARGUMENT naming the field every time, never INTERNAL
    (an asyncio client whose write is in flight when the answer comes turns
    it into INTERNAL, so the answer waits for the stream's end)."""
    token = mint_token(stack.secret, f"uploader-{uuid.uuid4().hex[:6]}")
    meta = epb.UploadEvidenceRequest(metadata=epb.EvidenceMetadata(file_name="a.png"))
    mebibyte = epb.UploadEvidenceRequest(chunk=b"\x89PNG\r\n\x1a\n" + bytes(1024 * 1024 - 8))
    refusals = {
        "metadata.file_name": [
            epb.UploadEvidenceRequest(metadata=epb.EvidenceMetadata(file_name="x" * 110_000)),
            epb.UploadEvidenceRequest(chunk=png()),
        ],
        "metadata": [meta, meta, mebibyte, mebibyte],
        "chunk": [meta, epb.UploadEvidenceRequest(chunk=b"MZ" + bytes(1024 * 1024)), mebibyte],
    }

    async def upload(parts: list[epb.UploadEvidenceRequest]) -> str:
        async with grpc.aio.insecure_channel(stack.gateway) as channel:
            call = epb_grpc.EvidenceServiceStub(channel).UploadEvidence(
                aiter_of(parts), metadata=[("authorization", f"Bearer {token}")], timeout=30
            )
            try:
                await call
            except grpc.aio.AioRpcError as err:
                details = [v for k, v in err.trailing_metadata() or () if k == STATUS_DETAILS_KEY]
                status = status_pb2.Status.FromString(details[0]) if details else None
                named = [f for f, _ in field_violations(status)] if status else []
                return f"{err.code().name} {named}"
            return "OK"

    async def each() -> Counter[str]:
        answers: Counter[str] = Counter()
        for _ in range(5):  # the race is lost now and then: give it many chances
            answers.update(
                await asyncio.gather(
                    *(upload(parts) for parts in refusals.values() for _ in range(10))
                )
            )
        return answers

    answers = asyncio.run(each())
    assert set(answers) == {f"INVALID_ARGUMENT [{field!r}]" for field in refusals}, answers


async def aiter_of(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def test_bytes_that_are_no_request_are_refused_naming_the_field(stack: Stack) -> None:
    """A client can send bytes that do not parse as the call's message (a
    string that is not UTF-8, a length running past the end): INVALID_ARGUMENT
    naming the field, on every kind of call, never UNKNOWN."""
    token = mint_token(stack.secret, f"raw-{uuid.uuid4().hex[:6]}")
    metadata = [("authorization", f"Bearer {token}")]
    not_utf8 = b"\xff\xfe\xed\xa0\x80"

    def bad(message: Any, place: str) -> bytes:
        data: bytes = message.SerializeToString()
        return data.replace(place.encode(), not_utf8)

    raw: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    before = stored_events(stack)
    with grpc.insecure_channel(stack.gateway) as channel:
        calls: list[tuple[Callable[[], Any], str]] = [
            (
                lambda: channel.unary_unary("/casemesh.v1.TicketService/GetTicket", **raw)(
                    bad(pb.GetTicketRequest(name="PLACE"), "PLACE"), metadata=metadata, timeout=10
                ),
                "name",
            ),
            (
                lambda: channel.unary_unary("/casemesh.v1.TicketService/CreateTicket", **raw)(
                    bad(
                        pb.CreateTicketRequest(request_id="raw", ticket=ticket(subject="PLACE")),
                        "PLACE",
                    ),
                    metadata=metadata,
                    timeout=10,
                ),
                "ticket.subject",
            ),
            (
                lambda: channel.unary_unary("/casemesh.v1.TicketService/ListTickets", **raw)(
                    b"\x12\x7fcut", metadata=metadata, timeout=10
                ),
                "page_token",
            ),
            (
                lambda: list(
                    channel.unary_stream("/casemesh.v1.EvidenceService/ReadEvidence", **raw)(
                        bad(epb.ReadEvidenceRequest(name="PLACE"), "PLACE"),
                        metadata=metadata,
                        timeout=10,
                    )
                ),
                "name",
            ),
            (
                lambda: channel.stream_unary("/casemesh.v1.EvidenceService/UploadEvidence", **raw)(
                    iter(
                        [
                            bad(
                                epb.UploadEvidenceRequest(
                                    metadata=epb.EvidenceMetadata(file_name="PLACE")
                                ),
                                "PLACE",
                            ),
                            epb.UploadEvidenceRequest(chunk=png()).SerializeToString(),
                        ]
                    ),
                    metadata=metadata,
                    timeout=10,
                ),
                "metadata.file_name",
            ),
        ]
        for call, field in calls:
            err = rejected(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.details())
            assert violated_fields(err) == [field], err.details()
    assert stored_events(stack) == before


def test_an_etag_this_api_never_gave_is_named_not_called_a_change(
    stack: Stack, owner: Client, opened: pb.Ticket
) -> None:
    """An etag such as "²" or "١" (digits to Python) is the client's mistake,
    INVALID_ARGUMENT naming it, not someone else's change (ABORTED)."""
    agent = Client(stack.gateway, stack.secret, f"agent-{uuid.uuid4().hex[:6]}", ("agent",))
    appeals = apb_grpc.AppealServiceStub(owner._channel)
    reports = rpb_grpc.ReportServiceStub(agent._channel)
    before = stored_events(stack)
    somewhere = str(uuid.uuid4())

    def calls(etag: str) -> list[Callable[[], Any]]:
        return [
            lambda: owner.AddComment(pb.AddCommentRequest(name=opened.name, body="x", etag=etag)),
            lambda: owner.CancelTicket(pb.CancelTicketRequest(name=opened.name, etag=etag)),
            lambda: appeals.AddAppealInfo(
                apb.AddAppealInfoRequest(name=f"appeals/{somewhere}", message="x", etag=etag),
                metadata=owner.metadata,
                timeout=15,
            ),
            lambda: reports.DecideReportCase(
                rpb.DecideReportCaseRequest(
                    name=f"report-cases/{somewhere}",
                    outcome=rpb.REPORT_DECISION_OUTCOME_NO_VIOLATION,
                    statement=rpb.DecisionStatement(decision_facts="x"),
                    etag=etag,
                ),
                metadata=agent.metadata,
                timeout=15,
            ),
        ]

    for etag in ("²", "١", "01", "9" * 30):
        for call in calls(etag):
            err = rejected(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (etag, err.details())
            assert violated_fields(err) == ["etag"], err.details()
    assert stored_events(stack) == before


def test_a_violation_names_the_field_by_its_path_in_the_request(stack: Stack) -> None:
    """A field deep in a request is named by its whole path, as the request
    spells it: a client must be able to find it."""
    run = uuid.uuid4().hex[:6]
    user = Client(stack.gateway, stack.secret, f"path-{run}")
    agent = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    editor = Client(stack.gateway, stack.secret, f"editor-{run}", ("admin",))
    appeals = apb_grpc.AppealServiceStub(user._channel)
    appeals_as_agent = apb_grpc.AppealServiceStub(agent._channel)
    help_desk = hpb_grpc.HelpCenterServiceStub(editor._channel)
    somewhere = f"appeals/{uuid.uuid4()}"
    bad_channel = pb.Contact(email="p@example.com", channels=[UNDEFINED])
    party = apb.Party(legal_name="晴川工作室", locale="zh-CN", contact=bad_channel)
    article = hpb.Article(
        name=f"articles/path-{run}", locale="fr", category="account.login", title="t", body="b"
    )
    cases: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: appeals.FileAppeal(
                apb.FileAppealRequest(
                    request_id=run,
                    appeal=apb.Appeal(kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE, filer=party),
                ),
                metadata=user.metadata,
                timeout=15,
            ),
            "appeal.filer.contact.channels",
        ),
        (
            lambda: appeals.AddAppealInfo(
                apb.AddAppealInfoRequest(
                    name=somewhere,
                    completion=apb.Appeal(notice=apb.TakedownNotice(relationship=UNDEFINED)),
                ),
                metadata=user.metadata,
                timeout=15,
            ),
            "completion.notice.relationship",
        ),
        (
            lambda: appeals.AddAppealInfo(
                apb.AddAppealInfoRequest(name=somewhere, completion=apb.Appeal(filer=party)),
                metadata=user.metadata,
                timeout=15,
            ),
            "completion.filer.contact.channels",
        ),
        (
            lambda: appeals.FileCounterNotice(
                apb.FileCounterNoticeRequest(name=somewhere, uploader=party),
                metadata=user.metadata,
                timeout=15,
            ),
            "uploader.contact.channels",
        ),
        (
            lambda: appeals_as_agent.DecideAppeal(
                apb.DecideAppealRequest(
                    name=somewhere,
                    outcome=apb.APPEAL_OUTCOME_UPHOLD,
                    reasons=apb.StatementOfReasons(ground="g", facts="f"),
                    affected_uploader=party,
                ),
                metadata=agent.metadata,
                timeout=15,
            ),
            "affected_uploader.contact.channels",
        ),
        (
            lambda: help_desk.CreateArticle(
                hpb.CreateArticleRequest(article=article), metadata=editor.metadata, timeout=15
            ),
            "article.locale",
        ),
        (
            lambda: help_desk.UpdateArticle(
                hpb.UpdateArticleRequest(article=article, base_version=1),
                metadata=editor.metadata,
                timeout=15,
            ),
            "article.locale",
        ),
    ]
    for call, field in cases:
        err = rejected(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.details())
        assert field in violated_fields(err), (field, violated_fields(err))

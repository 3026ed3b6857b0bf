"""The agents' console in a real browser (Debian's Chromium, driven through
Playwright), against the gateway's HTTP port: an agent works a ticket with a
screenshot through the next-case loop (request information, the requester's
answer brings it back to the live queue, solved with a macro, the requester's
e-mail); a second agent decides a report case with a statement of reasons and
every reporter hears of it; two agents taking next cases never hold the same
one at once; no serious accessibility violations on any page in zh-CN and en;
and the page is served under its content security policy. Beside those: a
"Reload" after someone else's change keeps what the agent typed (a reply, a
statement of reasons, a copyright decision); videos and PDFs are read only
when asked for and nothing is read again after an action; the live queue
keeps a change streamed while its list was on the way, and says when it
reconnects; a lease taken away shows at once; a refused field's reason is
said (beside the field, else in the list), and so is a call that cannot
reach the server (a case, config.json: "Reload" reads it again); "Other" in
a statement of reasons is described in words; a reply left unsent on a case
waits for the agent's return to it, and "n" asks before giving it up; an
action or a renewal answered after the agent moved on leaves the case they
moved to alone, and what was sent is never given back as a draft; assigning
keeps the reply being written; what was typed on a case outlives reloading
the page, which asks first (a reply whose answer was lost, sent again from
there, lands once; what was sent is not kept); decision facts keep their
line breaks; every legal element the appeals service can find missing has a
label.
Screenshots are kept in `.run/test-artifacts/console/`.

The queue is shared with every other test of the run. Each test works in one
skill queue and first has a "sweeper" agent hold every case already waiting
there (given back at the end), so the next case an agent takes is the test's
own."""

from __future__ import annotations

import contextlib
import html.parser
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from playwright.sync_api import (
    APIResponse,
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import helpcenter_pb2_grpc as hpb_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_appeals.domain import REQUIRED, REQUIRED_IN
from tests.conftest import REPO, Stack
from tests.e2e.test_appeals import Person as AppealsPerson
from tests.e2e.test_appeals import notice, upheld_and_countered
from tests.e2e.test_browser import TOKEN_EXPIRED, Steps, missing
from tests.e2e.test_casequeue import Agent
from tests.e2e.test_evidence import EvidenceClient, png
from tests.e2e.test_reports import Person as ReportsPerson
from tests.support import Client, wait_until

ARTIFACTS = REPO / ".run" / "test-artifacts" / "console"
# Built by `cd clients/web && npm ci && npm run build`; served at /console/.
DIST = REPO / "clients" / "web" / "console" / "dist"
AXE = REPO / "clients" / "web" / "node_modules" / "axe-core" / "axe.min.js"
# A loaded machine may take seconds to move an event from a service to the queue.
WAIT_MS = 30_000


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium and the built console; asked for before the stack, so
    a missing one costs nothing."""
    if not (DIST / "index.html").exists():
        missing(
            f"{DIST.relative_to(REPO)} is not built (cd clients/web && npm ci && npm run build)"
        )
    found = next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
    if found is None:
        missing("Chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Problems:
    """Uncaught errors and console errors a page logged."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("pageerror", lambda err: self.seen.append(f"uncaught: {err}"))

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.seen.append(message.text)

        page.on("console", console)


@contextlib.contextmanager
def agent_page(
    browser: Browser, locale: str = "zh-CN", *, bypass_csp: bool = False
) -> Iterator[tuple[Page, Problems]]:
    context: BrowserContext = browser.new_context(
        locale=locale, viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        yield page, Problems(page)
    finally:
        context.close()


def sign_in(page: Page, stack: Stack, user: str, fragment: str = "") -> None:
    page.goto(f"{stack.http}/console/{fragment}")
    page.locator("#user-name").fill(user)
    page.locator("#sign-in-form button[type=submit]").click()
    expect(page.locator("#signed-in-as")).to_contain_text(user)


def in_queue(page: Page, queue: str) -> None:
    page.locator("#filter-queue").select_option(queue)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")


def row(page: Page, name: str) -> Locator:
    return page.locator(f'#queue-rows tr[data-name="{name}"]')


@contextlib.contextmanager
def quiet_queue(stack: Stack, queue: str) -> Iterator[Agent]:
    """Holds every case already waiting in `queue` for the test's length, so
    the next case an agent takes there is one the test made; gives them back
    after."""
    sweeper = Agent(stack, f"sweeper-{uuid.uuid4().hex[:6]}")
    held: list[str] = []
    try:
        while True:
            try:
                case = sweeper.ClaimNextCase(
                    qpb.ClaimNextCaseRequest(queues=[queue], lease_seconds=3600)
                )
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                break
            held.append(case.name)
        yield sweeper
    finally:
        for name in held:
            with contextlib.suppress(grpc.RpcError):
                sweeper.ReleaseClaim(qpb.ReleaseClaimRequest(name=name))
        sweeper.client.close()


def new_ticket(
    requester: Client, email: str, category: str, subject: str, *evidence: str
) -> pb.Ticket:
    ticket: pb.Ticket = requester.CreateTicket(
        pb.CreateTicketRequest(
            request_id=uuid.uuid4().hex,
            ticket=pb.Ticket(
                category=category,
                subject=subject,
                description="广告后台的投放数据一直不更新，截图附上。",
                locale="zh-CN",
                contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
                evidence=[epb.EvidenceRef(name=name) for name in evidence],
            ),
        )
    )
    return ticket


def next_until(page: Page, name: str, tries: int = 10) -> None:
    """Takes next cases until the agent holds `name` (a case of another test
    that reached the queue after the sweep is skipped, and given back)."""
    lease = page.locator("#lease")
    for _ in range(tries):
        before = int(lease.get_attribute("data-claims") or "0")
        page.evaluate("document.activeElement?.blur()")  # keys typed into a field are text
        page.keyboard.press("n")
        expect(lease).to_have_attribute("data-claims", str(before + 1))
        # The case taken is opened before "next" takes a key again (one
        # pressed meanwhile is dropped: a second press while the first runs).
        expect(page.locator("#next-case")).to_be_enabled()
        expect(page.locator("#next-case-2")).to_be_enabled()
        if lease.get_attribute("data-case") == name:
            return
    raise AssertionError(f"{name} was not handed out in {tries} claims")


def answer_lost_once(lost: list[str]) -> Callable[[Route], None]:
    """A route handler: the first call reaches the service and its answer is
    lost on the way back (a dropped connection; its URL kept in `lost`);
    the calls after it go through."""

    def handle(route: Route) -> None:
        if lost:
            route.continue_()
            return
        route.fetch()  # the service acts on it
        lost.append(route.request.url)
        route.abort("connectionreset")  # and the page never hears back

    return handle


def comments_on(requester: Client, ticket: str) -> list[str]:
    """What the requester's ticket's history holds as comments, oldest first."""
    events = requester.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket)).events
    return [e.text for e in events if e.type == "CommentAdded"]


def test_a_next_case_whose_answer_was_lost_asked_again_gives_the_same_case(
    browser: Browser, stack: Stack
) -> None:
    """The claim reached the queue and its answer was lost: pressing "next"
    again gets the case that claim took, not a second one (the first would
    stay held, in nobody's view, for its lease)."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"claimer-{run}")
    email = f"claimer-{run}@example.com"
    lost: list[str] = []

    with quiet_queue(stack, "ads") as sweeper, agent_page(browser) as (page, problems):
        sign_in(page, stack, f"li-{run}")
        in_queue(page, "ads")
        tickets = [
            new_ticket(requester, email, "ads.delivery_data", f"投放数据不更新 {run} {n}")
            for n in range(2)
        ]
        for ticket in tickets:
            expect(row(page, ticket.name)).to_be_visible()
        page.route("**/casemesh.v1.CaseQueueService/ClaimNextCase", answer_lost_once(lost))
        page.evaluate("document.activeElement?.blur()")
        page.keyboard.press("n")
        expect(page.locator("#error")).to_be_visible()
        page.keyboard.press("n")
        lease = page.locator("#lease")
        expect(lease).to_have_attribute("data-state", "held")
        held = lease.get_attribute("data-case")
        assert lost and held in [t.name for t in tickets]
        # The other case is still there for anyone: one claim took one case.
        other = sweeper.ClaimNextCase(qpb.ClaimNextCaseRequest(queues=["ads"]))
        assert {other.name, held} == {t.name for t in tickets}
        sweeper.ReleaseClaim(qpb.ReleaseClaimRequest(name=other.name))
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    done_with(requester, *tickets)


def test_an_agent_works_a_ticket_with_a_screenshot_through_the_next_case_loop(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"advertiser-{run}")
    email = f"advertiser-{run}@example.com"
    agent = f"li-{run}"
    screenshot = EvidenceClient(requester).upload(png(), "投放数据.png")
    earlier = new_ticket(requester, email, "account.login", f"换手机后无法登录 {run}")
    with quiet_queue(stack, "ads"), agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "ticket-journey")
        try:
            sign_in(page, stack, agent)
            in_queue(page, "ads")
            ticket = new_ticket(
                requester, email, "ads.delivery_data", f"投放数据不更新 {run}", screenshot.name
            )
            number = ticket.name.split("/")[1][:8].upper()
            # The new ticket arrives in the live queue, then is the next case.
            expect(row(page, ticket.name)).to_be_visible()
            steps.shot("queue")
            next_until(page, ticket.name)
            expect(page.locator("#lease")).to_have_attribute("data-state", "held")
            expect(page.locator("#case-heading")).to_contain_text(number)
            image = page.get_by_role("region", name="问题描述").get_by_role("img")
            expect(image).to_have_accessible_name("证据：投放数据.png")
            page.wait_for_function(
                "() => { const i = document.querySelector('.evidence img');"
                " return !!i && i.complete && i.naturalWidth > 0; }"
            )
            # The requester's history beside it: their earlier ticket, linked.
            others = page.get_by_role("region", name="提交人的其他工单")
            expect(
                others.get_by_role("link", name=earlier.name.split("/")[1][:8].upper())
            ).to_be_visible()
            expect(others).not_to_contain_text(number)
            steps.shot("ticket")

            page.keyboard.press("r")
            expect(page.locator("#reply")).to_be_focused()
            page.keyboard.type("请提供广告账户 ID 和出错时间。")
            page.get_by_role("button", name="请用户补充信息").click()
            expect(page.locator("#status")).to_contain_text("等待用户回复")
            waiting = page.locator(f'#queue-rows tr[data-name="{ticket.name}"][data-waiting=true]')
            expect(waiting).to_be_visible()
            expect(waiting).to_contain_text("已暂停")
            steps.shot("waiting-on-requester")

            # The requester answers; the live queue shows the case claimable again.
            requester.AddComment(pb.AddCommentRequest(name=ticket.name, body="账户 ID 8812。"))
            back = page.locator(f'#queue-rows tr[data-name="{ticket.name}"][data-waiting=false]')
            expect(back).to_be_visible()
            steps.shot("answered")

            next_until(page, ticket.name)
            expect(page.locator("ol.history")).to_contain_text("账户 ID 8812。")
            page.get_by_label("宏（常用回复）").select_option("solved-general")
            expect(page.locator("#reply")).to_have_value(re.compile(f"{agent}"))
            expect(page.locator("#solve")).to_have_class(re.compile("suggested"))
            steps.shot("macro")
            page.locator("#solve").click()
            expect(page.locator("#status")).to_contain_text(f"工单 {number} 已解决")
            expect(row(page, ticket.name)).to_have_count(0)
            steps.shot("solved")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == []

    # The requester is told, in their language, with the macro filled in.
    def solved_mail() -> list[EmailMessage]:
        return [m for m in stack.mail.to(email) if m["X-Casemesh-Template"] == "ticket.solved"]

    mail = wait_until(solved_mail, timeout=60)[0]
    body = mail.get_body(("plain",)).get_content()
    assert f"advertiser-{run}，您好" in body and number in body and agent in body, body
    done = requester.GetTicket(pb.GetTicketRequest(name=ticket.name))
    assert done.status == pb.TICKET_STATUS_SOLVED
    events = requester.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [e.type for e in events if e.actor == agent] == ["InfoRequested", "TicketSolved"]
    requester.close()


def test_an_agent_decides_a_report_case_and_every_reporter_is_told(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    reporters = [ReportsPerson(stack, f"viewer{i}-{run}") for i in range(3)]
    emails = [f"{r.user}@example.com" for r in reporters]
    video = f"v{run}"
    agent = f"wang-{run}"
    with quiet_queue(stack, "trust-safety"), agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "report-decision")
        try:
            sign_in(page, stack, agent)
            in_queue(page, "trust-safety")
            filed = [
                reporters[0].report(video, email=emails[0]),
                reporters[1].report(video, email=emails[1], locale="en"),
                reporters[2].report(video, email=emails[2]),
            ]
            case = filed[0].report_case
            assert {r.report_case for r in filed} == {case}
            expect(row(page, case)).to_be_visible()
            next_until(page, case)
            expect(page.locator("#distinct-reporters")).to_have_text("3")
            expect(page.locator("[data-report]")).to_have_count(3)
            expect(page.locator("#case-state")).to_have_attribute("data-state", "IN_REVIEW")
            steps.shot("report-case")

            form = page.locator("form.decide")
            form.get_by_label("违反的平台规则").fill("社区自律公约 第 3.2 条：禁止宣扬恐怖主义")
            form.get_by_label("为何违反平台规则").fill("视频展示并美化恐怖袭击。")
            form.get_by_label("内容发布日期").fill("2026-01-15")
            # The services' clock runs ahead of the browser's (earlier tests
            # moved it): the decision applies from the services' today.
            services_today = datetime.fromtimestamp(time.time() + stack.clock_offset(), UTC)
            form.get_by_label("决定生效日期").fill(services_today.date().isoformat())
            found = "三名用户举报。\n人工审核确认视频第 12 秒起出现袭击画面。"
            form.get_by_label("事实与依据").fill(found)
            form.get_by_role("checkbox", name="删除内容").check()
            decide_naming_uploader(page, steps, f"uploader-{run}", "张三", "statement-of-reasons")
            expect(page.locator("#restrictions")).to_contain_text("删除内容")
            # The facts as the agent wrote them, line break and all.
            expect(fact(page, "事实与依据")).to_have_js_property("innerText", found)
            expect(page.locator("#status")).to_contain_text("3 位举报人")
            steps.shot("decided")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == []

    # Each reporter: the receipt, then the outcome, in their language.
    def told() -> bool:
        return all(
            any(m["X-Casemesh-Template"] == "report.action_taken" for m in stack.mail.to(e))
            for e in emails
        )

    wait_until(told, timeout=60)
    for email, words in zip(emails, ("已处理", "action taken", "已处理"), strict=True):
        outcome = [m for m in stack.mail.to(email) if m["X-Casemesh-Template"] != "report.received"]
        assert len(outcome) == 1 and words in outcome[0]["Subject"], outcome
    wait_until(lambda: stack.mail.to(f"uploader-{run}@example.com"), timeout=60)


def test_a_case_reported_more_than_a_page_of_times_shows_every_report(
    browser: Browser, stack: Stack
) -> None:
    """A viral video's case: 101 reports, one more than a page of them. The
    agent sees them all and their count, not the first hundred."""
    run = uuid.uuid4().hex[:6]
    video = f"viral{run}"
    cases = {
        ReportsPerson(stack, f"crowd{i}-{run}")
        .report(video, email=f"crowd{i}-{run}@example.com")
        .report_case
        for i in range(101)
    }
    [case] = cases
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"zhou-{run}", f"#{case}")
        expect(page.locator("#reports-heading")).to_have_text("举报（101 条）")
        expect(page.locator("[data-report]")).to_have_count(101)
        expect(page.locator("#distinct-reporters")).to_have_text("101")
        assert problems.seen == []


def fact(place: Page | Locator, term: str) -> Locator:
    """What a case's page says for `term` (the description beside it in a list of facts)."""
    return place.locator(f"xpath=.//dl[@class='facts']/dt[.='{term}']/following-sibling::dd[1]")


def decide_naming_uploader(page: Page, steps: Steps, uploader: str, name: str, shot: str) -> None:
    """Names the affected uploader in the report decision form, sends it, and
    waits for the case to show the action taken."""
    form = page.locator("form.decide")
    form.get_by_label("用户 ID").fill(uploader)
    form.get_by_label("姓名或名称").fill(name)
    form.get_by_label("电子邮箱").fill(f"{uploader}@example.com")
    steps.shot(shot)
    form.get_by_role("button", name="提交决定").click()
    expect(page.locator("#case-state")).to_have_attribute("data-state", "ACTION_TAKEN")


def test_an_agent_describes_an_other_content_type_and_restriction_in_words(
    browser: Browser, stack: Stack
) -> None:
    """Choosing "Other" for the content type, a visibility restriction or a
    monetary one asks for what it is (the service requires those words), and
    the decision carries them."""
    run = uuid.uuid4().hex[:6]
    video = f"o{run}"
    checker = ReportsPerson(stack, f"checker-{run}", "agent")
    reporter = ReportsPerson(stack, f"viewer-{run}")
    case = reporter.report(video, email=f"viewer-{run}@example.com").report_case
    with agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "report-other")
        try:
            sign_in(page, stack, f"qian-{run}", f"#{case}")
            form = page.locator("form.decide")
            form.get_by_label("违反的平台规则").fill("社区自律公约 第 5.1 条：禁止虚假宣传")
            form.get_by_label("为何违反平台规则").fill("视频以虚假疗效推销保健品。")
            form.get_by_label("内容发布日期").fill("2026-01-15")
            form.get_by_label("决定生效日期").fill(services_today(stack))
            form.get_by_label("事实与依据").fill(f"人工审核确认。{run}")
            kind_words = form.get_by_label("其他内容类型（请说明）")
            visibility_words = form.get_by_label("其他可见性限制（请说明）")
            monetary_words = form.get_by_label("其他收益限制（请说明）")
            for words in (kind_words, visibility_words, monetary_words):
                expect(words).to_be_hidden()
            kinds = form.get_by_role("group", name="内容类型", exact=True)
            kinds.get_by_role("checkbox", name="其他").check()
            kind_words.fill("直播回放")
            visibility = form.get_by_role("group", name="可见性限制", exact=True)
            visibility.get_by_role("checkbox", name="其他").check()
            visibility_words.fill("不在首页推荐")
            form.get_by_label("收益限制", exact=True).select_option(label="其他")
            monetary_words.fill("暂停带货佣金")
            decide_naming_uploader(page, steps, f"uploader-{run}", "赵六", "other-in-words")
            expect(page.locator("#restrictions")).to_contain_text("其他：不在首页推荐")
            expect(page.locator("#restrictions")).to_contain_text("其他：暂停带货佣金")
            steps.shot("decided")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == []
    decided = checker.GetReportCase(rpb.GetReportCaseRequest(name=case)).decision
    assert list(decided.content_type) == [rpb.CONTENT_TYPE_VIDEO, rpb.CONTENT_TYPE_OTHER]
    assert decided.content_type_other == "直播回放"
    assert list(decided.restrictions.visibility) == [rpb.DECISION_VISIBILITY_OTHER]
    assert decided.restrictions.visibility_other == "不在首页推荐"
    assert decided.restrictions.monetary == rpb.DECISION_MONETARY_OTHER
    assert decided.restrictions.monetary_other == "暂停带货佣金"


def test_words_under_a_ground_the_agent_turned_from_are_not_part_of_the_decision(
    browser: Browser, stack: Stack
) -> None:
    """The agent began on "illegal content", wrote its legal ground, then
    turned to the platform's rules: the decision carries that ground's words
    only, not the ones left hidden, which the uploader would otherwise read."""
    run = uuid.uuid4().hex[:6]
    video = f"g{run}"
    checker = ReportsPerson(stack, f"checker-{run}", "agent")
    reporter = ReportsPerson(stack, f"viewer-{run}")
    case = reporter.report(video, email=f"viewer-{run}@example.com").report_case
    with agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "report-ground-turned")
        try:
            sign_in(page, stack, f"sun-{run}", f"#{case}")
            form = page.locator("form.decide")
            ground = form.get_by_label("决定依据", exact=True)
            ground.select_option(label="违法内容")
            form.get_by_label("法律依据").fill("《网络安全法》第十二条")
            form.get_by_label("为何违法").fill("视频编造险情。")
            ground.select_option(label="违反平台规则")
            expect(form.get_by_label("法律依据")).to_be_hidden()
            form.get_by_label("违反的平台规则").fill("社区自律公约 第 5.1 条：禁止虚假宣传")
            form.get_by_label("为何违反平台规则").fill("视频以编造的险情博取关注。")
            form.get_by_label("内容发布日期").fill("2026-01-15")
            form.get_by_label("决定生效日期").fill(services_today(stack))
            form.get_by_label("事实与依据").fill(f"人工审核确认。{run}")
            form.get_by_role("checkbox", name="删除内容").check()
            decide_naming_uploader(page, steps, f"uploader-{run}", "孙七", "ground-turned")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == []
    decided = checker.GetReportCase(rpb.GetReportCaseRequest(name=case)).decision
    assert decided.decision_ground == rpb.DECISION_GROUND_INCOMPATIBLE_CONTENT
    assert decided.incompatible_content_ground == "社区自律公约 第 5.1 条：禁止虚假宣传"
    assert decided.illegal_content_legal_ground == ""
    assert decided.illegal_content_explanation == ""


@dataclass
class Hold:
    agent: str
    case: str
    start: float
    end: float = float("inf")


def test_two_agents_taking_next_cases_never_hold_the_same_one_and_the_queue_is_live(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"creator-{run}")
    email = f"creator-{run}@example.com"
    made: list[str] = []
    with (
        quiet_queue(stack, "content"),
        agent_page(browser) as (a, a_problems),
        agent_page(browser) as (b, b_problems),
    ):
        pages = {"zhao": a, "qian": b}
        for name, page in pages.items():
            sign_in(page, stack, f"{name}-{run}")
            in_queue(page, "content")
        for i in range(6):
            made.append(
                new_ticket(requester, email, "content.upload_failed", f"上传失败 {run} {i}").name
            )
        for name in made:
            expect(row(a, name)).to_be_visible()

        holds: list[Hold] = []
        current: dict[str, Hold] = {}
        for i in range(50):
            # Both click at once; each page then shows the case it got.
            for agent, page in pages.items():
                if agent in current:
                    current[agent].end = time.monotonic()
                page.locator("#next-case" if i == 0 else "#next-case-2").click()
            for agent, page in pages.items():
                lease = page.locator("#lease")
                expect(lease).to_have_attribute("data-claims", str(i + 1))
                expect(lease).to_have_attribute("data-state", "held")
                shown = lease.get_attribute("data-case") or ""
                # Another test's case that reached the queue after the sweep
                # may come up too: it counts like the others.
                current[agent] = Hold(agent, shown, time.monotonic())
                holds.append(current[agent])
        for agent, page in pages.items():
            current[agent].end = time.monotonic()
            page.locator("#back-to-queue").click()
            expect(page.locator("#queue-heading")).to_be_visible()
        Steps(a, ARTIFACTS / "two-agents").shot("queue-after")

        # A hold runs from when the page showed the case to the click that let
        # it go: within the real lease, so two of them on one case must not meet.
        for x in holds:
            for y in holds:
                if x.agent < y.agent and x.case == y.case:
                    assert x.end <= y.start or y.end <= x.start, (x, y)
        assert sum(h.case in made for h in holds) >= len(holds) // 2, holds
        by = {agent: {h.case for h in holds if h.agent == agent} for agent in pages}
        assert by["zhao"] & by["qian"], "the two agents never took turns on a case"
        print(f"\n{len(holds)} claims over {len({h.case for h in holds})} cases")

        # A case opened now appears in an open queue view.
        started = time.monotonic()
        late = new_ticket(requester, email, "content.upload_failed", f"新的上传失败 {run}").name
        made.append(late)
        expect(row(b, late)).to_be_visible()
        print(f"a new case reached the live queue in {time.monotonic() - started:.2f} s")
        assert a_problems.seen == [] and b_problems.seen == []
    for name in made:
        with contextlib.suppress(grpc.RpcError):
            requester.CancelTicket(pb.CancelTicketRequest(name=name, reason="test over"))
    requester.close()


def test_an_agent_finds_tickets_by_words_requester_and_status(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"finder-{run}")
    email = f"finder-{run}@example.com"
    login = new_ticket(requester, email, "account.login", f"收不到验证码 {run}")
    other = new_ticket(requester, email, "content.upload_failed", f"上传卡住 {run}")
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"zhou-{run}")
        page.get_by_role("button", name="查找工单").first.click()
        expect(page.get_by_role("heading", name="查找工单", level=1)).to_be_visible()
        page.locator("#search-text").fill(f"验证码 {run}")
        page.locator("#search-form button[type=submit]").click()
        results = page.locator("#search-results")
        expect(results.locator("li")).to_have_count(1)
        expect(results).to_contain_text(login.name.split("/")[1][:8].upper())

        page.locator("#search-text").fill("")
        page.locator("#search-requester").fill(f"finder-{run}")
        page.locator("#search-form button[type=submit]").click()
        expect(results.locator("li")).to_have_count(2)
        page.locator("#search-status").select_option(label="新建")
        page.locator("#search-category").select_option("content.upload_failed")
        page.locator("#search-form button[type=submit]").click()
        expect(results.locator("li")).to_have_count(1)
        # A result opens its ticket.
        results.get_by_role("link").click()
        expect(page.locator("#case-heading")).to_contain_text(other.name.split("/")[1][:8].upper())
        assert problems.seen == []
    requester.close()


def open_articles_as_editor(page: Page, stack: Stack, user: str) -> None:
    """Signs in to the console as an admin, `user`, and opens the articles."""
    page.goto(f"{stack.http}/console/")
    page.locator("#user-name").fill(user)
    page.locator("#admin-role").check()
    page.locator("#sign-in-form button[type=submit]").click()
    page.locator("#open-articles").click()


def test_an_admin_drafts_previews_and_publishes_an_article(browser: Browser, stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    slug = f"articles/console-{run}"
    with agent_page(browser) as (page, problems):
        open_articles_as_editor(page, stack, f"editor-{run}")
        expect(page.get_by_role("heading", name="帮助中心文章", level=1)).to_be_visible()
        page.locator("#article-slug").fill(slug)
        page.locator("#article-category").select_option("account.login")
        page.locator("#article-title").fill(f"换手机后收不到验证码怎么办 {run}")
        page.locator("#article-body").fill(
            "先确认旧号码是否停用。\n\n再通过自助服务更换绑定手机号。"
        )
        page.locator("#article-keywords").fill("验证码 换号")
        page.locator("#article-preview-button").click()
        preview = page.get_by_role("region", name="文章预览")
        expect(preview.locator("p")).to_have_count(2)
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#article-state")).to_have_attribute("data-state", "DRAFT")
        # Users do not see a draft.
        reader = Client(stack.gateway, stack.secret, f"reader-{run}")
        with pytest.raises(grpc.RpcError):
            help_stub(stack, reader).GetArticle(
                hpb.GetArticleRequest(name=slug, locale="zh-CN"), metadata=reader.metadata
            )
        page.locator("#article-publish").click()
        expect(page.locator("#article-state")).to_have_attribute("data-state", "PUBLISHED")
        published = help_stub(stack, reader).GetArticle(
            hpb.GetArticleRequest(name=slug, locale="zh-CN"), metadata=reader.metadata
        )
        assert published.title == f"换手机后收不到验证码怎么办 {run}"
        assert published.author == ""  # a user is not shown which staff account wrote it
        staff = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
        by = help_stub(stack, staff).GetArticle(
            hpb.GetArticleRequest(name=slug, locale="zh-CN"), metadata=staff.metadata
        )
        assert by.author == f"editor-{run}"
        staff.close()
        reader.close()
        assert problems.seen == []


def test_an_article_saved_with_a_bad_slug_says_what_is_wrong_with_it(
    browser: Browser, stack: Stack
) -> None:
    """The gateway's reason shows beside the slug; a reason for a field the
    page has no place for is listed under the message, not dropped."""
    run = uuid.uuid4().hex[:6]
    reason = "must be articles/{slug} (lower-case letters, digits and '-')"
    # In English: the gateway's words for this rule are English in any language.
    with agent_page(browser, "en") as (page, problems):
        open_articles_as_editor(page, stack, f"editor-{run}")
        page.locator("#article-slug").fill("Account Help")
        page.locator("#article-category").select_option("account.login")
        page.locator("#article-title").fill(f"Help with your account {run}")
        page.locator("#article-body").fill("Start from the sign-in page.")
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#error-message")).to_have_text(
            "Please correct the marked fields and submit again."
        )
        expect(page.locator("#article-slug-error")).to_have_text(reason)
        expect(page.locator("#article-slug")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#article-slug")).to_be_focused()
        Steps(page, ARTIFACTS / "article-bad-slug").shot("refused")
        # Were there no place beside the field, the reason would still be said.
        page.evaluate("document.getElementById('article-slug-error').remove()")
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#error-list")).to_have_text(f"article.name: {reason}")
        assert problems.seen == [REFUSED, REFUSED]


def test_an_article_someone_else_saved_meanwhile_is_reloaded_keeping_what_the_admin_typed(
    browser: Browser, stack: Stack
) -> None:
    """A colleague saved a version while the admin edited: saving is refused,
    "Reload" reads the colleague's version to build on and keeps what the
    admin typed, and saving again lands on top of it."""
    run = uuid.uuid4().hex[:6]
    slug = f"articles/console-stale-{run}"
    colleague = Client(stack.gateway, stack.secret, f"colleague-{run}", ("agent", "admin"))
    helpcenter = help_stub(stack, colleague)

    def saved(title: str, body: str, base: int | None = None) -> Any:
        article = hpb.Article(
            name=slug, locale="zh-CN", category="account.login", title=title, body=body
        )
        if base is None:
            return helpcenter.CreateArticle(
                hpb.CreateArticleRequest(article=article, request_id=uuid.uuid4().hex),
                metadata=colleague.metadata,
            )
        return helpcenter.UpdateArticle(
            hpb.UpdateArticleRequest(
                article=article, base_version=base, request_id=uuid.uuid4().hex
            ),
            metadata=colleague.metadata,
        )

    first = saved(f"初稿 {run}", "第一版。")
    mine = f"我的修改。{run}"
    with agent_page(browser) as (page, problems):
        open_articles_as_editor(page, stack, f"editor-{run}")
        page.locator("#article-slug").fill(slug)
        page.locator("#article-open").click()
        expect(page.locator("#article-title")).to_have_value(f"初稿 {run}")
        theirs = saved(f"同事的版本 {run}", "第二版。", first.version)
        page.locator("#article-body").fill(mine)
        page.locator("#article-form button[type=submit]").click()
        stale_then_reload(page)
        expect(page.locator("#article-body")).to_have_value(mine)
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text(f"已保存为第 {theirs.version + 1} 版草稿")
        latest = helpcenter.GetArticle(
            hpb.GetArticleRequest(name=slug, locale="zh-CN", version=theirs.version + 1),
            metadata=colleague.metadata,
        )
        assert latest.body == mine
        assert problems.seen == [STALE]
    colleague.close()


def test_publishing_with_changes_not_saved_publishes_nothing_and_keeps_them(
    browser: Browser, stack: Stack
) -> None:
    """Publish publishes the version saved. With changes made in the form
    since, it publishes nothing and says to save first; the changes stay in
    the form, and once saved they are what is published."""
    run = uuid.uuid4().hex[:6]
    slug = f"articles/console-unsaved-{run}"
    changed = f"保存后又改过的正文。{run}"
    with agent_page(browser) as (page, problems):
        open_articles_as_editor(page, stack, f"editor-{run}")
        page.locator("#article-slug").fill(slug)
        page.locator("#article-category").select_option("account.login")
        page.locator("#article-title").fill(f"未保存的修改 {run}")
        page.locator("#article-body").fill("第一版。")
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("已保存为第 1 版草稿")
        page.locator("#article-body").fill(changed)
        page.locator("#article-publish").click()
        expect(page.locator("#error-message")).to_contain_text("请先保存，再发布")
        expect(page.locator("#article-body")).to_have_value(changed)
        expect(page.locator("#article-state")).to_have_attribute("data-state", "DRAFT")
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#status")).to_contain_text("已保存为第 2 版草稿")
        page.locator("#article-publish").click()
        expect(page.locator("#article-state")).to_have_attribute("data-state", "PUBLISHED")
        expect(page.locator("#article-body")).to_have_value(changed)
        assert problems.seen == []
    reader = Client(stack.gateway, stack.secret, f"reader-{run}")
    published = help_stub(stack, reader).GetArticle(
        hpb.GetArticleRequest(name=slug, locale="zh-CN"), metadata=reader.metadata
    )
    assert (published.version, published.body) == (2, changed)
    reader.close()


def test_new_or_open_asks_before_dropping_an_articles_unsaved_changes(
    browser: Browser, stack: Stack
) -> None:
    """What the admin wrote and did not save is not dropped unasked by "New
    article" or "Open": "Keep editing" keeps it, "Drop the changes" goes on.
    An article opened and not changed is put aside without a question."""
    run = uuid.uuid4().hex[:6]
    slug = f"articles/console-drop-{run}"
    colleague = Client(stack.gateway, stack.secret, f"colleague-{run}", ("agent", "admin"))
    help_stub(stack, colleague).CreateArticle(
        hpb.CreateArticleRequest(
            article=hpb.Article(
                name=slug,
                locale="zh-CN",
                category="account.login",
                title=f"已有的文章 {run}",
                body="正文。",
            ),
            request_id=uuid.uuid4().hex,
        ),
        metadata=colleague.metadata,
    )
    colleague.close()
    written = f"写了一半的标题 {run}"
    with agent_page(browser) as (page, problems):
        open_articles_as_editor(page, stack, f"editor-{run}")
        title = page.locator("#article-title")
        title.fill(written)
        asked = page.get_by_role("dialog", name="文章有未保存的修改")
        page.locator("#article-new").click()
        asked.get_by_role("button", name="继续编辑").click()
        expect(asked).to_be_hidden()
        expect(title).to_have_value(written)
        page.locator("#article-slug").fill(slug)
        page.locator("#article-open").click()
        asked.get_by_role("button", name="继续编辑").click()
        expect(title).to_have_value(written)
        page.locator("#article-open").click()
        asked.get_by_role("button", name="丢弃修改").click()
        expect(title).to_have_value(f"已有的文章 {run}")
        page.locator("#article-new").click()
        expect(title).to_have_value("")
        expect(asked).to_be_hidden()
        assert problems.seen == []


def help_stub(stack: Stack, client: Client) -> Any:
    return hpb_grpc.HelpCenterServiceStub(client._channel)


def test_no_serious_accessibility_violations_on_any_page_in_either_language(
    browser: Browser, stack: Stack
) -> None:
    if not AXE.exists():
        missing(f"{AXE.relative_to(REPO)} is missing (cd clients/web && npm ci)")
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"a11y-{run}")
    shot = EvidenceClient(requester).upload(png(), "截图.png")
    # A PDF too: its figure offers "Show" and "Download" until asked.
    paper = EvidenceClient(requester).upload(pdf(), "说明.pdf")
    ticket = new_ticket(
        requester,
        f"a11y-{run}@example.com",
        "ads.consulting",
        f"无障碍 {run}",
        shot.name,
        paper.name,
    )
    reporter = ReportsPerson(stack, f"a11y-rep-{run}")
    case = reporter.report(f"a{run}", email=f"a11y-rep-{run}@example.com").report_case
    claimant = AppealsPerson(stack, f"a11y-claimant-{run}")
    appeal = claimant.FileAppeal(
        apb.FileAppealRequest(
            appeal=notice(claimant, f"a11y-claimant-{run}@example.com", "", good_faith=True),
            request_id=uuid.uuid4().hex,
        )
    ).name
    pages = {
        "queue": "",
        "ticket": f"#{ticket.name}",
        "report": f"#{case}",
        "copyright": f"#{appeal}",
    }
    found: dict[str, list[str]] = {}
    for locale in ("zh-CN", "en"):
        folder = ARTIFACTS / locale
        with agent_page(browser, locale, bypass_csp=True) as (page, _):
            steps = Steps(page, folder)
            sign_in(page, stack, f"a11y-agent-{run}")
            for what, fragment in pages.items():
                page.goto(f"{stack.http}/console/{fragment}")
                if what == "queue":
                    expect(page.locator("#live")).to_have_attribute("data-state", "live")
                else:
                    # Not the case before's page: a new hash opens the case after the visit.
                    short = fragment.split("/")[1][:8].upper()
                    expect(page.locator("#case-heading")).to_contain_text(short)
                    expect(page.locator("#case-body .columns")).to_be_visible()
                    expect(page.locator("#lease")).to_have_attribute("data-state", "none")
                if what == "ticket":
                    page.wait_for_function(
                        "() => document.querySelector('.evidence img')?.naturalWidth > 0"
                    )
                    expect(page.locator(".evidence[data-state=offered] button")).to_have_count(2)
                page.add_script_tag(path=str(AXE))
                result = page.evaluate(
                    "async () => { const r = await axe.run(document); return {"
                    " passes: r.passes.length, violations: r.violations"
                    ".filter(v => ['serious', 'critical'].includes(v.impact))"
                    ".map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).join(', ')}`) }; }"
                )
                steps.shot(what)
                assert result["passes"] > 0  # axe looked at the page
                if result["violations"]:
                    found[f"{locale} {what}"] = result["violations"]
    assert found == {}
    requester.close()


class _Scripts(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        self.inline += [f"<{tag} {k}>" for k in names if k == "style" or k.startswith("on")]


def test_the_console_is_served_under_its_content_security_policy(stack: Stack) -> None:
    if not (DIST / "index.html").exists():
        missing(f"{DIST.relative_to(REPO)} is not built")
    page = httpx.get(f"{stack.http}/console/", timeout=15)
    assert page.status_code == 200
    # Asked again on each load: a new page never runs with a stale bundle.
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'"):
        assert directive in policy, policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    parser = _Scripts()
    parser.feed(page.text)
    assert parser.inline == []
    assert '<script type="module" src="./main.js">' in page.text
    macros = httpx.get(f"{stack.http}/console/macros.json", timeout=15)
    assert macros.status_code == 200
    assert {"solve", "request_info", "reply"} <= {m["action"] for m in macros.json()}


def labels_in(source: str, table: str) -> set[str]:
    """The keys of one language's table in the console's i18n.ts (`zh`, `en`)."""
    body = source.split(f"\nconst {table}", 1)[1].split("\n};", 1)[0]
    return set(re.findall(r'^  "?([\w.]+)"?:', body, re.MULTILINE))


def test_every_legal_element_the_appeals_service_can_ask_for_has_a_label() -> None:
    """A case's missing elements are shown by name, in Chinese and English:
    every element the appeals service can find missing, those each kind of
    case needs and those a jurisdiction's law adds, has a label in both, not
    its path ("counter notice.consent to jurisdiction")."""
    source = (REPO / "clients" / "web" / "console" / "src" / "i18n.ts").read_text()
    named = {path for paths in (*REQUIRED.values(), *REQUIRED_IN.values()) for path in paths}
    assert "counter_notice.consent_to_jurisdiction" in named
    for table in ("zh", "en"):
        labelled = labels_in(source, table)
        assert {f"element.{path}" for path in named} - labelled == set(), table


def services_today(stack: Stack) -> str:
    """The services' date: earlier tests move their clock ahead of the browser's."""
    return datetime.fromtimestamp(time.time() + stack.clock_offset(), UTC).date().isoformat()


# What the browser logs for the refused change (`aborted` is HTTP 409 in Connect).
STALE = "Failed to load resource: the server responded with a status of 409 (Conflict)"
REFUSED = "Failed to load resource: the server responded with a status of 400 (Bad Request)"


def stale_then_reload(page: Page) -> None:
    """The agent's action met someone else's change: the page says so; the agent reloads."""
    expect(page.locator("#error-message")).to_contain_text("已被其他人修改")
    page.get_by_role("button", name="重新加载").click()
    expect(page.locator("#status")).to_contain_text("您输入的内容已保留")
    expect(page.locator("#error")).to_be_hidden()


def test_a_reload_after_someone_elses_change_keeps_what_the_agent_typed(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"keeper-{run}")
    colleague = Client(stack.gateway, stack.secret, f"colleague-{run}", ("agent",))
    ticket = new_ticket(requester, f"keeper-{run}@example.com", "other.general", f"草稿 {run}")
    reply = f"您好，我们已经为您重置了登录状态，请重新登录试试。{run}"
    with agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "reload-keeps-drafts")
        try:
            sign_in(page, stack, f"chen-{run}", f"#{ticket.name}")
            expect(page.locator("#case-heading")).to_contain_text(f"草稿 {run}")
            page.locator("#reply").fill(reply)
            page.locator("#case-body").get_by_label("处理客服").fill(f"chen-{run}")
            # A colleague notes something on the ticket meanwhile.
            colleague.AddComment(
                pb.AddCommentRequest(name=ticket.name, body=f"同事备注 {run}", internal=True)
            )
            page.get_by_role("button", name="发送回复").click()
            steps.shot("stale")
            stale_then_reload(page)
            # The newer ticket, and everything the agent typed still there.
            expect(page.locator("ol.history")).to_contain_text(f"同事备注 {run}")
            expect(page.locator("#reply")).to_have_value(reply)
            expect(page.locator("#case-body").get_by_label("处理客服")).to_have_value(f"chen-{run}")
            steps.shot("reloaded")
            page.get_by_role("button", name="发送回复").click()
            expect(page.locator("#status")).to_contain_text("回复已发送")
            expect(page.locator("ol.history")).to_contain_text(reply)
            expect(page.locator("#reply")).to_have_value("")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == [STALE]
    # Sent once; the note is not the requester's.
    assert comments_on(requester, ticket.name) == [reply]
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()
    colleague.close()


def sent_as_the_sign_in_ran_out(page: Page, then_as: str) -> None:
    """The reply on the page sent as the agent's sign-in ran out (refused,
    the sign-in page shown); then signed in again as `then_as`."""
    page.route("**/casemesh.v1.TicketService/AddComment", TOKEN_EXPIRED)
    page.get_by_role("button", name="发送回复").click()
    expect(page.locator("#sign-in-form")).to_be_visible()
    page.unroute("**/casemesh.v1.TicketService/AddComment")
    page.locator("#user-name").fill(then_as)
    page.locator("#sign-in-form button[type=submit]").click()
    expect(page.locator("#signed-in-as")).to_contain_text(then_as)
    # Signed in once the page left the sign-in view: until then the case's
    # old page (hidden) still holds its heading and what was typed.
    expect(page.locator("#sign-in")).to_be_hidden()


def test_a_reply_typed_when_the_sign_in_ran_out_is_given_back_after_signing_in(
    browser: Browser, stack: Stack
) -> None:
    """The agent's sign-in ran out while they wrote; sending is refused and
    the sign-in page shown. Signed in again, they are back on the case with
    their reply as they wrote it."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"expired-{run}")
    ticket = new_ticket(requester, f"expired-{run}@example.com", "other.general", f"过期 {run}")
    reply = f"您好，我们已经查到原因，{run}。"

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"li-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"过期 {run}")
        page.locator("#reply").fill(reply)
        sent_as_the_sign_in_ran_out(page, f"li-{run}")
        expect(page.locator("#case-heading")).to_be_visible()
        expect(page.locator("#case-heading")).to_contain_text(f"过期 {run}")
        expect(page.locator("#reply")).to_be_visible()
        expect(page.locator("#reply")).to_have_value(reply)
        # Another agent signing in on this tab is not given what she typed.
        sent_as_the_sign_in_ran_out(page, f"wang-{run}")
        page.goto(f"{stack.http}/console/#{ticket.name}")
        expect(page.locator("#reply")).to_be_visible()
        expect(page.locator("#reply")).to_have_value("")
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_replies_left_on_other_cases_outlive_the_sign_in_running_out_for_that_agent(
    browser: Browser, stack: Stack
) -> None:
    """The agent typed a reply on one case, went on to another and typed
    there; the sign-in ran out. Signed in again, both replies are theirs
    again; another agent signing in on the tab gets neither."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"outlive-{run}")
    email = f"outlive-{run}@example.com"
    first = new_ticket(requester, email, "other.general", f"先写的 {run}")
    second = new_ticket(requester, email, "other.general", f"后写的 {run}")
    heading, reply = "#case-heading", "#reply"

    def opened(page: Page, ticket: pb.Ticket, subject: str) -> None:
        page.evaluate(f"location.hash = '#{ticket.name}'")
        expect(page.locator(heading)).to_contain_text(subject)
        # Opened all through: its requester's other tickets come last.
        expect(page.get_by_role("region", name="提交人的其他工单")).to_be_visible()

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"zhou-{run}", f"#{first.name}")
        expect(page.locator(heading)).to_contain_text(f"先写的 {run}")
        page.locator(reply).fill(f"第一件的回复 {run}")
        opened(page, second, f"后写的 {run}")
        page.locator(reply).fill(f"第二件的回复 {run}")
        sent_as_the_sign_in_ran_out(page, f"zhou-{run}")
        expect(page.locator(heading)).to_contain_text(f"后写的 {run}")
        expect(page.locator(reply)).to_have_value(f"第二件的回复 {run}")
        opened(page, first, f"先写的 {run}")
        expect(page.locator(reply)).to_have_value(f"第一件的回复 {run}")
        # Left again, then another agent signs in on this tab: nothing of hers.
        opened(page, second, f"后写的 {run}")
        sent_as_the_sign_in_ran_out(page, f"zheng-{run}")
        opened(page, first, f"先写的 {run}")
        expect(page.locator(reply)).to_have_value("")
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    done_with(requester, first, second)


def test_a_link_followed_as_another_case_finishes_opening_opens_the_linked_case(
    browser: Browser, stack: Stack
) -> None:
    """The agent follows a link to a case just as the page of the case on
    screen finishes opening and puts its own name back in the address: the
    linked case opens, not the one the agent was leaving."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"link-{run}")
    email = f"link-{run}@example.com"
    leaving = new_ticket(requester, email, "other.general", f"离开的 {run}")
    linked = new_ticket(requester, email, "other.general", f"链接的 {run}")

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"lin-{run}", f"#{leaving.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"离开的 {run}")
        # The link's change of address is heard after the finished page has
        # written its name back (as its drawing ends, before the event runs).
        page.evaluate(
            f"""location.hash = '#{linked.name}';
            history.replaceState(null, '', location.pathname + '#{leaving.name}');"""
        )
        expect(page.locator("#case-heading")).to_contain_text(f"链接的 {run}")
        expect(page).to_have_url(re.compile(f"#{linked.name}$"))
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    done_with(requester, leaving, linked)


def test_a_reply_whose_answer_was_lost_is_sent_again_and_lands_once(
    browser: Browser, stack: Stack
) -> None:
    """The reply reached the service, and its answer was lost on the way
    back (a dropped connection): the agent presses send again, and the
    requester gets one reply, not two."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"lost-{run}")
    ticket = new_ticket(requester, f"lost-{run}@example.com", "other.general", f"丢失 {run}")
    reply = f"您好，已为您处理，请再试一次。{run}"
    lost: list[str] = []

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"li-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"丢失 {run}")
        page.route("**/casemesh.v1.TicketService/AddComment", answer_lost_once(lost))
        page.locator("#reply").fill(reply)
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#error")).to_be_visible()
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#status")).to_contain_text("回复已发送")
        expect(page.locator("ol.history")).to_contain_text(reply)
        assert lost
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    assert comments_on(requester, ticket.name) == [reply]
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_a_reply_sent_whose_page_could_not_be_read_again_is_not_sent_twice(
    browser: Browser, stack: Stack
) -> None:
    """The reply landed, and the ticket could not be read again to show it:
    the box is empty (the words were sent). Sent again by an agent who does
    not see them in the history, the same words are the same request, and
    the requester gets one reply, not two."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"unread-{run}")
    ticket = new_ticket(requester, f"unread-{run}@example.com", "other.general", f"重读 {run}")
    reply = f"您好，问题已修复，请刷新后再试。{run}"
    failed: list[str] = []

    def read_fails_once(route: Route) -> None:
        if failed:
            route.continue_()
            return
        failed.append(route.request.url)
        route.abort()

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"zhao-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"重读 {run}")
        page.route("**/casemesh.v1.TicketService/GetTicket", read_fails_once)
        page.locator("#reply").fill(reply)
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#error-message")).to_contain_text("暂时连不上服务器")
        expect(page.locator("#reply")).to_have_value("")
        expect(page.locator("ol.history")).not_to_contain_text(reply)
        page.locator("#reply").fill(reply)
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#status")).to_contain_text("回复已发送")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("ol.history li").filter(has_text=reply)).to_have_count(1)
        assert failed
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    assert comments_on(requester, ticket.name) == [reply]
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_a_reply_whose_answer_was_lost_sent_again_after_a_reload_lands_once(
    browser: Browser, stack: Stack
) -> None:
    """The reply reached the service and its answer was lost; the agent
    reloads the page and finds the reply back in its box, unsent as far as
    the page knows. Sent again from there, it is the same request: the
    requester gets one reply, not two. Once sent, it is no draft: the page
    reloaded asks nothing and gives nothing back."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"relost-{run}")
    ticket = new_ticket(requester, f"relost-{run}@example.com", "other.general", f"重发 {run}")
    reply = f"您好，已为您恢复账号，请重新登录。{run}"
    lost: list[str] = []
    asked: list[str] = []

    def leave(dialog: Dialog) -> None:
        asked.append(dialog.type)
        dialog.accept()

    with agent_page(browser) as (page, problems):
        page.on("dialog", leave)
        sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"重发 {run}")
        page.route("**/casemesh.v1.TicketService/AddComment", answer_lost_once(lost))
        page.locator("#reply").fill(reply)
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#error")).to_be_visible()
        page.reload()
        expect(page.locator("#status")).to_contain_text("已放回原处")
        expect(page.locator("#reply")).to_have_value(reply)
        assert asked == ["beforeunload"]
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#status")).to_contain_text("回复已发送")
        expect(page.locator("ol.history li").filter(has_text=reply)).to_have_count(1)
        expect(page.locator("#reply")).to_have_value("")

        page.reload()
        expect(page.locator("ol.history li").filter(has_text=reply)).to_have_count(1)
        expect(page.locator("#reply")).to_have_value("")
        expect(page.locator("#status")).not_to_contain_text("已放回原处")
        assert asked == ["beforeunload"]
        assert lost
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    assert comments_on(requester, ticket.name) == [reply]
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def enter_sends_nothing(page: Page, one_line: Locator) -> None:
    """Enter pressed in `one_line`, a field of the decision form on the page:
    the form is not sent (a browser sends a form on Enter by itself)."""
    page.evaluate(
        """() => { window.decisionsSent = 0; document.querySelector('form.decide')
          .addEventListener('submit', () => { window.decisionsSent += 1; }); }"""
    )
    one_line.press("Enter")
    assert page.evaluate("window.decisionsSent") == 0


def test_a_reload_keeps_the_statement_of_reasons_the_agent_filled_in(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    video = f"k{run}"
    first = ReportsPerson(stack, f"watcher-{run}")
    late = ReportsPerson(stack, f"late-watcher-{run}")
    checker = ReportsPerson(stack, f"checker-{run}", "agent")
    case = first.report(video, email=f"watcher-{run}@example.com").report_case
    with agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "reload-keeps-statement")
        try:
            sign_in(page, stack, f"lin-{run}", f"#{case}")
            expect(page.locator("#distinct-reporters")).to_have_text("1")
            form = page.locator("form.decide")
            form.get_by_label("决定依据").select_option(label="违法内容")
            form.get_by_label("法律依据").fill("网络安全法 第十二条")
            form.get_by_label("为何违法").fill(f"视频宣扬恐怖主义。{run}")
            form.get_by_label("内容发布日期").fill("2026-01-15")
            form.get_by_label("决定生效日期").fill(services_today(stack))
            form.get_by_label("事实与依据").fill(f"人工审核确认。{run}")
            form.get_by_role("checkbox", name="删除内容").check()
            form.get_by_role("checkbox", name="由自动化手段发现").check()
            form.get_by_label("适用地区").fill("CN, HK")
            form.get_by_label("用户 ID").fill(f"uploader-{run}")
            form.get_by_label("姓名或名称").fill("李四")
            form.get_by_label("电子邮箱").fill(f"uploader-{run}@example.com")
            enter_sends_nothing(page, form.get_by_label("适用地区"))
            # A second person reports the same video meanwhile: the case changes.
            late.report(video, email=f"late-watcher-{run}@example.com")
            wait_until(
                lambda: (
                    checker.GetReportCase(rpb.GetReportCaseRequest(name=case)).reporter_count == 2
                )
            )
            form.get_by_role("button", name="提交决定").click()
            steps.shot("stale")
            stale_then_reload(page)
            expect(page.locator("#distinct-reporters")).to_have_text("2")
            form = page.locator("form.decide")
            expect(form.get_by_label("决定依据")).to_have_value(
                str(rpb.DECISION_GROUND_ILLEGAL_CONTENT)
            )
            expect(form.get_by_label("法律依据")).to_have_value("网络安全法 第十二条")
            expect(form.get_by_label("为何违法")).to_have_value(f"视频宣扬恐怖主义。{run}")
            expect(form.get_by_label("内容发布日期")).to_have_value("2026-01-15")
            expect(form.get_by_label("事实与依据")).to_have_value(f"人工审核确认。{run}")
            expect(form.get_by_role("checkbox", name="删除内容")).to_be_checked()
            expect(form.get_by_role("checkbox", name="由自动化手段发现")).to_be_checked()
            expect(form.get_by_label("适用地区")).to_have_value("CN, HK")
            expect(form.get_by_label("用户 ID")).to_have_value(f"uploader-{run}")
            expect(form.get_by_label("姓名或名称")).to_have_value("李四")
            expect(form.get_by_label("电子邮箱")).to_have_value(f"uploader-{run}@example.com")
            steps.shot("reloaded")
            form.get_by_role("button", name="提交决定").click()
            expect(page.locator("#case-state")).to_have_attribute("data-state", "ACTION_TAKEN")
            expect(page.locator("#restrictions")).to_contain_text("删除内容")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == [STALE]
    decided = checker.GetReportCase(rpb.GetReportCaseRequest(name=case))
    statement = decided.decision
    assert statement.illegal_content_legal_ground == "网络安全法 第十二条"
    assert statement.automated_detection and list(statement.territorial_scope) == ["CN", "HK"]
    assert decided.affected_uploader.legal_name == "李四"


def mp4() -> bytes:
    """The start of an MP4 file (what the evidence service checks), made unique."""
    return b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + os.urandom(4096)


def pdf() -> bytes:
    """A one-page PDF that says hello, made unique by a comment."""
    page = b"BT /F1 24 Tf 50 100 Td (Hello PDF) Tj ET"
    return (
        b"%PDF-1.4\n%" + os.urandom(8).hex().encode() + b"\n"
        b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 200]/Contents 4 0 R"
        b"/Resources<</Font<</F1 5 0 R>>>>>>endobj\n"
        b"4 0 obj<</Length %d>>stream\n" % len(page) + page + b"\nendstream endobj\n"
        b"5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


READ_EVIDENCE = "/casemesh.v1.EvidenceService/ReadEvidence"
PDF_VIEWER = "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/"


class EvidenceReads:
    """The ReadEvidence calls a page made, by the evidence each read."""

    def __init__(self, page: Page, *names: str) -> None:
        self.count = dict.fromkeys(names, 0)
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.url.endswith(READ_EVIDENCE):
            for name in self.count:
                if name.encode() in (request.post_data_buffer or b""):
                    self.count[name] += 1


# Whether an image URL still loads (the page's policy lets images, not fetch, read blob: URLs).
LOADS = """u => new Promise(done => { const i = new Image();
  i.onload = () => done('loads'); i.onerror = () => done('gone'); i.src = u; })"""


def reads(request: Request, name: str) -> bool:
    return request.url.endswith(READ_EVIDENCE) and name.encode() in (
        request.post_data_buffer or b""
    )


def with_files(requester: Client, subject: str, description: str, *files: Any) -> pb.Ticket:
    """A ticket `requester` files in other.general with `files` (uploaded),
    told by e-mail at their own address."""
    ticket: pb.Ticket = requester.CreateTicket(
        pb.CreateTicketRequest(
            request_id=uuid.uuid4().hex,
            ticket=pb.Ticket(
                category="other.general",
                subject=subject,
                description=description,
                locale="zh-CN",
                contact=pb.Contact(
                    email=f"{requester.subject}@example.com", channels=[pb.CHANNEL_EMAIL]
                ),
                evidence=[epb.EvidenceRef(name=e.name) for e in files],
            ),
        )
    )
    return ticket


def test_a_statement_of_reasons_typed_comes_back_after_the_page_is_reloaded(
    browser: Browser, stack: Stack
) -> None:
    """The agent has begun the statement of reasons and reloads the page (a
    Back, a tab closed and opened again): leaving asks first, and the case's
    page comes back with what they typed in place. Signing out on purpose
    keeps none of it."""
    run = uuid.uuid4().hex[:6]
    reporter = ReportsPerson(stack, f"reloader-{run}")
    case = reporter.report(f"r{run}", email=f"reloader-{run}@example.com").report_case
    agent = f"zhou-{run}"
    found = f"人工审核确认。\n第 12 秒起出现袭击画面。{run}"
    asked: list[str] = []

    def leave(dialog: Dialog) -> None:
        asked.append(dialog.type)
        dialog.accept()

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, agent, f"#{case}")
        form = page.locator("form.decide")
        form.get_by_label("决定依据").select_option(label="违法内容")
        form.get_by_label("法律依据").fill("网络安全法 第十二条")
        form.get_by_label("事实与依据").fill(found)
        form.get_by_role("checkbox", name="删除内容").check()
        page.once("dialog", leave)
        page.reload()
        expect(page.locator("#status")).to_contain_text("已放回原处")
        form = page.locator("form.decide")
        expect(form.get_by_label("决定依据")).to_have_value(
            str(rpb.DECISION_GROUND_ILLEGAL_CONTENT)
        )
        expect(form.get_by_label("法律依据")).to_have_value("网络安全法 第十二条")
        expect(form.get_by_label("事实与依据")).to_have_value(found)
        expect(form.get_by_role("checkbox", name="删除内容")).to_be_checked()
        assert asked == ["beforeunload"]

        page.locator("#sign-out").click()
        sign_in(page, stack, agent, f"#{case}")
        form = page.locator("form.decide")
        expect(form.get_by_label("事实与依据")).to_have_value("")
        expect(form.get_by_role("checkbox", name="删除内容")).not_to_be_checked()
        assert problems.seen == []


def test_a_decision_whose_page_could_not_be_read_again_is_not_kept_as_a_draft(
    browser: Browser, stack: Stack
) -> None:
    """The decision landed, and the case could not be read again to show it:
    the form still shows what was decided, but that is the case's now, not a
    draft. Touched again (a letter typed and taken back), leaving the page
    asks nothing, and the case reloaded is given none of it back."""
    run = uuid.uuid4().hex[:6]
    reporter = ReportsPerson(stack, f"unread-{run}")
    checker = ReportsPerson(stack, f"unread-checker-{run}", "agent")
    case = reporter.report(f"u{run}", email=f"unread-{run}@example.com").report_case
    facts = f"普通的舞蹈视频，没有违规内容。{run}"
    failed: list[str] = []
    asked: list[str] = []

    def read_fails_once(route: Route) -> None:
        if failed:
            route.continue_()
            return
        failed.append(route.request.url)
        route.abort()

    def leave(dialog: Dialog) -> None:
        asked.append(dialog.type)
        dialog.accept()

    with agent_page(browser) as (page, problems):
        page.on("dialog", leave)
        sign_in(page, stack, f"qian-{run}", f"#{case}")
        form = page.locator("form.decide")
        form.get_by_label("结果").select_option(label="未违规")
        form.get_by_label("事实与依据").fill(facts)
        page.route("**/casemesh.v1.ReportService/GetReportCase", read_fails_once)
        form.get_by_role("button", name="提交决定").click()
        expect(page.locator("#error-message")).to_contain_text("暂时连不上服务器")
        wait_until(
            lambda: (
                checker.GetReportCase(rpb.GetReportCaseRequest(name=case)).state
                == rpb.REPORT_CASE_STATE_NO_VIOLATION
            )
        )
        box = form.get_by_label("事实与依据")
        box.press("End")
        box.press("x")
        box.press("Backspace")
        expect(box).to_have_value(facts)
        page.reload()
        expect(page.locator("#case-state")).to_have_attribute("data-state", "NO_VIOLATION")
        expect(page.locator("form.decide")).to_have_count(0)
        expect(page.locator("#status")).not_to_contain_text("无处可放")
        assert asked == []
        assert failed
        assert [p for p in problems.seen if p.startswith("uncaught")] == []


def test_drafts_saved_in_a_shape_the_page_does_not_write_are_ignored(
    browser: Browser, stack: Stack
) -> None:
    """What the tab's session storage holds for drafts is not what the page
    writes (another version of it, or a hand): the case opens, and what the
    agent types there is saved and sent as ever."""
    run = uuid.uuid4().hex[:6]
    agent = f"sun-{run}"
    requester = Client(stack.gateway, stack.secret, f"shape-{run}")
    ticket = new_ticket(requester, f"shape-{run}@example.com", "other.general", f"形状 {run}")
    reply = f"您好，已收到。{run}"

    with agent_page(browser) as (page, problems):
        page.goto(f"{stack.http}/console/")
        page.evaluate(
            "saved => sessionStorage.setItem('casemesh.console.drafts', saved)",
            json.dumps({"agent": agent, "cases": None}),
        )
        sign_in(page, stack, agent, f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"形状 {run}")
        page.locator("#reply").fill(reply)
        page.get_by_role("button", name="发送回复").click()
        expect(page.locator("#status")).to_contain_text("回复已发送")
        expect(page.locator("ol.history")).to_contain_text(reply)
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_a_video_and_a_pdf_load_only_when_asked_and_an_action_reads_nothing_again(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"filmer-{run}")
    files = EvidenceClient(requester)
    shot, video, paper = (
        files.upload(png(), "截图.png"),
        files.upload(mp4(), "录屏.mp4"),
        files.upload(pdf(), "合同.pdf"),
    )
    ticket = with_files(
        requester, f"视频证据 {run}", "上传后视频无法播放，录屏和合同附上。", shot, video, paper
    )
    with agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "evidence-on-demand")
        read = EvidenceReads(page, shot.name, video.name, paper.name)
        try:
            sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
            figure = {
                e.name: page.locator(f'figure[data-evidence="{e.name}"]')
                for e in (shot, video, paper)
            }
            # The screenshot shows at once; the video and the PDF wait to be asked for.
            expect(figure[shot.name].get_by_role("img", name="证据：截图.png")).to_be_visible()
            page.wait_for_function(
                "() => document.querySelector('.evidence img')?.naturalWidth > 0"
            )
            for other in (video, paper):
                expect(figure[other.name]).to_have_attribute("data-state", "offered")
            expect(figure[video.name].get_by_role("button", name="显示 录屏.mp4")).to_be_visible()
            expect(figure[paper.name].get_by_role("button", name="下载 合同.pdf")).to_be_visible()
            assert read.count == {shot.name: 1, video.name: 0, paper.name: 0}
            steps.shot("offered")

            # An action draws the ticket again: the screenshot is not read again.
            page.locator("#reply").fill(f"已收到，正在核查。{run}")
            page.get_by_role("button", name="添加内部备注").click()
            expect(page.locator("#status")).to_contain_text("内部备注已添加")
            expect(page.locator("ol.history")).to_contain_text(f"已收到，正在核查。{run}")
            page.wait_for_function(
                "() => document.querySelector('.evidence img')?.naturalWidth > 0"
            )
            assert read.count == {shot.name: 1, video.name: 0, paper.name: 0}

            # Asked for, each is read once and shown: the PDF in the browser's viewer.
            figure[video.name].get_by_role("button", name="显示 录屏.mp4").click()
            expect(figure[video.name].locator("video")).to_have_attribute(
                "src", re.compile("^blob:")
            )
            # Chromium's own PDF viewer (its built-in extension) opens in the frame,
            # under the page's content security policy.
            with page.expect_event("framenavigated", lambda f: f.url.startswith(PDF_VIEWER)):
                figure[paper.name].get_by_role("button", name="显示 合同.pdf").click()
            expect(figure[paper.name].locator("iframe")).to_be_visible()
            with page.expect_download() as saved:
                figure[paper.name].get_by_role("link", name="下载 合同.pdf").click()
            assert saved.value.suggested_filename == "合同.pdf"
            steps.shot("shown")
            assert read.count == {shot.name: 1, video.name: 1, paper.name: 1}

            # Another action: everything shown stays, nothing is read again.
            page.locator("#reply").fill(f"视频已查看。{run}")
            page.get_by_role("button", name="添加内部备注").click()
            expect(page.locator("ol.history")).to_contain_text(f"视频已查看。{run}")
            expect(figure[video.name].locator("video")).to_be_attached()
            expect(figure[paper.name].locator("iframe")).to_be_attached()
            assert read.count == {shot.name: 1, video.name: 1, paper.name: 1}

            # Leaving the case frees what was read.
            src = figure[shot.name].locator("img").get_attribute("src") or ""
            assert page.evaluate(LOADS, src) == "loads"
            page.locator("#back-to-queue").click()
            expect(page.locator("#queue-heading")).to_be_visible()
            assert page.evaluate(LOADS, src) == "gone"
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        # The one error: the probe of the revoked screenshot's URL.
        assert problems.seen == ["Failed to load resource: net::ERR_FILE_NOT_FOUND"]

    # A read still running when the agent leaves is cancelled.
    with agent_page(browser) as (page, problems):
        held: list[Route] = []
        page.route(
            f"**{READ_EVIDENCE}",
            lambda route: (
                held.append(route) if reads(route.request, video.name) else route.continue_()
            ),
        )
        sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
        with page.expect_request(lambda r: reads(r, video.name)):
            page.get_by_role("button", name="显示 录屏.mp4").click()
        expect(page.locator(f'figure[data-evidence="{video.name}"]')).to_have_attribute(
            "data-state", "loading"
        )
        with page.expect_event("requestfailed", lambda r: reads(r, video.name)):
            page.locator("#back-to-queue").click()
        expect(page.locator("#queue-heading")).to_be_visible()
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_evidence_is_saved_under_an_extension_of_what_its_bytes_are(
    browser: Browser, stack: Stack
) -> None:
    """The uploader names the file; its bytes name the type. A PDF sent as
    `statement.html` is saved as `statement.pdf` (saved as sent, the agent's
    browser would open it and run whatever script it holds), and a video
    sent as `录屏.mp4.hta` as `录屏.mp4`."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"renamer-{run}")
    files = EvidenceClient(requester)
    paper, video = files.upload(pdf(), "statement.html"), files.upload(mp4(), "录屏.mp4.hta")
    ticket = new_ticket(
        requester,
        f"renamer-{run}@example.com",
        "other.general",
        f"改名的证据 {run}",
        paper.name,
        video.name,
    )
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
        figure = page.locator(f'figure[data-evidence="{paper.name}"]')
        # The caption keeps the name it was sent under, beside what it is.
        expect(figure.locator("figcaption")).to_contain_text("statement.html · application/pdf")
        # Asked for, it is saved, and shown in the browser's PDF viewer beside
        # a link that saves it under the same name.
        with (
            page.expect_event("framenavigated", lambda f: f.url.startswith(PDF_VIEWER)),
            page.expect_download() as saved,
        ):
            figure.get_by_role("button", name="下载 statement.pdf").click()
        assert saved.value.suggested_filename == "statement.pdf"
        with page.expect_download() as saved:
            figure.get_by_role("link", name="下载 statement.pdf").click()
        assert saved.value.suggested_filename == "statement.pdf"

        clip = page.locator(f'figure[data-evidence="{video.name}"]')
        with page.expect_download() as saved:
            clip.get_by_role("button", name="下载 录屏.mp4").click()
        assert saved.value.suggested_filename == "录屏.mp4"
        assert problems.seen == []
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def pump_until(page: Page, done: Callable[[], bool]) -> None:
    """Waits for `done()`, letting Playwright run the page's route handlers meanwhile."""
    wait_until(lambda: done() or page.evaluate("false"))


LIST_QUEUE = re.compile(r"/casemesh\.v1\.CaseQueueService/ListQueueCases")


def test_a_case_streamed_while_the_queue_list_is_read_is_not_undone_by_the_list(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"racer-{run}")
    made: list[str] = []
    held: list[tuple[Route, APIResponse]] = []

    def late_list(route: Route) -> None:
        """The list as the queue is now, answered only after a new case has been
        streamed to the page (the test fulfils it)."""
        if held:
            route.continue_()
            return
        answer = route.fetch()
        made.append(new_ticket(requester, f"racer-{run}@example.com", "other.general", run).name)
        held.append((route, answer))

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"wu-{run}")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        lists = page.locator("#queue-rows")
        shown = int(lists.get_attribute("data-lists") or "0")
        page.route(LIST_QUEUE, late_list)
        page.locator("#filter-queue").select_option("general")  # watches again, lists again
        pump_until(page, lambda: bool(held))
        route, answer = held[0]
        assert made[0] not in answer.text()  # read before the case was opened
        # The live stream brings the new case while the list is on its way…
        expect(row(page, made[0])).to_be_visible()
        route.fulfill(response=answer)
        expect(lists).to_have_attribute("data-lists", str(shown + 1))
        # …and the older list does not take it away.
        expect(row(page, made[0])).to_be_visible()
        page.unroute(LIST_QUEUE)
        assert problems.seen == []
    requester.CancelTicket(pb.CancelTicketRequest(name=made[0], reason="test over"))
    requester.close()


WATCH_QUEUE = re.compile(r"/casemesh\.v1\.CaseQueueService/WatchQueue")
CLAIM_NEXT = re.compile(r"/casemesh\.v1\.CaseQueueService/ClaimNextCase")


def test_the_queue_says_it_is_reconnecting_and_then_live_again(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"sun-{run}")
        live = page.locator("#live")
        expect(live).to_have_attribute("data-state", "live")
        # Every state and every text the line shows, in order (an attempt's
        # text shows only for its wait, too briefly to be sure to catch it).
        page.evaluate(
            """() => { const el = document.getElementById('live');
            window.liveStates = []; window.liveTexts = [];
            new MutationObserver(() => {
              window.liveStates.push(el.dataset.state);
              window.liveTexts.push(el.textContent);
            }).observe(el, { attributes: true, attributeFilter: ['data-state'],
                             childList: true, characterData: true, subtree: true }); }"""
        )
        page.route(WATCH_QUEUE, lambda route: route.abort())
        page.locator("#filter-queue").select_option("general")  # watches again: refused
        expect(live).to_have_attribute("data-state", "reconnecting")
        page.wait_for_function(
            "() => window.liveTexts.includes('连接中断，正在重新连接…（第 2 次）')"
        )
        texts: list[str] = page.evaluate("window.liveTexts")
        assert texts.index("连接中断，正在重新连接…（第 1 次）") < texts.index(
            "连接中断，正在重新连接…（第 2 次）"
        ), texts
        Steps(page, ARTIFACTS / "reconnecting").shot("reconnecting")
        page.unroute(WATCH_QUEUE)
        expect(live).to_have_attribute("data-state", "live")
        expect(live).to_have_text("● 实时更新中")
        states: list[str] = page.evaluate("window.liveStates")
        # Each wait before trying again said "reconnecting" to its end: a list
        # that came back fine meanwhile did not call the queue live (the list
        # is read only once the watch says WATCHING).
        first = states.index("reconnecting")
        tries = [i for i, state in enumerate(states) if i > first and state == "connecting"]
        assert len(tries) >= 2 and all(states[i - 1] == "reconnecting" for i in tries), states
        assert states[-1] == "live", states
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen


def test_a_watch_refused_for_a_sign_in_that_ran_out_asks_to_sign_in_again(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    with agent_page(browser) as (page, _):
        sign_in(page, stack, f"yun-{run}")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        page.route(WATCH_QUEUE, TOKEN_EXPIRED)
        page.locator("#filter-queue").select_option("general")  # watches again: refused
        expect(page.locator("#error-message")).to_contain_text("登录已失效")
        expect(page.locator("#sign-in-form")).to_be_visible()
        expect(page.locator("#live")).not_to_have_attribute("data-state", "reconnecting")


def test_a_queue_list_that_fails_is_shown_and_read_again_on_the_next_attempt(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    refused: list[str] = []

    def fail_once(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.abort()

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"lin-{run}")
        live = page.locator("#live")
        expect(live).to_have_attribute("data-state", "live")
        page.evaluate(
            """() => { const el = document.getElementById('live'); window.liveStates = [];
            new MutationObserver(() => window.liveStates.push(el.dataset.state))
              .observe(el, { attributes: true, attributeFilter: ['data-state'] }); }"""
        )
        page.route(LIST_QUEUE, fail_once)
        page.locator("#filter-queue").select_option("general")  # watches again, lists again
        # The failed list is said, and the queue does not stay "connecting": the
        # attempt ends, and the next one reads the list and is live.
        expect(page.locator("#error")).to_be_visible()
        expect(live).to_have_attribute("data-state", "live")
        # Read again, the list's failure is no longer said.
        expect(page.locator("#error")).to_be_hidden()
        states: list[str] = page.evaluate("window.liveStates")
        assert len(refused) == 1
        assert "reconnecting" in states and states[-1] == "live", states
        page.unroute(LIST_QUEUE)
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen


def test_a_call_that_cannot_reach_the_server_says_so_in_the_agents_language(
    browser: Browser, stack: Stack
) -> None:
    """A fetch that fails (the network is gone) is no "Failed to fetch" but
    the page's own words."""
    run = uuid.uuid4().hex[:6]
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"he-{run}")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        page.route(CLAIM_NEXT, lambda route: route.abort("internetdisconnected"))
        page.locator("#next-case").click()
        expect(page.locator("#error-message")).to_have_text("暂时连不上服务器，请稍后重试。")
        expect(page.locator("#lease")).not_to_have_attribute("data-state", "held")
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen


def test_evidence_that_cannot_be_read_says_why_in_the_agents_language(
    browser: Browser, stack: Stack
) -> None:
    """A screenshot whose read fails on the network says so in the page's
    words, not the browser's "Failed to fetch"."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"unread-{run}")
    shot = EvidenceClient(requester).upload(png(), "截图.png")
    ticket = new_ticket(
        requester, f"unread-{run}@example.com", "ads.delivery_data", f"证据读不到 {run}", shot.name
    )
    with agent_page(browser) as (page, _):
        page.route(f"**{READ_EVIDENCE}", lambda route: route.abort("internetdisconnected"))
        sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
        figure = page.locator(f'figure[data-evidence="{shot.name}"]')
        expect(figure).to_have_attribute("data-state", "failed")
        expect(figure.locator("figcaption")).to_have_text(
            f"无法显示证据 {shot.name}：暂时连不上服务器，请稍后重试。"
        )
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_a_macros_file_that_is_not_json_leaves_the_console_working_without_macros(
    browser: Browser, stack: Stack
) -> None:
    """An admin's syntax error in macros.json (the ConfigMap the pods mount)
    costs the macros only: the agent still signs in to a live queue."""
    run = uuid.uuid4().hex[:6]
    with agent_page(browser) as (page, problems):
        page.route(
            "**/console/macros.json",
            lambda route: route.fulfill(content_type="application/json", body='[{"id": "solve",'),
        )
        sign_in(page, stack, f"he-{run}")
        expect(page.locator("#queue-heading")).to_be_visible()
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(page.locator("#error")).to_be_hidden()
        assert problems.seen == []


def test_a_watch_that_says_nothing_for_45_seconds_is_dropped_and_opened_again(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    hung: list[Route] = []
    with agent_page(browser) as (page, problems):
        # The page's timers are the test's to move on (time still flows).
        page.clock.install()
        sign_in(page, stack, f"ye-{run}")
        live = page.locator("#live")
        expect(live).to_have_attribute("data-state", "live")
        page.evaluate(
            """() => { const el = document.getElementById('live'); window.liveStates = [];
            new MutationObserver(() => window.liveStates.push(el.dataset.state))
              .observe(el, { attributes: true, attributeFilter: ['data-state'] }); }"""
        )

        # A half-open connection: the first watch is sent and nothing ever comes
        # back; later ones go through. (The route stays in place until the end:
        # an unrouted request may be let through.)
        def hang_first(route: Route) -> None:
            if hung:
                route.continue_()
            else:
                hung.append(route)

        page.route(WATCH_QUEUE, hang_first)
        page.locator("#filter-queue").select_option("general")
        pump_until(page, lambda: bool(hung))
        expect(live).to_have_attribute("data-state", "connecting")
        # 45 s without a word (not even HEARTBEAT): the attempt is given up and
        # the next one, answered, is live.
        page.clock.fast_forward("00:46")
        page.wait_for_function("() => window.liveStates.includes('reconnecting')")
        expect(live).to_have_attribute("data-state", "live")
        states: list[str] = page.evaluate("window.liveStates")
        # The silent watch was never called live; the next one is.
        assert "live" not in states[: states.index("reconnecting")], states
        assert states[-1] == "live", states
        assert len(hung) == 1
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen


def test_an_agent_sees_at_once_that_the_case_they_hold_was_taken_from_them(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"locked-{run}")
    agent = f"zheng-{run}"
    with quiet_queue(stack, "account"), agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "lease-lost")
        try:
            sign_in(page, stack, agent)
            in_queue(page, "account")
            ticket = new_ticket(requester, f"locked-{run}@example.com", "account.login", run)
            expect(row(page, ticket.name)).to_be_visible()
            next_until(page, ticket.name)
            lease = page.locator("#lease")
            expect(lease).to_have_attribute("data-state", "held")
            # The same agent elsewhere (another tab, the API) lets it go, and a
            # colleague takes it: long before the next renewal, the page says so.
            same = Agent(stack, agent)
            same.ReleaseClaim(qpb.ReleaseClaimRequest(name=ticket.name))
            colleague = Agent(stack, f"colleague-{run}")

            # Another case may have reached "account" meanwhile: take cases until
            # the ticket comes up, then give the others back.
            # A claim skips a case whose row another transaction holds at that
            # moment (the queue's consumer or timer): look again until one comes.
            def claim() -> str | None:
                try:
                    request = qpb.ClaimNextCaseRequest(queues=["account"])
                    return str(colleague.ClaimNextCase(request).name)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    return None

            others: list[str] = []
            while (taken := wait_until(claim, timeout=30)) != ticket.name:
                others.append(taken)
            for other in others:
                colleague.ReleaseClaim(qpb.ReleaseClaimRequest(name=other))
            expect(lease).to_have_attribute("data-state", "lost")
            expect(page.locator("#lease-text")).to_contain_text(
                f"您已失去案件 {ticket.name.split('/')[1][:8].upper()} 的锁定"
            )
            expect(page.locator("#lease-text")).to_have_attribute("role", "alert")
            steps.shot("lost")
            # Going back does not try to give back what is no longer held.
            page.locator("#back-to-queue").click()
            expect(row(page, ticket.name)).to_have_attribute("data-holder", f"colleague-{run}")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        # The renewals that found the lease gone were refused (failed_precondition is
        # HTTP 400 in Connect).
        refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
        assert problems.seen and set(problems.seen) == {refused}, problems.seen
        colleague.ReleaseClaim(qpb.ReleaseClaimRequest(name=ticket.name))
        same.client.close()
        colleague.client.close()
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


RENEW_CLAIM = re.compile(r"/casemesh\.v1\.CaseQueueService/RenewClaim")


def held_back(held: list[Route]) -> Callable[[Route], None]:
    """A route handler holding the first call from now on in `held` (the
    test lets it go on); the calls after it go through."""
    taken: list[Route] = []

    def handle(route: Route) -> None:
        if taken:
            route.continue_()
            return
        taken.append(route)
        held.append(route)

    return handle


def indexed(stack: Stack, requester: str, count: int) -> None:
    """Until an agent's search finds `count` tickets of `requester` (the
    case index has them: each ticket's page can list the others)."""
    agent = Client(stack.gateway, stack.secret, f"indexer-{uuid.uuid4().hex[:6]}", ("agent",))
    try:
        wait_until(
            lambda: (
                len(agent.SearchTickets(pb.SearchTicketsRequest(requester=requester)).tickets)
                == count
            ),
            timeout=30,
        )
    finally:
        agent.close()


def first_of_two_opened(
    page: Page,
    stack: Stack,
    agent: str,
    queue: str,
    requester: Client,
    email: str,
    category: str,
    subject: str,
) -> tuple[pb.Ticket, pb.Ticket]:
    """Signs `agent` in to `queue` (kept quiet by the caller), has
    `requester` file two tickets there in `category` (`subject` and their
    number), and takes next cases until the agent holds the first, opened
    all through: the two tickets, for a call on its way to race the next
    case taken."""
    sign_in(page, stack, agent)
    in_queue(page, queue)
    first, second = (new_ticket(requester, email, category, f"{subject} {n}") for n in range(2))
    for ticket in (first, second):
        expect(row(page, ticket.name)).to_be_visible()
    next_until(page, first.name)
    # Opened all through (its requester's other tickets come last, found after it shows).
    expect(page.get_by_role("region", name="提交人的其他工单")).to_be_visible()
    return first, second


def test_next_case_handing_back_the_case_whose_lease_lapsed_keeps_it_held(
    browser: Browser, stack: Stack
) -> None:
    """The agent's lease ran out while the queue could not be reached (the
    page says it is renewing); the case is still the most urgent, so "next"
    hands it straight back. It stays theirs: the page does not give it back
    as the case it was holding before."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"locked-{run}")
    agent = f"qian-{run}"
    with quiet_queue(stack, "account") as sweeper, agent_page(browser) as (page, problems):
        sign_in(page, stack, agent)
        in_queue(page, "account")
        ticket = new_ticket(requester, f"locked-{run}@example.com", "account.login", run)
        expect(row(page, ticket.name)).to_be_visible()
        next_until(page, ticket.name)
        lease = page.locator("#lease")
        expect(lease).to_have_attribute("data-state", "held")
        # Cases of other tests that came meanwhile (skipped above, given back)
        # are held aside: the ticket is then the one case "next" can hand out.
        aside: list[str] = []
        try:
            while True:
                try:
                    request = qpb.ClaimNextCaseRequest(queues=["account"], lease_seconds=600)
                    aside.append(sweeper.ClaimNextCase(request).name)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    break
            # Renewals fail on the way; the lease lapses (let go here for speed).
            page.route(RENEW_CLAIM, lambda route: route.abort("connectionreset"))
            same = Agent(stack, agent)
            same.ReleaseClaim(qpb.ReleaseClaimRequest(name=ticket.name))
            expect(lease).to_have_attribute("data-state", "renewing")
            page.unroute(RENEW_CLAIM)
            claims = int(lease.get_attribute("data-claims") or "0")
            with page.expect_request(re.compile(r"/casemesh\.v1\.TicketService/GetTicket")):
                page.evaluate("document.activeElement?.blur()")
                page.keyboard.press("n")  # the case is opened once the claims are settled
            expect(lease).to_have_attribute("data-claims", str(claims + 1))
            expect(lease).to_have_attribute("data-case", ticket.name)
            expect(lease).to_have_attribute("data-state", "held")
            # Still held by the agent: the queue renews it, and shows them holding it.
            renewed = same.RenewClaim(qpb.RenewClaimRequest(name=ticket.name))
            assert renewed.holder == agent
            same.ReleaseClaim(qpb.ReleaseClaimRequest(name=ticket.name))
            same.client.close()
        finally:
            for name in aside:
                sweeper.ReleaseClaim(qpb.ReleaseClaimRequest(name=name))
        # The renewals cut off on the way are all the page complained of.
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_a_renewal_answered_after_the_next_case_was_taken_leaves_that_case_renewed(
    browser: Browser, stack: Stack
) -> None:
    """A renewal of the case held is on its way when the agent takes the next
    case, and the first is given back: the renewal, refused once it lands,
    says nothing about the case held now, which goes on being renewed."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"renewer-{run}")
    email = f"renewer-{run}@example.com"
    late: list[Route] = []
    with quiet_queue(stack, "account"), agent_page(browser) as (page, problems):
        # The page's timers are the test's to move on (time still flows).
        page.clock.install()
        first, second = first_of_two_opened(
            page, stack, f"tang-{run}", "account", requester, email, "account.login", f"续期 {run}"
        )
        lease = page.locator("#lease")
        page.route(RENEW_CLAIM, held_back(late))
        page.clock.fast_forward("01:00")
        pump_until(page, lambda: bool(late))
        claims = int(lease.get_attribute("data-claims") or "0")
        page.evaluate("document.activeElement?.blur()")
        page.keyboard.press("n")
        expect(lease).to_have_attribute("data-claims", str(claims + 1))
        now = lease.get_attribute("data-case") or ""
        assert now != first.name
        # Opened once the first case is given back.
        expect(page.locator("#case-heading")).to_contain_text(number_of(now))
        with page.expect_response(RENEW_CLAIM) as refused:
            late.pop().continue_()
        assert not refused.value.ok  # given back: not the agent's any more

        def renewal_of_now(request: Request) -> bool:
            return bool(RENEW_CLAIM.search(request.url)) and now in (request.post_data or "")

        # Two renewals: the second is asked for long after the refusal was read.
        for _ in range(2):
            with page.expect_request(renewal_of_now) as renewal:
                page.clock.fast_forward("01:00")
            assert renewal.value.response() is not None
        expect(lease).to_have_attribute("data-case", now)
        expect(lease).to_have_attribute("data-state", "held")
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen
    done_with(requester, first, second)


def test_an_agent_decides_a_copyright_notice_and_a_reload_keeps_the_statement(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:6]
    claimant = AppealsPerson(stack, f"studio-{run}")
    agent = f"xu-{run}"
    with quiet_queue(stack, "copyright"), agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "copyright-decision")
        try:
            sign_in(page, stack, agent)
            in_queue(page, "copyright")
            appeal = claimant.FileAppeal(
                apb.FileAppealRequest(
                    appeal=notice(claimant, f"studio-{run}@example.com", ""),
                    request_id=uuid.uuid4().hex,
                )
            ).name
            expect(row(page, appeal)).to_be_visible()
            next_until(page, appeal)
            expect(page.locator("#case-state")).to_have_attribute("data-state", "UNDER_REVIEW")
            expect(page.locator("#missing-elements")).to_contain_text("要素齐全")
            form = page.locator("form.decide")
            form.get_by_label("结果").select_option(label="支持")
            form.get_by_label("依据", exact=True).fill("著作权法第十条；用户协议第 4.2 条")
            found = f"原创工程文件早于被投诉视频发布。\n首发链接已核实。{run}"
            form.get_by_label("事实与依据").fill(found)
            form.get_by_label("用户 ID").fill(f"copier-{run}")
            form.get_by_label("姓名或名称").fill("王五")
            form.get_by_label("电子邮箱").fill(f"copier-{run}@example.com")
            enter_sends_nothing(page, form.get_by_label("电子邮箱"))
            # The claimant adds to the notice meanwhile.
            claimant.AddAppealInfo(
                apb.AddAppealInfoRequest(name=appeal, message=f"补充：首发平台链接。{run}")
            )
            form.get_by_role("button", name="提交决定").click()
            stale_then_reload(page)
            expect(page.locator("ol.history")).to_contain_text(f"补充：首发平台链接。{run}")
            expect(form.get_by_label("依据", exact=True)).to_have_value(
                "著作权法第十条；用户协议第 4.2 条"
            )
            expect(form.get_by_label("用户 ID")).to_have_value(f"copier-{run}")
            steps.shot("reloaded")
            form.get_by_role("button", name="提交决定").click()
            expect(page.locator("#case-state")).to_have_attribute("data-state", "UPHELD")
            decision = page.get_by_role("region", name="处理决定")
            expect(decision).to_contain_text("著作权法第十条；用户协议第 4.2 条")
            expect(fact(decision, "事实与依据")).to_have_js_property("innerText", found)
            expect(page.locator("form.decide")).to_have_count(0)
            steps.shot("decided")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == [STALE]
    decided = claimant.GetAppeal(apb.GetAppealRequest(name=appeal))
    assert decided.state == apb.APPEAL_STATE_UPHELD
    assert decided.decision_reasons.ground == "著作权法第十条；用户协议第 4.2 条"


def test_asking_the_filer_for_more_keeps_the_statement_begun_for_the_agents_return(
    browser: Browser, stack: Stack
) -> None:
    """The agent begins a statement of reasons on a copyright notice, then asks
    the filer for more instead: the question goes out, and the statement begun
    is there again when the agent comes back to the case (the question, sent,
    is not)."""
    run = uuid.uuid4().hex[:6]
    claimant = AppealsPerson(stack, f"studio-{run}")
    ground = "著作权法第十条；用户协议第 4.2 条"
    found = f"原创工程文件早于被投诉视频发布。{run}"
    question = f"请提供首发平台链接。{run}"
    with quiet_queue(stack, "copyright"), agent_page(browser) as (page, problems):
        sign_in(page, stack, f"shi-{run}")
        in_queue(page, "copyright")
        appeal = claimant.FileAppeal(
            apb.FileAppealRequest(
                appeal=notice(claimant, f"studio-{run}@example.com", ""),
                request_id=uuid.uuid4().hex,
            )
        ).name
        expect(row(page, appeal)).to_be_visible()
        next_until(page, appeal)
        expect(page.locator("#case-state")).to_have_attribute("data-state", "UNDER_REVIEW")
        form = page.locator("form.decide")
        form.get_by_label("依据", exact=True).fill(ground)
        form.get_by_label("事实与依据").fill(found)
        ask = page.get_by_role("region", name="请提交人补充")
        ask.get_by_label("内容", exact=True).fill(question)
        page.locator("#appeal-request-info").click()
        expect(page.locator("#status")).to_contain_text(f"案件 {number_of(appeal)} 等待用户回复")
        expect(page.locator("#queue")).to_be_visible()

        page.evaluate(f"location.hash = '#{appeal}'")
        expect(page.locator("#case-state")).to_have_attribute("data-state", "INFO_REQUESTED")
        expect(form.get_by_label("依据", exact=True)).to_have_value(ground)
        expect(form.get_by_label("事实与依据")).to_have_value(found)
        expect(ask.get_by_label("内容", exact=True)).to_have_value("")
        expect(page.locator("#status")).to_contain_text("未发送的内容已放回原处")
        assert [p for p in problems.seen if p.startswith("uncaught")] == []


def test_an_agent_ends_a_case_held_for_court_action_with_its_outcome(
    browser: Browser, stack: Stack
) -> None:
    case, claimant, _, email, _, uploader_email = upheld_and_countered(stack)
    run = uuid.uuid4().hex[:6]
    AppealsPerson(stack, f"court-{run}", "agent").RecordCourtAction(
        apb.RecordCourtActionRequest(name=case.name, details="起诉书已送达")
    )
    with agent_page(browser) as (page, problems):
        steps = Steps(page, ARTIFACTS / "court-outcome")
        try:
            sign_in(page, stack, f"court-{run}", f"#{case.name}")
            expect(page.locator("#case-state")).to_have_attribute("data-state", "HELD")
            section = page.get_by_role("region", name="诉讼结果")
            section.get_by_label("法院、案号、裁判日期").fill(f"原告撤诉 {run}")
            # No outcome is chosen for the agent: sent unchosen, the field is refused.
            section.get_by_role("button", name="记录诉讼结果").click()
            expect(section.get_by_label("结果")).to_have_attribute("aria-invalid", "true")
            expect(page.locator("#error")).to_be_visible()
            expect(page.locator("#case-state")).to_have_attribute("data-state", "HELD")
            section.get_by_label("结果").select_option(label="恢复内容（撤诉、驳回或支持上传者）")
            steps.shot("filled")
            section.get_by_role("button", name="记录诉讼结果").click()
            expect(page.locator("#case-state")).to_have_attribute("data-state", "RESTORED")
            # Sent as corrected, the refusal is no longer said.
            expect(page.locator("#error")).to_be_hidden()
            expect(page.get_by_role("region", name="诉讼结果")).to_have_count(0)
            expect(page.locator("ol.history")).to_contain_text(f"原告撤诉 {run}")
            steps.shot("restored")
        except Exception:
            with contextlib.suppress(Exception):
                steps.shot("failure")
            raise
        assert problems.seen == [REFUSED]
    assert claimant.GetAppeal(apb.GetAppealRequest(name=case.name)).state == (
        apb.APPEAL_STATE_RESTORED
    )
    for address in (email, uploader_email):
        wait_until(
            lambda to=address: any(
                m["X-Casemesh-Template"] == "appeal.court_restored" for m in stack.mail.to(to)
            ),
            timeout=30,
        )


SEARCH_TICKETS = re.compile(r"/casemesh\.v1\.TicketService/SearchTickets")


def test_search_results_belong_to_the_last_search_and_list_each_ticket_once(
    browser: Browser, stack: Stack
) -> None:
    """While a search runs, "More" waits; a page repeated by the index adds
    nothing twice; and a "More" answered after a newer search adds nothing
    of the old search to the new results."""
    run = uuid.uuid4().hex[:6]
    many = Client(stack.gateway, stack.secret, f"pages-a-{run}")
    one = Client(stack.gateway, stack.secret, f"pages-b-{run}")
    for i in range(25):
        new_ticket(many, f"pages-a-{run}@example.com", "other.general", f"第 {i} 个 {run}")
    newest = new_ticket(one, f"pages-b-{run}@example.com", "other.general", f"最新 {run}")
    agent = Client(stack.gateway, stack.secret, f"pager-{run}", ("agent",))
    wait_until(
        lambda: (
            len(agent.SearchTickets(pb.SearchTicketsRequest(text=run, page_size=50)).tickets) == 26
        ),
        timeout=30,
    )
    agent.close()
    held: list[Route] = []

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"pager-{run}")
        page.get_by_role("button", name="查找工单").first.click()
        results = page.locator("#search-results li")
        more = page.locator("#search-more")
        page.locator("#search-text").fill(run)
        with page.expect_response(SEARCH_TICKETS) as first:
            page.locator("#search-form button[type=submit]").click()
        expect(results).to_have_count(25)
        expect(more).to_be_visible()
        first_page = first.value.body()

        # While a search runs, "More" (which pages on the old results) waits.
        page.route(SEARCH_TICKETS, held_back(held))
        page.locator("#search-form button[type=submit]").click()
        pump_until(page, lambda: bool(held))
        expect(more).to_be_disabled()
        held.pop().continue_()
        expect(more).to_be_enabled()
        expect(results).to_have_count(25)
        page.unroute(SEARCH_TICKETS)

        # The index answers "More" with tickets already listed: none twice.
        page.route(
            SEARCH_TICKETS,
            lambda route: route.fulfill(
                status=200, content_type="application/json", body=first_page
            ),
        )
        more.click()
        expect(more).to_be_enabled()
        expect(results).to_have_count(25)
        # It added nothing: the focus goes to the count of what is listed.
        expect(page.locator("#search-count")).to_be_focused()
        page.unroute(SEARCH_TICKETS)

        # "More" is on its way when the agent searches for something else;
        # its late answer adds nothing to the new results.
        page.route(SEARCH_TICKETS, held_back(held))
        more.click()
        pump_until(page, lambda: bool(held))
        page.locator("#search-text").fill("")
        page.locator("#search-requester").fill(f"pages-b-{run}")
        page.locator("#search-form button[type=submit]").click()
        expect(results).to_have_count(1)
        expect(results).to_contain_text(newest.name.split("/")[1][:8].upper())
        held.pop().continue_()
        page.unroute(SEARCH_TICKETS)
        expect(more).to_be_enabled()
        expect(results).to_have_count(1)
        expect(results).to_contain_text(newest.name.split("/")[1][:8].upper())
        expect(more).to_be_hidden()
        assert problems.seen == []
    many.close()
    one.close()


def test_more_on_the_last_page_moves_the_focus_to_the_first_result_it_added(
    browser: Browser, stack: Stack
) -> None:
    """ "More" goes with the last page: the focus does not fall to the page's
    start but to the first result that page added."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"last-page-{run}")
    made = [
        new_ticket(requester, f"last-page-{run}@example.com", "other.general", f"翻页 {i} {run}")
        for i in range(2)
    ]
    agent = Client(stack.gateway, stack.secret, f"pager-{run}", ("agent",))
    wait_until(
        lambda: len(agent.SearchTickets(pb.SearchTicketsRequest(text=run)).tickets) == 2,
        timeout=30,
    )
    agent.close()
    asked: list[str] = []

    def first_page_of_one(route: Route) -> None:
        """The first search asks for pages of one (so one ticket is left for
        "More"); the ones after it go as the page sent them."""
        request = json.loads(route.request.post_data or "{}")
        if asked:
            route.continue_()
        else:
            route.continue_(post_data=json.dumps({**request, "pageSize": 1}))
        asked.append(route.request.url)

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"pager-{run}")
        page.get_by_role("button", name="查找工单").first.click()
        page.route(SEARCH_TICKETS, first_page_of_one)
        results = page.locator("#search-results li")
        more = page.locator("#search-more")
        page.locator("#search-text").fill(run)
        page.locator("#search-form button[type=submit]").click()
        expect(results).to_have_count(1)
        more.click()
        expect(results).to_have_count(2)
        expect(more).to_be_hidden()
        expect(results.nth(1).get_by_role("link")).to_be_focused()
        assert len(asked) == 2
        assert problems.seen == []
    for ticket in made:
        requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_an_article_saved_without_a_title_says_so_beside_the_title(
    browser: Browser, stack: Stack
) -> None:
    """No browser tooltip in the computer's language: the console's own
    message, beside the field the gateway names."""
    run = uuid.uuid4().hex[:6]
    with agent_page(browser) as (page, problems):
        open_articles_as_editor(page, stack, f"editor-{run}")
        page.locator("#article-slug").fill(f"articles/untitled-{run}")
        page.locator("#article-category").select_option("account.login")
        page.locator("#article-body").fill("先确认旧号码是否停用。")
        page.locator("#article-form button[type=submit]").click()
        expect(page.locator("#error-message")).to_have_text("请修改标出的内容后再提交。")
        expect(page.locator("#article-title-error")).to_be_visible()
        expect(page.locator("#article-title-error")).not_to_be_empty()
        expect(page.locator("#article-title")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#article-title")).to_be_focused()
        assert problems.seen == [REFUSED]


def test_an_assignment_whose_answer_was_lost_is_sent_again_and_lands_once(
    browser: Browser, stack: Stack
) -> None:
    """The assignment reached the service, its answer was lost: pressed
    again, it is the same request, not a change someone else made."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"assign-{run}")
    ticket = new_ticket(requester, f"assign-{run}@example.com", "other.general", f"分配 {run}")
    lost: list[str] = []
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"分配 {run}")
        page.route("**/casemesh.v1.TicketService/AssignTicket", answer_lost_once(lost))
        page.locator("#assign").click()
        expect(page.locator("#error-message")).to_contain_text("暂时连不上服务器")
        page.locator("#assign").click()
        expect(page.locator("#status")).to_contain_text("已分配")
        expect(page.locator("#error")).to_be_hidden()
        assert lost
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    colleague = Client(stack.gateway, stack.secret, f"colleague-{run}", ("agent",))
    assigned = colleague.GetTicket(pb.GetTicketRequest(name=ticket.name))
    colleague.close()
    assert assigned.assignee == f"he-{run}"
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_assigning_a_ticket_keeps_the_reply_being_written_and_a_reply_keeps_the_assignee(
    browser: Browser, stack: Stack
) -> None:
    """The agent writing a reply assigns the ticket first: the assignment
    shows, its boxes are empty again, and the reply stays in its box. A name
    typed for the assignee, not yet sent, stays while a reply is sent."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"assign-{run}")
    ticket = new_ticket(requester, f"assign-{run}@example.com", "other.general", f"分配 {run}")
    reply = f"您好，已转交账户组处理。{run}"
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"kong-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"分配 {run}")
        assigning = page.get_by_role("region", name="分配", exact=True)
        who = assigning.get_by_label("处理客服")
        priority = assigning.get_by_label("优先级")
        page.locator("#reply").fill(reply)
        who.fill(f"account-team-{run}")
        priority.select_option(label="高")
        page.locator("#assign").click()
        expect(page.locator("#status")).to_have_text("已分配。")
        facts = page.locator("dl.facts")
        expect(facts).to_contain_text(f"account-team-{run}")
        expect(page.locator("#reply")).to_have_value(reply)
        expect(who).to_have_value("")
        expect(priority).to_have_value("0")

        who.fill(f"billing-team-{run}")
        page.locator("#send-reply").click()
        expect(page.locator("#status")).to_have_text("回复已发送。")
        expect(page.locator("ol.history")).to_contain_text(reply)
        expect(page.locator("#reply")).to_have_value("")
        expect(who).to_have_value(f"billing-team-{run}")
        assert problems.seen == []
    done_with(requester, ticket)


HOLD_TICKET = re.compile(r"/casemesh\.v1\.TicketService/HoldTicket")
ADD_COMMENT = re.compile(r"/casemesh\.v1\.TicketService/AddComment")
GET_TICKET = re.compile(r"/casemesh\.v1\.TicketService/GetTicket")


def test_a_hold_answered_after_the_agent_took_the_next_case_leaves_that_case_open_and_held(
    browser: Browser, stack: Stack
) -> None:
    """The agent puts a ticket on hold and takes the next case while the hold
    is on its way: once it lands, the case now on screen stays open and
    held; the hold ends nothing but the ticket put on hold."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"holder-{run}")
    email = f"holder-{run}@example.com"
    late: list[Route] = []
    with quiet_queue(stack, "ads"), agent_page(browser) as (page, problems):
        first, second = first_of_two_opened(
            page, stack, f"zhou-{run}", "ads", requester, email, "ads.delivery_data", f"挂起 {run}"
        )
        lease = page.locator("#lease")
        page.route(HOLD_TICKET, held_back(late))
        page.locator("#reply").fill(f"等待广告平台排查。{run}")
        page.locator("#hold").click()
        pump_until(page, lambda: bool(late))
        # The reason is still in its box while the hold is on its way: "n" asks.
        claims = int(lease.get_attribute("data-claims") or "0")
        page.evaluate("document.activeElement?.blur()")
        page.keyboard.press("n")
        leave = page.get_by_role("dialog", name="还有未发送的回复")
        leave.get_by_role("button", name="仍然领取下一个").click()
        expect(lease).to_have_attribute("data-claims", str(claims + 1))
        now = lease.get_attribute("data-case") or ""
        assert now != first.name
        heading = page.locator("#case-heading")
        expect(heading).to_contain_text(number_of(now))

        late.pop().continue_()
        expect(page.locator("#status")).to_contain_text(f"案件 {number_of(first.name)} 已挂起")
        expect(page.locator("#case")).to_be_visible()
        expect(heading).to_contain_text(number_of(now))
        expect(lease).to_have_attribute("data-case", now)
        expect(lease).to_have_attribute("data-state", "held")
        page.unroute(HOLD_TICKET)
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    held = requester.GetTicket(pb.GetTicketRequest(name=first.name))
    assert held.status == pb.TICKET_STATUS_ON_HOLD
    done_with(requester, first, second)


def test_a_reply_answered_after_the_agent_left_the_ticket_is_not_given_back_as_a_draft(
    browser: Browser, stack: Stack
) -> None:
    """The agent sends a reply and goes back to the queue while it is on its
    way: once it lands, the agent is not pulled back to the ticket, and
    opening it again shows the reply sent, not back in the box to be sent
    twice."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"sender-{run}")
    email = f"sender-{run}@example.com"
    ticket = new_ticket(requester, email, "other.general", f"在途 {run}")
    other = new_ticket(requester, email, "other.general", f"另一个 {run}")
    reply = f"您好，我们正在排查。{run}"
    late: list[Route] = []
    read: list[bytes] = []

    def reading(route: Route) -> None:
        read.append(route.request.post_data_buffer or b"")
        route.continue_()

    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"lu-{run}", f"#{ticket.name}")
        heading = page.locator("#case-heading")
        expect(heading).to_contain_text(f"在途 {run}")
        page.route(ADD_COMMENT, held_back(late))
        page.locator("#reply").fill(reply)
        page.locator("#send-reply").click()
        pump_until(page, lambda: bool(late))
        page.locator("#back-to-queue").click()
        expect(page.locator("#queue")).to_be_visible()

        page.route(GET_TICKET, reading)
        late.pop().continue_()
        expect(page.locator("#status")).to_have_text("回复已发送。")
        # The page reads the ticket the agent opens next, and that one only
        # (pulled back to the ticket replied on, it would read that first).
        page.evaluate(f"location.hash = '#{other.name}'")
        expect(heading).to_contain_text(f"另一个 {run}")
        assert [r for r in read if ticket.name.encode() in r] == []
        page.unroute(GET_TICKET)
        page.unroute(ADD_COMMENT)
        page.evaluate(f"location.hash = '#{ticket.name}'")
        expect(heading).to_contain_text(f"在途 {run}")
        expect(page.locator("ol.history")).to_contain_text(reply)
        expect(page.locator("#reply")).to_have_value("")
        assert [p for p in problems.seen if p.startswith("uncaught")] == []
    done_with(requester, ticket, other)


def number_of(name: str) -> str:
    """A case's short number, as the console shows it."""
    return name.split("/")[1][:8].upper()


def test_a_reply_left_unsent_on_a_case_is_given_back_and_n_asks_before_giving_it_up(
    browser: Browser, stack: Stack
) -> None:
    """What the agent typed on a case and did not send waits for them:
    opening the requester's other ticket by its link and coming back gives it
    back. "n" on the case they hold asks first: "stay" keeps the case and the
    reply; taking the next case anyway gives the case back, and the reply is
    there again when the agent opens the case."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"leaver-{run}")
    email = f"leaver-{run}@example.com"
    other = new_ticket(requester, email, "account.login", f"换手机后无法登录 {run}")
    reply = f"您好，请提供广告账户 ID 和出错时间。{run}"
    heading = "#case-heading"
    with quiet_queue(stack, "ads"), agent_page(browser) as (page, problems):
        sign_in(page, stack, f"wu-{run}")
        in_queue(page, "ads")
        ticket = new_ticket(requester, email, "ads.delivery_data", f"投放数据不更新 {run}")
        # Each ticket's page links the other (the requester's history).
        indexed(stack, f"leaver-{run}", 2)
        expect(row(page, ticket.name)).to_be_visible()
        next_until(page, ticket.name)
        expect(page.locator(heading)).to_contain_text(f"投放数据不更新 {run}")
        page.locator("#reply").fill(reply)

        others = page.get_by_role("region", name="提交人的其他工单")
        others.get_by_role("link", name=number_of(other.name)).click()
        expect(page.locator(heading)).to_contain_text(f"换手机后无法登录 {run}")
        expect(page.locator("#reply")).to_have_value("")
        others.get_by_role("link", name=number_of(ticket.name)).click()
        expect(page.locator(heading)).to_contain_text(f"投放数据不更新 {run}")
        expect(page.locator("#reply")).to_have_value(reply)
        expect(page.locator("#status")).to_contain_text("未发送的内容已放回原处")

        lease = page.locator("#lease")
        claims = lease.get_attribute("data-claims")
        leave = page.get_by_role("dialog", name="还有未发送的回复")
        page.evaluate("document.activeElement?.blur()")  # keys typed into a field are text
        page.keyboard.press("n")
        expect(leave).to_be_visible()
        leave.get_by_role("button", name="留在此案件").click()
        expect(leave).to_be_hidden()
        expect(lease).to_have_attribute("data-case", ticket.name)
        expect(lease).to_have_attribute("data-claims", claims or "")
        expect(page.locator("#reply")).to_have_value(reply)

        page.keyboard.press("n")
        leave.get_by_role("button", name="仍然领取下一个").click()
        expect(lease).not_to_have_attribute("data-case", ticket.name)
        # Left for the next case (or the queue): the address no longer names it.
        expect(page).not_to_have_url(re.compile(f"#{ticket.name}$"))
        page.evaluate(f"location.hash = '#{ticket.name}'")
        expect(page.locator(heading)).to_contain_text(f"投放数据不更新 {run}")
        expect(page.locator("#reply")).to_have_value(reply)
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen
    done_with(requester, ticket, other)


def done_with(requester: Client, *tickets: pb.Ticket) -> None:
    """The test's tickets cancelled (out of the queue), its client closed."""
    for made in tickets:
        requester.CancelTicket(pb.CancelTicketRequest(name=made.name, reason="test over"))
    requester.close()


def test_a_case_that_cannot_be_opened_shows_no_other_case_and_is_read_again_on_reload(
    browser: Browser, stack: Stack
) -> None:
    """Another case, opened by its link, cannot be read (the network is
    gone): the page shows neither it nor the last case's heading over an
    empty page, says why, and "Reload" reads it."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"unopened-{run}")
    email = f"unopened-{run}@example.com"
    first = new_ticket(requester, email, "other.general", f"先打开的 {run}")
    second = new_ticket(requester, email, "other.general", f"打不开的 {run}")
    get_ticket = "**/casemesh.v1.TicketService/GetTicket"
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"qian-{run}", f"#{first.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"先打开的 {run}")
        # Opened all through (its requester's other tickets come last).
        expect(page.get_by_role("region", name="提交人的其他工单")).to_be_visible()
        page.route(get_ticket, lambda route: route.abort("internetdisconnected"))
        page.evaluate(f"location.hash = '#{second.name}'")
        expect(page.locator("#error-message")).to_have_text("暂时连不上服务器，请稍后重试。")
        expect(page.locator("#case-heading")).to_have_text("")
        expect(page.locator("#case-body")).to_be_empty()
        page.unroute(get_ticket)
        page.get_by_role("button", name="重新加载").click()
        expect(page.locator("#case-heading")).to_contain_text(f"打不开的 {run}")
        expect(page.locator("#error")).to_be_hidden()
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen
    done_with(requester, first, second)


@pytest.mark.parametrize("away", ["network", "proxy"])
def test_settings_that_cannot_be_read_say_the_server_is_away_and_are_read_again(
    browser: Browser, stack: Stack, away: str
) -> None:
    """config.json cannot be fetched (the network is gone, or the proxy in
    front answers 503 while the gateway is away): no "config.json is
    invalid" and no development sign-in, but the server cannot be reached,
    and "Reload" reads it again, here to offer the provider's sign-in."""
    settings = {"oidc": {"issuer": "http://127.0.0.1:9/realms/casemesh", "clientId": "console"}}
    tried: list[str] = []

    def away_once(route: Route) -> None:
        if tried:
            route.fulfill(json=settings)
        elif away == "proxy":
            route.fulfill(status=503, body="no healthy upstream")
        else:
            route.abort("internetdisconnected")
        tried.append(route.request.url)

    with agent_page(browser) as (page, problems):
        page.route("**/console/config.json", away_once)
        page.goto(f"{stack.http}/console/")
        expect(page.locator("#error-message")).to_have_text("暂时连不上服务器，请稍后重试。")
        expect(page.locator("#dev-sign-in")).to_be_hidden()
        page.get_by_role("button", name="重新加载").click()
        expect(page.locator("#provider-sign-in")).to_be_visible()
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#dev-sign-in")).to_be_hidden()
        assert len(tried) == 2
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen


def test_a_macro_asks_before_replacing_the_reply_the_agent_typed(
    browser: Browser, stack: Stack
) -> None:
    """A macro chosen over words the agent typed asks first: kept, the words
    stay and the list shows no macro; replaced, the macro's words fill the
    box. Over a macro's own words another macro needs no question (arrowing
    through the list picks each in turn)."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"macro-{run}")
    ticket = new_ticket(requester, f"macro-{run}@example.com", "other.general", f"宏 {run}")
    typed = f"您好，我正在查看您的问题。{run}"
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"zhao-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"宏 {run}")
        reply, macro = page.locator("#reply"), page.locator("#macro")
        ask = page.get_by_role("dialog", name="替换已输入的内容？")
        reply.fill(typed)
        macro.select_option("solved-general")
        expect(ask).to_be_visible()
        ask.get_by_role("button", name="保留我输入的内容").click()
        expect(ask).to_be_hidden()
        expect(reply).to_have_value(typed)
        expect(macro).to_have_value("")

        macro.select_option("solved-general")
        ask.get_by_role("button", name="用宏替换").click()
        expect(ask).to_be_hidden()
        expect(reply).to_have_value(re.compile("问题已经处理完毕"))
        expect(page.locator("#solve")).to_have_class(re.compile("suggested"))

        macro.select_option("need-screenshot")
        expect(reply).to_have_value(re.compile("出错页面的截图"))
        expect(ask).to_be_hidden()
        expect(page.locator("#request-info")).to_have_class(re.compile("suggested"))
        assert problems.seen == []
    done_with(requester, ticket)


def test_a_ticket_shows_before_its_requesters_other_tickets_are_found(
    browser: Browser, stack: Stack
) -> None:
    """The search for the requester's other tickets is slow: the ticket shows
    and can be answered meanwhile, and the list fills in when found. One
    found after the agent moved to another ticket stays off that one."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"slowlist-{run}")
    email = f"slowlist-{run}@example.com"
    first = new_ticket(requester, email, "other.general", f"先开的 {run}")
    second = new_ticket(requester, email, "other.general", f"后开的 {run}")
    indexed(stack, f"slowlist-{run}", 2)
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    with agent_page(browser) as (page, problems):
        page.route(SEARCH_TICKETS, hold)
        others = page.get_by_role("region", name="提交人的其他工单")
        sign_in(page, stack, f"sun-{run}", f"#{first.name}")
        pump_until(page, lambda: bool(held))
        expect(page.locator("#case")).to_be_visible()
        expect(page.locator("#case-heading")).to_contain_text(f"先开的 {run}")
        page.locator("#reply").fill(f"正在查看。{run}")
        expect(page.locator("#reply")).to_have_value(f"正在查看。{run}")
        expect(others).to_have_count(0)
        held.pop().continue_()
        expect(others.get_by_role("link", name=number_of(second.name))).to_be_visible()

        # Found late, after the agent moved on: the list of the first ticket's
        # requester history is not put on the second's page.
        page.evaluate(f"location.hash = '#{second.name}'")
        expect(page.locator("#case-heading")).to_contain_text(f"后开的 {run}")
        pump_until(page, lambda: bool(held))
        page.evaluate(f"location.hash = '#{first.name}'")
        expect(page.locator("#case-heading")).to_contain_text(f"先开的 {run}")
        pump_until(page, lambda: len(held) == 2)
        late, now = held
        with page.expect_event("requestfinished", lambda r: r == late.request):
            late.continue_()
        now.continue_()
        expect(others.get_by_role("link", name=number_of(second.name))).to_be_visible()
        expect(others).to_have_count(1)
        expect(others.get_by_role("link")).to_have_count(1)
        assert all(p.startswith("Failed to load resource") for p in problems.seen), problems.seen
    done_with(requester, first, second)


def test_an_error_about_one_case_leaves_with_it(browser: Browser, stack: Stack) -> None:
    """A refused reply's alert (and its "Reload") is about its case: it goes
    when the agent opens another case, and when they go back to the queue."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"alerted-{run}")
    colleague = Client(stack.gateway, stack.secret, f"colleague-{run}", ("agent",))
    email = f"alerted-{run}@example.com"
    first = new_ticket(requester, email, "other.general", f"出错的 {run}")
    second = new_ticket(requester, email, "other.general", f"下一个 {run}")
    error = "#error"
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"ma-{run}", f"#{first.name}")
        for ticket, subject in ((first, f"出错的 {run}"), (second, f"下一个 {run}")):
            expect(page.locator("#case-heading")).to_contain_text(subject)
            colleague.AddComment(
                pb.AddCommentRequest(name=ticket.name, body=f"同事备注 {run}", internal=True)
            )
            page.locator("#reply").fill(f"您好。{run}")
            page.get_by_role("button", name="发送回复").click()
            expect(page.locator("#error-message")).to_contain_text("已被其他人修改")
            expect(page.get_by_role("button", name="重新加载")).to_be_visible()
            if ticket is first:
                page.evaluate(f"location.hash = '#{second.name}'")
                expect(page.locator("#case-heading")).to_contain_text(f"下一个 {run}")
            else:
                page.locator("#back-to-queue").click()
                expect(page.locator("#queue")).to_be_visible()
            expect(page.locator(error)).to_be_hidden()
        assert problems.seen == [STALE, STALE]
    colleague.close()
    done_with(requester, first, second)


def test_evidence_shown_or_downloaded_by_keyboard_takes_the_focus_and_is_said(
    browser: Browser, stack: Stack
) -> None:
    """ "Show" pressed by keyboard goes with the other actions: the focus
    moves to the video shown, and the page says it is shown; "Download" moves
    it to the link of the file saved."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"keyboard-{run}")
    files = EvidenceClient(requester)
    video, paper = files.upload(mp4(), "录屏.mp4"), files.upload(pdf(), "合同.pdf")
    ticket = with_files(requester, f"键盘 {run}", "录屏和合同附上。", video, paper)
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"he-{run}", f"#{ticket.name}")
        shown = page.locator(f'figure[data-evidence="{video.name}"]')
        saved = page.locator(f'figure[data-evidence="{paper.name}"]')
        shown.get_by_role("button", name="显示 录屏.mp4").focus()
        page.keyboard.press("Enter")
        expect(shown).to_have_attribute("data-state", "shown")
        expect(shown.locator("video")).to_be_focused()
        expect(page.locator("#status")).to_have_text("已显示 录屏.mp4。")

        saved.get_by_role("button", name="下载 合同.pdf").focus()
        with page.expect_download() as download:
            page.keyboard.press("Enter")
        assert download.value.suggested_filename == "合同.pdf"
        expect(saved.get_by_role("link", name="下载 合同.pdf")).to_be_focused()
        expect(page.locator("#status")).to_have_text("正在下载 合同.pdf。")
        assert problems.seen == []
    done_with(requester, ticket)


def test_a_reply_sent_as_the_language_changes_is_not_left_to_be_sent_again(
    browser: Browser, stack: Stack
) -> None:
    """The agent changes the console's language while their reply is on its
    way: the page drawn in the new language carries the reply over, and once
    it is sent it leaves that box too (sent once, not there to send twice)."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"bilingual-{run}")
    ticket = new_ticket(requester, f"bilingual-{run}@example.com", "other.general", f"语言 {run}")
    reply = f"您好，我们正在排查。{run}"
    late: list[Route] = []
    with agent_page(browser) as (page, problems):
        sign_in(page, stack, f"lin-{run}", f"#{ticket.name}")
        expect(page.locator("#case-heading")).to_contain_text(f"语言 {run}")
        page.route(ADD_COMMENT, held_back(late))
        page.locator("#reply").fill(reply)
        page.locator("#send-reply").click()
        pump_until(page, lambda: bool(late))
        page.locator("#language").select_option("en")
        expect(page.locator("#send-reply")).to_have_text("Send reply")
        expect(page.locator("#reply")).to_have_value(reply)
        late.pop().continue_()
        expect(page.locator("#status")).to_have_text("Reply sent.")
        expect(page.locator("ol.history")).to_contain_text(reply)
        expect(page.locator("#reply")).to_have_value("")
        page.unroute(ADD_COMMENT)
        assert problems.seen == []
    assert comments_on(requester, ticket.name) == [reply]
    done_with(requester, ticket)

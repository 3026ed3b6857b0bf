"""The self-service page in a real browser (Debian's Chromium, driven through
Playwright), over the gateway's HTTP port: a user signs in, searches the help
centre in Chinese, reads an article that does not help, opens a ticket with a
screenshot, sees it received with its history, and gets the e-mail. Once over
Connect, once over gRPC-Web. Screenshots of every step are kept in
`.run/test-artifacts/browser/<transport>/`. And a user downloads a copy of
their data, over each transport (a large one saved whole, never held twice
over); finds their ticket in "my tickets" (where every notification sends
them), answers the agent and rates the outcome; and attaches a photo whose
name lies about its type."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from casemesh.platform.identity import mint_token
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import REPO, Stack
from tests.e2e.test_evidence import png
from tests.e2e.test_export import ticket_with_file
from tests.e2e.test_helpcenter import Reader, figures
from tests.e2e.test_reports import Person
from tests.support import Client, open_ticket, wait_until

ARTIFACTS = REPO / ".run" / "test-artifacts" / "browser"
# The page the gateway serves, built by `cd clients/web && npm ci && npm run build`.
PAGE = REPO / "clients" / "web" / "selfservice" / "dist" / "index.html"
TRANSPORTS = {"connect": "", "grpc-web": "?transport=grpc-web"}
# A host name the browser takes to this machine, as it would the site's own.
APP_HOST = "help.casemesh.test"


def app_page(stack: Stack) -> str:
    """The self-service page's origin under APP_HOST."""
    return f"http://{APP_HOST}:{urlsplit(stack.http).port}"


# The help centre's seeded zh-CN article that a search for "无法登录" finds.
ARTICLE = "提示密码错误无法登录"
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
# What Chromium logs for a call refused with an HTTP error status (Connect
# does so; gRPC-Web answers 200 with the status in its trailers).
REFUSED_LOAD = "Failed to load resource: the server responded with a status of 400"


def missing(what: str) -> NoReturn:
    # A developer without it may go on; CI must not pass without this test.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (never a browser downloaded by Playwright), and the
    built page; asked for before the stack, so a missing one costs nothing."""
    if not PAGE.exists():
        missing(
            f"{PAGE.relative_to(REPO)} is not built (cd clients/web && npm ci && npm run build)"
        )
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        missing("Chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser(chromium: str, stack: Stack) -> Iterator[Browser]:
    # A loaded machine may take seconds to upload, store, and answer.
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                # The page as the app opens it: on a name not this machine's
                # own, over HTTPS in production (here plain HTTP, taken as such).
                f"--host-resolver-rules=MAP {APP_HOST} 127.0.0.1",
                f"--unsafely-treat-insecure-origin-as-secure={app_page(stack)}",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


class Steps:
    """Numbered screenshots of what the user saw, one per step."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_user_the_help_centre_did_not_help_opens_a_ticket_with_a_screenshot(
    browser: Browser, stack: Stack, transport: str
) -> None:
    run = uuid.uuid4().hex[:8]
    user = f"web-{transport}-{run}"
    email = f"{user}@example.com"
    screenshot = png()

    agent = Reader(stack, f"web-figures-{run}", "agent")
    before = figures(agent)
    context = browser.new_context(locale="zh-CN", viewport={"width": 1024, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"uncaught: {err}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", console)
    # How the page called the API: the wire format of each RPC it made.
    formats: set[str] = set()
    page.on(
        "request",
        lambda r: (
            formats.add(f"{r.method} {r.headers.get('content-type', '(none)').split(';')[0]}")
            if "/casemesh.v1." in r.url
            else None
        ),
    )
    steps = Steps(page, ARTIFACTS / transport)
    try:
        page.goto(f"{stack.http}/{TRANSPORTS[transport]}")
        expect(page.get_by_role("heading", name="登录", level=1)).to_be_visible()
        steps.shot("sign-in")

        page.get_by_label("用户名").fill(user)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        expect(page.get_by_text(f"已登录：{user}")).to_be_visible()
        steps.shot("signed-in")

        page.get_by_role("searchbox", name="描述您的问题").fill("无法登录")
        page.get_by_role("button", name="搜索", exact=True).click()
        result = page.get_by_role("button", name=ARTICLE)
        expect(result).to_be_visible()
        steps.shot("search-results")

        result.click()
        expect(page.get_by_role("heading", name=ARTICLE, level=1)).to_be_visible()
        expect(page.get_by_role("heading", name="这解决了您的问题吗？")).to_be_visible()
        steps.shot("article")

        page.get_by_role("button", name="没有解决").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        # The help centre's category for what was read, and what was tried.
        expect(page.get_by_label("问题分类")).to_have_value("account.login")
        expect(page.get_by_label("问题描述")).to_have_value(re.compile(ARTICLE))
        steps.shot("ticket-form")

        subject = f"网页端登录一直失败 {run}"
        described = "每次输入密码都提示错误。\n已确认大小写，截图附上。"
        page.get_by_label("标题").fill(subject)
        page.get_by_label("问题描述").fill(described)
        page.get_by_role("checkbox", name="电子邮件").check()
        chosen: FilePayload = {
            "name": "登录失败.png",
            "mimeType": "image/png",
            "buffer": screenshot,
        }
        page.get_by_label("截图（可选）").set_input_files(files=[chosen])
        expect(page.get_by_role("progressbar", name="上传进度")).to_be_visible()
        steps.shot("filled-without-address")

        # E-mail updates without an address: the gateway's field violation is
        # shown next to the field, and nothing is opened.
        page.get_by_role("button", name="提交工单").click()
        email_input = page.get_by_label("电子邮箱")
        expect(email_input).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_text("选择邮件通知时必须填写电子邮箱。")).to_be_visible()
        expect(page.get_by_role("progressbar", name="上传进度")).to_have_attribute("value", "100")
        steps.shot("field-error")

        email_input.fill(email)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        status = page.locator("#ticket-status")
        expect(status).to_have_attribute("data-status", "NEW")
        expect(status).to_have_text("已受理，等待客服处理")
        expect(page.get_by_text(subject)).to_be_visible()
        # What they wrote, as they wrote it: its line break shows.
        expect(page.locator("#ticket-description")).to_have_js_property("innerText", described)
        history = page.get_by_role("list", name="处理记录").get_by_role("listitem")
        expect(history).to_have_count(1)
        expect(history.first).to_contain_text("工单已提交")
        expect(history.first).to_contain_text("附件：1 个")
        expect(history.first.locator("time")).to_have_attribute("datetime", ISO_TIME)
        steps.shot("ticket")
        ticket_name = page.url.rpartition("#")[2]
    except Exception:
        with contextlib.suppress(Exception):  # the failure itself matters more
            steps.shot("failure")
        raise
    finally:
        context.close()

    number = ticket_name.split("/")[1][:8].upper()
    mail = wait_until(lambda: stack.mail.to(email), timeout=60)[0]
    assert mail["To"] == email
    assert "工单已受理" in mail["Subject"] and number in mail["Subject"]

    # The screenshot reached the ticket as the bytes the user chose, once.
    ticket = Client(stack.gateway, stack.secret, user).GetTicket(
        pb.GetTicketRequest(name=ticket_name)
    )
    assert [e.sha256 for e in ticket.evidence] == [hashlib.sha256(screenshot).hexdigest()]
    assert ticket.subject == subject and ticket.status == pb.TICKET_STATUS_NEW
    # The help centre counted the "not solved", once, with the ticket it led to.
    assert figures(agent).tickets_after_help == before.tickets_after_help + 1

    # Every call went over the transport under test (Connect: JSON), as a
    # POST: what a page reads with (a search's words) stays out of URLs.
    if transport == "grpc-web":
        assert formats == {"POST application/grpc-web+proto"}, formats
    else:
        assert formats == {"POST application/json"}, formats

    # No console errors, but the refused submit's failed load (Connect only).
    assert [p for p in problems if REFUSED_LOAD not in p] == []
    assert len(problems) <= (1 if transport == "connect" else 0)


@contextlib.contextmanager
def signed_in(
    browser: Browser, stack: Stack, user: str, transport: str = "connect", **context: Any
) -> Iterator[tuple[Page, list[str]]]:
    """The self-service page in Chinese over `transport`, signed in as `user`
    (`context`: more of the browser context's options); and the uncaught
    errors it met (checked to be none when the test ends well)."""
    browsing = browser.new_context(locale="zh-CN", **context)
    browsing.set_default_timeout(30_000)
    page = browsing.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"uncaught: {err}"))
    try:
        page.goto(f"{stack.http}/{TRANSPORTS[transport]}")
        page.get_by_label("用户名").fill(user)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        yield page, problems
    finally:
        browsing.close()
    assert problems == []


def test_a_user_helped_twice_answers_for_each_article_in_its_own_session(
    browser: Browser, stack: Stack
) -> None:
    """Helped by one article, the user starts over: the old results go with
    the old session, and the next article read is answered for in a new one."""
    user = f"web-twice-{uuid.uuid4().hex[:8]}"
    with signed_in(browser, stack, user) as (page, _):
        for _ in range(2):
            page.get_by_role("searchbox", name="描述您的问题").fill("无法登录")
            page.get_by_role("button", name="搜索", exact=True).click()
            page.get_by_role("button", name=ARTICLE).click()
            page.get_by_role("button", name="解决了", exact=True).click()
            expect(page.get_by_text("很高兴帮到您！")).to_be_visible()
            expect(page.locator("#error")).to_be_hidden()
            page.get_by_role("button", name="返回帮助中心").first.click()
            expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
            expect(page.get_by_role("button", name=ARTICLE)).to_have_count(0)
            expect(page.get_by_role("searchbox", name="描述您的问题")).to_have_value("")


def test_a_ticket_form_left_to_read_more_keeps_what_the_user_typed(
    browser: Browser, stack: Stack
) -> None:
    """Not helped, the user starts a ticket, goes back to the help centre to
    read again and returns: what they typed is still there, and the help
    centre's suggestions (the subject naming the category by its label) fill
    only what they left empty. Helped after all (a new help session), the
    next form starts blank."""
    user = f"web-keep-{uuid.uuid4().hex[:8]}"
    described = "每次输入密码都提示错误，已确认大小写。"
    with signed_in(browser, stack, user) as (page, _):
        page.get_by_role("searchbox", name="描述您的问题").fill("无法登录")
        page.get_by_role("button", name="搜索", exact=True).click()
        page.get_by_role("button", name=ARTICLE).click()
        page.get_by_role("button", name="没有解决").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        subject = page.get_by_label("标题")
        suggested = "自助服务未能解决：无法登录"  # the category by its label
        expect(subject).to_have_value(suggested)
        subject.fill("")
        page.get_by_label("问题描述").fill(described)

        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name=ARTICLE).click()
        page.get_by_role("button", name="没有解决").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("问题描述")).to_have_value(described)
        expect(subject).to_have_value(suggested)
        expect(page.get_by_label("问题分类")).to_have_value("account.login")

        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name=ARTICLE).click()
        page.get_by_role("button", name="解决了", exact=True).click()
        expect(page.get_by_text("很高兴帮到您！")).to_be_visible()
        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("问题描述")).to_have_value("")
        expect(subject).to_have_value("")


def test_a_user_follows_a_guide_to_its_end_one_answer_at_a_time(
    browser: Browser, stack: Stack
) -> None:
    """Each answer names its question, and every answer is held while one is
    on its way: two taps on the first question answer it once."""
    user = f"web-guide-{uuid.uuid4().hex[:8]}"
    with signed_in(browser, stack, user) as (page, _):
        page.get_by_role("button", name="登录遇到问题").click()
        expect(page.get_by_text("您遇到的是哪种情况？")).to_be_visible()
        first = page.get_by_role("button", name="收不到验证码")
        first.dblclick()
        expect(page.get_by_text("绑定的手机号还在使用吗？")).to_be_visible()
        page.get_by_role("button", name="在用").click()
        expect(page.locator("#flow-ending")).to_be_visible()
        expect(page.locator("#error")).to_be_hidden()
        path = page.locator("#flow-path li")
        expect(path).to_have_count(2)
        expect(path.first).to_contain_text("您遇到的是哪种情况？ → 收不到验证码")


def test_a_refusal_is_shown_in_the_language_the_page_is_in(browser: Browser, stack: Stack) -> None:
    """The browser asks for English, the user chose 中文 on the page: a
    refusal (the help session answered in another tab) is said in Chinese."""
    user = f"web-lang-{uuid.uuid4().hex[:8]}"
    context = browser.new_context(locale="en-US")
    context.add_init_script("localStorage.setItem('casemesh.locale', 'zh-CN')")
    context.set_default_timeout(30_000)
    page = context.new_page()
    asked: set[str] = set()
    page.on(
        "request",
        lambda r: (
            asked.add(r.headers.get("accept-language", "")) if "/casemesh.v1." in r.url else None
        ),
    )
    try:
        page.goto(f"{stack.http}/")
        page.get_by_label("用户名").fill(user)
        page.get_by_role("button", name="登录").click()
        page.get_by_role("searchbox", name="描述您的问题").fill("无法登录")
        with page.expect_response(lambda r: "/SearchArticles" in r.url) as searched:
            page.get_by_role("button", name="搜索", exact=True).click()
        session = searched.value.json()["session"]
        page.get_by_role("button", name=ARTICLE).click()
        # Answered in another tab meanwhile.
        Reader(stack, user).ResolveHelp(hpb.ResolveHelpRequest(session=session, solved=True))
        page.get_by_role("button", name="没有解决").click()
        page.get_by_label("标题").fill("还是登不上")
        page.get_by_label("问题描述").fill("试过了文章里的办法。")
        page.get_by_role("checkbox", name="电子邮件").check()
        page.get_by_label("电子邮箱").fill(f"{user}@example.com")
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("alert")).to_contain_text("出错了：这次帮助的结果已经记录过了。")
    finally:
        context.close()
    assert asked == {"zh-CN"}


def connect_error(status: int, code: str, message: str) -> Callable[[Route], None]:
    """A route handler answering every call with this Connect error, as the
    gateway would."""

    def answer(route: Route) -> None:
        route.fulfill(
            status=status,
            content_type="application/json",
            body=json.dumps({"code": code, "message": message}),
        )

    return answer


# What the gateway answers a call whose token ran out.
TOKEN_EXPIRED = connect_error(401, "unauthenticated", "the token has expired")


def test_a_page_that_cannot_load_as_the_user_signs_in_shows_the_help_centre_and_starts_again(
    browser: Browser, stack: Stack
) -> None:
    """The help centre's guides cannot be read as the page starts (a
    rollout): the help centre shows, with why and a way to start again,
    never a blank page. A link to a ticket that is not there shows it too."""
    user = f"web-start-{uuid.uuid4().hex[:8]}"
    flows = "**/casemesh.v1.HelpCenterService/ListFlows"
    browsing = browser.new_context(locale="zh-CN")
    browsing.set_default_timeout(30_000)
    page = browsing.new_page()
    try:
        page.route(flows, connect_error(503, "unavailable", "the service is restarting"))
        page.goto(f"{stack.http}/{TRANSPORTS['connect']}")
        page.get_by_label("用户名").fill(user)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        expect(page.get_by_role("alert")).to_be_visible()
        page.unroute(flows)
        page.get_by_role("button", name="重试").click()
        expect(page.get_by_role("button", name="登录遇到问题")).to_be_visible()
        expect(page.locator("#error")).to_be_hidden()

        page.goto(f"{stack.http}/{TRANSPORTS['connect']}#tickets/{uuid.uuid4()}")
        page.reload()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        expect(page.get_by_role("alert")).to_be_visible()
    finally:
        browsing.close()


def fill_in_a_ticket(page: Page, user: str, subject: str, *, opened: bool = False) -> None:
    """The ticket form, opened from the help centre (unless `opened` already)
    and filled in (by e-mail to the user)."""
    if not opened:
        page.get_by_role("button", name="联系客服（提交工单）").click()
    expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
    page.get_by_label("问题分类").select_option("account.login")
    page.get_by_label("标题").fill(subject)
    page.get_by_label("问题描述").fill("每次上传到 99% 就失败。")
    page.get_by_role("checkbox", name="电子邮件").check()
    page.get_by_label("电子邮箱").fill(f"{user}@example.com")


def test_a_form_filled_when_the_sign_in_ran_out_is_given_back_after_signing_in(
    browser: Browser, stack: Stack
) -> None:
    user = f"web-expired-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, subject)

        # The token ran out while the user was typing: the gateway says so.
        page.route("**/casemesh.v1.TicketService/CreateTicket", TOKEN_EXPIRED)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="登录", level=1)).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("登录已失效")
        page.unroute("**/casemesh.v1.TicketService/CreateTicket")

        page.get_by_label("用户名").fill(user)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.get_by_text(subject)).to_be_visible()


def hand_in(page: Page, token: str) -> None:
    """The app shell hands the open page a token, as a fragment (no reload)."""
    page.evaluate("token => location.replace('#token=' + token)", token)


def test_in_the_app_a_sign_in_that_ran_out_is_handed_in_again_and_the_form_given_back(
    browser: Browser, stack: Stack
) -> None:
    """Opened by the app, not on this machine's own name: the page takes the
    token the app hands in and offers no development sign-in. When the token
    runs out, the page asks the user to come back from the app; the app hands
    in a new one, without a reload, and the form typed is given back. A new
    token for the same person leaves them where they are; another person's
    finds nothing of the first's."""
    user = f"web-app-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    browsing = browser.new_context(locale="zh-CN")
    browsing.set_default_timeout(30_000)
    page = browsing.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"uncaught: {err}"))
    try:
        page.goto(f"{app_page(stack)}/#token={mint_token(stack.secret, user)}")
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        assert "token" not in page.url
        expect(page.get_by_text(f"已登录：{user}")).to_be_visible()
        fill_in_a_ticket(page, user, subject)

        page.route("**/casemesh.v1.TicketService/CreateTicket", TOKEN_EXPIRED)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="登录", level=1)).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("登录已失效")
        expect(page.get_by_text("请回到应用，从应用中重新打开本页面以登录。")).to_be_visible()
        expect(page.get_by_label("用户名")).to_be_hidden()
        page.unroute("**/casemesh.v1.TicketService/CreateTicket")

        hand_in(page, mint_token(stack.secret, user))
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        assert "#tickets/" in page.url
        at_ticket = page.url

        # A fresh token for the same person: the ticket stays, the address too;
        # and so they do for one that names nobody.
        for token in (mint_token(stack.secret, user), "not-a-token"):
            hand_in(page, token)
            expect(page).to_have_url(at_ticket)
            expect(page.locator("#ticket-subject")).to_have_text(subject)
            expect(page.get_by_text(f"已登录：{user}")).to_be_visible()

        # Another person on this page: nothing of the first's is shown.
        other = f"web-app-other-{uuid.uuid4().hex[:8]}"
        hand_in(page, mint_token(stack.secret, other))
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        expect(page.get_by_text(f"已登录：{other}")).to_be_visible()
        assert "#tickets/" not in page.url
        expect(open_my_tickets(page)).to_have_count(0)
        expect(page.get_by_text(subject)).to_have_count(0)
    finally:
        browsing.close()
    assert problems == []


def answer_lost(route: Route) -> None:
    """The call reaches the service; its answer is lost on the way back."""
    route.fetch()
    route.abort("connectionreset")


def submit_lost_then_edited(page: Page, call: str, subject: str, fixed: str) -> None:
    """The ticket form submitted while `call`'s answers are lost, then again
    with its subject fixed: the ticket the first submit opened is shown, with
    the first subject, and the page says the change is not in it."""
    page.route(f"**/casemesh.v1.{call}", answer_lost)
    page.get_by_role("button", name="提交工单").click()
    expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
    page.unroute(f"**/casemesh.v1.{call}")
    page.get_by_label("标题").fill(fixed)
    page.get_by_role("button", name="提交工单").click()
    expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
    expect(page.get_by_text(subject)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("之后的修改没有包含在内")


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_ticket_submitted_as_the_network_failed_then_edited_is_opened_once(
    browser: Browser, stack: Stack, transport: str
) -> None:
    """The first submit opened the ticket, but its answer was lost; the user
    fixed a typo and submitted again. They are shown the ticket the first
    submit opened, told their change is not in it, and have one ticket (the
    refusal's reason read from either transport's error details)."""
    user = f"web-lost-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失被 {user}"
    with signed_in(browser, stack, user, transport) as (page, _):
        fill_in_a_ticket(page, user, subject)
        submit_lost_then_edited(page, "TicketService/CreateTicket", subject, f"上传一直失败 {user}")
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert [t.subject for t in mine.tickets] == [subject]


def test_a_ticket_form_opened_again_while_its_submit_is_on_its_way_opens_one_ticket(
    browser: Browser, stack: Stack
) -> None:
    """On a slow network the user submits, goes back to the help centre while
    it is on its way, and opens the form again; the submit then reached the
    service, but its answer was lost. Submitted again, the form finds the
    ticket the first submit opened: the user has one."""
    user = f"web-reopened-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    create = "**/casemesh.v1.TicketService/CreateTicket"
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)  # on its way until the test lets it go

    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, subject)
        page.route(create, hold)
        with page.expect_request(create):
            page.get_by_role("button", name="提交工单").click()
        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        assert len(held) == 1

        answer_lost(held[0])
        expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
        page.unroute(create)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert [t.subject for t in mine.tickets] == [subject]


def test_another_ticket_asked_for_while_the_first_ones_page_loads_is_a_new_form(
    browser: Browser, stack: Stack
) -> None:
    """The ticket is opened and its page shown while its history is still
    being read; the user asks for another ticket at once. The form is a new
    one, empty, not the one just sent (which, sent again, would be taken for
    the first)."""
    user = f"web-another-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    history = "**/casemesh.v1.TicketService/ListTicketEvents**"
    held: list[Route] = []
    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, subject)
        page.route(history, lambda route: held.append(route))
        page.get_by_role("button", name="提交工单").click()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        page.get_by_role("button", name="再提交一个工单").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value("")
        assert held  # the first ticket's history was still being read
        for route in held:
            route.continue_()
        page.unroute(history)
        # Its page, read at last, does not take the new form's place.
        expect(page.get_by_label("标题")).to_have_value("")
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert [t.subject for t in mine.tickets] == [subject]


def test_on_a_phone_a_submit_that_fails_shows_why_where_the_user_is(
    browser: Browser, stack: Stack
) -> None:
    """On a phone, the alert sits above the form, off the screen once the
    user has scrolled down to submit: a failure that names no field (the
    service cannot be reached) takes them to the alert, which is in view and
    focused, not to nothing at all."""
    user = f"web-phone-{uuid.uuid4().hex[:8]}"
    create = "**/casemesh.v1.TicketService/CreateTicket"
    phone: dict[str, Any] = {
        "viewport": {"width": 360, "height": 640},
        "is_mobile": True,
        "has_touch": True,
    }
    with signed_in(browser, stack, user, **phone) as (page, _):
        fill_in_a_ticket(page, user, f"上传一直失败 {user}")
        page.route(create, connect_error(503, "unavailable", "the service is restarting"))
        page.get_by_role("button", name="提交工单").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("暂时连不上服务器")
        expect(alert).to_be_focused()
        expect(alert).to_be_in_viewport()
        page.unroute(create)


def fits_the_screen(page: Page) -> bool:
    """Whether the page is no wider than the screen (nothing to scroll sideways)."""
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def test_on_a_narrow_phone_nothing_runs_off_the_side_of_the_page(
    browser: Browser, stack: Stack
) -> None:
    """On a 320-pixel phone, in English (the longer words), the page never
    scrolls sideways: the top bar's tools wrap, and an agent's message with a
    long address, or a long e-mail address on the ticket, breaks within the
    screen."""
    run = uuid.uuid4().hex[:8]
    user = f"web-narrow-{run}"
    email = f"someone.with.a.rather.long.address.{run}@mail.subdomain.example-company.com"
    link = f"https://support.example.com/articles/account-recovery/step-by-step-{run}?from=casemesh"
    owner = Client(stack.gateway, stack.secret, user)
    ticket = open_ticket(owner, f"Narrow {run}", "Uploads fail.", email)
    owner.close()
    agent = agent_of(stack, run)
    agent.RequestInfo(
        pb.RequestInfoRequest(
            name=ticket.name, message=f"Please follow {link} and tell us.", request_id=run
        )
    )
    agent.close()
    with signed_in(browser, stack, user, viewport={"width": 320, "height": 640}) as (page, _):
        open_my_tickets(page).first.get_by_role("link").click()
        expect(page.locator("#ticket-history")).to_contain_text(link)
        page.get_by_label("语言").select_option("en")
        expect(page.get_by_role("heading", name="Your ticket", level=1)).to_be_visible()
        expect(page.locator("#ticket-updates")).to_contain_text(email)
        assert fits_the_screen(page)
        page.get_by_role("button", name="Back to the help centre").first.click()
        expect(page.get_by_role("heading", name="Search the help centre")).to_be_visible()
        expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()
        assert fits_the_screen(page)


def test_help_that_did_not_help_answered_as_the_network_failed_then_edited_opens_once(
    browser: Browser, stack: Stack
) -> None:
    """As above, after help that did not help: the first "not solved" was
    recorded with its words and opened the ticket, but the answer was lost;
    sent again with a typo fixed, the page shows the ticket as the session
    recorded it, and says the change is not in it."""
    user = f"web-lost-help-{uuid.uuid4().hex[:8]}"
    subject = f"还是登不尚 {user}"
    with signed_in(browser, stack, user) as (page, _):
        page.get_by_role("searchbox", name="描述您的问题").fill("无法登录")
        page.get_by_role("button", name="搜索", exact=True).click()
        page.get_by_role("button", name=ARTICLE).click()
        page.get_by_role("button", name="没有解决").click()
        page.get_by_label("标题").fill(subject)
        page.get_by_role("checkbox", name="电子邮件").check()
        page.get_by_label("电子邮箱").fill(f"{user}@example.com")
        submit_lost_then_edited(
            page, "HelpCenterService/ResolveHelp", subject, f"还是登不上 {user}"
        )
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert [t.subject for t in mine.tickets] == [subject]


def submitted_held(page: Page, user: str) -> Callable[[], None]:
    """`user` fills in a ticket (subject "上传一直失败 <user>") and submits
    it on a slow network: its CreateTicket is held on its way. Returns what
    lets it go on."""
    create = "**/casemesh.v1.TicketService/CreateTicket"
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)  # on its way until the test lets it go

    fill_in_a_ticket(page, user, f"上传一直失败 {user}")
    page.route(create, hold)
    page.get_by_role("button", name="提交工单").click()
    wait_until(lambda: held or page.evaluate("false"))

    def go_on() -> None:
        held[0].continue_()
        page.unroute(create)

    return go_on


def test_words_typed_while_the_ticket_is_being_created_are_not_dropped_unsaid(
    browser: Browser, stack: Stack
) -> None:
    """On a slow network the user submits, then adds a line to the
    description while "Submitting…" shows: the ticket is opened as it was
    sent, and the page says the addition is not in it."""
    user = f"web-typed-late-{uuid.uuid4().hex[:8]}"
    with signed_in(browser, stack, user) as (page, _):
        on_its_way = submitted_held(page, user)
        page.get_by_label("问题描述").fill("每次上传到 99% 就失败。换了网络也一样。")
        on_its_way()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("提交期间所做的修改没有包含在内")
    client = Client(stack.gateway, stack.secret, user)
    mine = client.ListTickets(pb.ListTicketsRequest()).tickets
    assert [t.description for t in mine] == ["每次上传到 99% 就失败。"]
    client.close()


def test_a_ticket_opened_after_the_user_went_on_reading_is_said_not_jumped_to(
    browser: Browser, stack: Stack
) -> None:
    """On a slow network the user submits, then goes back to the help centre
    while the ticket is on its way: when it is opened, the page says so where
    they are, rather than take them away from what they are reading."""
    user = f"web-went-on-{uuid.uuid4().hex[:8]}"
    with signed_in(browser, stack, user) as (page, _):
        on_its_way = submitted_held(page, user)
        page.get_by_role("button", name="返回帮助中心").first.click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        on_its_way()
        expect(page.locator("#status")).to_contain_text(
            f"您之前提交的工单“上传一直失败 {user}”已创建"
        )
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_hidden()


def test_a_ticket_whose_history_cannot_be_read_yet_is_shown_and_not_sent_twice(
    browser: Browser, stack: Stack
) -> None:
    """The ticket is created, then reading its history fails (a rollout, a
    dropped connection): the page shows the ticket and says so; the form,
    which would send it again under a new request id, is gone."""
    user = f"web-history-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    client = Client(stack.gateway, stack.secret, user)
    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, subject)

        restarting = connect_error(503, "unavailable", "the service is restarting")
        page.route("**/casemesh.v1.TicketService/ListTicketEvents**", restarting)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.get_by_text(subject)).to_be_visible()
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_role("button", name="提交工单")).to_be_hidden()
        page.unroute("**/casemesh.v1.TicketService/ListTicketEvents**")
    try:
        assert len(client.ListTickets(pb.ListTicketsRequest()).tickets) == 1
    finally:
        client.close()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_user_downloads_a_copy_of_their_data(
    browser: Browser, stack: Stack, transport: str, tmp_path: Path
) -> None:
    """Signed in, "下载我的数据" saves a zip of their cases and their files;
    (over Connect) a file the file store has lost is named as left out."""
    run = uuid.uuid4().hex[:8]
    user = f"web-data-{transport}-{run}"
    person = Person(stack, user)
    client = person.client
    ticket, uploaded = ticket_with_file(person, run, f"{user}@example.com", "")
    shot = person.evidence.read(uploaded.name)
    lost = transport == "connect"
    if lost:
        gone = person.evidence.upload(png(), "lost.png").sha256
        (stack.evidence_dir / gone[:2] / gone[2:4] / gone).unlink()
    wait_until(lambda: client.ListTickets(pb.ListTicketsRequest()).tickets, timeout=30)

    with signed_in(browser, stack, user, transport, accept_downloads=True) as (page, _):
        with page.expect_download() as started:
            page.get_by_role("button", name="下载我的数据").click()
        download = started.value
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        told = f"已下载 {saved.name}。其中 1 个" if lost else f"已下载 {saved.name}："
        expect(page.get_by_role("status")).to_contain_text(told)

    assert re.fullmatch(r"casemesh-export-\d{8}-\d{6}\.zip", saved.name), saved.name
    with zipfile.ZipFile(saved) as archive:
        found = json.loads(archive.read("casemesh-export.json"))
        assert found["person"] == user
        assert [t["ticket"]["name"] for t in found["tickets"]] == [ticket.name]
        assert found["tickets"][0]["ticket"]["subject"] == ticket.subject
        file = next(f for f in found["evidence"] if f["evidence"]["name"] == uploaded.name)
        assert archive.read(file["path"]) == shot
        assert ("missing-files.txt" in archive.namelist()) == lost


# Counts, for every Blob the page makes, the bytes given to it as pieces
# (not as Blobs already made): what the page holds of them in its own memory.
BLOB_PIECES = """
(() => {
  const Made = Blob;
  window.blobPieces = [];
  window.Blob = class extends Made {
    constructor(parts = [], options) {
      let bytes = 0;
      for (const part of parts) {
        if (part instanceof Made) continue;
        bytes += typeof part === "string" ? part.length : part.byteLength;
      }
      window.blobPieces.push(bytes);
      super(parts, options);
    }
  };
})();
"""


def connect_stream(*messages: dict[str, Any]) -> bytes:
    """The body of a Connect server stream (JSON): each message, then its end."""
    frames = (json.dumps(message).encode() for message in messages)
    end = b"{}"  # the end of the stream, without an error
    return b"".join(struct.pack(">BI", 0, len(f)) + f for f in frames) + (
        struct.pack(">BI", 2, len(end)) + end
    )


def test_a_large_copy_of_ones_data_is_saved_whole_without_being_held_twice(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    """A 12 MiB archive, streamed in 384 KiB pieces (8 MiB is no whole number
    of them), is saved whole and in order; and the page never holds more than
    8 MiB of it as pieces: they become a Blob of their own before the next
    would take them past 8 MiB (a Blob the browser may keep out of the tab's
    memory), so a phone's tab does not hold an archive of a few hundred
    megabytes twice over."""
    piece = 384 * 1024
    archive = os.urandom(32 * piece)
    name = "casemesh-export-20260101-120000.zip"
    pieces = [
        {"data": base64.b64encode(archive[at : at + piece]).decode()}
        for at in range(0, len(archive), piece)
    ]
    pieces[0]["fileName"] = name
    body = connect_stream(*pieces)

    user = f"web-large-{uuid.uuid4().hex[:8]}"
    with signed_in(browser, stack, user, accept_downloads=True) as (page, _):
        page.add_init_script(BLOB_PIECES)
        page.reload()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        page.route(
            "**/casemesh.v1.PrivacyService/ExportPerson",
            lambda route: route.fulfill(
                status=200, headers={"Content-Type": "application/connect+json"}, body=body
            ),
        )
        with page.expect_download() as started:
            page.get_by_role("button", name="下载我的数据").click()
        saved = tmp_path / started.value.suggested_filename
        started.value.save_as(saved)
        expect(page.get_by_role("status")).to_contain_text(f"已下载 {name}：")
        held = page.evaluate("Math.max(...window.blobPieces)")

    assert saved.name == name
    assert saved.read_bytes() == archive
    assert held <= 8 * 1024 * 1024, f"{held / 1024 / 1024:.1f} MiB held as pieces"


def jpeg() -> bytes:
    """A real 1×1 grey JPEG (baseline, one-code Huffman tables), made unique
    by a comment segment."""

    def segment(marker: int, data: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data

    one_code = b"\x01" + b"\x00" * 15 + b"\x00"  # a single code of one bit, for symbol 0
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xFE, b"casemesh " + os.urandom(16).hex().encode())
        + segment(0xDB, b"\x00" + b"\x01" * 64)
        + segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00")
        + segment(0xC4, b"\x00" + one_code)  # DC: difference 0
        + segment(0xC4, b"\x10" + one_code)  # AC: end of block
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x3f"  # DC 0, end of block, padded with ones
        + b"\xff\xd9"
    )


def agent_of(stack: Stack, run: str) -> Client:
    return Client(stack.gateway, stack.secret, f"web-agent-{run}", ("agent",))


def open_my_tickets(page: Page) -> Any:
    """From the help centre, "my tickets"; the listed tickets."""
    page.get_by_role("link", name="查看我的工单").click()
    expect(page.get_by_role("heading", name="我的工单", level=1)).to_be_visible()
    return page.get_by_role("list", name="我的工单").get_by_role("listitem")


def test_a_user_asked_for_more_finds_the_ticket_in_my_tickets_and_answers(
    browser: Browser, stack: Stack
) -> None:
    """The agent asks for more; the e-mail says to reply in "我的工单". There
    the ticket waits for the user; they answer, and it goes back to the agent
    with the answer in its history. Sent while the agent wrote again, the
    answer is held and the ticket reloaded; sent again after an answer lost
    on the way back, it lands once."""
    run = uuid.uuid4().hex[:8]
    user = f"web-reply-{run}"
    subject = f"上传一直失败 {run}"
    asked = "请告诉我们视频的大小和格式。"
    answer = "视频 1.2 GB，MP4 格式，用手机拍的。"
    agent = agent_of(stack, run)
    steps: Steps | None = None
    try:
        with signed_in(browser, stack, user) as (page, _):
            steps = Steps(page, ARTIFACTS / "my-tickets")
            fill_in_a_ticket(page, user, subject)
            page.get_by_role("button", name="提交工单").click()
            expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
            name = page.url.rpartition("#")[2]
            agent.RequestInfo(
                pb.RequestInfoRequest(name=name, message=asked, request_id=uuid.uuid4().hex)
            )

            page.get_by_role("button", name="返回帮助中心").first.click()
            listed = open_my_tickets(page)
            expect(listed).to_have_count(1)
            expect(listed.first).to_contain_text("等待您补充信息")
            expect(listed.first.locator("time")).to_have_attribute("datetime", ISO_TIME)
            steps.shot("my-tickets")

            listed.first.get_by_role("link", name=subject).click()
            status = page.locator("#ticket-status")
            expect(status).to_have_text("等待您补充信息")
            history = page.get_by_role("list", name="处理记录").get_by_role("listitem")
            expect(history.filter(has_text="客服请您补充信息")).to_contain_text(asked)
            expect(page.get_by_text("客服在等您补充信息，请在下方回复。")).to_be_visible()
            steps.shot("asked")

            # The agent writes again while the user types: nothing is sent,
            # the ticket is shown as it is now, the answer is kept.
            agent.AddComment(
                pb.AddCommentRequest(
                    name=name, body="MP4 和 MOV 都可以。", request_id=uuid.uuid4().hex
                )
            )
            reply = page.get_by_label("您的回复")
            reply.fill(answer)
            page.get_by_role("button", name="发送回复").click()
            expect(page.get_by_role("alert")).to_contain_text("工单有了新变化，已为您重新加载")
            expect(history.filter(has_text="客服回复")).to_contain_text("MP4 和 MOV 都可以。")
            expect(reply).to_have_value(answer)
            steps.shot("changed-meanwhile")

            # Sent, but the answer is lost on its way back; sent again, it lands once.
            page.route("**/casemesh.v1.TicketService/AddComment", answer_lost)
            page.get_by_role("button", name="发送回复").click()
            expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
            page.unroute("**/casemesh.v1.TicketService/AddComment")
            page.get_by_role("button", name="发送回复").click()
            expect(status).to_have_attribute("data-status", "OPEN")
            expect(status).to_have_text("客服处理中")
            expect(page.get_by_role("status")).to_contain_text("回复已发送")
            expect(page.get_by_role("alert")).to_be_hidden()
            mine = history.filter(has_text=answer)
            expect(mine).to_have_count(1)
            expect(mine).to_contain_text("您的回复")
            expect(reply).to_have_value("")
            steps.shot("answered")

            # Back in my tickets, it is with the agent again.
            listed = open_my_tickets(page)
            expect(listed.first).to_contain_text("客服处理中")
    except Exception:
        if steps is not None:
            with contextlib.suppress(Exception):
                steps.shot("failure")
        raise

    # The agent sees the answer, once, and the ticket back on their side.
    events = agent.ListTicketEvents(pb.ListTicketEventsRequest(name=name)).events
    assert [e.text for e in events if e.type == "CommentAdded" and e.actor == user] == [answer]
    assert agent.GetTicket(pb.GetTicketRequest(name=name)).status == pb.TICKET_STATUS_OPEN
    agent.close()


def test_words_typed_while_a_reply_is_sent_stay_in_the_box(browser: Browser, stack: Stack) -> None:
    """On a slow network the user sends a reply and goes on writing while it
    is on its way: once it is answered, the reply is in the history once, and
    what they wrote meanwhile is still in the box, not wiped with what was
    sent (nor left with it, to be sent twice)."""
    run = uuid.uuid4().hex[:8]
    user = f"web-typing-{run}"
    owner = Client(stack.gateway, stack.secret, user)
    subject = f"上传一直失败 {run}"
    open_ticket(owner, subject, "Uploads fail.", f"{user}@example.com")
    owner.close()
    add = "**/casemesh.v1.TicketService/AddComment"
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)  # on its way until the test lets it go

    with signed_in(browser, stack, user) as (page, _):
        open_my_tickets(page).first.get_by_role("link", name=subject).click()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        reply = page.get_by_label("您的回复")
        sent = f"视频 1.2 GB，MP4 格式。{run}"
        reply.fill(sent)
        page.route(add, hold)
        page.get_by_role("button", name="发送回复").click()
        wait_until(lambda: held or page.evaluate("false"))  # route handlers run meanwhile
        more = "换了 Wi-Fi 也一样。"
        reply.fill(f"{sent}\n\n{more}")
        held[0].continue_()
        page.unroute(add)
        history = page.get_by_role("list", name="处理记录").get_by_role("listitem")
        expect(history.filter(has_text=sent)).to_have_count(1)
        expect(page.get_by_role("status")).to_contain_text("回复已发送")
        expect(reply).to_have_value(more)
        expect(page.get_by_role("alert")).to_be_hidden()


def test_a_reply_half_sent_waits_on_its_ticket_while_the_user_reads_another(
    browser: Browser, stack: Stack
) -> None:
    """The user replies on one ticket, but the answer is lost on its way
    back; they read another ticket and start a reply there, then come back:
    the first reply is still in its box, and sent again it lands once. The
    other ticket's reply waits there too."""
    run = uuid.uuid4().hex[:8]
    user = f"web-two-{run}"
    owner = Client(stack.gateway, stack.secret, user)
    first, second = f"第一个工单 {run}", f"第二个工单 {run}"
    ticket = open_ticket(owner, first, "Uploads fail.", f"{user}@example.com")
    open_ticket(owner, second, "Login fails.", f"{user}@example.com")
    add = "**/casemesh.v1.TicketService/AddComment"
    words, other = f"视频 1.2 GB，MP4 格式。{run}", f"换了浏览器也一样。{run}"
    with signed_in(browser, stack, user) as (page, _):
        subject, reply = page.locator("#ticket-subject"), page.get_by_label("您的回复")
        open_my_tickets(page).get_by_role("link", name=first).click()
        expect(subject).to_have_text(first)
        reply.fill(words)
        page.route(add, answer_lost)
        page.get_by_role("button", name="发送回复").click()
        expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
        page.unroute(add)

        open_my_tickets(page).get_by_role("link", name=second).click()
        expect(subject).to_have_text(second)
        expect(reply).to_have_value("")
        reply.fill(other)

        open_my_tickets(page).get_by_role("link", name=first).click()
        expect(subject).to_have_text(first)
        expect(reply).to_have_value(words)
        page.get_by_role("button", name="发送回复").click()
        expect(page.get_by_role("status")).to_contain_text("回复已发送")
        history = page.get_by_role("list", name="处理记录").get_by_role("listitem")
        expect(history.filter(has_text=words)).to_have_count(1)
        expect(reply).to_have_value("")

        open_my_tickets(page).get_by_role("link", name=second).click()
        expect(subject).to_have_text(second)
        expect(reply).to_have_value(other)
    events = owner.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [e.text for e in events if e.type == "CommentAdded"] == [words]
    owner.close()


def test_a_user_rates_a_solved_ticket_once_and_sees_the_rating(
    browser: Browser, stack: Stack
) -> None:
    run = uuid.uuid4().hex[:8]
    user = f"web-rate-{run}"
    subject = f"Cannot log in {run}"
    resolution = "已为您重置密码，请查收短信。"
    client = Client(stack.gateway, stack.secret, user)
    agent = agent_of(stack, run)
    ticket = open_ticket(client, subject, "The password is always wrong.", f"{user}@example.com")
    agent.SolveTicket(
        pb.SolveTicketRequest(name=ticket.name, resolution=resolution, request_id=run)
    )
    steps: Steps | None = None
    try:
        with signed_in(browser, stack, user) as (page, _):
            steps = Steps(page, ARTIFACTS / "rating")
            listed = open_my_tickets(page)
            expect(listed.first).to_contain_text("已解决")
            listed.first.get_by_role("link", name=subject).click()
            expect(page.locator("#ticket-status")).to_have_text("已解决")
            history = page.get_by_role("list", name="处理记录").get_by_role("listitem")
            expect(history.filter(has_text="问题已解决")).to_contain_text(resolution)
            expect(page.get_by_text("问题没有解决？直接回复，工单会重新打开。")).to_be_visible()
            expect(page.get_by_role("heading", name="评价这次服务")).to_be_visible()
            steps.shot("solved")

            # No score chosen: the gateway's refusal is shown by the scores.
            page.get_by_role("button", name="提交评价").click()
            scores = page.get_by_role("group", name="您对处理结果满意吗？")
            expect(scores).to_have_attribute("aria-invalid", "true")
            expect(page.locator("#rating-score-error")).to_be_visible()

            page.get_by_role("radio", name="4 – 满意").check()
            page.get_by_label("想对我们说的话（可选）").fill("处理得很快，谢谢。")
            page.get_by_role("button", name="提交评价").click()
            expect(page.get_by_role("heading", name="您的评价")).to_be_visible()
            expect(page.locator("#rating-given")).to_have_text("4 分（满分 5 分）")
            expect(page.locator("#rating-given-comment")).to_have_text("处理得很快，谢谢。")
            expect(page.get_by_role("button", name="提交评价")).to_be_hidden()
            expect(page.get_by_role("status")).to_contain_text("感谢您的评价！")
            expect(history.filter(has_text="已评价")).to_contain_text("评分：4 分")
            steps.shot("rated")

            # Read again, the ticket shows the rating, not the form.
            page.reload()
            expect(page.locator("#rating-given")).to_have_text("4 分（满分 5 分）")
            expect(page.get_by_role("radio", name="4 – 满意")).to_be_hidden()
    except Exception:
        if steps is not None:
            with contextlib.suppress(Exception):
                steps.shot("failure")
        raise

    rated = client.GetTicket(pb.GetTicketRequest(name=ticket.name))
    assert (rated.rating.score, rated.rating.comment) == (4, "处理得很快，谢谢。")
    client.close()
    agent.close()


def test_a_jpeg_saved_under_a_png_name_is_attached(browser: Browser, stack: Stack) -> None:
    """The browser guesses a file's type from its name (image/png here); the
    service reads it from the bytes, so the page declares none and the photo
    is taken for what it is."""
    run = uuid.uuid4().hex[:8]
    user = f"web-jpeg-{run}"
    photo = jpeg()
    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, f"上传一直失败 {run}")
        chosen: FilePayload = {"name": "photo.png", "mimeType": "image/png", "buffer": photo}
        page.get_by_label("截图（可选）").set_input_files(files=[chosen])
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        history = page.get_by_role("list", name="处理记录").get_by_role("listitem")
        expect(history.first).to_contain_text("附件：1 个")
        expect(page.get_by_role("alert")).to_be_hidden()
        name = page.url.rpartition("#")[2]

    person = Person(stack, user)
    ticket = person.client.GetTicket(pb.GetTicketRequest(name=name))
    assert [e.sha256 for e in ticket.evidence] == [hashlib.sha256(photo).hexdigest()]
    stored = person.evidence.get(ticket.evidence[0].name)
    assert (stored.media_type, stored.file_name) == ("image/jpeg", "photo.png")
    person.client.close()


def test_a_screenshot_taken_away_while_it_uploads_is_not_sent(
    browser: Browser, stack: Stack
) -> None:
    """On a slow network the user submits with a photo, then thinks better of
    it and clears the field while it uploads: the upload stops, no ticket is
    opened with that photo, and the page says why. Submitted again, as the
    form now is, the ticket has no attachment."""
    run = uuid.uuid4().hex[:8]
    user = f"web-unpicked-{run}"
    subject = f"上传一直失败 {run}"
    upload = "**/uploads/evidence"
    held: list[Route] = []
    created: list[str] = []

    def hold(route: Route) -> None:
        held.append(route)  # on its way until the test lets it go

    with signed_in(browser, stack, user) as (page, _):
        page.on(
            "request",
            lambda r: created.append(r.url) if "TicketService/CreateTicket" in r.url else None,
        )
        fill_in_a_ticket(page, user, subject)
        screenshot = page.get_by_label("截图（可选）")
        chosen: FilePayload = {"name": "private.png", "mimeType": "image/png", "buffer": png()}
        screenshot.set_input_files(files=[chosen])
        page.route(upload, hold)
        page.get_by_role("button", name="提交工单").click()
        wait_until(lambda: held or page.evaluate("false"))
        screenshot.set_input_files(files=[])
        for route in held:
            with contextlib.suppress(Exception):  # stopped: there is nothing to let through
                route.continue_()
        page.unroute(upload)
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("截图在上传期间被更换或移除，工单没有提交")
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        assert created == []

        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        name = page.url.rpartition("#")[2]
    client = Client(stack.gateway, stack.secret, user)
    assert list(client.GetTicket(pb.GetTicketRequest(name=name)).evidence) == []
    assert len(client.ListTickets(pb.ListTicketsRequest()).tickets) == 1
    client.close()


def test_the_next_person_to_sign_in_on_a_shared_phone_sees_nothing_of_the_last(
    browser: Browser, stack: Stack
) -> None:
    """Ann signs out on her ticket's page, with a ticket of hers on its way
    (its screenshot uploading) and a copy of her data being made; Ben signs
    in on the same page: he is on the help centre, not her ticket, and none
    of her tickets is there. Her calls stopped when she signed out: when the
    network lets them through, nothing of hers is saved or shown, and Ben's
    own ticket is opened as any other."""
    run = uuid.uuid4().hex[:8]
    ann = Client(stack.gateway, stack.secret, f"web-ann-{run}")
    subject = f"安的工单 {run}"
    described = f"安的上传一直失败 {run}"
    open_ticket(ann, subject, described, f"web-ann-{run}@example.com")
    ann.close()
    upload, export = "**/uploads/evidence", "**/casemesh.v1.PrivacyService/ExportPerson"
    held: list[Route] = []
    stopped: list[str] = []
    downloads: list[str] = []

    def hold(route: Route) -> None:
        held.append(route)  # on its way until the test lets it go

    with signed_in(browser, stack, f"web-ann-{run}") as (page, _):
        page.on("requestfailed", lambda r: stopped.append(r.url))
        page.on("download", lambda d: downloads.append(d.suggested_filename))
        open_my_tickets(page).first.get_by_role("link").click()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        expect(page.locator("#ticket-description")).to_have_text(described)
        page.route(upload, hold)
        page.route(export, hold)
        page.get_by_role("button", name="再提交一个工单").click()
        fill_in_a_ticket(page, f"web-ann-{run}", f"安的第二个工单 {run}", opened=True)
        chosen: FilePayload = {"name": "shot.png", "mimeType": "image/png", "buffer": png()}
        page.get_by_label("截图（可选）").set_input_files(files=[chosen])
        with page.expect_request(upload):
            page.get_by_role("button", name="提交工单").click()
        with page.expect_request(export):
            page.get_by_role("button", name="下载我的数据").click()
        page.get_by_role("button", name="退出").click()
        page.get_by_label("用户名").fill(f"web-ben-{run}")
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        expect(page.get_by_text(subject)).to_have_count(0)
        expect(page.get_by_text(described)).to_have_count(0)
        expect(page.get_by_role("alert")).to_be_hidden()
        assert f"web-ann-{run}" not in page.content()

        # Ben starts his ticket; Ann's calls, stopped, come to nothing.
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_label("标题")).to_have_value("")
        for route in held:
            with contextlib.suppress(Exception):  # stopped: there is nothing to let through
                route.continue_()
        page.unroute(upload)
        page.unroute(export)

        # (Each look asks the page something, which lets its events come in.)
        def stopped_calls() -> set[str]:
            return {urlsplit(url).path.rsplit("/", 1)[1] for url in stopped}

        wait_until(
            lambda: page.evaluate("true") and {"ExportPerson", "evidence"} <= stopped_calls()
        )
        mine = f"本的工单 {run}"
        fill_in_a_ticket(page, f"web-ben-{run}", mine, opened=True)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(mine)
        expect(page.get_by_role("alert")).to_be_hidden()
        expect(page.get_by_role("status")).not_to_contain_text("已下载")
        assert f"web-ann-{run}" not in page.content()
        assert downloads == []
    ben = Client(stack.gateway, stack.secret, f"web-ben-{run}")
    assert [t.subject for t in ben.ListTickets(pb.ListTicketsRequest()).tickets] == [mine]
    ben.close()
    ann = Client(stack.gateway, stack.secret, f"web-ann-{run}")
    assert [t.subject for t in ann.ListTickets(pb.ListTicketsRequest()).tickets] == [subject]
    ann.close()


def test_a_reply_to_a_ticket_closed_meanwhile_is_not_lost_from_sight(
    browser: Browser, stack: Stack
) -> None:
    """The agent solved and closed the ticket while the user wrote: the
    reply is not sent, and the page says so with what they wrote, rather
    than hide it with the reply box."""
    run = uuid.uuid4().hex[:8]
    user = f"web-closed-{run}"
    owner = Client(stack.gateway, stack.secret, user)
    subject = f"已结束的工单 {run}"
    ticket = open_ticket(owner, subject, "Uploads fail.", f"{user}@example.com")
    owner.close()
    with signed_in(browser, stack, user) as (page, _):
        open_my_tickets(page).first.get_by_role("link").click()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        words = f"我又试了一次，还是不行 {run}"
        page.get_by_label("您的回复").fill(words)
        agent = agent_of(stack, run)
        agent.SolveTicket(
            pb.SolveTicketRequest(name=ticket.name, resolution="已处理。", request_id=run)
        )
        agent.CloseTicket(pb.CloseTicketRequest(name=ticket.name))
        agent.close()
        page.get_by_role("button", name="发送回复").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("您的回复没有发送")
        expect(alert).to_contain_text(words)
        expect(alert).to_be_focused()
        expect(page.locator("#ticket-status")).to_have_attribute("data-status", "CLOSED")


def test_my_tickets_come_newest_first_a_page_at_a_time(browser: Browser, stack: Stack) -> None:
    """Twenty at a time: "more" adds the rest, and is gone after the last."""
    run = uuid.uuid4().hex[:8]
    user = f"web-pages-{run}"
    client = Client(stack.gateway, stack.secret, user)
    subjects = [f"第 {i} 个工单 {run}" for i in range(1, 22)]
    for subject in subjects:
        open_ticket(client, subject, "Uploads fail.", f"{user}@example.com")
    client.close()
    with signed_in(browser, stack, user) as (page, _):
        listed = open_my_tickets(page)
        expect(listed).to_have_count(20)
        expect(listed.first.get_by_role("link")).to_have_text(subjects[-1])
        more = page.get_by_role("button", name="显示更多工单")
        more.click()
        expect(listed).to_have_count(21)
        expect(listed.last.get_by_role("link")).to_have_text(subjects[0])
        expect(listed.last.get_by_role("link")).to_be_focused()
        expect(more).to_be_hidden()
        # Each opens the ticket's own page.
        listed.last.get_by_role("link").click()
        expect(page.locator("#ticket-subject")).to_have_text(subjects[0])


def test_a_form_whose_submit_went_unanswered_is_given_back_then_settled_once(
    browser: Browser, stack: Stack
) -> None:
    """The submit reached the service, but its answer was lost (the ticket
    may be open). While the service still cannot answer, going back and
    opening the form again, or reloading, gives the form back as it was.
    Once it answers, the next form settles the earlier submit first (under
    its request id: one ticket) and starts blank, saying so; a reload with a
    submit unanswered shows that ticket. Nothing typed is filed as an
    earlier ticket, and no ticket is opened twice."""
    user = f"web-unanswered-{uuid.uuid4().hex[:8]}"
    subject, later = f"上传一直失败 {user}", f"登录不了 {user}"
    create = "**/casemesh.v1.TicketService/CreateTicket"
    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, subject)
        # As a description often ends (sent trimmed: nothing left out).
        page.get_by_label("问题描述").fill("每次上传到 99% 就失败。\n")
        page.route(create, answer_lost)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")

        page.get_by_role("button", name="返回帮助中心").first.click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        expect(page.get_by_label("问题分类")).to_have_value("account.login")
        expect(page.get_by_label("电子邮箱")).to_have_value(f"{user}@example.com")
        page.reload()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        expect(page.get_by_label("问题描述")).to_have_value("每次上传到 99% 就失败。")
        expect(page.get_by_role("checkbox", name="电子邮件")).to_be_checked()

        # The service answers again: a new form settles the earlier submit.
        page.unroute(create)
        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.locator("#status")).to_contain_text(
            f"您之前提交的工单“上传一直失败 {user}”已创建"
        )
        expect(page.get_by_role("alert")).to_be_hidden()
        expect(page.get_by_label("标题")).to_have_value("")

        # Another submit left unanswered, then a reload once the service answers.
        page.get_by_role("button", name="返回帮助中心").first.click()
        fill_in_a_ticket(page, user, later)
        page.route(create, answer_lost)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
        page.unroute(create)
        page.reload()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(later)
        # One the service refuses when sent again (it opened nothing): the
        # form comes back as it was, with the refusal, not a blank one.
        page.get_by_role("button", name="返回帮助中心").first.click()
        fill_in_a_ticket(page, user, f"第三个 {user}")
        page.route(create, answer_lost)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
        page.route(create, connect_error(400, "invalid_argument", "ticket: refused"))
        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("alert")).to_contain_text("refused")
        expect(page.get_by_label("标题")).to_have_value(f"第三个 {user}")
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert f"第三个 {user}" in {t.subject for t in mine.tickets}  # the lost answer's
    assert len(mine.tickets) == 3


def test_a_form_opened_from_my_tickets_whose_submit_went_unanswered_is_given_back_on_reload(
    browser: Browser, stack: Stack
) -> None:
    """The form opened from "my tickets" (Back returns there); its submit
    reached the service, but the answer was lost. Reloaded while the service
    still cannot answer, the page gives the form back, not the list; reloaded
    once it answers, it shows the ticket that submit opened: one ticket."""
    user = f"web-from-list-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    create = "**/casemesh.v1.TicketService/CreateTicket"
    with signed_in(browser, stack, user) as (page, _):
        open_my_tickets(page)
        page.get_by_role("button", name="再提交一个工单").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        page.go_back()
        expect(page.get_by_role("heading", name="我的工单", level=1)).to_be_visible()
        page.get_by_role("button", name="再提交一个工单").click()
        fill_in_a_ticket(page, user, subject, opened=True)
        page.route(create, answer_lost)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("alert")).to_contain_text("暂时连不上服务器")
        page.reload()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        expect(page.locator("#status")).to_contain_text("工单可能已经创建")
        page.unroute(create)
        page.reload()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
        expect(page.locator("#status")).to_contain_text(
            f"您之前提交的工单“上传一直失败 {user}”已创建"
        )
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert [t.subject for t in mine.tickets] == [subject]


def test_answered_solved_the_question_goes_and_no_upload_shows_before_a_file(
    browser: Browser, stack: Stack
) -> None:
    """After "解决了" its buttons are gone (nothing to press twice); the
    ticket form shows no upload progress until a file is chosen."""
    user = f"web-hidden-{uuid.uuid4().hex[:8]}"
    with signed_in(browser, stack, user) as (page, _):
        page.get_by_role("searchbox", name="描述您的问题").fill("无法登录")
        page.get_by_role("button", name="搜索", exact=True).click()
        page.get_by_role("button", name=ARTICLE).click()
        page.get_by_role("button", name="解决了", exact=True).click()
        expect(page.get_by_text("很高兴帮到您！")).to_be_visible()
        expect(page.get_by_role("button", name="解决了", exact=True)).to_be_hidden()
        expect(page.get_by_role("button", name="没有解决")).to_be_hidden()
        # Focus goes to the thanks that took the buttons' place, not back to the page's start.
        expect(page.get_by_text("很高兴帮到您！")).to_be_focused()

        page.get_by_role("button", name="返回帮助中心").first.click()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_role("progressbar", name="上传进度")).to_be_hidden()
        chosen: FilePayload = {"name": "shot.png", "mimeType": "image/png", "buffer": png()}
        page.get_by_label("截图（可选）").set_input_files(files=[chosen])
        expect(page.get_by_role("progressbar", name="上传进度")).to_be_visible()


def refused_beside(page: Page, field: Locator, error: str, words: str) -> None:
    """The page refused what `field` holds: `words` beside it (`error`), the
    field marked invalid and focused, and the alert asks for a correction."""
    expect(page.locator(error)).to_have_text(words)
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("请修改标出的内容后再提交。")


def calls_to(page: Page, method: str) -> list[str]:
    """The URLs of the calls the page makes to `method` from now on."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if method in r.url else None)
    return sent


def test_a_subject_is_counted_in_characters_as_the_service_counts_them(
    browser: Browser, stack: Stack
) -> None:
    """200 characters with emoji (240 UTF-16 code units) are taken whole; one
    more is refused beside the subject, and nothing is sent."""
    user = f"web-emoji-{uuid.uuid4().hex[:8]}"
    subject = "上传失败😀" * 40
    with signed_in(browser, stack, user) as (page, _):
        created = calls_to(page, "TicketService/CreateTicket")
        fill_in_a_ticket(page, user, subject + "！")
        page.get_by_role("button", name="提交工单").click()
        refused_beside(page, page.get_by_label("标题"), "#subject-error", "不能超过 200 个字符。")
        assert created == []

        page.get_by_label("标题").fill(subject)
        page.get_by_role("button", name="提交工单").click()
        expect(page.get_by_role("heading", name="您的工单", level=1)).to_be_visible()
        expect(page.locator("#ticket-subject")).to_have_text(subject)
    mine = Client(stack.gateway, stack.secret, user).ListTickets(pb.ListTicketsRequest())
    assert [t.subject for t in mine.tickets] == [subject]


def test_a_search_is_counted_in_characters_and_refused_beside_its_box(
    browser: Browser, stack: Stack
) -> None:
    """A description of the problem of 200 characters with emoji is searched
    for; one more is refused beside the search box, in the page's language,
    and nothing is sent."""
    user = f"web-long-query-{uuid.uuid4().hex[:8]}"
    query = "登录失败😀" * 40
    with signed_in(browser, stack, user) as (page, _):
        searched = calls_to(page, "SearchArticles")
        box = page.get_by_role("searchbox", name="描述您的问题")
        box.fill(query + "！")
        page.get_by_role("button", name="搜索", exact=True).click()
        refused_beside(page, box, "#query-error", "不能超过 200 个字符。")
        assert searched == []

        box.fill(query)
        page.get_by_role("button", name="搜索", exact=True).click()
        expect(page.locator("#status")).to_contain_text("找到")
        expect(page.locator("#query-error")).to_be_hidden()
        expect(box).not_to_have_attribute("aria-invalid", "true")
        assert len(searched) == 1


def test_a_ticket_form_half_written_outlives_a_reload_but_not_signing_out(
    browser: Browser, stack: Stack
) -> None:
    """The phone drops the page while the user is away from it (or they
    reload): the ticket form they were writing comes back as they left it
    when they open it again. Signed out, nothing of it stays in the tab."""
    user = f"web-draft-{uuid.uuid4().hex[:8]}"
    subject = f"上传一直失败 {user}"
    described = "每次上传到 99% 就失败。\n换了网络也一样，"
    with signed_in(browser, stack, user) as (page, _):
        fill_in_a_ticket(page, user, subject)
        page.get_by_label("问题描述").fill(described)
        page.reload()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value(subject)
        expect(page.get_by_label("问题描述")).to_have_value(described)
        expect(page.get_by_label("问题分类")).to_have_value("account.login")
        expect(page.get_by_label("电子邮箱")).to_have_value(f"{user}@example.com")
        expect(page.get_by_role("checkbox", name="电子邮件")).to_be_checked()

        def left_nothing() -> None:
            kept = page.evaluate("JSON.stringify({ ...sessionStorage })")
            assert subject not in kept and "99%" not in kept and user not in kept

        page.get_by_role("button", name="退出").click()
        expect(page.get_by_role("heading", name="登录", level=1)).to_be_visible()
        left_nothing()
        page.get_by_label("用户名").fill(user)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("heading", name="搜索帮助中心")).to_be_visible()
        page.get_by_role("button", name="联系客服（提交工单）").click()
        expect(page.get_by_role("heading", name="提交工单", level=1)).to_be_visible()
        expect(page.get_by_label("标题")).to_have_value("")

        # Written again, then the app hands the tab to another person (the
        # page loaded afresh with their token): the form half written goes at
        # once, before they open one.
        page.get_by_label("标题").fill(subject)
        page.get_by_label("问题描述").fill(described)
        page.goto("about:blank")
        other = f"web-draft-other-{uuid.uuid4().hex[:8]}"
        page.goto(f"{app_page(stack)}/#token={mint_token(stack.secret, other)}")
        expect(page.get_by_text(f"已登录：{other}")).to_be_visible()
        left_nothing()


def test_a_rating_comment_is_counted_in_characters_as_the_service_counts_them(
    browser: Browser, stack: Stack
) -> None:
    """1500 characters with emoji (2250 UTF-16 code units) are taken whole;
    2001 are refused beside the comment, and nothing is sent."""
    run = uuid.uuid4().hex[:8]
    user = f"web-rate-emoji-{run}"
    subject = f"Rated in emoji {run}"
    client = Client(stack.gateway, stack.secret, user)
    agent = agent_of(stack, run)
    ticket = open_ticket(client, subject, "The password is always wrong.", f"{user}@example.com")
    agent.SolveTicket(
        pb.SolveTicketRequest(name=ticket.name, resolution="已为您重置密码。", request_id=run)
    )
    comment = "好😀" * 750
    rated: list[str] = []
    with signed_in(browser, stack, user) as (page, _):
        page.on(
            "request",
            lambda r: rated.append(r.url) if "TicketService/RateTicket" in r.url else None,
        )
        open_my_tickets(page).first.get_by_role("link", name=subject).click()
        page.get_by_role("radio", name="5 – 非常满意").check()
        words = page.get_by_label("想对我们说的话（可选）")
        words.fill(comment + "好" * 501)
        page.get_by_role("button", name="提交评价").click()
        refused_beside(page, words, "#rating-comment-error", "不能超过 2000 个字符。")
        assert rated == []

        words.fill(comment)
        page.get_by_role("button", name="提交评价").click()
        expect(page.locator("#rating-given-comment")).to_have_text(comment)
    rating = client.GetTicket(pb.GetTicketRequest(name=ticket.name)).rating
    assert (rating.score, rating.comment) == (5, comment)
    client.close()
    agent.close()


def test_an_upload_refused_is_said_in_the_language_the_page_is_in(
    browser: Browser, stack: Stack
) -> None:
    """The browser asks for Chinese, the user switched the page to English:
    a file refused by the upload is explained in English, as the API's
    refusals are."""
    user = f"web-upload-lang-{uuid.uuid4().hex[:8]}"
    asked: list[str] = []
    with signed_in(browser, stack, user) as (page, _):
        page.on(
            "request",
            lambda r: (
                asked.append(r.headers.get("accept-language", ""))
                if "/uploads/evidence" in r.url
                else None
            ),
        )
        page.get_by_label("语言").select_option("en")
        page.get_by_role("button", name="Contact support (open a ticket)").click()
        expect(page.get_by_role("heading", name="Open a ticket", level=1)).to_be_visible()
        words: FilePayload = {
            "name": "notes.png",
            "mimeType": "image/png",
            "buffer": b"Just some words, not a picture at all.\n",
        }
        page.get_by_label("Screenshot (optional)").set_input_files(files=[words])
        page.get_by_role("button", name="Submit ticket").click()
        expect(page.locator("#screenshot-error")).to_contain_text(
            "evidence must be an image, a video or a PDF"
        )
    assert asked == ["en"]

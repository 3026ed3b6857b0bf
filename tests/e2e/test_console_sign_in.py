"""The agents' console signing in with an OpenID Connect provider (the
authorization-code flow with PKCE, a public client), in Debian's Chromium
through Playwright, against the test stack's gateway: an agent signs in, the
live queue answers with the provider's token, and signing out ends the
provider's session too; an administrator without the agent role works the
queue unwarned; an answer with another state is refused before its
code is used; `access_denied` and an ID token with another nonce are refused
and explained in the page's language; the token is renewed with the refresh
token before it expires, and without one the agent signs in again and comes
back to the case they were on, still holding it, with the reply they typed;
the console as built offers the development sign-in, and an unusable
config.json is said on the sign-in page; the provider checks PKCE.
Screenshots are kept in `.run/test-artifacts/console-sign-in/`.

The provider is a small one written here (`Provider`), on the loopback port
the stack's gateway lets the console call (CASEMESH_CONSOLE_CONNECT_ORIGINS,
set by tests/conftest.py; read back from the console's content security
policy): discovery, an authorization endpoint that signs a fixed agent in at
once (or refuses, when told to) and sends the browser back with a code, a
token endpoint that checks the client, the redirect URI and the PKCE
verifier, a key set, a sign-out endpoint. Its access tokens are ones the
stack's gateway accepts (HS256 with the stack's secret, issuer and audience
`casemesh`); its ID tokens are its own (RS256 with the key it publishes,
issued by its URL, for the console's client id).

The console reads its sign-in settings from `config.json`, which each test
serves to the page (a Playwright route), so the stack's console is left as
it is: without the file it offers the development sign-in."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Browser, Page, Route, expect

from casemesh.platform.identity import AUDIENCE, ISSUER
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import REPO, Stack
from tests.e2e import test_console as console
from tests.e2e.test_browser import Steps
from tests.support import Client, wait_until

ARTIFACTS = REPO / ".run" / "test-artifacts" / "console-sign-in"
CLIENT_ID = "casemesh-console"

# Debian's Chromium, one browser for the module: the console tests' fixtures.
chromium = console.chromium
browser = console.browser


def challenge_of(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)), unpadded (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class Grant:
    """What an authorization code was issued for."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str


@dataclass
class Provider:
    """An OpenID Connect provider for one public client (the console), on
    loopback; it remembers every request it answered (`seen`)."""

    port: int
    secret: str  # the stack's: its access tokens are ones the gateway accepts
    redirect_uri: str  # the console's page, the one redirect URI registered
    agent: str
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "test-provider-1"
    # What the next answers do; tests change them.
    refuse: bool = False
    expires_in: int = 3600
    refresh_tokens: bool = True
    wrong_nonce: bool = False
    roles: list[str] = field(default_factory=lambda: ["agent"])
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    codes: dict[str, Grant] = field(default_factory=dict)
    refreshable: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)  # the access tokens, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, endpoint: str) -> list[dict[str, str]]:
        with self.lock:
            return [params for name, params in self.seen if name == endpoint]

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "authorization_response_iss_parameter_supported": True,
            "scopes_supported": ["openid", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def authorize(self, q: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) for the authorization endpoint: the agent
        is signed in at once, or refused (`refuse`), and sent back."""
        if q.get("client_id") != CLIENT_ID or q.get("redirect_uri") != self.redirect_uri:
            # Never redirect to a URI that is not registered (RFC 6749 4.1.2.1).
            return HTTPStatus.BAD_REQUEST, {}, "unknown client or redirect_uri"
        back = {"state": q.get("state", ""), "iss": self.issuer}
        if self.refuse:
            back["error"] = "access_denied"
        elif (
            q.get("response_type") != "code"
            or q.get("code_challenge_method") != "S256"
            or len(q.get("code_challenge", "")) != 43
            or "openid" not in q.get("scope", "").split()
        ):
            back["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = Grant(
                    CLIENT_ID, q["redirect_uri"], q["code_challenge"], q.get("nonce", "")
                )
            back["code"] = code
        return HTTPStatus.FOUND, {"Location": f"{self.redirect_uri}?{urlencode(back)}"}, ""

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for the token endpoint."""
        grant_type = form.get("grant_type")
        if form.get("client_id") != CLIENT_ID:
            return HTTPStatus.UNAUTHORIZED, {"error": "invalid_client"}
        if grant_type == "authorization_code":
            with self.lock:
                grant = self.codes.pop(form.get("code", ""), None)  # used once, whatever happens
            verifier = form.get("code_verifier", "")
            if (
                grant is None
                or form.get("redirect_uri") != grant.redirect_uri
                or not verifier
                or challenge_of(verifier) != grant.challenge
            ):
                return HTTPStatus.BAD_REQUEST, {"error": "invalid_grant"}
            nonce = "not-the-console-s" if self.wrong_nonce else grant.nonce
            return HTTPStatus.OK, self.tokens(nonce)
        if grant_type == "refresh_token":
            with self.lock:
                known = form.get("refresh_token", "") in self.refreshable
                self.refreshable.discard(form.get("refresh_token", ""))  # rotated
            if not known:
                return HTTPStatus.BAD_REQUEST, {"error": "invalid_grant"}
            return HTTPStatus.OK, self.tokens(None)
        return HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"}

    def tokens(self, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        access = jwt.encode(
            {
                "sub": self.agent,
                "roles": self.roles,
                "iss": ISSUER,
                "aud": AUDIENCE,
                "iat": now,
                "exp": now + self.expires_in,
                "jti": secrets.token_hex(8),
            },
            self.secret,
            algorithm="HS256",
        )
        id_claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.agent,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "name": self.agent,
        }
        if nonce is not None:
            id_claims["nonce"] = nonce
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "id_token": jwt.encode(
                id_claims, self.key, algorithm="RS256", headers={"kid": self.kid}
            ),
        }
        with self.lock:
            self.issued.append(access)
            if self.refresh_tokens:
                body["refresh_token"] = secrets.token_urlsafe(24)
                self.refreshable.add(body["refresh_token"])
        return body

    def sign_out(self, q: dict[str, str]) -> tuple[int, dict[str, str], str]:
        if q.get("post_logout_redirect_uri") != self.redirect_uri:
            return HTTPStatus.BAD_REQUEST, {}, "unknown post_logout_redirect_uri"
        return HTTPStatus.FOUND, {"Location": self.redirect_uri}, ""

    @contextlib.contextmanager
    def serving(self, console_origin: str) -> Iterator[Provider]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(
                self, status: int, headers: dict[str, str], body: str, kind: str = "text/plain"
            ) -> None:
                data = body.encode()
                self.send_response(status)
                # The console calls discovery and the token endpoint from its page.
                self.send_header("Access-Control-Allow-Origin", console_origin)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def send_json(self, status: int, body: dict[str, Any]) -> None:
                self.answer(status, {}, json.dumps(body), "application/json")

            def do_OPTIONS(self) -> None:
                asked = self.headers.get("Access-Control-Request-Headers", "")
                self.answer(
                    HTTPStatus.NO_CONTENT,
                    {
                        "Access-Control-Allow-Methods": "GET, POST",
                        "Access-Control-Allow-Headers": asked,
                    },
                    "",
                )

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                with provider.lock:
                    provider.seen.append((url.path.strip("/"), q))
                if url.path == "/.well-known/openid-configuration":
                    self.send_json(HTTPStatus.OK, provider.discovery())
                elif url.path == "/jwks":
                    self.send_json(HTTPStatus.OK, provider.jwks())
                elif url.path == "/authorize":
                    self.answer(*provider.authorize(q))
                elif url.path == "/logout":
                    self.answer(*provider.sign_out(q))
                else:
                    self.answer(HTTPStatus.NOT_FOUND, {}, "not here")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with provider.lock:
                    provider.seen.append((urlsplit(self.path).path.strip("/"), form))
                if urlsplit(self.path).path == "/token":
                    self.send_json(*provider.token(form))
                else:
                    self.answer(HTTPStatus.NOT_FOUND, {}, "not here")

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def provider_origin(stack: Stack) -> str:
    """The one origin besides its own that the stack's console may call."""
    page = httpx.get(f"{stack.http}/console/", timeout=15)
    policy = page.headers["content-security-policy"]
    connect = next(d.split()[1:] for d in policy.split(";") if d.split()[:1] == ["connect-src"])
    others = [source for source in connect if source != "'self'"]
    assert len(others) == 1 and others[0].startswith("http://127.0.0.1:"), policy
    # The self-service page may call its own origin only.
    assert (
        "connect-src 'self';"
        in httpx.get(f"{stack.http}/", timeout=15).headers["content-security-policy"]
    )
    return str(others[0])


@pytest.fixture
def provider(chromium: str, stack: Stack) -> Iterator[Provider]:
    origin = provider_origin(stack)
    made = Provider(
        port=int(origin.rpartition(":")[2]),
        secret=stack.secret,
        redirect_uri=f"{stack.http}/console/",
        agent=f"oidc-agent-{uuid.uuid4().hex[:6]}",
    )
    with made.serving(stack.http):
        yield made


def with_config(page: Page, provider: Provider) -> None:
    """The console's config.json names the provider (served to this page only)."""
    settings = {
        "oidc": {
            "issuer": provider.issuer,
            "clientId": CLIENT_ID,
            "scope": "openid profile",
            "token": "access_token",
        }
    }
    page.route("**/console/config.json", lambda route: route.fulfill(json=settings))


def session(page: Page, key: str) -> Any:
    return page.evaluate(f"sessionStorage.getItem({json.dumps(key)})")


SIGN_IN = {"zh-CN": "登录", "en": "Sign in"}


def sign_in(page: Page, stack: Stack, provider: Provider, locale: str, link: str = "") -> None:
    """Opens the console (at `link`, a case's #…) and presses "Sign in"."""
    with_config(page, provider)
    page.goto(f"{stack.http}/console/{link}")
    page.get_by_role("button", name=SIGN_IN[locale], exact=True).click()


TOKEN_KEY = "casemesh.console.token"
PENDING_KEY = "casemesh.console.oidc.pending"
SESSION_KEY = "casemesh.console.oidc.session"


def test_an_agent_signs_in_with_the_identity_provider_works_the_queue_and_signs_out(
    browser: Browser, stack: Stack, provider: Provider
) -> None:
    with console.agent_page(browser, "zh-CN") as (page, problems):
        steps = Steps(page, ARTIFACTS / "sign-in")
        with_config(page, provider)
        page.goto(f"{stack.http}/console/")
        expect(page.locator("#provider-sign-in")).to_be_visible()
        expect(page.locator("#sign-in-form")).to_be_hidden()  # no development sign-in
        steps.shot("sign-in")
        page.get_by_role("button", name="登录", exact=True).click()

        # Back from the provider: signed in as its agent, and the live queue
        # answers the console's calls with the provider's token.
        expect(page.locator("#signed-in-as")).to_contain_text(provider.agent)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(page.locator("#queue")).to_be_visible()
        steps.shot("queue")
        assert urlsplit(page.url).query == "", page.url  # no code or state left in sight
        assert session(page, PENDING_KEY) is None  # the request kept is used up
        assert session(page, TOKEN_KEY) == provider.issued[-1]
        assert json.loads(session(page, SESSION_KEY))["refreshToken"]

        # The request was PKCE (S256), with a state and a nonce of its own;
        # the code came back with its verifier, from the page's own origin.
        [asked] = provider.requests("authorize")
        assert asked["code_challenge_method"] == "S256" and asked["response_type"] == "code"
        assert asked["redirect_uri"] == f"{stack.http}/console/"
        assert asked["ui_locales"] == "zh-CN" and "openid" in asked["scope"].split()
        assert len(asked["state"]) >= 22 and len(asked["nonce"]) >= 22
        [exchange] = provider.requests("token")
        assert exchange["grant_type"] == "authorization_code"
        assert challenge_of(exchange["code_verifier"]) == asked["code_challenge"]
        assert "client_secret" not in exchange  # a public client

        # Signing out ends the provider's session too and comes back signed out.
        with page.expect_navigation(url=f"{stack.http}/console/"):
            page.locator("#sign-out").click()
        wait_until(lambda: provider.requests("logout"), timeout=30)
        [left] = provider.requests("logout")
        assert left["client_id"] == CLIENT_ID and left["id_token_hint"].count(".") == 2
        expect(page.locator("#provider-sign-in")).to_be_visible()
        expect(page.locator("#signed-in-as")).to_be_hidden()
        assert session(page, TOKEN_KEY) is None and session(page, SESSION_KEY) is None
        steps.shot("signed-out")
        assert problems.seen == []


def test_an_admin_without_the_agent_role_works_the_queue_without_being_told_off(
    browser: Browser, stack: Stack, provider: Provider
) -> None:
    """The provider gives an administrator the admin role alone. The gateway
    lets an admin do all an agent does, so the console works the live queue
    for them (and offers the articles) without saying the account lacks the
    agent role."""
    provider.roles = ["admin"]
    with console.agent_page(browser, "en") as (page, problems):
        sign_in(page, stack, provider, "en")
        expect(page.locator("#signed-in-as")).to_contain_text(provider.agent)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(page.locator("#queue")).to_be_visible()
        expect(page.locator("#open-articles")).to_be_visible()
        expect(page.locator("#error")).to_be_hidden()
        assert problems.seen == []


def test_an_answer_to_another_sign_in_is_refused_before_its_code_is_used(
    browser: Browser, stack: Stack, provider: Provider
) -> None:
    """A callback whose state is not the one this tab sent (a forged or
    replayed link) is refused, in the page's language, and its code never
    reaches the token endpoint."""

    def forged(route: Route) -> None:
        answer = route.fetch(max_redirects=0)
        back = urlsplit(answer.headers["location"])
        q = {k: v[0] for k, v in parse_qs(back.query).items()}
        q["state"] = secrets.token_urlsafe(32)
        route.fulfill(status=302, headers={"Location": back._replace(query=urlencode(q)).geturl()})

    with console.agent_page(browser, "zh-CN") as (page, _):
        page.route(lambda url: url.startswith(f"{provider.issuer}/authorize"), forged)
        sign_in(page, stack, provider, "zh-CN")
        expect(page.locator("#error-message")).to_contain_text("与本页发起的登录不符")
        expect(page.locator("#provider-sign-in")).to_be_visible()
        expect(page.locator("#signed-in-as")).to_be_hidden()
        assert urlsplit(page.url).query == "", page.url
        Steps(page, ARTIFACTS / "forged-state").shot("refused")
        assert len(provider.requests("authorize")) == 1
        assert provider.requests("token") == []
        assert session(page, TOKEN_KEY) is None


@pytest.mark.parametrize(
    ("provider_does", "explained", "exchanges"),
    [
        # The agent cancelled, or the provider does not let them use the console.
        ("refuse", "The identity provider refused the sign-in (access_denied)", 0),
        # The ID token is not for the sign-in this tab started.
        ("wrong_nonce", "The sign-in could not be completed: unexpected ID Token", 1),
    ],
)
def test_a_sign_in_that_fails_is_explained_in_the_page_s_language(
    browser: Browser,
    stack: Stack,
    provider: Provider,
    provider_does: str,
    explained: str,
    exchanges: int,
) -> None:
    setattr(provider, provider_does, True)
    with console.agent_page(browser, "en") as (page, problems):
        sign_in(page, stack, provider, "en")
        expect(page.locator("#error-message")).to_contain_text(explained)
        expect(page.locator("#provider-sign-in")).to_be_visible()
        Steps(page, ARTIFACTS / provider_does).shot("refused")
        assert len(provider.requests("token")) == exchanges
        assert session(page, TOKEN_KEY) is None
        assert problems.seen == []


def test_the_sign_in_is_renewed_with_the_refresh_token_before_it_expires(
    browser: Browser, stack: Stack, provider: Provider
) -> None:
    provider.expires_in = 8  # renewed a quarter of its life before it ends
    with console.agent_page(browser, "zh-CN") as (page, problems):
        sign_in(page, stack, provider, "zh-CN")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        page.evaluate(
            """() => { const el = document.getElementById('live'); window.liveStates = [];
            new MutationObserver(() => window.liveStates.push(el.dataset.state))
              .observe(el, { attributes: true, attributeFilter: ['data-state'] }); }"""
        )
        # The token the sign-in got, as the provider recorded it (the page's may
        # already be the renewed one).
        first = provider.issued[0]
        provider.expires_in = 3600
        wait_until(
            lambda: any(r["grant_type"] == "refresh_token" for r in provider.requests("token")),
            timeout=30,
        )
        wait_until(
            lambda: len(provider.issued) >= 2 and session(page, TOKEN_KEY) == provider.issued[-1],
            timeout=30,
        )
        assert session(page, TOKEN_KEY) != first
        assert len(provider.requests("authorize")) == 1  # no second trip to the provider
        # The watch begun with the first token ends when it expires, with the
        # 30 s of clock skew tokens are given (the gateway's rule); the page
        # watches again with the new one, signed in.
        page.wait_for_function(
            "() => window.liveStates.includes('connecting') && window.liveStates.at(-1) === 'live'",
            timeout=90_000,
        )
        expect(page.locator("#error")).to_be_hidden()
        # The new token works: the queue is read again with it.
        page.locator("#filter-queue").select_option("ads")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(page.locator("#signed-in-as")).to_contain_text(provider.agent)
        assert problems.seen == []


def test_without_a_refresh_token_the_agent_is_told_and_signs_in_again_when_they_choose(
    browser: Browser, stack: Stack, provider: Provider
) -> None:
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"oidc-requester-{run}")
    provider.refresh_tokens = False
    reply = f"您好，我们正在处理您的登录问题。{run}"
    token_url = f"{provider.issuer}/token"

    def said_to_end_soon(route: Route) -> None:
        """The provider's answer, saying the token lasts 8 s: the page plans its
        renewal by that, while the token stays good at the gateway for an hour,
        so nothing the test does races its real end."""
        if route.request.method != "POST":
            route.continue_()
            return
        answer = route.fetch()
        tokens = answer.json()
        tokens["expires_in"] = 8
        route.fulfill(response=answer, body=json.dumps(tokens))

    with (
        console.quiet_queue(stack, "account"),
        console.agent_page(browser, "zh-CN") as (page, problems),
    ):
        ticket = console.new_ticket(
            requester, f"oidc-requester-{run}@example.com", "account.login", f"登录问题 {run}"
        )
        page.route(token_url, said_to_end_soon)
        # A link to the case, followed before signing in, opens it after.
        sign_in(page, stack, provider, "zh-CN", f"#{ticket.name}")
        expect(page.locator("#case")).to_be_visible()
        expect(page.locator("#case-heading")).to_contain_text(f"登录问题 {run}")
        assert page.url.endswith(f"/console/#{ticket.name}")
        # The agent takes it from the queue to work it: the case is theirs.
        page.locator("#back-to-queue").click()
        console.in_queue(page, "account")
        expect(console.row(page, ticket.name)).to_be_visible()
        console.next_until(page, ticket.name)
        lease = page.locator("#lease")
        expect(lease).to_have_attribute("data-state", "held")
        page.locator("#reply").fill(reply)
        # Before the token ends there is nothing to renew it with: the console
        # says when the sign-in ends and leaves the agent where they are.
        notice = page.locator("#session-notice")
        expect(notice).to_be_visible()
        expect(page.locator("#session-notice-text")).to_contain_text("您的登录将于")
        expect(page.locator("#session-notice-text")).to_contain_text("结束——请重新登录")
        Steps(page, ARTIFACTS / "sign-in-ends").shot("notice")
        expect(page.locator("#case-heading")).to_contain_text(f"登录问题 {run}")
        expect(page.locator("#reply")).to_have_value(reply)
        assert len(provider.requests("authorize")) == 1  # not sent to the provider unasked
        assert page.url.endswith(f"/console/#{ticket.name}")
        # The agent chooses to sign in again (the provider signs them in at
        # once) and comes back to the case: still theirs, with what they typed.
        page.unroute(token_url)
        with page.expect_request(token_url):
            page.get_by_role("button", name="重新登录", exact=True).click()
        expect(page.locator("#case")).to_be_visible()
        expect(page.locator("#case-heading")).to_contain_text(f"登录问题 {run}")
        expect(notice).to_be_hidden()
        expect(page.locator("#reply")).to_have_value(reply)
        expect(lease).to_have_attribute("data-case", ticket.name)
        expect(lease).to_have_attribute("data-state", "held")  # the queue renewed it
        expect(page.locator("#case-body")).not_to_contain_text("您没有锁定此案件")
        wait_until(
            lambda: len(provider.issued) == 2 and session(page, TOKEN_KEY) == provider.issued[-1],
            timeout=30,
        )
        assert len(provider.requests("authorize")) == 2
        assert page.url.endswith(f"/console/#{ticket.name}")
        assert all(r["grant_type"] == "authorization_code" for r in provider.requests("token"))
        assert problems.seen == []
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()


def test_config_json_decides_which_sign_in_the_console_offers(
    browser: Browser, stack: Stack
) -> None:
    """The console as built names no identity provider: the development
    sign-in (what every other console test uses). A config.json it cannot use
    is said on the sign-in page rather than ignored."""
    assert httpx.get(f"{stack.http}/console/config.json", timeout=15).json() == {}
    with console.agent_page(browser, "en") as (page, problems):
        page.goto(f"{stack.http}/console/")
        expect(page.locator("#sign-in-form")).to_be_visible()
        expect(page.locator("#provider-sign-in")).to_be_hidden()
        assert problems.seen == []
    with console.agent_page(browser, "en") as (page, _):
        unusable = {"oidc": {"issuer": "http://id.example.com", "clientId": CLIENT_ID}}
        page.route("**/console/config.json", lambda route: route.fulfill(json=unusable))
        page.goto(f"{stack.http}/console/")
        expect(page.locator("#error-message")).to_contain_text(
            "The console's sign-in settings (config.json) are invalid: oidc.issuer must be"
            " an https:// URL"
        )
        expect(page.locator("#sign-in-form")).to_be_visible()


def test_the_provider_gives_no_token_without_the_pkce_verifier(
    stack: Stack, provider: Provider
) -> None:
    """The test provider really checks PKCE: a code is exchanged only with the
    verifier its challenge was made from (and for the client and redirect URI
    it was issued to)."""

    def code_for(verifier: str) -> str:
        answer = httpx.get(
            f"{provider.issuer}/authorize",
            params={
                "client_id": CLIENT_ID,
                "redirect_uri": provider.redirect_uri,
                "response_type": "code",
                "scope": "openid",
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge_of(verifier),
                "code_challenge_method": "S256",
            },
            timeout=15,
        )
        assert answer.status_code == HTTPStatus.FOUND
        return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]

    def exchange(code: str, **extra: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": CLIENT_ID,
            "redirect_uri": provider.redirect_uri,
            **extra,
        }
        return httpx.post(f"{provider.issuer}/token", data=form, timeout=15)

    verifier = secrets.token_urlsafe(48)
    refused = [
        exchange(code_for(verifier)),
        exchange(code_for(verifier), code_verifier=secrets.token_urlsafe(48)),
        exchange(code_for(verifier), code_verifier=verifier, client_id="someone-else"),
        exchange(code_for(verifier), code_verifier=verifier, redirect_uri=f"{stack.http}/"),
    ]
    assert [r.status_code for r in refused] == [400, 400, 401, 400]
    assert [r.json()["error"] for r in refused] == [
        "invalid_grant",
        "invalid_grant",
        "invalid_client",
        "invalid_grant",
    ]
    code = code_for(verifier)
    assert exchange(code, code_verifier=verifier).status_code == HTTPStatus.OK
    assert exchange(code, code_verifier=verifier).status_code == 400  # used once


def test_signing_out_leaves_nothing_found_or_written_for_the_next_agent(
    browser: Browser, stack: Stack
) -> None:
    """An agent searches tickets (requesters and their tickets listed) and
    writes an article, then signs out: the next agent to sign in on the tab
    finds the search and the editor empty."""
    run = uuid.uuid4().hex[:6]
    requester = Client(stack.gateway, stack.secret, f"private-{run}")
    ticket = console.new_ticket(
        requester, f"private-{run}@example.com", "other.general", f"私人 {run}"
    )
    finder = Client(stack.gateway, stack.secret, f"indexer-{run}", ("agent",))
    wait_until(
        lambda: bool(
            finder.SearchTickets(pb.SearchTicketsRequest(requester=f"private-{run}")).tickets
        ),
        timeout=30,
    )
    finder.close()
    with console.agent_page(browser) as (page, problems):
        console.open_articles_as_editor(page, stack, f"first-{run}")
        page.locator("#article-title").fill(f"写了一半的文章 {run}")
        page.locator("#articles-back").click()
        page.get_by_role("button", name="查找工单").first.click()
        page.locator("#search-requester").fill(f"private-{run}")
        page.locator("#search-form button[type=submit]").click()
        results = page.locator("#search-results")
        expect(results).to_contain_text(f"私人 {run}")

        page.locator("#sign-out").click()
        expect(page.locator("#sign-in-form")).to_be_visible()
        page.locator("#user-name").fill(f"next-{run}")
        page.locator("#admin-role").check()
        page.locator("#sign-in-form button[type=submit]").click()
        expect(page.locator("#signed-in-as")).to_contain_text(f"next-{run}")
        expect(page.locator("#sign-in")).to_be_hidden()
        page.locator("#open-articles").click()
        expect(page.locator("#articles-heading")).to_be_visible()
        expect(page.locator("#article-title")).to_have_value("")
        page.locator("#articles-back").click()
        page.get_by_role("button", name="查找工单").first.click()
        expect(page.locator("#search-heading")).to_be_visible()
        expect(results.locator("li")).to_have_count(0)
        expect(page.locator("#search-count")).to_have_text("")
        expect(page.locator("#search-requester")).to_have_value("")
        assert problems.seen == []
    requester.CancelTicket(pb.CancelTicketRequest(name=ticket.name, reason="test over"))
    requester.close()

"""The help centre's use cases, one method each: check what the caller sent
and may do, then read and write through `store` (articles, the search index,
help sessions and figures) and `phone` (phone-number changes), one pooled
connection a call. What to do with a session (flows, the ticket it drafts) is
the domain's (`domain.py`); the servicer (`api.py`) only decodes and encodes."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from casemesh.platform.cases import page_after
from casemesh.platform.clock import Clock
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from casemesh.platform.grpcutil import resource_id
from casemesh.platform.identity import Identity
from casemesh.platform.paging import document_bytes, fitting, page_of, page_size_of
from casemesh.platform.personal import AsyncSealer
from casemesh.rules import tickets as rules
from casemesh_helpcenter import phone, store
from casemesh_helpcenter.domain import (
    GROUPS,
    NOT_SOLVED,
    SOLVED,
    ArticleVersion,
    Figures,
    Flow,
    FlowStep,
    HelpCategory,
    HelpSession,
    TicketDraft,
    category_tree,
    flow,
    flow_id,
    flows,
    flows_ending_at,
)
from casemesh_helpcenter.search import is_chinese

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}\Z")
CODE = re.compile(r"[0-9]{6}")
QUESTION_ID = re.compile(r"(?P<flow>[^/]+)/(?P<node>[^/]+)/(?:0|[1-9][0-9]{0,5})")
# A ticket's words the user left to the session's draft.
NO_WORDS = TicketDraft("", "", "")
# Recommendations: the latest searches looked at, what each adds, the ticket
# categories looked at, the articles each adds, and how many in all.
RECENT_SEARCHES = 3
PER_SEARCH = 2
CATEGORIES_AT_MOST = 10
PER_CATEGORY = 3
RECOMMENDED = 8


T = TypeVar("T")


@dataclass(frozen=True)
class ArticleText:
    """An article as an admin wrote it (`name` is `articles/{slug}`)."""

    name: str
    locale: str
    category: str
    title: str
    body: str
    keywords: str


@dataclass(frozen=True)
class NewPhoneChange:
    request_id: str
    old_phone: str
    new_phone: str
    locale: str


@dataclass(frozen=True)
class SearchResults:
    session: str
    found: list[tuple[ArticleVersion, float]]


class HelpCenter:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        clock: Clock,
        personal: AsyncSealer,
        *,
        seal_phone_changes: bool = False,
    ) -> None:
        self.pool = pool
        self.clock = clock
        # Seals the numbers the phone-change topics carry: each code's, and a
        # verified change's two if `seal_phone_changes` (`HelpSettings`).
        self.personal = personal
        self.seal_verified = personal.seal if seal_phone_changes else phone.in_clear

    # -- the caller's own --------------------------------------------------------

    async def my_sessions(
        self, who: Identity, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """The caller's help sessions, newest first, a page at a time, and the
        token of the next page ("" on the last). A page is cut short past
        PAGE_BYTES (a session shows up to SEARCH_LOG_SHOWN searches, and a
        hundred of them would pass the 4 MiB a gRPC client takes)."""
        return await self._mine(
            store.sessions_of,
            who,
            page_size,
            page_token,
            lambda row: (row["created_at"], str(row["id"])),
            size=document_bytes,
        )

    async def my_phone_changes(
        self, who: Identity, page_size: int, page_token: str
    ) -> tuple[list[phone.Change], str]:
        """The caller's phone-number changes, newest first, as `my_sessions`."""
        return await self._mine(
            phone.changes_of, who, page_size, page_token, lambda c: (c.created_at, c.id)
        )

    async def _mine(
        self,
        read: Callable[[Any, str, tuple[datetime, str] | None, int], Awaitable[list[T]]],
        who: Identity,
        page_size: int,
        page_token: str,
        key: Callable[[T], tuple[datetime, str]],
        size: Callable[[T], int] | None = None,
    ) -> tuple[list[T], str]:
        """A page of the caller's rows that `read(conn, user, after, limit)`
        gives newest first, and the token of the next page; given their
        `size`, only as many as fit PAGE_BYTES (the token then names the
        last one answered)."""
        limit = page_size_of(page_size)
        after = page_after(page_token)
        async with self.pool.connection() as conn:
            rows = await read(conn, who.subject, after, limit + 1)
        if size is not None:
            limit = fitting((size(row) for row in rows), limit)
            rows = rows[: limit + 1]
        return page_of(rows, limit, key)

    # -- articles ---------------------------------------------------------------

    async def search(
        self,
        who: Identity,
        query: str,
        locale: str,
        category: str,
        page_size: int,
        session: str,
    ) -> SearchResults:
        """Published articles for a query, best first; the search is kept in
        the caller's session (a new one when none is named). A query in the
        other language than the page's (Chinese typed on the English page)
        that finds nothing there finds the articles of its own language. One
        transaction: an attempt cut short leaves no session and no search
        behind, so the gateway may send it again."""
        query = _query(query, "query")
        own = _language_of(query)
        locale = _locale(locale, own)
        page_size = page_size_of(page_size, most=50, default=10)
        category = category.strip()
        if category and category not in rules.BY_ID and category not in GROUPS:
            raise InvalidArgument.field(
                "category", "must be a category or group of ListHelpCategories, e.g. account"
            )
        async with self.pool.connection() as conn, conn.transaction():
            found_session = await _session(conn, who, session, locale)
            found = await _articles_found(conn, query, locale, category, page_size)
            await store.log_search(conn, found_session, query, len(found))
        return SearchResults(found_session.name, found)

    async def suggest(self, prefix: str, locale: str) -> list[ArticleVersion]:
        """Published articles whose titles contain what the user has typed so far."""
        prefix = _query(prefix, "prefix", limit=50)
        locale = _locale(locale, _language_of(prefix))
        async with self.pool.connection() as conn:
            return await store.suggest(conn, prefix, locale)

    async def article(
        self, who: Identity, name: str, locale: str, version: int, session: str
    ) -> ArticleVersion:
        """The published version (admins: the latest, or any by number); read
        within a session, it is kept there."""
        slug, locale = _slug(name), _locale(locale)
        if version < 0:
            raise InvalidArgument.field("version", "must be a version number (0: the current)")
        if version and not who.is_admin:
            raise PermissionDenied("earlier versions are for admins")
        async with self.pool.connection() as conn:
            found = await store.get(conn, slug, locale, version)
            if found is None or (not who.is_admin and not found.published):
                raise NotFound(f"articles/{slug} ({locale}) not found")
            if session:
                reader = await _session(conn, who, session, locale, create=False)
                await store.add_read(conn, reader, found.read())
        return found

    async def categories(self, locale: str) -> list[HelpCategory]:
        locale = _locale(locale)
        async with self.pool.connection() as conn:
            counts = await store.category_counts(conn, locale)
        return category_tree(counts, locale)

    async def create_article(
        self, who: Identity, article: ArticleText, request_id: str = ""
    ) -> ArticleVersion:
        """Version 1, a draft; under `request_id` a retry answers it again."""
        return await self._write(who, article, None, request_id)

    async def update_article(
        self, who: Identity, article: ArticleText, base_version: int, request_id: str = ""
    ) -> ArticleVersion:
        """A new version, written over `base_version`, the latest the admin read;
        under `request_id` a retry answers the version it wrote."""
        return await self._write(who, article, base_version, request_id)

    async def _write(
        self, who: Identity, article: ArticleText, base_version: int | None, request_id: str
    ) -> ArticleVersion:
        """Writes the next version (the first when `base_version` is None) and
        answers it, or says why not."""
        _admin(who)
        slug = _slug(article.name, "article.name")
        locale = _locale(article.locale, field="article.locale")
        content = _content(article)
        if base_version is not None and base_version < 1:
            raise InvalidArgument.field("base_version", "is the latest version you read")
        _request_id(request_id)
        async with self.pool.connection() as conn:
            result = await store.write_version(
                conn,
                slug=slug,
                locale=locale,
                author=who.subject,
                base_version=base_version,
                request_id=request_id,
                **content,
            )
            match result:
                case store.NotWritten.REUSED:
                    raise AlreadyExists(
                        "request_id was used for another article edit",
                        reason="REQUEST_ID_REUSED",
                    )
                case store.NotWritten.EXISTS:
                    raise AlreadyExists(
                        f"articles/{slug} ({locale}) exists; update it instead",
                        reason="ARTICLE_EXISTS",
                    )
                case store.NotWritten.ABSENT:
                    raise NotFound(f"articles/{slug} ({locale}) not found")
                case store.NotWritten.STALE:
                    raise Aborted(
                        "the article changed since you read it; read it again",
                        reason="STALE_ETAG",
                    )
            assert isinstance(result, int)
            found = await store.get(conn, slug, locale, result)
        assert found is not None
        return found

    async def publish_article(
        self, who: Identity, name: str, locale: str, version: int, unpublish: bool
    ) -> ArticleVersion:
        """Publishes a version (0: the latest), or withdraws the article."""
        _admin(who)
        slug, locale = _slug(name), _locale(locale)
        if version < 0:
            raise InvalidArgument.field("version", "must be a version number (0: the latest)")
        if unpublish and version:
            # Withdrawn is the article, not one version: a version named with
            # it would be taken for one that stays published.
            raise InvalidArgument.field("version", "must be 0 when unpublishing the article")
        async with self.pool.connection() as conn:
            current = await store.get(conn, slug, locale)
            if current is None:
                raise NotFound(f"articles/{slug} ({locale}) not found")
            ending = flows_ending_at(slug) if unpublish else []
            if ending:
                # Withdrawn, it would leave a guided flow's answer leading nowhere.
                raise FailedPrecondition(
                    f"guided flows end at this article ({', '.join(ending)}): publish a"
                    " corrected version instead of withdrawing it",
                    reason="ARTICLE_ENDS_A_FLOW",
                )
            if version > current.latest_version:
                raise InvalidArgument.field("version", f"the latest is {current.latest_version}")
            target = None if unpublish else (version or current.latest_version)
            result = await store.publish(conn, slug, locale, target)
        if isinstance(result, store.NotWritten):
            raise NotFound(f"articles/{slug} ({locale}) not found")
        return result

    async def article_versions(self, who: Identity, name: str, locale: str) -> list[ArticleVersion]:
        _admin(who)
        slug, locale = _slug(name), _locale(locale)
        async with self.pool.connection() as conn:
            found = await store.versions(conn, slug, locale)
        if not found:
            raise NotFound(f"articles/{slug} ({locale}) not found")
        return found

    async def recommend(
        self, who: Identity, locale: str, session: str, categories: list[str]
    ) -> list[ArticleVersion]:
        """What the caller's recent searches found (as `search` finds it: a
        query in the other language than the page's, in its own language's
        articles), then articles in the given categories (those of their
        open tickets); each once."""
        locale = _locale(locale)
        categories = [c for c in categories if c in rules.BY_ID][:CATEGORIES_AT_MOST]
        picked: dict[str, ArticleVersion] = {}
        async with self.pool.connection() as conn:
            if session:
                searcher = await _session(conn, who, session, locale, create=False)
                for query in reversed(searcher.searches[-RECENT_SEARCHES:]):
                    for v, _ in await _articles_found(conn, query, locale, "", PER_SEARCH):
                        picked.setdefault(v.slug, v)
            for category in categories:
                for v in await store.in_category(conn, category, locale, PER_CATEGORY):
                    picked.setdefault(v.slug, v)
        return list(picked.values())[:RECOMMENDED]

    # -- guided flows and deflection ----------------------------------------------

    async def list_flows(self, locale: str) -> list[Flow]:
        locale = _locale(locale)
        return [flow(fid, locale) for fid in flows()]

    async def start_flow(self, who: Identity, name: str, session: str, locale: str) -> FlowStep:
        """Starts a flow (again) in the caller's session (a new one when none
        is named), in `locale`: the session's from then on, so that its next
        questions, the answers it keeps (and the ticket they draft) and the
        article it ends at are in the language the flow was started in, not
        the one of the search that began the session. Without one, the
        session's."""
        asked = locale and _locale(locale)
        fid = flow_id(name)
        async with self.pool.connection() as conn:
            found = await _session(conn, who, session, asked or "zh-CN")
            found.locale = asked or found.locale
            found.start(fid)
            await store.save_flow(conn, found)
        return found.step(found.locale)

    async def answer_flow(
        self, who: Identity, session: str, answer: int, request_id: str = "", question_id: str = ""
    ) -> FlowStep:
        """Answers the question the session stands at; a second answer to the
        same question (a double tap) is ABORTED, unless it retries the first
        under its `request_id`: then it answers the step the first one gave
        (another answer, or another question named by `question_id`, under
        that id is ALREADY_EXISTS). Given `question_id`, an answer to a
        question the session has moved past is ABORTED too, not taken for the
        next question; one no step ever named is INVALID_ARGUMENT."""
        _request_id(request_id)
        _question_id(question_id)
        async with self.pool.connection() as conn:
            found = await _session(conn, who, session, "zh-CN", create=False)
            first = await store.answered(conn, found.id, request_id) if request_id else None
            if first is not None:
                if first.answer != answer or (question_id and not first.asked(question_id)):
                    raise AlreadyExists(
                        "request_id was used for another answer", reason="REQUEST_ID_REUSED"
                    )
                found.flow, found.node = first.flow, first.node
            # (A retry under its request id is the first send's answer again.)
            elif question_id and question_id != found.question_id:
                raise Aborted(
                    "this question was already answered; start the flow again",
                    reason="QUESTION_ANSWERED",
                )
            choice = found.choose(answer)
            ending = None
            if choice.article:
                ending = await store.published(conn, choice.article, found.locale)
            read = ending.read() if ending is not None else None
            if first is not None:
                found.node = choice.next
                step = found.step(found.locale, ending, choice.action)
                if step.question_id and (before := first.answered_before) is not None:
                    # The next question as the first send named it: counted
                    # from the one it answered, however far the flow went
                    # since (or started again).
                    step = replace(step, question_id=found.question_id_after(before + 1))
                return step
            moved = await store.answer(
                conn,
                found,
                node=choice.next,
                step=choice.taken,
                read=read,
                answer=answer,
                request_id=request_id,
            )
            # Not moved: answered meanwhile, by this very answer's first send
            # (its retry raced it) or by another.
            raced = not moved and bool(request_id)
            if raced and await store.answered(conn, found.id, request_id) is None:
                raced = False
            if not moved and not raced:
                raise Aborted(
                    "this question was already answered; start the flow again",
                    reason="QUESTION_ANSWERED",
                )
            found.node = choice.next
            found.path.append(choice.taken)  # as stored: the next question's id counts it
        if raced:  # answered as the first send was (or refused, if it was another answer)
            return await self.answer_flow(who, session, answer, request_id, question_id)
        return found.step(found.locale, ending, choice.action)

    async def resolve(
        self,
        who: Identity,
        session: str,
        solved: bool,
        locale: str,
        own: TicketDraft = NO_WORDS,
    ) -> TicketDraft | None:
        """Records whether help solved it, once; "not solved" answers with the
        ticket to open (the gateway opens it with the user's contact): the
        user's `own` category, subject and description where they gave them,
        the session's draft where not, recorded as the ticket opened."""
        if not solved:
            v = Violations()
            rules.check_ticket_words(
                v,
                category=own.category,
                subject=own.subject,
                description=own.description,
                required=False,
            )
            v.raise_if_any()
        async with self.pool.connection() as conn:
            found = await _session(conn, who, session, "zh-CN", create=False)
            if solved:
                found.check_can_be_solved()
                found = await store.resolve(conn, found, SOLVED)
                found.check_outcome(SOLVED)
                return None
            recorded = found.outcome == NOT_SOLVED
            if recorded and own.category and own.category != found.ticket_category:
                # Its words, forgotten by an erasure, may be given again, but
                # in the category recorded (the gateway refuses the ticket
                # otherwise): refused before anything is recorded.
                raise AlreadyExists(
                    "this help session's ticket was recorded with another category: send it"
                    " again without category, subject and description to open it as recorded,"
                    " or add to that ticket",
                    reason="SESSION_OUTCOME_RECORDED",
                )
            draft = found.draft_ticket(_locale(locale, found.locale))
            description = rules.said(own.description)
            draft = TicketDraft(
                own.category or draft.category,
                rules.said(own.subject) or draft.subject,
                description or draft.description,
            )
            # The session's draft quotes its searches (the latest that fit:
            # all of them, `store.SEARCHES_KEPT` of at most 200 characters;
            # one left out would only have the words forgotten sooner). The
            # user's own words quote none, whatever words they share with one.
            quoted = [] if description else found.searches
            found = await store.resolve(conn, found, NOT_SOLVED, draft, quoted)
        found.check_outcome(NOT_SOLVED)
        return found.drafted()

    @staticmethod
    def may_read_figures(who: Identity) -> None:
        """Asked first, before the request's times are read."""
        if not who.is_agent:
            raise PermissionDenied("help figures are for agents and admins")

    async def figures(self, who: Identity, start: datetime | None, end: datetime | None) -> Figures:
        """The figures of [start, end), either end open; an end not after the
        start is refused, not answered with zeros."""
        self.may_read_figures(who)
        if start and end and start >= end:
            raise InvalidArgument.field("end_time", "must be after start_time")
        async with self.pool.connection() as conn:
            return await store.figures(conn, start, end)

    # -- self-service: phone number change ------------------------------------------

    async def start_phone_change(self, who: Identity, change: NewPhoneChange) -> phone.Change:
        v = Violations()
        old = rules.check_phone(v, "old_phone", change.old_phone)
        new = rules.check_phone(v, "new_phone", change.new_phone)
        if old and old == new:
            v.add("new_phone", "must differ from the old number")
        if not rules.REQUEST_ID.match(change.request_id):
            v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
        locale = change.locale or "zh-CN"
        if locale not in rules.LOCALES:
            v.add("locale", f"must be one of {', '.join(rules.LOCALES)}")
        v.raise_if_any()
        # The user's key in memory first: the code is sealed under locks.
        await self.personal.ready_for(who.subject)
        async with self.pool.connection() as conn:
            return await phone.start(
                conn,
                user_id=who.subject,
                request_id=change.request_id,
                old_phone=old,
                new_phone=new,
                locale=locale,
                now=self.clock.now(),
                seal=self.personal.seal,
            )

    async def confirm_phone_change(self, who: Identity, name: str, code: str) -> phone.Change:
        ident = resource_id(name, "phone-changes")
        # As typed: a Chinese input method gives full-width digits (１２３４５６),
        # a paste a space or a line break around them.
        code = unicodedata.normalize("NFKC", code).strip()
        if not CODE.fullmatch(code):
            raise InvalidArgument.field("code", "must be the six digits we sent")
        # (Before the change is read: a wrong code or name still reads, or
        # makes, the caller's key.)
        await self.personal.ready_for(who.subject)
        async with self.pool.connection() as conn:
            change = await phone.confirm(
                conn,
                who.subject,
                ident,
                code,
                self.clock.now(),
                self.personal.seal,
                self.seal_verified,
            )
        return _found(change, name)

    async def resend_phone_change_code(
        self, who: Identity, name: str, request_id: str = ""
    ) -> phone.Change:
        """A fresh code; under `request_id` a retry sends none and spends no resend."""
        ident = resource_id(name, "phone-changes")
        _request_id(request_id)
        await self.personal.ready_for(who.subject)
        async with self.pool.connection() as conn:
            change = await phone.resend(
                conn, who.subject, ident, self.clock.now(), self.personal.seal, request_id
            )
        return _found(change, name)

    async def phone_change(self, who: Identity, name: str) -> phone.Change:
        ident = resource_id(name, "phone-changes")
        async with self.pool.connection() as conn:
            change = await phone.get(conn, who.subject, ident)
        return _found(change, name)


async def _articles_found(
    conn: Any, query: str, locale: str, category: str, limit: int
) -> list[tuple[ArticleVersion, float]]:
    """The published articles `query` finds in `locale`, best first; one in
    the other language (Chinese typed on the English page) that finds
    nothing there, those of its own language."""
    found = await store.search(conn, query, locale, category, limit)
    own = _language_of(query)
    if not found and own != locale:
        found = await store.search(conn, query, own, category, limit)
    return found


def _admin(who: Identity) -> None:
    if not who.is_admin:
        raise PermissionDenied("editing the help centre needs the admin role")


async def _session(
    conn: Any, who: Identity, name: str, locale: str, *, create: bool = True
) -> HelpSession:
    """The caller's session named `name`; with no name, a new one when `create`.
    Someone else's is NOT_FOUND, like an unknown one."""
    if not name and create:
        ident = str(uuid.uuid4())
    else:
        ident = resource_id(name, "help-sessions", "session")
    found = await store.session(conn, ident, who.subject, locale, create=not name)
    if found is None:
        raise NotFound(f"{name} not found")
    return found


def _request_id(request_id: str) -> None:
    """An optional retry key: empty, or as StartPhoneChange's."""
    if request_id and not rules.REQUEST_ID.match(request_id):
        raise InvalidArgument.field(
            "request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'"
        )


def _question_id(question_id: str) -> None:
    """An optional question, as `HelpSession.question_id` names one: a
    flow, one of its questions and how many were answered before it. One of
    another form, or naming no such question, was never given out."""
    if not question_id:
        return
    found = QUESTION_ID.fullmatch(question_id)
    if found is None or found["node"] not in flows().get(found["flow"], {}).get("nodes", {}):
        raise InvalidArgument.field(
            "question_id", "must be a question_id a flow step gave, e.g. login/what/0"
        )


def _found(change: phone.Change | None, name: str) -> phone.Change:
    if change is None:
        raise NotFound(f"{name} not found")
    return change


def _slug(name: str, field: str = "name") -> str:
    prefix, _, slug = name.partition("/")
    if prefix != "articles" or not SLUG.match(slug):
        raise InvalidArgument.field(
            field, "must be articles/{slug} (lower-case letters, digits and '-')"
        )
    return slug


def _locale(locale: str, default: str = "zh-CN", field: str = "locale") -> str:
    locale = locale or default
    if locale not in rules.LOCALES:
        raise InvalidArgument.field(field, f"must be one of {', '.join(rules.LOCALES)}")
    return locale


def _language_of(text: str) -> str:
    """The locale whose articles are written as `text` is: Chinese, or not."""
    return "zh-CN" if is_chinese(text) else "en"


def _query(text: str, field: str, limit: int = 200) -> str:
    v = Violations()
    value = rules.text(v, field, text, limit=limit, single_line=True)
    v.raise_if_any()
    return value


def _content(a: ArticleText) -> dict[str, str]:
    v = Violations()
    if a.category not in rules.BY_ID:
        v.add("article.category", "must be a ticket category (ListTicketCategories)")
    title = rules.text(v, "article.title", a.title, limit=200, single_line=True)
    body = rules.text(v, "article.body", a.body, limit=20000)
    keywords = rules.text(v, "article.keywords", a.keywords, limit=1000, required=False)
    v.raise_if_any()
    return {"category": a.category, "title": title, "body": body, "keywords": keywords}

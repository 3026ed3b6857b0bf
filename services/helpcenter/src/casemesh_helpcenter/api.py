"""gRPC entry point of the help centre."""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeAlias

import grpc
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.callers import vouched
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
from casemesh.platform.grpcutil import from_timestamp, resource_id, to_timestamp
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as rules
from casemesh.v1 import helpcenter_pb2 as pb
from casemesh.v1 import helpcenter_pb2_grpc as pb_grpc
from casemesh_helpcenter import flows, phone, store
from casemesh_helpcenter.draft import what_was_tried, within_limit
from casemesh_helpcenter.search import is_chinese

Ctx: TypeAlias = grpc.aio.ServicerContext

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}\Z")
GROUPS = {
    "account": ("账号问题", "Account problems"),
    "content": ("内容问题", "Content problems"),
    "interaction": ("举报与投诉", "Reports and complaints"),
    "ads": ("广告问题", "Ad problems"),
    "other": ("其他", "Other"),
}


def _label(category: str, locale: str) -> str:
    c = rules.BY_ID.get(category)
    if c is None:
        return category
    return c.labels[locale if locale in rules.LOCALES else "en"]


def article_message(v: store.Version) -> pb.Article:
    return pb.Article(
        name=f"articles/{v.slug}",
        locale=v.locale,
        category=v.category,
        category_label=_label(v.category, v.locale),
        title=v.title,
        body=v.body,
        keywords=v.keywords,
        state=pb.ARTICLE_STATE_PUBLISHED if v.published else pb.ARTICLE_STATE_DRAFT,
        version=v.version,
        published_version=v.published_version or 0,
        latest_version=v.latest_version,
        author=v.author,
        update_time=to_timestamp(v.created_at),
    )


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


def _query(text: str, field: str, limit: int = 200) -> str:
    v = Violations()
    value = rules.text(v, field, text, limit=limit, single_line=True)
    v.raise_if_any()
    return value


class HelpServicer(pb_grpc.HelpCenterServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any], clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    @staticmethod
    def _who(context: Ctx) -> Identity:
        return vouched().identity

    def _admin(self, context: Ctx) -> Identity:
        who = self._who(context)
        if not who.is_admin:
            raise PermissionDenied("editing the help centre needs the admin role")
        return who

    async def _session(
        self, conn: Any, who: Identity, name: str, locale: str, *, create: bool = True
    ) -> store.Session:
        if not name and create:
            ident = str(uuid.uuid4())
        else:
            ident = resource_id(name, "help-sessions", "session")
        found = await store.session(conn, ident, who.subject, locale, create=not name)
        if found is None:
            raise NotFound(f"{name} not found")
        return found

    async def SearchArticles(
        self, request: pb.SearchArticlesRequest, context: Ctx
    ) -> pb.SearchArticlesResponse:
        who = self._who(context)
        query = _query(request.query, "query")
        locale = _locale(request.locale, "zh-CN" if is_chinese(query) else "en")
        if not 0 <= request.page_size <= 50:
            raise InvalidArgument.field("page_size", "must be from 1 to 50 (0 means 10)")
        category = request.category.strip()
        if category and not re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", category):
            raise InvalidArgument.field("category", "must be a category id or group, e.g. account")
        async with self.pool.connection() as conn:
            session = await self._session(conn, who, request.session, locale)
            found = await store.search(conn, query, locale, category, request.page_size or 10)
            await store.log_search(conn, session, query, len(found))
        return pb.SearchArticlesResponse(
            results=[
                pb.SearchResult(article=article_message(v), score=score, snippet=v.body[:120])
                for v, score in found
            ],
            session=f"help-sessions/{session.id}",
        )

    async def SuggestArticles(
        self, request: pb.SuggestArticlesRequest, context: Ctx
    ) -> pb.SuggestArticlesResponse:
        self._who(context)
        prefix = _query(request.prefix, "prefix", limit=50)
        locale = _locale(request.locale, "zh-CN" if is_chinese(prefix) else "en")
        async with self.pool.connection() as conn:
            found = await store.suggest(conn, prefix, locale)
        return pb.SuggestArticlesResponse(suggestions=[article_message(v) for v in found])

    async def GetArticle(self, request: pb.GetArticleRequest, context: Ctx) -> pb.Article:
        who = self._who(context)
        slug, locale = _slug(request.name), _locale(request.locale)
        if request.version < 0:
            raise InvalidArgument.field("version", "must be a version number (0: the current)")
        if request.version and not who.is_admin:
            raise PermissionDenied("earlier versions are for admins")
        async with self.pool.connection() as conn:
            found = await store.get(conn, slug, locale, request.version)
            if found is None or (not who.is_admin and not found.published):
                raise NotFound(f"articles/{slug} ({locale}) not found")
            if request.session:
                session = await self._session(conn, who, request.session, locale, create=False)
                read = {"slug": slug, "title": found.title, "category": found.category}
                await store.add_read(conn, session, read)
        return article_message(found)

    async def ListHelpCategories(
        self, request: pb.ListHelpCategoriesRequest, context: Ctx
    ) -> pb.ListHelpCategoriesResponse:
        self._who(context)
        locale = _locale(request.locale)
        async with self.pool.connection() as conn:
            counts = await store.category_counts(conn, locale)
        index = 0 if locale == "zh-CN" else 1
        tree = []
        for group, labels in GROUPS.items():
            children = [
                pb.HelpCategory(
                    id=c.id, label=_label(c.id, locale), article_count=counts.get(c.id, 0)
                )
                for c in rules.CATEGORIES
                if c.id.startswith(group + ".")
            ]
            tree.append(
                pb.HelpCategory(
                    id=group,
                    label=labels[index],
                    article_count=sum(c.article_count for c in children),
                    children=children,
                )
            )
        return pb.ListHelpCategoriesResponse(categories=tree)

    def _content(self, a: pb.Article) -> dict[str, str]:
        v = Violations()
        if a.category not in rules.BY_ID:
            v.add("article.category", "must be a ticket category (ListTicketCategories)")
        title = rules.text(v, "article.title", a.title, limit=200, single_line=True)
        body = rules.text(v, "article.body", a.body, limit=20000)
        keywords = rules.text(v, "article.keywords", a.keywords, limit=1000, required=False)
        v.raise_if_any()
        return {"category": a.category, "title": title, "body": body, "keywords": keywords}

    async def CreateArticle(self, request: pb.CreateArticleRequest, context: Ctx) -> pb.Article:
        who = self._admin(context)
        a = request.article
        slug = _slug(a.name, "article.name")
        locale = _locale(a.locale, field="article.locale")
        content = self._content(a)
        async with self.pool.connection() as conn:
            result = await store.write_version(
                conn, slug=slug, locale=locale, author=who.subject, base_version=None, **content
            )
            if result == "exists":
                raise AlreadyExists(f"articles/{slug} ({locale}) exists; update it instead")
            found = await store.get(conn, slug, locale, 1)
        assert found is not None
        return article_message(found)

    async def UpdateArticle(self, request: pb.UpdateArticleRequest, context: Ctx) -> pb.Article:
        who = self._admin(context)
        a = request.article
        slug, locale = _slug(a.name, "article.name"), _locale(a.locale, field="article.locale")
        content = self._content(a)
        if request.base_version < 1:
            raise InvalidArgument.field("base_version", "is the latest version you read")
        async with self.pool.connection() as conn:
            result = await store.write_version(
                conn,
                slug=slug,
                locale=locale,
                author=who.subject,
                base_version=request.base_version,
                **content,
            )
            if result == "absent":
                raise NotFound(f"articles/{slug} ({locale}) not found")
            if result == "stale":
                raise Aborted("the article changed since you read it; read it again")
            assert isinstance(result, int)
            found = await store.get(conn, slug, locale, result)
        assert found is not None
        return article_message(found)

    async def PublishArticle(self, request: pb.PublishArticleRequest, context: Ctx) -> pb.Article:
        self._admin(context)
        slug, locale = _slug(request.name), _locale(request.locale)
        if request.version < 0:
            raise InvalidArgument.field("version", "must be a version number (0: the latest)")
        async with self.pool.connection() as conn:
            current = await store.get(conn, slug, locale)
            if current is None:
                raise NotFound(f"articles/{slug} ({locale}) not found")
            if request.version > current.latest_version:
                raise InvalidArgument.field("version", f"the latest is {current.latest_version}")
            target = None if request.unpublish else (request.version or current.latest_version)
            result = await store.publish(conn, slug, locale, target)
        if isinstance(result, str):
            raise NotFound(f"articles/{slug} ({locale}) not found")
        return article_message(result)

    async def ListArticleVersions(
        self, request: pb.ListArticleVersionsRequest, context: Ctx
    ) -> pb.ListArticleVersionsResponse:
        self._admin(context)
        slug, locale = _slug(request.name), _locale(request.locale)
        async with self.pool.connection() as conn:
            found = await store.versions(conn, slug, locale)
        if not found:
            raise NotFound(f"articles/{slug} ({locale}) not found")
        return pb.ListArticleVersionsResponse(versions=[article_message(v) for v in found])

    # -- guided flows and deflection ------------------------------------------

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Ctx) -> pb.ListFlowsResponse:
        self._who(context)
        locale = _locale(request.locale)
        return pb.ListFlowsResponse(flows=[_flow_message(fid, locale) for fid in flows.flows()])

    async def StartFlow(self, request: pb.StartFlowRequest, context: Ctx) -> pb.FlowStep:
        who = self._who(context)
        locale = _locale(request.locale)
        prefix, _, fid = request.flow.partition("/")
        if prefix != "flows" or fid not in flows.flows():
            raise InvalidArgument.field(
                "flow", f"must be one of {', '.join('flows/' + f for f in flows.flows())}"
            )
        async with self.pool.connection() as conn:
            session = await self._session(conn, who, request.session, locale)
            session.flow, session.node = fid, flows.flows()[fid]["start"]
            session.path = []
            await store.save_session(conn, session)
        return _step(session, locale)

    async def AnswerFlow(self, request: pb.AnswerFlowRequest, context: Ctx) -> pb.FlowStep:
        who = self._who(context)
        async with self.pool.connection() as conn:
            session = await self._session(conn, who, request.session, "zh-CN", create=False)
            node = flows.flows().get(session.flow, {}).get("nodes", {}).get(session.node)
            if node is None:
                raise FailedPrecondition("this session has no question waiting (StartFlow first)")
            if not 0 <= request.answer < len(node["answers"]):
                raise InvalidArgument.field(
                    "answer", f"must be from 0 to {len(node['answers']) - 1}"
                )
            chosen = node["answers"][request.answer]
            step_taken = {
                "question": flows.text(node["question"], session.locale),
                "answer": flows.text(chosen["label"], session.locale),
            }
            ending = None
            read = None
            if "article" in chosen:
                ending = await store.published(conn, chosen["article"], session.locale)
                if ending is not None:
                    read = {
                        "slug": ending.slug,
                        "title": ending.title,
                        "category": ending.category,
                    }
            moved = await store.answer(
                conn, session, node=chosen.get("next", ""), step=step_taken, read=read
            )
            if not moved:
                raise Aborted("this question was already answered; read the session again")
            session.node = chosen.get("next", "")
        step = _step(session, session.locale)
        if ending is not None:
            step.article.CopyFrom(article_message(ending))
        step.action = chosen.get("action", "")
        return step

    async def ResolveHelp(
        self, request: pb.ResolveHelpRequest, context: Ctx
    ) -> pb.ResolveHelpResponse:
        """Records the answer; "not solved" returns the ticket to open (the
        gateway opens it with the user's contact)."""
        who = self._who(context)
        async with self.pool.connection() as conn:
            session = await self._session(conn, who, request.session, "zh-CN", create=False)
            if request.solved:
                if not (session.searches or session.articles or session.flow):
                    raise FailedPrecondition(
                        "nothing was searched, read or followed in this session"
                    )
                session = await store.resolve(conn, session, "SOLVED")
                if session.outcome != "SOLVED":
                    raise FailedPrecondition("a ticket was already opened for this help session")
                return pb.ResolveHelpResponse()
            locale = _locale(request.locale, session.locale)
            category = _ticket_category(session)
            subject = (
                f"自助服务未能解决：{_label(category, 'zh-CN')}"
                if locale == "zh-CN"
                else f"Self-service did not solve it: {_label(category, 'en')}"
            )
            draft = (category, subject, what_was_tried(session, locale))
            session = await store.resolve(conn, session, "NOT_SOLVED", draft)
        if session.outcome != "NOT_SOLVED":
            raise FailedPrecondition("this help session was already marked as solved")
        return pb.ResolveHelpResponse(
            category=session.ticket_category,
            subject=session.ticket_subject,
            description=within_limit(session.ticket_description),
        )

    async def GetHelpFigures(
        self, request: pb.GetHelpFiguresRequest, context: Ctx
    ) -> pb.HelpFigures:
        who = self._who(context)
        if not who.is_agent:
            raise PermissionDenied("help figures are for agents and admins")
        start, end = (
            from_timestamp(getattr(request, f), f) if request.HasField(f) else None
            for f in ("start_time", "end_time")
        )
        async with self.pool.connection() as conn:
            f = await store.figures(conn, start, end)
        outcomes = f["solved"] + f["tickets"]
        return pb.HelpFigures(
            searches=f["searches"],
            zero_result_searches=f["zero_results"],
            solved=f["solved"],
            tickets_after_help=f["tickets"],
            deflection_rate=f["solved"] / outcomes if outcomes else 0.0,
        )

    # -- self-service: phone number change -------------------------------------

    async def StartPhoneChange(
        self, request: pb.StartPhoneChangeRequest, context: Ctx
    ) -> pb.PhoneChange:
        who = self._who(context)
        v = Violations()
        old, new = request.old_phone.strip(), request.new_phone.strip()
        for field, number in (("old_phone", old), ("new_phone", new)):
            if not rules.E164.match(number):
                v.add(field, "must be an E.164 number, e.g. +8613800138000")
        if old and old == new:
            v.add("new_phone", "must differ from the old number")
        if not rules.REQUEST_ID.match(request.request_id):
            v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
        locale = request.locale or "zh-CN"
        if locale not in rules.LOCALES:
            v.add("locale", f"must be one of {', '.join(rules.LOCALES)}")
        v.raise_if_any()
        async with self.pool.connection() as conn:
            change = await phone.start(
                conn,
                user_id=who.subject,
                request_id=request.request_id,
                old_phone=old,
                new_phone=new,
                locale=locale,
                now=self.clock.now(),
            )
        return _change_message(change)

    async def ConfirmPhoneChange(
        self, request: pb.ConfirmPhoneChangeRequest, context: Ctx
    ) -> pb.PhoneChange:
        who = self._who(context)
        ident = resource_id(request.name, "phone-changes")
        if not re.fullmatch(r"[0-9]{6}", request.code):
            raise InvalidArgument.field("code", "must be the six digits we sent")
        async with self.pool.connection() as conn:
            change = await phone.confirm(conn, who.subject, ident, request.code, self.clock.now())
        if change is None:
            raise NotFound(f"{request.name} not found")
        return _change_message(change)

    async def ResendPhoneChangeCode(
        self, request: pb.ResendPhoneChangeCodeRequest, context: Ctx
    ) -> pb.PhoneChange:
        who = self._who(context)
        ident = resource_id(request.name, "phone-changes")
        async with self.pool.connection() as conn:
            change = await phone.resend(conn, who.subject, ident, self.clock.now())
        if change is None:
            raise NotFound(f"{request.name} not found")
        return _change_message(change)

    async def GetPhoneChange(
        self, request: pb.GetPhoneChangeRequest, context: Ctx
    ) -> pb.PhoneChange:
        who = self._who(context)
        ident = resource_id(request.name, "phone-changes")
        async with self.pool.connection() as conn:
            change = await phone.get(conn, who.subject, ident)
        if change is None:
            raise NotFound(f"{request.name} not found")
        return _change_message(change)

    async def RecommendArticles(
        self, request: pb.RecommendArticlesRequest, context: Ctx
    ) -> pb.RecommendArticlesResponse:
        """What the caller's recent searches found, then articles in the
        categories of their open tickets; eight at most, each once."""
        who = self._who(context)
        locale = _locale(request.locale)
        categories = [c for c in request.categories if c in rules.BY_ID][:10]
        picked: dict[str, store.Version] = {}
        async with self.pool.connection() as conn:
            if request.session:
                session = await self._session(conn, who, request.session, locale, create=False)
                for query in reversed(session.searches[-3:]):
                    for v, _ in await store.search(conn, query, locale, "", 2):
                        picked.setdefault(v.slug, v)
            for category in categories:
                for v in await store.in_category(conn, category, locale, 3):
                    picked.setdefault(v.slug, v)
        return pb.RecommendArticlesResponse(
            articles=[article_message(v) for v in list(picked.values())[:8]]
        )


def _flow_message(fid: str, locale: str) -> pb.Flow:
    flow = flows.flows().get(fid)
    if flow is None:  # a flow since removed from the content
        return pb.Flow(name=f"flows/{fid}")
    return pb.Flow(
        name=f"flows/{fid}", title=flows.text(flow["title"], locale), category=flow["category"]
    )


def _step(session: store.Session, locale: str) -> pb.FlowStep:
    step = pb.FlowStep(
        session=f"help-sessions/{session.id}",
        flow=_flow_message(session.flow, locale),
        finished=not session.node,
    )
    node = flows.flows().get(session.flow, {}).get("nodes", {}).get(session.node)
    if node is not None:
        step.question = flows.text(node["question"], locale)
        step.answers.extend(
            pb.FlowAnswer(label=flows.text(a["label"], locale)) for a in node["answers"]
        )
    return step


def _ticket_category(session: store.Session) -> str:
    """The flow's category; else the one the articles read point to most."""
    if session.flow in flows.flows():
        return str(flows.flows()[session.flow]["category"])
    counts: dict[str, int] = {}
    for read in session.articles:
        counts[read["category"]] = counts.get(read["category"], 0) + 1
    return max(counts, key=lambda c: counts[c]) if counts else "other.general"


def _mask(number: str) -> str:
    return number[:-8] + "****" + number[-4:] if len(number) > 8 else "****"


def _change_message(c: phone.Change) -> pb.PhoneChange:
    return pb.PhoneChange(
        name=c.name,
        state=pb.PhoneChangeState.Value(f"PHONE_CHANGE_STATE_{c.state}"),
        old_phone=_mask(c.old_phone),
        new_phone=_mask(c.new_phone),
        code_expire_time=to_timestamp(c.code_expires) if c.state.startswith("AWAITING") else None,
        attempts_left=max(0, phone.MAX_ATTEMPTS - c.attempts),
        resends_left=phone.resends_left(c) if c.state.startswith("AWAITING") else 0,
        create_time=to_timestamp(c.created_at),
    )

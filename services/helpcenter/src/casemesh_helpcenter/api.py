"""gRPC entry point of the help centre: decode, call one application method,
encode."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import grpc

from casemesh.platform.callers import vouched
from casemesh.platform.fields import fields_of, record_from
from casemesh.platform.grpcutil import from_timestamp, to_timestamp
from casemesh.platform.identity import Identity
from casemesh.v1 import helpcenter_pb2 as pb
from casemesh.v1 import helpcenter_pb2_grpc as pb_grpc
from casemesh_helpcenter import phone
from casemesh_helpcenter.application import ArticleText, HelpCenter, NewPhoneChange
from casemesh_helpcenter.domain import (
    ArticleVersion,
    Flow,
    FlowStep,
    HelpCategory,
    TicketDraft,
    category_label,
)

Ctx: TypeAlias = grpc.aio.ServicerContext


def article_message(v: ArticleVersion, staff: bool) -> pb.Article:
    """The article as `staff` (agents, admins) or a user sees it: a user is
    not shown who wrote it (a staff account) nor whether drafts wait."""
    return pb.Article(
        **fields_of(v, "locale", "category", "title", "body", "keywords", "version"),
        latest_version=v.latest_version if staff else 0,
        author=v.author if staff else "",
        name=f"articles/{v.slug}",
        category_label=category_label(v.category, v.locale),
        state=pb.ARTICLE_STATE_PUBLISHED if v.published else pb.ARTICLE_STATE_DRAFT,
        published_version=v.published_version or 0,
        update_time=to_timestamp(v.created_at),
    )


def article_text(a: pb.Article) -> ArticleText:
    return record_from(ArticleText, a)


def category_message(c: HelpCategory) -> pb.HelpCategory:
    return pb.HelpCategory(
        id=c.id,
        label=c.label,
        article_count=c.article_count,
        children=[category_message(child) for child in c.children],
    )


def flow_message(f: Flow) -> pb.Flow:
    return pb.Flow(name=f"flows/{f.id}", title=f.title, category=f.category)


def step_message(s: FlowStep, staff: bool) -> pb.FlowStep:
    step = pb.FlowStep(
        session=s.session,
        flow=flow_message(s.flow),
        finished=s.finished,
        question=s.question,
        answers=[pb.FlowAnswer(label=label) for label in s.answers],
        action=s.action,
        question_id=s.question_id,
    )
    if s.article is not None:
        step.article.CopyFrom(article_message(s.article, staff))
    return step


def _mask(number: str) -> str:
    return number[:-8] + "****" + number[-4:] if len(number) > 8 else "****"


def session_message(row: dict[str, Any]) -> pb.HelpSession:
    """A help session as `store.sessions_of` reads it."""
    return pb.HelpSession(
        name=f"help-sessions/{row['id']}",
        locale=row["locale"],
        flow=f"flows/{row['flow']}" if row["flow"] else "",
        path=[pb.HelpStep(question=p["question"], answer=p["answer"]) for p in row["path"]],
        searches=row["searches"],
        articles=[
            pb.ArticleRead(article=f"articles/{a['slug']}", title=a.get("title", ""))
            for a in row["articles"]
        ],
        outcome=row["outcome"],
        ticket_category=row["ticket_category"],
        ticket_subject=row["ticket_subject"],
        ticket_description=row["ticket_description"],
        create_time=to_timestamp(row["created_at"]),
        resolve_time=to_timestamp(row["resolved_at"]),
        search_log=[
            pb.LoggedSearch(
                query=s["query"], results=s["results"], search_time=to_timestamp(s["at"])
            )
            for s in row["search_log"]
        ],
    )


def change_message(c: phone.Change, now: datetime) -> pb.PhoneChange:
    """The change as its user sees it `now`: one left unfinished past its hour
    is EXPIRED, with no code to wait for and none to ask for again."""
    awaiting = c.state.startswith("AWAITING")
    state = c.state
    if awaiting and phone.expired(c, now):
        awaiting, state = False, "EXPIRED"
    return pb.PhoneChange(
        name=c.name,
        state=pb.PhoneChangeState.Value(f"PHONE_CHANGE_STATE_{state}"),
        old_phone=_mask(c.old_phone),
        new_phone=_mask(c.new_phone),
        code_expire_time=to_timestamp(c.code_expires) if awaiting else None,
        attempts_left=max(0, phone.MAX_ATTEMPTS - c.attempts),
        resends_left=phone.resends_left(c) if awaiting else 0,
        create_time=to_timestamp(c.created_at),
    )


def _who() -> Identity:
    """The caller the gateway vouched for (checked before the handler ran)."""
    return vouched().identity


class HelpServicer(pb_grpc.HelpCenterServiceServicer):
    def __init__(self, app: HelpCenter) -> None:
        self.app = app

    async def SearchArticles(
        self, request: pb.SearchArticlesRequest, context: Ctx
    ) -> pb.SearchArticlesResponse:
        r, who = request, _who()
        found = await self.app.search(who, r.query, r.locale, r.category, r.page_size, r.session)
        return pb.SearchArticlesResponse(
            results=[
                pb.SearchResult(
                    article=article_message(v, who.is_agent), score=score, snippet=v.body[:120]
                )
                for v, score in found.found
            ],
            session=found.session,
        )

    async def SuggestArticles(
        self, request: pb.SuggestArticlesRequest, context: Ctx
    ) -> pb.SuggestArticlesResponse:
        staff = _who().is_agent
        found = await self.app.suggest(request.prefix, request.locale)
        return pb.SuggestArticlesResponse(suggestions=[article_message(v, staff) for v in found])

    async def GetArticle(self, request: pb.GetArticleRequest, context: Ctx) -> pb.Article:
        r, who = request, _who()
        return article_message(
            await self.app.article(who, r.name, r.locale, r.version, r.session), who.is_agent
        )

    async def ListHelpCategories(
        self, request: pb.ListHelpCategoriesRequest, context: Ctx
    ) -> pb.ListHelpCategoriesResponse:
        _who()
        tree = await self.app.categories(request.locale)
        return pb.ListHelpCategoriesResponse(categories=[category_message(c) for c in tree])

    async def CreateArticle(self, request: pb.CreateArticleRequest, context: Ctx) -> pb.Article:
        return article_message(
            await self.app.create_article(
                _who(), article_text(request.article), request.request_id
            ),
            staff=True,  # admins only
        )

    async def UpdateArticle(self, request: pb.UpdateArticleRequest, context: Ctx) -> pb.Article:
        return article_message(
            await self.app.update_article(
                _who(), article_text(request.article), request.base_version, request.request_id
            ),
            staff=True,  # admins only
        )

    async def PublishArticle(self, request: pb.PublishArticleRequest, context: Ctx) -> pb.Article:
        r = request
        return article_message(
            await self.app.publish_article(_who(), r.name, r.locale, r.version, r.unpublish),
            staff=True,  # admins only
        )

    async def ListArticleVersions(
        self, request: pb.ListArticleVersionsRequest, context: Ctx
    ) -> pb.ListArticleVersionsResponse:
        found = await self.app.article_versions(_who(), request.name, request.locale)
        return pb.ListArticleVersionsResponse(
            versions=[article_message(v, staff=True) for v in found]  # admins only
        )

    async def RecommendArticles(
        self, request: pb.RecommendArticlesRequest, context: Ctx
    ) -> pb.RecommendArticlesResponse:
        r, who = request, _who()
        found = await self.app.recommend(who, r.locale, r.session, list(r.categories))
        return pb.RecommendArticlesResponse(
            articles=[article_message(v, who.is_agent) for v in found]
        )

    async def ListMyHelpSessions(
        self, request: pb.ListMyHelpSessionsRequest, context: Ctx
    ) -> pb.ListMyHelpSessionsResponse:
        rows, token = await self.app.my_sessions(_who(), request.page_size, request.page_token)
        return pb.ListMyHelpSessionsResponse(
            sessions=[session_message(r) for r in rows], next_page_token=token
        )

    # -- guided flows and deflection ------------------------------------------

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Ctx) -> pb.ListFlowsResponse:
        _who()
        found = await self.app.list_flows(request.locale)
        return pb.ListFlowsResponse(flows=[flow_message(f) for f in found])

    async def StartFlow(self, request: pb.StartFlowRequest, context: Ctx) -> pb.FlowStep:
        r, who = request, _who()
        return step_message(
            await self.app.start_flow(who, r.flow, r.session, r.locale), who.is_agent
        )

    async def AnswerFlow(self, request: pb.AnswerFlowRequest, context: Ctx) -> pb.FlowStep:
        who = _who()
        return step_message(
            await self.app.answer_flow(
                who, request.session, request.answer, request.request_id, request.question_id
            ),
            who.is_agent,
        )

    async def ResolveHelp(
        self, request: pb.ResolveHelpRequest, context: Ctx
    ) -> pb.ResolveHelpResponse:
        r = request
        own = TicketDraft(r.category, r.subject, r.description)
        draft = await self.app.resolve(_who(), r.session, r.solved, r.locale, own)
        if draft is None:
            return pb.ResolveHelpResponse()
        return pb.ResolveHelpResponse(
            category=draft.category, subject=draft.subject, description=draft.description
        )

    async def GetHelpFigures(
        self, request: pb.GetHelpFiguresRequest, context: Ctx
    ) -> pb.HelpFigures:
        who = _who()
        self.app.may_read_figures(who)
        start, end = (
            from_timestamp(getattr(request, f), f) if request.HasField(f) else None
            for f in ("start_time", "end_time")
        )
        f = await self.app.figures(who, start, end)
        return pb.HelpFigures(
            searches=f.searches,
            zero_result_searches=f.zero_results,
            solved=f.solved,
            tickets_after_help=f.tickets,
            deflection_rate=f.deflection_rate,
        )

    # -- self-service: phone number change -------------------------------------

    async def StartPhoneChange(
        self, request: pb.StartPhoneChangeRequest, context: Ctx
    ) -> pb.PhoneChange:
        r = request
        change = NewPhoneChange(r.request_id, r.old_phone, r.new_phone, r.locale)
        return change_message(
            await self.app.start_phone_change(_who(), change), self.app.clock.now()
        )

    async def ConfirmPhoneChange(
        self, request: pb.ConfirmPhoneChangeRequest, context: Ctx
    ) -> pb.PhoneChange:
        return change_message(
            await self.app.confirm_phone_change(_who(), request.name, request.code),
            self.app.clock.now(),
        )

    async def ResendPhoneChangeCode(
        self, request: pb.ResendPhoneChangeCodeRequest, context: Ctx
    ) -> pb.PhoneChange:
        return change_message(
            await self.app.resend_phone_change_code(_who(), request.name, request.request_id),
            self.app.clock.now(),
        )

    async def GetPhoneChange(
        self, request: pb.GetPhoneChangeRequest, context: Ctx
    ) -> pb.PhoneChange:
        return change_message(
            await self.app.phone_change(_who(), request.name), self.app.clock.now()
        )

    async def ListMyPhoneChanges(
        self, request: pb.ListMyPhoneChangesRequest, context: Ctx
    ) -> pb.ListMyPhoneChangesResponse:
        found, token = await self.app.my_phone_changes(
            _who(), request.page_size, request.page_token
        )
        now = self.app.clock.now()
        return pb.ListMyPhoneChangesResponse(
            phone_changes=[change_message(c, now) for c in found], next_page_token=token
        )

"""gRPC entry point of the help centre."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import grpc
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as rules
from casemesh.v1 import helpcenter_pb2 as pb
from casemesh.v1 import helpcenter_pb2_grpc as pb_grpc
from casemesh_helpcenter import store
from casemesh_helpcenter.search import is_chinese

Ctx: TypeAlias = grpc.aio.ServicerContext

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}$")
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


def _locale(locale: str, default: str = "zh-CN") -> str:
    locale = locale or default
    if locale not in rules.LOCALES:
        raise InvalidArgument.field("locale", f"must be one of {', '.join(rules.LOCALES)}")
    return locale


def _query(text: str, field: str, limit: int = 200) -> str:
    v = Violations()
    value = rules.text(v, field, text, limit=limit, single_line=True)
    v.raise_if_any()
    return value


class HelpServicer(pb_grpc.HelpCenterServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @staticmethod
    def _who(context: Ctx) -> Identity:
        return Identity.from_metadata(context.invocation_metadata())

    def _admin(self, context: Ctx) -> Identity:
        who = self._who(context)
        if not who.is_admin:
            raise PermissionDenied("editing the help centre needs the admin role")
        return who

    async def SearchArticles(
        self, request: pb.SearchArticlesRequest, context: Ctx
    ) -> pb.SearchArticlesResponse:
        self._who(context)
        query = _query(request.query, "query")
        locale = _locale(request.locale, "zh-CN" if is_chinese(query) else "en")
        if not 0 <= request.page_size <= 50:
            raise InvalidArgument.field("page_size", "must be from 1 to 50 (0 means 10)")
        category = request.category.strip()
        if category and not re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", category):
            raise InvalidArgument.field("category", "must be a category id or group, e.g. account")
        async with self.pool.connection() as conn:
            found = await store.search(conn, query, locale, category, request.page_size or 10)
        return pb.SearchArticlesResponse(
            results=[
                pb.SearchResult(article=article_message(v), score=score, snippet=v.body[:120])
                for v, score in found
            ]
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
        locale = _locale(a.locale)
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
        slug, locale = _slug(a.name, "article.name"), _locale(a.locale)
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

"""Articles, their versions and the search index, in PostgreSQL.

Each (slug, locale) article has numbered versions that are never changed or
deleted; one of them may be published. The search index holds the published
version only, so a draft is never found by users."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from casemesh.platform import schema
from casemesh.platform.eventstore import advisory_lock
from casemesh.platform.logging import get_logger
from casemesh.platform.paging import older_than
from casemesh.platform.periods import within
from casemesh_helpcenter.domain import ArticleVersion, Figures, HelpSession, TicketDraft
from casemesh_helpcenter.search import (
    folded,
    folded_prefix,
    index_text,
    index_version,
    query_terms,
)

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS help_articles (
    slug text NOT NULL, locale text NOT NULL, category text NOT NULL,
    published_version int, latest_version int NOT NULL,
    PRIMARY KEY (slug, locale));
CREATE TABLE IF NOT EXISTS help_versions (
    slug text NOT NULL, locale text NOT NULL, version int NOT NULL,
    category text NOT NULL, title text NOT NULL, body text NOT NULL, keywords text NOT NULL,
    author text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slug, locale, version));
-- An edit's retry key: a retry finds the version it wrote.
CREATE TABLE IF NOT EXISTS help_edit_requests (
    author text NOT NULL, request_id text NOT NULL,
    slug text NOT NULL, locale text NOT NULL, version int NOT NULL,
    PRIMARY KEY (author, request_id));
CREATE TABLE IF NOT EXISTS help_search (
    slug text NOT NULL, locale text NOT NULL, category text NOT NULL, title text NOT NULL,
    document tsvector NOT NULL, PRIMARY KEY (slug, locale));
CREATE INDEX IF NOT EXISTS help_search_title ON help_search (locale, lower(title));
CREATE TABLE IF NOT EXISTS help_search_words (
    locale text NOT NULL, word text NOT NULL, slug text NOT NULL, category text NOT NULL,
    weight float8 NOT NULL, PRIMARY KEY (locale, word, slug) INCLUDE (category, weight));
CREATE INDEX IF NOT EXISTS help_search_words_article ON help_search_words (slug, locale);
DROP INDEX IF EXISTS help_search_document;
-- The tokeniser that wrote an article's words (`search.index_version`): a
-- start indexes again those another wrote ('': before this was kept).
ALTER TABLE help_search ADD COLUMN IF NOT EXISTS tokeniser text NOT NULL DEFAULT '';
-- The title read as a typed prefix is (`search.folded`), for suggestions;
-- NULL: written before it was kept, or by an earlier release (`create_schema`).
ALTER TABLE help_search ADD COLUMN IF NOT EXISTS folded_title text;
"""

# Each word of a published article's document with its share of the article's
# rank: what ts_rank_cd(document, query, 1) gives an OR query is a sum over
# the query's words (every occurrence is a cover of its own, worth its weight:
# A 1.0, B 0.4), divided by ln(1 + the document's length). Kept per word, a
# search adds up the rows of its words instead of ranking every article.
WORDS = """
INSERT INTO help_search_words (locale, word, slug, category, weight)
SELECT s.locale, w.lexeme, s.slug, s.category,
    (SELECT sum(CASE c WHEN 'A' THEN 1.0 WHEN 'B' THEN 0.4 WHEN 'C' THEN 0.2 ELSE 0.1 END)
     FROM unnest(w.weights) c)::float8 / ln(1 + n.length)
FROM help_search s
CROSS JOIN LATERAL (
    SELECT sum(coalesce(array_length(positions, 1), 1)) AS length FROM unnest(s.document)) n
CROSS JOIN LATERAL unnest(s.document) w
"""


async def create_schema(conn: psycopg.AsyncConnection[Any], *others: str) -> int:
    """The help centre's tables (articles, search, sessions) and `others` (the
    phone changes'), when the statements changed (`casemesh.platform.schema`);
    then the published articles indexed by another tokeniser indexed again,
    and the words of what was published before the word table existed;
    returns how many articles it indexed again."""
    # Replicas starting together: one re-indexes, the others find it done.
    async with advisory_lock(conn, "casemesh-helpcenter-schema"):
        await schema.ensure(conn, "helpcenter", [SCHEMA, SESSIONS, UNSHOWN_SEARCHES, *others])
        indexed = await reindex(conn)
        # A database from before the word table: index what is published.
        await conn.execute(
            WORDS + " WHERE NOT EXISTS (SELECT FROM help_search_words x"
            " WHERE x.slug = s.slug AND x.locale = s.locale)"
        )
        await fold_titles(conn)
    return indexed


async def fold_titles(conn: psycopg.AsyncConnection[Any]) -> int:
    """Keeps the folded title of the published articles indexed without it
    (before it was kept, or by a replica of an earlier release during a
    rollout); returns how many. At every start: one query when none is."""
    cur = await conn.execute(
        "SELECT slug, locale, title FROM help_search WHERE folded_title IS NULL"
    )
    rows = await cur.fetchall()
    for slug, locale, title in rows:
        await conn.execute(
            "UPDATE help_search SET folded_title = %s WHERE slug = %s AND locale = %s"
            " AND title = %s",
            (folded(title), slug, locale, title),
        )
    return len(rows)


async def reindex(conn: psycopg.AsyncConnection[Any]) -> int:
    """Indexes again the published articles whose words another tokeniser
    wrote (an earlier release's: other stems, synonyms, dictionary), in one
    transaction, so searches see the old words until all the new ones are
    there; returns how many. Each start asks once: when none is stale, one
    query. The articles' rows are locked first, as a publish (its UPDATE of
    `help_articles`) does, so that a publish on a running replica waits, or
    is waited for, and is never indexed over (nor its rows left twice)."""
    tokeniser = index_version()
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT v.*, a.published_version, a.latest_version"
            " FROM help_search s JOIN help_articles a USING (slug, locale)"
            " JOIN help_versions v ON v.slug = a.slug AND v.locale = a.locale"
            " AND v.version = a.published_version"
            " WHERE s.tokeniser <> %s ORDER BY v.slug, v.locale FOR UPDATE OF a",
            (tokeniser,),
        )
        stale = [ArticleVersion(**row) for row in await cur.fetchall()]
        for article in stale:
            await _index(conn, article)
    if stale:
        log.info("helpcenter.search.reindexed", articles=len(stale), tokeniser=tokeniser)
    return len(stale)


async def _index(conn: psycopg.AsyncConnection[Any], article: ArticleVersion) -> None:
    """The search index's rows of a published version, in place of any it had
    (call in a transaction)."""
    slug, locale = article.slug, article.locale
    await _unindex(conn, slug, locale)
    await conn.execute(
        "INSERT INTO help_search (slug, locale, category, title, folded_title, tokeniser,"
        " document) VALUES (%s, %s, %s, %s, %s, %s, setweight(to_tsvector('simple', %s), 'A')"
        " || setweight(to_tsvector('simple', %s), 'A')"
        " || setweight(to_tsvector('simple', %s), 'B'))",
        (
            slug,
            locale,
            article.category,
            article.title,
            folded(article.title),
            index_version(),
            index_text(article.title),
            index_text(article.keywords),
            index_text(article.body),
        ),
    )
    await conn.execute(WORDS + " WHERE s.slug = %s AND s.locale = %s", (slug, locale))


async def _unindex(conn: psycopg.AsyncConnection[Any], slug: str, locale: str) -> None:
    """Takes an article out of the search index (call in a transaction)."""
    for table in ("help_search", "help_search_words"):
        await conn.execute(f"DELETE FROM {table} WHERE slug = %s AND locale = %s", (slug, locale))


async def seed(conn: psycopg.AsyncConnection[Any]) -> int:
    """Loads the starter knowledge base, published, into an empty help centre."""
    # Replicas starting together: one seeds, the others find it done.
    async with advisory_lock(conn, "casemesh-helpcenter-seed"):
        return await _seed(conn)


async def _seed(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM help_articles")
    row = await cur.fetchone()
    if row and row[0]:
        return 0
    raw: dict[str, Any] = json.loads(
        resources.files("casemesh_helpcenter").joinpath("knowledge_base.json").read_text()
    )
    count = 0
    async with conn.transaction():
        for entry in raw["articles"]:
            for locale in ("zh-CN", "en"):
                text = entry[locale]
                await write_version(
                    conn,
                    slug=entry["slug"],
                    locale=locale,
                    category=entry["category"],
                    title=text["title"],
                    body=text["body"],
                    keywords=text["keywords"],
                    author="knowledge-base",
                    base_version=None,
                )
                await publish(conn, entry["slug"], locale, 1)
                count += 1
    return count


class NotWritten(enum.Enum):
    """Why a new version was not written, or a version not published."""

    EXISTS = "exists"  # version 1 of an article that already exists
    STALE = "stale"  # the base version is no longer the latest
    ABSENT = "absent"  # no such article (or version)
    REUSED = "reused"  # the author's request id was used for another edit


async def write_version(
    conn: psycopg.AsyncConnection[Any],
    *,
    slug: str,
    locale: str,
    category: str,
    title: str,
    body: str,
    keywords: str,
    author: str,
    base_version: int | None,
    request_id: str = "",
) -> int | NotWritten:
    """A new version: 1 creates the article (EXISTS if it already does);
    otherwise `base_version` must be the latest (STALE, ABSENT). The author's
    `request_id` seen before: the version it wrote when this is the same edit,
    else REUSED."""
    async with conn.transaction():
        if request_id:
            # One author's edits under a key are serialised, so a retry racing
            # the first attempt finds what it wrote.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"help:{author}:{request_id}",)
            )
            cur = await conn.execute(
                "SELECT slug, locale, version, v.category, v.title, v.body, v.keywords"
                " FROM help_edit_requests e JOIN help_versions v USING (slug, locale, version)"
                " WHERE e.author = %s AND e.request_id = %s",
                (author, request_id),
            )
            seen = await cur.fetchone()
            if seen is not None:
                wrote = (slug, locale, (base_version or 0) + 1, category, title, body, keywords)
                return seen[2] if tuple(seen) == wrote else NotWritten.REUSED
        cur = await conn.execute(
            "SELECT latest_version FROM help_articles WHERE slug = %s AND locale = %s FOR UPDATE",
            (slug, locale),
        )
        row = await cur.fetchone()
        if base_version is None:
            if row is not None:
                return NotWritten.EXISTS
            version = 1
            created = await conn.execute(
                "INSERT INTO help_articles (slug, locale, category, latest_version)"
                " VALUES (%s, %s, %s, 1) ON CONFLICT DO NOTHING",
                (slug, locale, category),
            )
            if created.rowcount == 0:
                return NotWritten.EXISTS  # created at the same moment by someone else
        else:
            if row is None:
                return NotWritten.ABSENT
            if row[0] != base_version:
                return NotWritten.STALE
            version = row[0] + 1
            await conn.execute(
                "UPDATE help_articles SET latest_version = %s, category = %s"
                " WHERE slug = %s AND locale = %s",
                (version, category, slug, locale),
            )
        await conn.execute(
            "INSERT INTO help_versions (slug, locale, version, category, title, body, keywords,"
            " author) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (slug, locale, version, category, title, body, keywords, author),
        )
        if request_id:
            await conn.execute(
                "INSERT INTO help_edit_requests (author, request_id, slug, locale, version)"
                " VALUES (%s, %s, %s, %s, %s)",
                (author, request_id, slug, locale, version),
            )
    return version


async def publish(
    conn: psycopg.AsyncConnection[Any], slug: str, locale: str, version: int | None
) -> ArticleVersion | NotWritten:
    """Publishes a version (None: withdraws the article). ABSENT if unknown."""
    async with conn.transaction():
        current = await get(conn, slug, locale, version or 0)
        if current is None:
            return NotWritten.ABSENT
        await conn.execute(
            "UPDATE help_articles SET published_version = %s WHERE slug = %s AND locale = %s",
            (version, slug, locale),
        )
        if version is not None:
            await _index(conn, current)
        else:
            await _unindex(conn, slug, locale)
    found = await get(conn, slug, locale, version or 0)
    return found if found is not None else NotWritten.ABSENT


async def get(
    conn: psycopg.AsyncConnection[Any], slug: str, locale: str, version: int = 0
) -> ArticleVersion | None:
    """A version (0: the published one, or the latest if none is published)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT v.*, a.published_version, a.latest_version FROM help_articles a"
            " JOIN help_versions v ON v.slug = a.slug AND v.locale = a.locale"
            " AND v.version = CASE WHEN %s > 0 THEN %s"
            " ELSE coalesce(a.published_version, a.latest_version) END"
            " WHERE a.slug = %s AND a.locale = %s",
            (version, version, slug, locale),
        )
        row = await cur.fetchone()
    return ArticleVersion(**row) if row else None


async def published(
    conn: psycopg.AsyncConnection[Any], slug: str, locale: str
) -> ArticleVersion | None:
    """The published version, or None (a draft or a withdrawn article)."""
    found = await get(conn, slug, locale)
    return found if found is not None and found.published else None


async def versions(
    conn: psycopg.AsyncConnection[Any], slug: str, locale: str
) -> list[ArticleVersion]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT v.*, a.published_version, a.latest_version FROM help_versions v"
            " JOIN help_articles a USING (slug, locale)"
            " WHERE v.slug = %s AND v.locale = %s ORDER BY v.version",
            (slug, locale),
        )
        return [ArticleVersion(**row) for row in await cur.fetchall()]


async def search(
    conn: psycopg.AsyncConnection[Any], query: str, locale: str, category: str, limit: int
) -> list[tuple[ArticleVersion, float]]:
    """The published articles with any of the query's words, best first: the
    sum of their words' shares (`WORDS`), which is ts_rank_cd's rank, each
    word's times what it counts for (`query_terms`: a synonym less than what
    the user typed). Given a `category` (a ticket category, or a group such as
    `account`), only its articles."""
    terms = query_terms(query)
    if not terms:
        return []
    # The words as the index parsed them (the same parser and dictionary),
    # each once, counting as much as the most it counts for.
    asked = (
        "SELECT lexeme AS word, max(counts) AS counts"
        " FROM unnest(%s::text[], %s::float8[]) AS t(term, counts)"
        " CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('simple', t.term))) AS lexeme"
        " GROUP BY lexeme"
    )
    where = "w.locale = %s"
    params: list[Any] = [list(terms), list(terms.values()), locale]
    if category:
        where += " AND (w.category = %s OR starts_with(w.category, %s))"
        params += [category, f"{category}."]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"WITH asked AS ({asked}), ranked AS ("
            " SELECT w.slug, sum(w.weight * q.counts)::real AS score"
            f" FROM asked q JOIN help_search_words w ON w.word = q.word WHERE {where}"
            " GROUP BY w.slug ORDER BY score DESC, w.slug LIMIT %s)"
            " SELECT v.*, a.published_version, a.latest_version, r.score FROM ranked r"
            " JOIN help_articles a ON a.slug = r.slug AND a.locale = %s"
            " JOIN help_versions v ON v.slug = a.slug AND v.locale = a.locale"
            " AND v.version = a.published_version"
            " ORDER BY r.score DESC, r.slug",
            [*params, limit, locale],
        )
        rows = await cur.fetchall()
    found = []
    for row in rows:
        score = float(row.pop("score"))
        found.append((ArticleVersion(**row), score))
    return found


async def suggest(
    conn: psycopg.AsyncConnection[Any], prefix: str, locale: str, limit: int = 8
) -> list[ArticleVersion]:
    """Published articles whose titles hold `prefix`, both read as search
    reads a query (full-width `ｌｏｇ` is `log`, "platform's" is "platforms")."""
    prefix = folded_prefix(prefix)
    pattern = "%" + prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # A title indexed by an earlier release, not yet folded: as it was matched.
    title = "coalesce(folded_title, lower(title))"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT slug FROM help_search WHERE locale = %s AND {title} LIKE %s"
            f" ORDER BY position(%s in {title}), length(title), slug LIMIT %s",
            (locale, pattern, prefix, limit),
        )
        slugs = [row["slug"] for row in await cur.fetchall()]
    return [v for s in slugs if (v := await published(conn, s, locale)) is not None]


async def category_counts(conn: psycopg.AsyncConnection[Any], locale: str) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT category, count(*) FROM help_search WHERE locale = %s GROUP BY category",
        (locale,),
    )
    return {row[0]: int(row[1]) for row in await cur.fetchall()}


SESSIONS = """
CREATE TABLE IF NOT EXISTS help_sessions (
    id uuid PRIMARY KEY, user_id text NOT NULL, locale text NOT NULL,
    flow text NOT NULL DEFAULT '', node text NOT NULL DEFAULT '',
    path jsonb NOT NULL DEFAULT '[]', searches jsonb NOT NULL DEFAULT '[]',
    articles jsonb NOT NULL DEFAULT '[]', outcome text NOT NULL DEFAULT '',
    ticket_category text NOT NULL DEFAULT '', ticket_subject text NOT NULL DEFAULT '',
    ticket_description text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz);
CREATE TABLE IF NOT EXISTS help_search_log (
    id bigserial PRIMARY KEY, session uuid NOT NULL, query text NOT NULL,
    results int NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS help_search_log_at ON help_search_log (at);
CREATE INDEX IF NOT EXISTS help_sessions_resolved ON help_sessions (resolved_at);
-- An erasure finds a person's sessions, and their searches; ListMyHelpSessions
-- lists a user's newest first.
CREATE INDEX IF NOT EXISTS help_sessions_user_recent
    ON help_sessions (user_id, created_at DESC, id DESC);
DROP INDEX IF EXISTS help_sessions_user;
-- A session's latest searches (a listing's, `sessions_of`), and those whose
-- words are still kept (`log_search`), each read newest first however many
-- searches the session has: the second index holds no forgotten row.
CREATE INDEX IF NOT EXISTS help_search_log_session_recent
    ON help_search_log (session, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS help_search_log_session_worded
    ON help_search_log (session, at DESC, id DESC) WHERE query <> '';
DROP INDEX IF EXISTS help_search_log_session;
-- Retention finds the words still to forget by age (`erasures.FORGOTTEN`,
-- whose conditions these are): the rows already forgotten, which pile up
-- year after year, are not in them.
CREATE INDEX IF NOT EXISTS help_search_log_worded ON help_search_log (at) WHERE query <> '';
CREATE INDEX IF NOT EXISTS help_sessions_worded ON help_sessions (created_at)
    WHERE (searches <> '[]' OR ticket_subject <> '' OR ticket_description <> '');
-- An answer's retry key: the question it answered and how (`question` as
-- callers name it, `HelpSession.question_id`; '' for keys kept before it was).
CREATE TABLE IF NOT EXISTS help_flow_answers (
    session uuid NOT NULL, request_id text NOT NULL, flow text NOT NULL, node text NOT NULL,
    answer int NOT NULL, PRIMARY KEY (session, request_id));
ALTER TABLE help_flow_answers ADD COLUMN IF NOT EXISTS question text NOT NULL DEFAULT '';
-- When the ticket's words were given (`resolve`): an erasure forgets those
-- given before it, not those given since. NULL: written before it was kept
-- (or by an earlier release), taken as before.
ALTER TABLE help_sessions ADD COLUMN IF NOT EXISTS worded_at timestamptz;
"""


# What a session keeps of what the user did: their latest searches and
# articles read, enough to tell an agent what was tried, and bounded however
# long someone keeps searching.
SEARCHES_KEPT = 20
ARTICLES_KEPT = 20
# The searches of a session a listing shows: its latest, so a session searched
# thousands of times still fits in a response.
SEARCH_LOG_SHOWN = 100
# The words of searches no listing shows, logged before `log_search` forgot
# them as it goes: forgotten once, by the release that brought that.
UNSHOWN_SEARCHES = f"""
UPDATE help_search_log l SET query = '' FROM (
    SELECT id, row_number() OVER (PARTITION BY session ORDER BY at DESC, id DESC) AS n
    FROM help_search_log WHERE session IN (
        SELECT session FROM help_search_log GROUP BY session HAVING count(*) > {SEARCH_LOG_SHOWN})
) AS o WHERE l.id = o.id AND o.n > {SEARCH_LOG_SHOWN} AND l.query <> ''
"""


async def session(
    conn: psycopg.AsyncConnection[Any], ident: str, user_id: str, locale: str, *, create: bool
) -> HelpSession | None:
    """The caller's session (None when it is someone else's or unknown); a
    new one under `ident` when `create`."""
    if create:
        await conn.execute(
            "INSERT INTO help_sessions (id, user_id, locale) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (ident, user_id, locale),
        )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, user_id, locale, flow, node, path, searches, articles, outcome,"
            " ticket_category, ticket_subject, ticket_description FROM help_sessions"
            " WHERE id = %s",
            (ident,),
        )
        row = await cur.fetchone()
    if row is None or row["user_id"] != user_id:
        return None
    return HelpSession(**{**row, "id": str(row["id"])})


async def sessions_of(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The user's sessions, newest first, from after `after` (a session's
    start and id): each as a row, with when it began and was resolved, and
    the latest SEARCH_LOG_SHOWN searches made in it, oldest first
    (`search_log`)."""
    where, args = older_than("user_id = %s", [user_id], after)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, locale, flow, path, searches, articles, outcome, ticket_category,"
            " ticket_subject, ticket_description, created_at, resolved_at FROM help_sessions"
            f" WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s",
            (*args, limit),
        )
        rows = await cur.fetchall()
        logged: dict[Any, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
        if rows:
            for search in await _latest_searches(cur, list(logged)):
                logged[search["session"]].append(search)
    for row in rows:
        row["search_log"] = logged[row["id"]]
    return rows


async def _latest_searches(cur: Any, sessions: list[Any]) -> list[dict[str, Any]]:
    """The latest SEARCH_LOG_SHOWN searches of each of `sessions`, oldest
    first, each session's read newest first from its index and no further:
    a session searched a million times costs what a new one does. The
    planner, taking each session for one of average length, would rather
    gather all of a session's searches and sort them; it is not let to."""
    async with cur.connection.transaction():
        await cur.execute("SET LOCAL enable_bitmapscan = off")
        await cur.execute(
            "SELECT l.session, l.query, l.results, l.at FROM unnest(%s::uuid[]) AS s(id)"
            " CROSS JOIN LATERAL (SELECT session, query, results, at, id"
            "  FROM help_search_log WHERE session = s.id"
            "  ORDER BY at DESC, id DESC LIMIT %s) AS l"
            " ORDER BY l.at, l.id",
            (sessions, SEARCH_LOG_SHOWN),
        )
        found: list[dict[str, Any]] = await cur.fetchall()
    return found


async def save_flow(conn: psycopg.AsyncConnection[Any], s: HelpSession) -> None:
    """Writes where the session stands in its flow and the language it is
    followed in, and nothing else: a search or an article read at the same
    moment is kept (each is added in place)."""
    await conn.execute(
        "UPDATE help_sessions SET flow = %s, node = %s, path = %s, locale = %s WHERE id = %s",
        (s.flow, s.node, Jsonb(s.path), s.locale, s.id),
    )


async def log_search(
    conn: psycopg.AsyncConnection[Any], s: HelpSession, query: str, results: int
) -> None:
    """Keeps the search in the session (its latest SEARCHES_KEPT, each once: a
    query typed again moves to the end) and logs it for the figures, in one
    transaction. The log keeps the words of the session's latest
    SEARCH_LOG_SHOWN searches only, those its listing (and so the person's
    export) shows: an older one keeps its result count and time."""
    async with conn.transaction():
        # Changed in place: concurrent calls on one session lose nothing (and
        # wait for each other on the session's row until they commit).
        await conn.execute(
            "UPDATE help_sessions SET searches = ("
            " SELECT coalesce(jsonb_agg(query ORDER BY last_at), '[]'::jsonb) FROM ("
            "  SELECT query, max(at) AS last_at"
            "  FROM jsonb_array_elements_text(searches || %s) WITH ORDINALITY AS s(query, at)"
            "  GROUP BY query ORDER BY last_at DESC LIMIT %s) AS latest)"
            " WHERE id = %s",
            (Jsonb([query]), SEARCHES_KEPT, s.id),
        )
        await conn.execute(
            "INSERT INTO help_search_log (session, query, results) VALUES (%s, %s, %s)",
            (s.id, query, results),
        )
        # In the listing's order (`sessions_of`). Only the searches still
        # holding words are read, the latest SEARCH_LOG_SHOWN and this one,
        # not the many forgotten before them: those shown are the latest
        # holding words, as a query is never empty and words are forgotten
        # oldest first (here, by retention, by an erasure). The ids go as an
        # array, each row found by its key: a join could read every row
        # holding words, of every session.
        await conn.execute(
            "UPDATE help_search_log SET query = '' WHERE id = ANY(ARRAY("
            " SELECT id FROM help_search_log WHERE session = %s AND query <> ''"
            " ORDER BY at DESC, id DESC OFFSET %s)) AND query <> ''",
            (s.id, SEARCH_LOG_SHOWN),
        )


async def add_read(
    conn: psycopg.AsyncConnection[Any], s: HelpSession, read: dict[str, str]
) -> None:
    """Keeps an article read in the session, once (its latest ARTICLES_KEPT)."""
    await conn.execute(
        "UPDATE help_sessions SET articles = ("
        " SELECT jsonb_agg(a ORDER BY n)"
        " FROM jsonb_array_elements(articles || %s) WITH ORDINALITY AS r(a, n)"
        " WHERE n > jsonb_array_length(articles) + 1 - %s)"
        " WHERE id = %s AND NOT articles @> %s",
        (Jsonb([read]), ARTICLES_KEPT, s.id, Jsonb([read])),
    )


async def answer(
    conn: psycopg.AsyncConnection[Any],
    s: HelpSession,
    *,
    node: str,
    step: dict[str, str],
    read: dict[str, str] | None,
    answer: int = 0,
    request_id: str = "",
) -> bool:
    """Moves the flow on from the question `s` stands at; False when the
    session has left that question meanwhile: another answer got there first
    (a double tap), or a flow was started (again) in it. Under `request_id`
    the answer is kept for a retry (`answered`)."""
    async with conn.transaction():
        # The question is its flow, node and place in the path (`question_id`),
        # not its node alone: two flows share a first node's name.
        done = await conn.execute(
            "UPDATE help_sessions SET node = %s, path = (path || %s)"
            " WHERE id = %s AND flow = %s AND node = %s AND jsonb_array_length(path) = %s",
            (node, Jsonb([step]), s.id, s.flow, s.node, len(s.path)),
        )
        if done.rowcount and request_id:
            await conn.execute(
                "INSERT INTO help_flow_answers (session, request_id, flow, node, answer, question)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (s.id, request_id, s.flow, s.node, answer, s.question_id),
            )
        if done.rowcount and read is not None:
            await add_read(conn, s, read)
    return bool(done.rowcount)


@dataclass(frozen=True)
class Answered:
    """What a session's answer under a request id answered, and how."""

    flow: str
    node: str
    answer: int
    question: str  # its question_id ('' when kept before they were)

    @property
    def answered_before(self) -> int | None:
        """How many questions of the flow were answered before this one (the
        end of its question id), if its question id was kept."""
        count = self.question.rpartition("/")[2]
        return int(count) if count.isdigit() else None

    def asked(self, question_id: str) -> bool:
        """Whether `question_id` names the question this answer answered."""
        if self.question:
            return question_id == self.question
        return question_id.startswith(f"{self.flow}/{self.node}/")


async def answered(
    conn: psycopg.AsyncConnection[Any], session: str, request_id: str
) -> Answered | None:
    """The question a session's `request_id` answered, and how, if any."""
    cur = await conn.execute(
        "SELECT flow, node, answer, question FROM help_flow_answers"
        " WHERE session = %s AND request_id = %s",
        (session, request_id),
    )
    row = await cur.fetchone()
    return Answered(*row) if row else None


async def resolve(
    conn: psycopg.AsyncConnection[Any],
    s: HelpSession,
    outcome: str,
    ticket: TicketDraft | None = None,
    quoted: Sequence[str] = (),
) -> HelpSession:
    """Records the outcome (and the ticket to open) once: a repeated answer
    keeps the first, so a retried ticket is the same ticket. A ticket whose
    words an erasure forgot (`erasures`) takes the repeated answer's, in its
    recorded category: with none, it could never be opened. The words are
    kept with when they were given (`worded_at`), so that an erasure heard
    again forgets them only if they came before it: when the first made of
    the session's searches they quote (`quoted`, a draft's) was made, else
    now. A search made again counts from its latest, as the erasure counts
    it; one whose time the log no longer holds, from the session's start."""
    ticket = ticket or TicketDraft("", "", "")
    await conn.execute(
        "UPDATE help_sessions SET outcome = %s,"
        " ticket_category = CASE outcome WHEN '' THEN %s ELSE ticket_category END,"
        " ticket_subject = %s, ticket_description = %s,"
        " worded_at = coalesce((SELECT min(coalesce((SELECT max(l.at) FROM help_search_log l"
        "  WHERE l.session = help_sessions.id AND l.query = q.query), help_sessions.created_at))"
        "  FROM unnest(%s::text[]) AS q(query)), now()),"
        " resolved_at = coalesce(resolved_at, now()) WHERE id = %s"
        " AND (outcome = '' OR (outcome = %s AND outcome = 'NOT_SOLVED' AND ticket_subject = ''))",
        (outcome, ticket.category, ticket.subject, ticket.description, list(quoted), s.id, outcome),
    )
    found = await session(conn, s.id, s.user_id, s.locale, create=False)
    assert found is not None
    return found


async def figures(
    conn: psycopg.AsyncConnection[Any], start: datetime | None, end: datetime | None
) -> Figures:
    def period(column: str) -> tuple[str, list[Any]]:
        return within(column, start, end)

    where, params = period("at")
    cur = await conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE results = 0) FROM help_search_log WHERE {where}",
        params,
    )
    searches = await cur.fetchone()
    where, params = period("resolved_at")
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE outcome = 'SOLVED'),"
        f" count(*) FILTER (WHERE outcome = 'NOT_SOLVED') FROM help_sessions WHERE {where}",
        params,
    )
    outcomes = await cur.fetchone()
    assert searches is not None and outcomes is not None
    return Figures(
        searches=searches[0], zero_results=searches[1], solved=outcomes[0], tickets=outcomes[1]
    )


async def in_category(
    conn: psycopg.AsyncConnection[Any], category: str, locale: str, limit: int
) -> list[ArticleVersion]:
    cur = await conn.execute(
        "SELECT slug FROM help_search WHERE locale = %s AND category = %s ORDER BY slug LIMIT %s",
        (locale, category, limit),
    )
    slugs = [row[0] for row in await cur.fetchall()]
    return [v for s in slugs if (v := await published(conn, s, locale)) is not None]

"""The help centre's application on a real PostgreSQL database with the
starter knowledge base: given what a user searched, read and answered, when
they say whether it helped, then the ticket drafted, the figures and the
recommendations; article versions; a flow answered to its end, and a
second answer to a question already answered; what people typed and their
numbers, forgotten when they are erased and once past their retention."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Violations,
)
from casemesh.platform.identity import Identity
from casemesh.platform.personal import (
    MemoryKeyStore,
    is_token,
    reveal_message_async,
    reveal_messages_async,
)
from casemesh.platform.personal.keys import WrappedKey
from casemesh.platform.pools import DatabaseUnavailable, async_pool
from casemesh.rules import tickets as rules
from casemesh.rules.retention import period
from casemesh.v1.helpcenter_pb2 import ListMyHelpSessionsResponse
from casemesh_helpcenter import __main__ as helpcenter_main
from casemesh_helpcenter import erasures, phone, retention, search, store
from casemesh_helpcenter.api import session_message
from casemesh_helpcenter.application import ArticleText, HelpCenter, NewPhoneChange
from casemesh_helpcenter.application import _session as session_of
from casemesh_helpcenter.domain import TicketDraft
from casemesh_helpcenter.retention import RetentionTimer
from casemesh_helpcenter.settings import HelpSettings
from tests.application.story import AGENT, ALICE, BOB, FakeClock
from tests.conftest import Infra
from tests.support import eventually, memory_sealer

ADMIN = Identity("ada", frozenset({"admin"}))


@pytest.fixture(scope="module")
async def app(infra: Infra) -> AsyncIterator[HelpCenter]:
    name = f"help_it_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await store.create_schema(conn, phone.SCHEMA)
        await store.seed(conn)
    pool = async_pool(dsn, max_size=4)
    await pool.open()
    try:
        yield HelpCenter(pool, FakeClock(), memory_sealer(), seal_phone_changes=True)
    finally:
        await pool.close()


async def test_not_solved_drafts_one_ticket_from_what_was_searched_and_read(
    app: HelpCenter,
) -> None:
    found = await app.search(ALICE, "视频传不上去", "", "", 0, "")
    assert found.session.startswith("help-sessions/") and found.found
    best = found.found[0][0]
    assert best.category == "content.upload_failed"
    await app.article(ALICE, f"articles/{best.slug}", best.locale, 0, found.session)

    draft = await app.resolve(ALICE, found.session, False, "zh-CN")
    assert draft is not None and draft.category == "content.upload_failed"
    assert draft.subject == "自助服务未能解决：视频上传失败"
    assert "搜索：视频传不上去" in draft.description
    assert f"(articles/{best.slug})" in draft.description
    assert await app.resolve(ALICE, found.session, False, "en") == draft  # the first stands
    with pytest.raises(FailedPrecondition, match="already marked as not solved"):
        await app.resolve(ALICE, found.session, True, "")


async def test_not_solved_records_the_ticket_in_the_users_own_words_where_they_gave_them(
    app: HelpCenter,
) -> None:
    """The user chose another category and wrote their own subject; the
    ticket is opened with them, and the session (its listing, the person's
    export) says so, not the draft's words. What they left empty is the
    draft's; what no ticket may take is refused, and nothing is recorded."""
    found = await app.search(ALICE, "视频传不上去", "", "", 0, "")
    with pytest.raises(InvalidArgument) as refused:
        await app.resolve(
            ALICE, found.session, False, "zh-CN", TicketDraft("content.nope", "x" * 201, "")
        )
    assert {v.field for v in refused.value.violations} == {"category", "subject"}
    own = TicketDraft("account.login", "  上传后账号也登不上了 ", "")
    draft = await app.resolve(ALICE, found.session, False, "zh-CN", own)
    assert draft is not None
    assert (draft.category, draft.subject) == ("account.login", "上传后账号也登不上了")
    assert "搜索：视频传不上去" in draft.description
    rows, _ = await app.my_sessions(ALICE, 100, "")
    [listed] = [row for row in rows if str(row["id"]) in found.session]
    assert (listed["ticket_category"], listed["ticket_subject"]) == (
        "account.login",
        "上传后账号也登不上了",
    )


async def test_someone_elses_session_is_not_found(app: HelpCenter) -> None:
    found = await app.search(ALICE, "login", "en", "", 3, "")
    with pytest.raises(NotFound):
        await app.resolve(BOB, found.session, True, "")
    with pytest.raises(NotFound):
        await app.answer_flow(BOB, found.session, 0)
    with pytest.raises(InvalidArgument) as info:
        await app.answer_flow(ALICE, "sessions/1", 0)
    assert [v.field for v in info.value.violations] == ["session"]


async def test_a_flow_answered_to_its_end_names_its_article_and_drafts_the_ticket(
    app: HelpCenter,
) -> None:
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    assert step.question == "What happens?"
    second = await app.answer_flow(ALICE, step.session, 0)
    assert not second.finished and second.question != step.question
    last = await app.answer_flow(ALICE, step.session, 0)
    assert last.finished and last.article is not None
    assert last.article.slug == "login-no-sms-code"
    with pytest.raises(FailedPrecondition, match="no question waiting"):
        await app.answer_flow(ALICE, step.session, 0)

    draft = await app.resolve(ALICE, step.session, False, "en")
    assert draft is not None and draft.category == "account.login"
    assert "What happens? → I get no code" in draft.description
    assert "Read: " in draft.description  # the article the flow ended at


async def test_a_flow_started_in_english_after_a_chinese_search_stays_in_english(
    app: HelpCenter,
) -> None:
    """The user searched in Chinese (the session is Chinese), switched the
    page to English and started a flow there: every question, the article it
    ends at and the answers the ticket tells the agent are English."""
    found = await app.search(ALICE, "登录不了", "", "", 0, "")
    step = await app.start_flow(ALICE, "flows/login", found.session, "en")
    assert step.question == "What happens?"
    second = await app.answer_flow(ALICE, step.session, 0)
    assert second.question == "Is the linked number still yours?"
    assert second.answers == ("Yes", "No, it is gone")
    last = await app.answer_flow(ALICE, step.session, 0)
    assert last.article is not None
    assert (last.article.slug, last.article.locale) == ("login-no-sms-code", "en")
    draft = await app.resolve(ALICE, step.session, False, "en")
    assert draft is not None
    assert "What happens? → I get no code" in draft.description
    assert "Is the linked number still yours? → Yes" in draft.description
    # Started again with no language named, it stays in the one chosen.
    again = await app.start_flow(ALICE, "flows/login", step.session, "")
    assert again.question == "What happens?"


async def test_a_second_answer_to_a_question_already_answered_moves_nothing(
    app: HelpCenter,
) -> None:
    """A double tap: the second answer was read against the question the
    first one already moved past."""
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    async with app.pool.connection() as conn:
        stale = await session_of(conn, ALICE, step.session, "en", create=False)
    moved = await app.answer_flow(ALICE, step.session, 0)
    choice = stale.choose(0)
    async with app.pool.connection() as conn:
        again = await store.answer(conn, stale, node=choice.next, step=choice.taken, read=None)
        now = await session_of(conn, ALICE, step.session, "en", create=False)
    assert again is False
    assert now.step(now.locale, None, "").question == moved.question  # moved on once


async def test_an_answer_read_before_another_flow_started_moves_nothing(
    app: HelpCenter,
) -> None:
    """The answer to the login flow's first question arrives after the user
    started the reporting flow in the same session, whose first question has
    the same node name: the reporting flow stays at its first question."""
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    async with app.pool.connection() as conn:
        stale = await session_of(conn, ALICE, step.session, "en", create=False)
    started = await app.start_flow(ALICE, "flows/reporting", step.session, "en")
    assert stale.node == started.question_id.split("/")[1]  # "what", both
    choice = stale.choose(0)
    async with app.pool.connection() as conn:
        again = await store.answer(conn, stale, node=choice.next, step=choice.taken, read=None)
        now = await session_of(conn, ALICE, step.session, "en", create=False)
        assert again is False
        assert (now.flow, now.question_id) == ("reporting", started.question_id)
        # Nor does an answer read at that node further along the path.
        later = replace(now, path=[choice.taken])
        assert not await store.answer(conn, later, node="", step=choice.taken, read=None)
        now = await session_of(conn, ALICE, step.session, "en", create=False)
    assert (now.question_id, now.path) == (started.question_id, [])


async def test_a_flow_started_beside_a_search_keeps_the_search(app: HelpCenter) -> None:
    """Starting a flow writes where the session stands, not a copy of its
    searches read before a search made at the same moment."""
    found = await app.search(ALICE, "视频传不上去", "", "", 0, "")
    async with app.pool.connection() as conn:
        stale = await session_of(conn, ALICE, found.session, "zh-CN", create=False)
    await app.search(ALICE, "登录不了", "", "", 0, found.session)  # meanwhile
    stale.start("login")
    async with app.pool.connection() as conn:
        await store.save_flow(conn, stale)
        now = await session_of(conn, ALICE, found.session, "zh-CN", create=False)
    assert (now.flow, now.searches) == ("login", ["视频传不上去", "登录不了"])


async def test_an_answer_retried_under_a_request_id_answers_the_same_step(
    app: HelpCenter,
) -> None:
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    first = await app.answer_flow(ALICE, step.session, 0, "answer-1")
    again = await app.answer_flow(ALICE, step.session, 0, "answer-1")
    assert again == first
    async with app.pool.connection() as conn:
        now = await session_of(conn, ALICE, step.session, "en", create=False)
    assert len(now.path) == 1  # answered once
    with pytest.raises(AlreadyExists) as refused:
        await app.answer_flow(ALICE, step.session, 1, "answer-1")
    assert refused.value.reason == "REQUEST_ID_REUSED"


async def test_an_answer_retried_after_the_flow_moved_on_names_the_question_it_was_given(
    app: HelpCenter,
) -> None:
    """The page retries the first answer once the second was taken (its
    first answer lost): it gets the step it was given, the same question id,
    not one counted from where the flow stands now."""
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    first = await app.answer_flow(ALICE, step.session, 0, "r-1", step.question_id)
    await app.answer_flow(ALICE, step.session, 0, "r-2", first.question_id)
    assert await app.answer_flow(ALICE, step.session, 0, "r-1", step.question_id) == first
    # So too once the flow was started again.
    await app.start_flow(ALICE, "flows/login", step.session, "en")
    assert await app.answer_flow(ALICE, step.session, 0, "r-1", step.question_id) == first


async def test_a_request_id_reused_for_the_next_question_is_refused(app: HelpCenter) -> None:
    """The same answer position, under the same request id, to the question
    after the one it answered: not a retry, and nothing is answered."""
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    first = await app.answer_flow(ALICE, step.session, 0, "answer-q", step.question_id)
    with pytest.raises(AlreadyExists) as refused:
        await app.answer_flow(ALICE, step.session, 0, "answer-q", first.question_id)
    assert refused.value.reason == "REQUEST_ID_REUSED"
    async with app.pool.connection() as conn:
        now = await session_of(conn, ALICE, step.session, "en", create=False)
    assert (len(now.path), now.question_id) == (1, first.question_id)
    # Naming the question it answered, it is a retry.
    assert await app.answer_flow(ALICE, step.session, 0, "answer-q", step.question_id) == first
    # So for an answer kept before its question was: its flow and node tell.
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE help_flow_answers SET question = '' WHERE session = %s",
            (step.session.removeprefix("help-sessions/"),),
        )
    assert await app.answer_flow(ALICE, step.session, 0, "answer-q", step.question_id) == first
    with pytest.raises(AlreadyExists):
        await app.answer_flow(ALICE, step.session, 0, "answer-q", first.question_id)


async def test_an_answer_sent_again_after_the_flow_moved_on_answers_nothing_more(
    app: HelpCenter,
) -> None:
    """An answer to the first question arrives twice (a second tap after the
    first was taken, or a send the page thought lost, without a request id):
    naming its question, the second is refused, not taken for the next one."""
    step = await app.start_flow(ALICE, "flows/login", "", "en")
    assert step.question_id
    second = await app.answer_flow(ALICE, step.session, 0, question_id=step.question_id)
    assert second.question_id not in ("", step.question_id)
    with pytest.raises(Aborted) as refused:
        await app.answer_flow(ALICE, step.session, 0, question_id=step.question_id)
    assert refused.value.reason == "QUESTION_ANSWERED"
    async with app.pool.connection() as conn:
        now = await session_of(conn, ALICE, step.session, "en", create=False)
    assert len(now.path) == 1 and now.question_id == second.question_id
    # A retry under its request id still gets the step its first send gave.
    third = await app.answer_flow(ALICE, step.session, 0, "a-2", second.question_id)
    again = await app.answer_flow(ALICE, step.session, 0, "a-2", second.question_id)
    assert again == third


async def test_a_session_searched_thousands_of_times_lists_its_latest_searches(
    app: HelpCenter,
) -> None:
    """Its listing stays small enough to be answered: the latest 100
    searches, oldest first."""
    kim = Identity(f"kim-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    step = await app.start_flow(kim, "flows/upload", "", "en")
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO help_search_log (session, query, results, at)"
            " SELECT %s, 'q' || i, 1, now() - (3000 - i) * interval '1 second'"
            " FROM generate_series(1, 3000) AS i",
            (step.session.removeprefix("help-sessions/"),),
        )
    rows, _ = await app.my_sessions(kim, 0, "")
    assert [q["query"] for q in rows[0]["search_log"]] == [f"q{i}" for i in range(2901, 3001)]


async def rows_read(conn: psycopg.AsyncConnection[Any]) -> int:
    """The search log's rows (and index entries) read so far in `conn`'s
    transaction."""
    cur = await conn.execute(
        "SELECT sum(pg_stat_get_xact_tuples_returned(oid) + pg_stat_get_xact_tuples_fetched(oid))"
        " FROM pg_class WHERE oid = 'help_search_log'::regclass OR oid IN ("
        " SELECT indexrelid FROM pg_index WHERE indrelid = 'help_search_log'::regclass)"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_search_in_a_long_session_reads_no_more_than_in_a_new_one(
    app: HelpCenter,
) -> None:
    """A script searching twenty thousand times in one session: the next
    search forgets the words of the one no longer shown by reading the
    latest searches only, not the twenty thousand, and so does the
    listing, which shows what it did."""
    kim = Identity(f"kim-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    step = await app.start_flow(kim, "flows/upload", "", "en")
    ident = step.session.removeprefix("help-sessions/")
    async with app.pool.connection() as conn:
        # Others' sessions, with the words of their latest searches: what
        # the database holds besides, as its statistics tell the planner.
        await conn.execute(
            "INSERT INTO help_search_log (session, query, results)"
            " SELECT s, 'other', 1 FROM generate_series(1, 100),"
            " (SELECT gen_random_uuid() AS s FROM generate_series(1, 1000)) AS others"
        )
        # As `log_search` leaves them: the words of the latest 100 only.
        await conn.execute(
            "INSERT INTO help_search_log (session, query, results, at)"
            " SELECT %s, CASE WHEN i > 19900 THEN 'q' || i ELSE '' END, 1,"
            " now() - (20001 - i) * interval '1 second' FROM generate_series(1, 20000) AS i",
            (ident,),
        )
        await conn.execute("ANALYZE help_search_log")
        found = await store.session(conn, ident, kim.subject, "en", create=False)
        assert found is not None
        async with conn.transaction():
            before = await rows_read(conn)
            await store.log_search(conn, found, "q20001", 1)
            searched = await rows_read(conn) - before
        async with conn.transaction():
            before = await rows_read(conn)
            await store.sessions_of(conn, kim.subject, None, 10)
            listed = await rows_read(conn) - before
        cur = await conn.execute(
            "SELECT count(*) FROM help_search_log WHERE session = %s AND query <> ''", (ident,)
        )
        assert await cur.fetchone() == (100,)
    assert searched < 1000 and listed < 1000, (searched, listed)
    rows, _ = await app.my_sessions(kim, 0, "")
    assert [q["query"] for q in rows[0]["search_log"]] == [f"q{i}" for i in range(19902, 20002)]


async def test_many_long_sessions_come_in_pages_that_a_grpc_client_takes(
    app: HelpCenter,
) -> None:
    """A hundred sessions begun at the same moment, each showing a hundred
    searches of 200 Chinese characters, would make a page of about 6 MB,
    past the 4 MiB a gRPC client takes. Asked for a hundred at a time,
    they come in shorter pages that fit, and the pages together list each
    session once, in order."""
    lee = Identity(f"lee-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    began = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO help_sessions (id, user_id, locale, created_at)"
            " SELECT gen_random_uuid(), %s, 'zh-CN', %s FROM generate_series(1, 100)",
            (lee.subject, began),
        )
        await conn.execute(
            "INSERT INTO help_search_log (session, query, results, at)"
            " SELECT s.id, repeat('视频', 99) || lpad(i::text, 2, '0'), 1, %s"
            " FROM help_sessions s, generate_series(1, 100) AS i WHERE s.user_id = %s",
            (began, lee.subject),
        )
        cur = await conn.execute(
            "SELECT id::text FROM help_sessions WHERE user_id = %s ORDER BY id DESC",
            (lee.subject,),
        )
        every = [f"help-sessions/{row[0]}" for row in await cur.fetchall()]
    listed: list[str] = []
    pages, token = 0, ""
    while True:
        rows, token = await app.my_sessions(lee, 100, token)
        page = ListMyHelpSessionsResponse(
            sessions=[session_message(r) for r in rows], next_page_token=token
        )
        assert page.ByteSize() < 4 * 1024 * 1024
        listed += [s.name for s in page.sessions]
        pages += 1
        if not token:
            break
    assert listed == every and pages > 1


async def test_full_width_typing_gets_the_suggestions_of_what_it_stands_for(
    app: HelpCenter,
) -> None:
    typed = [v.slug for v in await app.suggest("ＬＯＧＩＮ", "en")]
    assert typed == [v.slug for v in await app.suggest("login", "en")] != []


async def test_a_query_in_the_other_language_than_the_pages_finds_its_own_languages_articles(
    app: HelpCenter,
) -> None:
    """Chinese typed on the English page (the page sends its locale) once
    found nothing where the English articles had no word of it: it finds
    the Chinese articles, and English typed on the Chinese page the English
    ones. Where the page's articles answer, they are the ones found."""
    for query, page, category in (
        ("换手机号", "en", "account.phone_change"),
        ("change phone number", "zh-CN", "account.phone_change"),
    ):
        found = await app.search(ALICE, query, page, "", 3, "")
        assert found.found, query
        assert {v.locale for v, _ in found.found} != {page}, query
        assert found.found[0][0].category == category, query
    password = await app.search(ALICE, "忘记密码", "en", "", 3, "")
    assert [v.locale for v, _ in password.found] == ["en"] * 3
    assert password.found[0][0].category == "account.password"
    async with app.pool.connection() as conn:
        assert await store.search(conn, "换手机号", "en", "", 3) == []  # the page's: none


async def test_a_category_filter_is_a_category_or_group_not_a_pattern(app: HelpCenter) -> None:
    async with app.pool.connection() as conn:
        assert await store.search(conn, "ads", "en", "ads", 5) != []
        assert await store.search(conn, "ads", "en", "a_s", 5) == []
        assert await store.search(conn, "ads", "en", "ads.consult_ng", 5) == []


async def test_figures_count_searches_and_how_sessions_ended(app: HelpCenter) -> None:
    before = await app.figures(AGENT, None, None)
    helped = await app.search(BOB, "忘记密码", "", "", 0, "")
    await app.search(BOB, "zzqqxx", "", "", 0, helped.session)
    await app.resolve(BOB, helped.session, True, "")
    with pytest.raises(FailedPrecondition, match="already marked as solved"):
        await app.resolve(BOB, helped.session, False, "en")
    nothing = await app.start_flow(BOB, "flows/upload", "", "en")
    await app.resolve(BOB, nothing.session, False, "en")

    after = await app.figures(AGENT, None, None)
    assert after.searches == before.searches + 2
    assert after.zero_results == before.zero_results + 1
    assert (after.solved, after.tickets) == (before.solved + 1, before.tickets + 1)
    assert after.deflection_rate == after.solved / (after.solved + after.tickets)


async def test_recommendations_come_from_recent_searches_then_ticket_categories(
    app: HelpCenter,
) -> None:
    searched = await app.search(ALICE, "copyright takedown", "en", "", 0, "")
    found = await app.recommend(ALICE, "en", searched.session, ["account.ban", "no.such"])
    slugs = [v.slug for v in found]
    assert found[0].category == "content.copyright"
    assert [v.category for v in found] == ["content.copyright"] * 2 + ["account.ban"] * 3
    assert len(slugs) == len(set(slugs))
    assert all(v.published for v in found)
    # Chinese typed on the English page found the Chinese articles: they
    # are what that search recommends there too.
    chinese = await app.search(ALICE, "换手机号", "en", "", 2, "")
    assert {v.locale for v, _ in chinese.found} == {"zh-CN"}
    found = await app.recommend(ALICE, "en", chinese.session, [])
    assert [(v.slug, v.locale) for v in found] == [(v.slug, v.locale) for v, _ in chinese.found]


def ads_article(slug: str, title: str, body: str, keywords: str) -> ArticleText:
    return ArticleText(f"articles/{slug}", "en", "ads.consulting", title, body, keywords)


async def test_an_article_is_versioned_and_a_draft_stays_hidden(app: HelpCenter) -> None:
    text = ads_article("test-refunds", "Refunds for ads", "Ask within 30 days.", "money back")
    first = await app.create_article(ADMIN, text)
    assert (first.version, first.published) == (1, False)
    with pytest.raises(AlreadyExists):
        await app.create_article(ADMIN, text)
    with pytest.raises(NotFound):
        await app.article(ALICE, text.name, "en", 0, "")
    await app.publish_article(ADMIN, text.name, "en", 0, False)
    assert (await app.article(ALICE, text.name, "en", 0, "")).title == "Refunds for ads"

    second = await app.update_article(ADMIN, ArticleText(**{**vars(text), "body": "60 days."}), 1)
    assert (second.version, second.published_version) == (2, 1)
    with pytest.raises(Aborted):
        await app.update_article(ADMIN, text, 1)
    assert (await app.article(ALICE, text.name, "en", 0, "")).body == "Ask within 30 days."
    assert [v.version for v in await app.article_versions(ADMIN, text.name, "en")] == [1, 2]
    with pytest.raises(InvalidArgument, match="the latest is 2"):
        await app.publish_article(ADMIN, text.name, "en", 3, False)


async def test_search_finds_what_is_published_now_and_nothing_withdrawn(app: HelpCenter) -> None:
    text = ads_article("test-invoices", "Invoices for ads", "Ask for the zebra ledger.", "receipt")
    await app.create_article(ADMIN, text)
    await app.publish_article(ADMIN, text.name, "en", 0, False)

    async def found(query: str, category: str = "") -> list[str]:
        results = await app.search(ALICE, query, "en", category, 0, "")
        return [v.slug for v, _ in results.found]

    assert (await found("zebra ledger"))[0] == "test-invoices"
    assert "test-invoices" in await found("zebra", "ads")
    assert "test-invoices" not in await found("zebra", "account")

    await app.update_article(
        ADMIN, ArticleText(**{**vars(text), "body": "Ask for the walrus tally."}), 1
    )
    assert "test-invoices" in await found("zebra")  # the draft is not searched yet
    await app.publish_article(ADMIN, text.name, "en", 0, False)
    assert "test-invoices" not in await found("zebra")
    assert (await found("walrus tally"))[0] == "test-invoices"

    await app.publish_article(ADMIN, text.name, "en", 0, True)
    assert "test-invoices" not in await found("walrus tally")
    assert "test-invoices" not in await found("invoices")


async def test_a_database_from_before_the_word_index_finds_its_articles_after_start(
    infra: Infra,
) -> None:
    name = f"help_old_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    async with await psycopg.AsyncConnection.connect(infra.pg.dsn(name), autocommit=True) as conn:
        await store.create_schema(conn)
        await store.seed(conn)
        before = await store.search(conn, "改手机号", "zh-CN", "", 5)
        # As a database written before the word index existed (its tables
        # made by other statements).
        await conn.execute("DROP TABLE help_search_words")
        await conn.execute("DELETE FROM casemesh_schema")

        await store.create_schema(conn)
        after = await store.search(conn, "改手机号", "zh-CN", "", 5)
    assert after == before and after[0][0].category == "account.phone_change"


async def test_a_phone_change_started_again_is_the_same_change(app: HelpCenter) -> None:
    change = NewPhoneChange("move-1", "+8613800138000", "+8613900139000", "")
    first = await app.start_phone_change(ALICE, change)
    assert (first.state, first.codes_sent) == ("AWAITING_OLD_CODE", 1)
    again = await app.start_phone_change(ALICE, change)
    assert (again.id, again.codes_sent) == (first.id, 1)
    # The same id with other numbers is a reused key, as every retry key's is.
    with pytest.raises(AlreadyExists, match="other numbers") as reused:
        await app.start_phone_change(
            ALICE, NewPhoneChange("move-1", "+8613800138000", "+8613700137000", "")
        )
    assert (reused.value.reason, reused.value.metadata) == (
        "REQUEST_ID_REUSED",
        {"field": "request_id"},
    )
    with pytest.raises(NotFound):
        await app.phone_change(BOB, first.name)
    sent = await code_sent(app, first.name)
    with pytest.raises(InvalidArgument, match="4 attempts left"):
        await app.confirm_phone_change(ALICE, first.name, f"{(int(sent) + 1) % 10**6:06d}")
    confirmed = await app.confirm_phone_change(ALICE, first.name, sent)
    assert (confirmed.state, confirmed.attempts) == ("AWAITING_NEW_CODE", 1)


async def test_a_code_typed_in_full_width_digits_is_the_code_sent(app: HelpCenter) -> None:
    """A Chinese input method types full-width digits, and a pasted code
    brings a space or a line break along: it is read as the digits it is."""
    fay = person("fay", uuid.uuid4().hex[:8])
    old, new = numbers(fay.subject.rpartition("-")[2], 2)
    change = await app.start_phone_change(fay, NewPhoneChange("w1", old, new, ""))
    sent = await code_sent(app, change.name)
    full_width = "".join(chr(ord(digit) - ord("0") + 0xFF10) for digit in sent)
    confirmed = await app.confirm_phone_change(fay, change.name, f" {full_width}\n")
    assert (confirmed.state, confirmed.attempts) == ("AWAITING_NEW_CODE", 0)  # none wrong


async def verified_change(app: HelpCenter, who: Identity) -> tuple[str, str, bytes]:
    """A change of two new numbers the user proves; the numbers, and the
    payload its outbox row carries to the topic."""
    old, new = numbers(who.subject.rpartition("-")[2], 2)
    change = await app.start_phone_change(who, NewPhoneChange("v1", old, new, ""))
    await app.confirm_phone_change(who, change.name, await code_sent(app, change.name))
    await app.confirm_phone_change(who, change.name, await code_sent(app, change.name))
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM help_outbox WHERE request = %s", (change.name,)
        )
        (payload,) = [bytes(row[0]) for row in await cur.fetchall()]
    return old, new, payload


async def test_a_verified_changes_numbers_go_out_sealed_under_the_users_key(
    app: HelpCenter,
) -> None:
    """The topic keeps a verified change for 30 days: its numbers travel
    sealed, revealed by the notifier and the account system, and read as
    erased once the user's key is gone."""
    ann = person("ann", uuid.uuid4().hex[:8])
    old, new, payload = await verified_change(app, ann)
    assert [n for n in (old, new) if n.removeprefix("+86").encode() in payload] == []
    verified = hev.PhoneChangeVerified.FromString(payload)
    assert verified.user_id == ann.subject
    revealed = await reveal_message_async(app.personal, verified)
    assert (revealed.message.old_phone, revealed.message.new_phone) == (old, new)
    await app.personal.erase(ann.subject)
    assert (await reveal_message_async(app.personal, verified)).erased == (
        "old_phone",
        "new_phone",
    )


async def test_until_set_to_a_verified_changes_numbers_go_out_as_they_are(
    app: HelpCenter,
) -> None:
    """Until the account system reveals them (`seal_phone_changes` off), a
    verified change's numbers are published in the clear; its codes' numbers
    are sealed either way (only the notifier reads them)."""
    unsealed = HelpCenter(app.pool, app.clock, app.personal)
    old, new, payload = await verified_change(unsealed, person("bea", uuid.uuid4().hex[:8]))
    verified = hev.PhoneChangeVerified.FromString(payload)
    assert (verified.old_phone, verified.new_phone) == (old, new)
    assert await codes_to(app, new) == 1  # sealed: `codes_to` says so


async def test_a_change_meeting_the_key_database_away_is_unavailable_and_changes_nothing(
    app: HelpCenter,
) -> None:
    """A new user's key cannot be made: the start answers UNAVAILABLE (the
    gateway's retry is safe), before anything is recorded or sent."""

    class Away(MemoryKeyStore):
        def add_current(self, key: WrappedKey) -> WrappedKey:
            raise DatabaseUnavailable("the key database is away")

    away = memory_sealer(Away())
    cut_off = HelpCenter(app.pool, app.clock, away, seal_phone_changes=True)
    mark = uuid.uuid4().hex[:8]
    cid = person("cid", mark)
    old, new = numbers(mark, 2)
    with pytest.raises(DatabaseUnavailable):
        await cut_off.start_phone_change(cid, NewPhoneChange("c1", old, new, ""))
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM phone_changes WHERE user_id = %s", (cid.subject,)
        )
        assert await cur.fetchone() == (0,)
    assert await codes_to(app, old) == 0


async def test_a_change_waiting_for_its_users_key_holds_no_one_elses_change(
    app: HelpCenter,
) -> None:
    """A new user's key is being made (the key database slow): their change
    waits for it before it takes any lock, so a change of someone else's
    between the same numbers goes through meanwhile."""
    asked, let_go = threading.Event(), threading.Event()

    class Slow(MemoryKeyStore):
        def add_current(self, key: WrappedKey) -> WrappedKey:
            asked.set()
            let_go.wait(30)
            return super().add_current(key)

    slow = memory_sealer(Slow())
    waiting = HelpCenter(app.pool, app.clock, slow, seal_phone_changes=True)
    mark = uuid.uuid4().hex[:8]
    old, new = numbers(mark, 2)
    first = asyncio.create_task(
        waiting.start_phone_change(person("eve", mark), NewPhoneChange("e1", old, new, ""))
    )
    try:
        await asyncio.to_thread(asked.wait, 10)
        other = await asyncio.wait_for(
            app.start_phone_change(person("fay", mark), NewPhoneChange("f1", old, new, "")), 10
        )
        assert other.state == "AWAITING_OLD_CODE"
    finally:
        let_go.set()
    eves = await first
    assert (eves.state, eves.codes_sent, other.codes_sent) == ("AWAITING_OLD_CODE", 1, 1)


async def test_article_edits_retried_under_a_request_id_write_once(app: HelpCenter) -> None:
    text = ads_article("test-retried", "Retried", "Written once.", "retry")
    first = await app.create_article(ADMIN, text, "create-1")
    again = await app.create_article(ADMIN, text, "create-1")
    assert (again.version, again.title) == (first.version, first.title) == (1, "Retried")
    with pytest.raises(AlreadyExists) as refused:
        await app.create_article(ADMIN, ArticleText(**{**vars(text), "title": "Other"}), "create-1")
    assert refused.value.reason == "REQUEST_ID_REUSED"

    edited = ArticleText(**{**vars(text), "body": "Written twice."})
    second = await app.update_article(ADMIN, edited, 1, "update-1")
    # The retry is not stale although version 2 now exists: it answers version 2.
    retried = await app.update_article(ADMIN, edited, 1, "update-1")
    assert (second.version, retried.version, retried.body) == (2, 2, "Written twice.")
    assert [v.version for v in await app.article_versions(ADMIN, text.name, "en")] == [1, 2]
    with pytest.raises(AlreadyExists) as refused:
        await app.update_article(ADMIN, edited, 2, "update-1")
    assert refused.value.reason == "REQUEST_ID_REUSED"
    # Another admin's key is theirs: the same id is a new edit for them.
    other = Identity("grace", frozenset({"admin"}))
    third = await app.update_article(other, edited, 2, "update-1")
    assert third.version == 3


async def test_publishing_again_changes_nothing(app: HelpCenter) -> None:
    text = ads_article("test-published-twice", "Twice", "Published once.", "twice")
    await app.create_article(ADMIN, text)
    first = await app.publish_article(ADMIN, text.name, "en", 1, False)
    again = await app.publish_article(ADMIN, text.name, "en", 1, False)
    assert (first.published_version, again.published_version) == (1, 1)
    assert [v.version for v in await app.article_versions(ADMIN, text.name, "en")] == [1]
    await app.publish_article(ADMIN, text.name, "en", 0, True)
    withdrawn = await app.publish_article(ADMIN, text.name, "en", 0, True)
    assert not withdrawn.published
    with pytest.raises(NotFound):
        await app.article(ALICE, text.name, "en", 0, "")


async def test_a_resend_retried_under_a_request_id_sends_one_code(app: HelpCenter) -> None:
    change = NewPhoneChange("move-resend", "+8613800138001", "+8613900139001", "")
    started = await app.start_phone_change(BOB, change)
    left = phone.resends_left(started)
    first = await app.resend_phone_change_code(BOB, started.name, "resend-1")
    code = await code_sent(app, started.name)
    again = await app.resend_phone_change_code(BOB, started.name, "resend-1")
    assert (first.codes_sent, again.codes_sent) == (2, 2)
    assert phone.resends_left(again) == left - 1
    assert await code_sent(app, started.name) == code
    other = await app.start_phone_change(
        BOB, NewPhoneChange("move-resend-2", "+8613800138001", "+8613700137001", "")
    )
    with pytest.raises(AlreadyExists) as refused:
        await app.resend_phone_change_code(BOB, other.name, "resend-1")
    assert refused.value.reason == "REQUEST_ID_REUSED"


async def test_a_confirmation_repeated_after_success_is_answered_not_counted(
    app: HelpCenter,
) -> None:
    change = NewPhoneChange("move-twice", "+8613800138002", "+8613900139002", "")
    started = await app.start_phone_change(ALICE, change)
    sent = await code_sent(app, started.name)
    first = await app.confirm_phone_change(ALICE, started.name, sent)
    again = await app.confirm_phone_change(ALICE, started.name, sent)
    assert (
        (again.state, again.attempts, again.codes_sent)
        == (
            first.state,
            first.attempts,
            first.codes_sent,
        )
        == ("AWAITING_NEW_CODE", 0, 2)
    )
    sent = await code_sent(app, started.name)
    done = await app.confirm_phone_change(ALICE, started.name, sent)
    repeated = await app.confirm_phone_change(ALICE, started.name, sent)
    assert (done.state, repeated.state, repeated.attempts) == ("VERIFIED", "VERIFIED", 0)


async def test_a_new_numbers_code_drawn_the_same_as_the_old_ones_verifies_the_change(
    app: HelpCenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One change in a million draws the same code for both numbers: typed
    at the new number's step, it is the new number's code, not the old
    one's sent again."""
    monkeypatch.setattr(secrets, "randbelow", lambda _: 424242)
    gil = person("gil", uuid.uuid4().hex[:8])
    old, new = numbers(gil.subject.rpartition("-")[2], 2)
    change = await app.start_phone_change(gil, NewPhoneChange("same", old, new, ""))
    moved = await app.confirm_phone_change(gil, change.name, "424242")
    assert moved.state == "AWAITING_NEW_CODE"
    assert await code_sent(app, change.name) == "424242"
    done = await app.confirm_phone_change(gil, change.name, "424242")
    again = await app.confirm_phone_change(gil, change.name, "424242")
    assert (done.state, again.state, again.attempts) == ("VERIFIED", "VERIFIED", 0)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM help_outbox WHERE request = %s", (change.name,)
        )
        assert await cur.fetchone() == (1,)


def person(name: str, mark: str) -> Identity:
    return Identity(f"{name}-{mark}", frozenset({"user"}))


def numbers(mark: str, count: int) -> list[str]:
    """`count` mobile numbers no other test uses."""
    base = int(mark, 16) % 10**6
    return [f"+86158{i:02d}{base:06d}" for i in range(count)]


async def codes_to(app: HelpCenter, number: str) -> int:
    """The codes the outbox holds for the notifier to send to `number`."""
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT payload FROM verification_outbox")
        rows = await cur.fetchall()
    codes = [hev.VerificationCodeIssued.FromString(row[0]) for row in rows]
    # Each number sealed under its user's key, as on the topic.
    assert not [c.phone for c in codes if not is_token(c.phone)]
    revealed = await reveal_messages_async(app.personal, codes)
    return sum(r.message.phone == number for r in revealed)


async def test_a_number_only_named_by_others_still_starts_its_own_change(
    app: HelpCenter,
) -> None:
    """Mallory starts three changes to Alice's number, every code going to
    her own: no code went to Alice's number, so Alice's change from it starts
    and her code is sent."""
    mark = uuid.uuid4().hex[:8]
    mallory, alice = person("mallory", mark), person("alice", mark)
    hers, alices, alices_new = numbers(mark, 3)
    for i in range(3):
        await app.start_phone_change(mallory, NewPhoneChange(f"m{i}", hers, alices, ""))
    assert (await codes_to(app, hers), await codes_to(app, alices)) == (3, 0)
    started = await app.start_phone_change(alice, NewPhoneChange("a1", alices, alices_new, ""))
    assert started.state == "AWAITING_OLD_CODE"
    assert await codes_to(app, alices) == 1


async def test_others_naming_a_number_do_not_stop_its_holders_own_change(
    app: HelpCenter,
) -> None:
    """Three other accounts start changes from Alice's number (each sends it
    a code): Alice's own change from it still starts and her code is sent.
    Her own changes from it are limited to three an hour."""
    mark = uuid.uuid4().hex[:8]
    alice, *others = (person(f"n{i}", mark) for i in range(4))
    alices, *own = numbers(mark, 8)
    for other, number in zip(others, own, strict=False):
        await app.start_phone_change(other, NewPhoneChange("o1", alices, number, ""))
    assert await codes_to(app, alices) == 3
    started = await app.start_phone_change(alice, NewPhoneChange("a1", alices, own[3], ""))
    assert started.state == "AWAITING_OLD_CODE"
    assert await codes_to(app, alices) == 4
    for i, number in enumerate(own[4:6], start=2):
        await app.start_phone_change(alice, NewPhoneChange(f"a{i}", alices, number, ""))
    with pytest.raises(ResourceExhausted) as refused:
        await app.start_phone_change(alice, NewPhoneChange("a4", alices, own[6], ""))
    assert refused.value.reason == "CODES_PER_NUMBER"
    assert await codes_to(app, alices) == 6


async def test_a_number_gets_the_codes_of_ten_changes_an_hour_whoever_starts_them(
    app: HelpCenter,
) -> None:
    """Ten users' changes from one number send it their codes; another
    change to or from it, by anyone, is refused, and so is the new-number
    code of a change begun before them (which stays at its step, no attempt
    counted). An hour later the number takes changes again."""
    cap = phone.CHANGES_PER_NUMBER_PER_HOUR
    assert cap == 10
    mark = uuid.uuid4().hex[:8]
    xena, *users = (person(f"u{i}", mark) for i in range(cap + 2))
    shared, xenas, *own = numbers(mark, cap + 4)
    first = await app.start_phone_change(xena, NewPhoneChange("x1", xenas, shared, ""))
    for user, number in zip(users[:cap], own, strict=False):
        await app.start_phone_change(user, NewPhoneChange("s1", shared, number, ""))
    assert await codes_to(app, shared) == cap
    for change in (
        NewPhoneChange("s1", shared, own[cap], ""),
        NewPhoneChange("s1", own[cap + 1], shared, ""),
    ):
        with pytest.raises(ResourceExhausted) as refused:
            await app.start_phone_change(users[cap], change)
        assert refused.value.reason == "CODES_PER_NUMBER"
    code = await code_sent(app, first.name)
    with pytest.raises(ResourceExhausted) as refused:
        await app.confirm_phone_change(xena, first.name, code)
    assert refused.value.reason == "CODES_PER_NUMBER"
    stays = await app.phone_change(xena, first.name)
    assert (stays.state, stays.attempts, stays.codes_sent) == ("AWAITING_OLD_CODE", 0, 1)
    assert await codes_to(app, shared) == cap

    clock = app.clock
    assert isinstance(clock, FakeClock)
    was = clock.now()
    try:
        clock.now_is(was + timedelta(hours=1, seconds=1))
        later = await app.start_phone_change(users[cap], NewPhoneChange("s2", shared, own[cap], ""))
    finally:
        clock.now_is(was)  # the module's other tests share the clock
    assert later.state == "AWAITING_OLD_CODE" and await codes_to(app, shared) == cap + 1


async def test_changes_started_at_once_on_the_same_numbers_keep_the_limit_and_all_answer(
    app: HelpCenter,
) -> None:
    """More users than a number takes changes from in an hour start changes
    between the same two numbers at the same moment, half of them one way
    round and half the other (on replicas, as on one): neither number gets
    codes from more changes than its limit, and every call is answered,
    sent or refused, none deadlocked."""
    cap = phone.CHANGES_PER_NUMBER_PER_HOUR
    wide = async_pool(str(app.pool.conninfo), max_size=8)
    await wide.open()
    try:
        racing = HelpCenter(wide, app.clock, app.personal, seal_phone_changes=True)
        for _ in range(3):
            mark = uuid.uuid4().hex[:8]
            p, q = numbers(mark, 2)
            calls = [
                racing.start_phone_change(
                    person(f"r{i}", mark),
                    NewPhoneChange("r1", *((p, q) if i % 2 else (q, p)), ""),
                )
                for i in range(2 * cap + 4)
            ]
            answers = await asyncio.gather(*calls, return_exceptions=True)
            refused = [a for a in answers if isinstance(a, BaseException)]
            assert all(isinstance(a, ResourceExhausted) for a in refused), refused
            assert len(refused) < len(calls)
            assert await codes_to(app, p) <= cap and await codes_to(app, q) <= cap
    finally:
        await wide.close()


async def test_a_start_retried_after_its_numbers_were_forgotten_is_answered(
    app: HelpCenter,
) -> None:
    """A verified change whose numbers an erasure blanked (as retention
    does, later, to everyone's): its start retried under its request id is
    answered with the change as it stands, not refused as a reused key, and
    sends nothing."""
    mark = uuid.uuid4().hex[:8]
    una = person("una", mark)
    old, new = numbers(mark, 2)
    change = await app.start_phone_change(una, NewPhoneChange("u1", old, new, ""))
    await app.confirm_phone_change(una, change.name, await code_sent(app, change.name))
    verified = await app.confirm_phone_change(una, change.name, await code_sent(app, change.name))
    assert verified.state == "VERIFIED"
    erasures.forget_person(str(app.pool.conninfo), una.subject, datetime.now(UTC))
    again = await app.start_phone_change(una, NewPhoneChange("u1", old, new, ""))
    assert (again.id, again.state, again.codes_sent) == (change.id, "VERIFIED", 2)
    assert (again.old_phone, again.new_phone) == ("", "")
    assert await codes_to(app, old) + await codes_to(app, new) == 0


async def code_sent(app: HelpCenter, name: str) -> str:
    """The latest code the outbox holds for the notifier to send."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload FROM verification_outbox WHERE request = %s ORDER BY id DESC",
            (name,),
        )
        row = await cur.fetchone()
    assert row is not None
    return hev.VerificationCodeIssued.FromString(row[0]).code


async def help_tables(app: HelpCenter) -> str:
    """Every row a person's help leaves, as text."""
    async with app.pool.connection() as conn:
        found = []
        for table in ("help_sessions", "help_search_log", "phone_changes", "help_outbox"):
            cur = await conn.execute(f"SELECT {table}::text FROM {table} ORDER BY 1")
            found += [row[0] for row in await cur.fetchall()]
        # The one-time codes still to be published name the number they prove.
        cur = await conn.execute("SELECT payload FROM verification_outbox")
        found += [bytes(row[0]).decode("utf-8", "replace") for row in await cur.fetchall()]
    return "\n".join(found)


async def test_an_erased_person_keeps_their_sessions_shape_but_not_their_words_or_numbers(
    app: HelpCenter,
) -> None:
    mark = uuid.uuid4().hex[:8]
    mia, nia = (
        Identity(f"mia-{mark}", frozenset({"user"})),
        Identity(f"nia-{mark}", frozenset({"user"})),
    )
    found = await app.search(mia, f"视频传不上去 mia{mark}", "", "", 0, "")
    draft = await app.resolve(mia, found.session, False, "zh-CN")
    assert draft is not None and f"mia{mark}" in draft.description
    old, new = f"+86138{int(mark, 16) % 10**8:08d}", f"+86139{int(mark, 16) % 10**8:08d}"
    change = await app.start_phone_change(mia, NewPhoneChange("m1", old, new, ""))
    await app.confirm_phone_change(mia, change.name, await code_sent(app, change.name))
    verified = await app.confirm_phone_change(mia, change.name, await code_sent(app, change.name))
    assert verified.state == "VERIFIED"
    async with app.pool.connection() as conn:  # as its publisher does once Kafka has it
        await conn.execute(
            "UPDATE help_outbox SET published_at = now() WHERE request = %s", (change.name,)
        )
    await app.search(nia, f"登录不了 nia{mark}", "", "", 0, "")
    mias = [f"mia{mark}", old.removeprefix("+86"), new.removeprefix("+86")]
    before = await help_tables(app)
    assert all(m in before for m in mias)

    assert erasures.forget_person(str(app.pool.conninfo), mia.subject, datetime.now(UTC)) > 0
    after = await help_tables(app)
    assert [m for m in mias if m in after] == []
    assert f"nia{mark}" in after
    # Her session and change are still there, as structure.
    shown = await app.phone_change(mia, change.name)
    assert (shown.state, shown.old_phone, shown.new_phone) == ("VERIFIED", "", "")
    # Heard again: nothing more changes.
    assert erasures.forget_person(str(app.pool.conninfo), mia.subject, datetime.now(UTC)) == 0
    assert await help_tables(app) == after
    assert await app.resolve(mia, found.session, False, "zh-CN") is not None


async def test_not_solved_asked_again_after_an_erasure_answers_a_ticket_that_can_be_opened(
    app: HelpCenter,
) -> None:
    """Eve's "not solved" was recorded, then opening its ticket failed;
    then her erasure forgot the ticket's words. Asked again, the ticket is
    drafted anew (in the category recorded, in her own words where she
    gives them), one the tickets service takes, not one it refuses for
    ever."""
    eve = Identity(f"eve-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    found = await app.search(eve, "password", "en", "", 1, "")
    first = await app.resolve(eve, found.session, False, "en")
    assert first is not None and first.subject
    erasures.forget_person(str(app.pool.conninfo), eve.subject, datetime.now(UTC))
    again = await app.resolve(eve, found.session, False, "en")
    assert again is not None and (again.category, again.subject) == (first.category, first.subject)
    v = Violations()
    rules.check_ticket_words(
        v, category=again.category, subject=again.subject, description=again.description
    )
    assert not v
    assert "password" not in again.description  # still forgotten
    # The draft recorded stands from then on.
    own = TicketDraft("", "my own words", "")
    assert await app.resolve(eve, found.session, False, "en", own) == again
    # Forgotten again before it was opened: their own words this time, but
    # in the category recorded (another is refused, and records nothing).
    erasures.forget_person(str(app.pool.conninfo), eve.subject, datetime.now(UTC))
    other = next(c for c in rules.BY_ID if c != first.category)
    with pytest.raises(AlreadyExists):
        await app.resolve(eve, found.session, False, "en", TicketDraft(other, "elsewhere", ""))
    mine = await app.resolve(eve, found.session, False, "en", own)
    assert mine is not None and mine.subject == "my own words"
    assert mine.category == first.category


async def test_what_a_person_does_after_their_erasure_is_kept_when_it_is_heard_again(
    app: HelpCenter,
) -> None:
    """An erasure is heard twice, and again after a late publication or a
    replay: each time only what came before it is forgotten. Mia's session
    and phone change from after it keep her words and numbers, and so does
    the session from before it that her page still held: what she searched
    there since, and the ticket she then asked for in her own words."""
    mark = uuid.uuid4().hex[:8]
    mia = Identity(f"mia-{mark}", frozenset({"user"}))
    before = await app.search(mia, f"旧问题 before{mark}", "", "", 0, "")
    await app.start_phone_change(mia, NewPhoneChange("b1", "+8613800000001", "+8613900000001", ""))
    clock = app.clock
    assert isinstance(clock, FakeClock)
    erased_at, was = max(datetime.now(UTC), clock.now()), clock.now()
    erasures.forget_person(str(app.pool.conninfo), mia.subject, erased_at)  # first heard

    await app.search(mia, f"还是不行 again{mark}", "", "", 0, before.session)
    own = TicketDraft("", f"my subject {mark}", f"my own words {mark}")
    asked = await app.resolve(mia, before.session, False, "zh-CN", own)
    assert asked is not None and asked.subject == f"my subject {mark}"
    after = await app.search(mia, f"新问题 after{mark}", "", "", 0, "")
    clock.now_is(erased_at + timedelta(minutes=1))
    try:
        change = await app.start_phone_change(
            mia, NewPhoneChange("a1", "+8613800000002", "+8613900000002", "")
        )
    finally:
        clock.now_is(was)  # the module's other tests share the clock
    erasures.forget_person(str(app.pool.conninfo), mia.subject, erased_at)  # heard again
    kept = await help_tables(app)
    assert f"after{mark}" in kept and "13800000002" in kept and "13900000002" in kept
    assert f"before{mark}" not in kept and "13800000001" not in kept
    draft = await app.resolve(mia, after.session, False, "zh-CN")
    assert draft is not None and f"after{mark}" in draft.description
    assert (await app.phone_change(mia, change.name)).state == "AWAITING_OLD_CODE"
    assert before.session != after.session
    # The session from before: her words since are there as she gave them,
    # in its listing (her export) and in the ticket asked for again.
    assert await app.resolve(mia, before.session, False, "zh-CN") == asked
    rows, _ = await app.my_sessions(mia, 0, "")
    [earlier] = [row for row in rows if str(row["id"]) in before.session]
    assert earlier["searches"] == [f"还是不行 again{mark}"]
    assert [q["query"] for q in earlier["search_log"]] == ["", f"还是不行 again{mark}"]
    assert (earlier["ticket_subject"], earlier["ticket_description"]) == (
        f"my subject {mark}",
        f"my own words {mark}",
    )


async def drafted_after_the_erasure(
    app: HelpCenter, user: str, query: str, language: str, locale: str
) -> tuple[Identity, str, datetime, Any]:
    """`user` searched `query`, was erased, and asked for a ticket drafted
    from the search before the erasure reached the help centre: who they
    are, their session, the erasure's time and the draft."""
    who = Identity(user, frozenset({"user"}))
    found = await app.search(who, query, language, "", 0, "")
    erased_at = datetime.now(UTC)
    drafted = await app.resolve(who, found.session, False, locale)
    assert drafted is not None
    return who, found.session, erased_at, drafted


async def test_a_ticket_asked_for_before_the_erasure_was_heard_forgets_the_searches_it_quotes(
    app: HelpCenter,
) -> None:
    """Ned was erased, and asked for a ticket before the erasure reached the
    help centre: the ticket drafted then quotes what he searched before it.
    Heard, the erasure forgets those searches where they are quoted too;
    asked again, the ticket is drafted anew without them."""
    mark = uuid.uuid4().hex[:8]
    ned, session, erased_at, drafted = await drafted_after_the_erasure(
        app, f"ned-{mark}", f"视频传不上去 ned{mark}", "", "zh-CN"
    )
    assert f"ned{mark}" in drafted.description
    erasures.forget_person(str(app.pool.conninfo), ned.subject, erased_at)
    assert f"ned{mark}" not in await help_tables(app)
    again = await app.resolve(ned, session, False, "zh-CN")
    assert again is not None and again.subject == drafted.subject
    assert f"ned{mark}" not in again.description


async def test_a_draft_quoting_a_search_from_before_the_erasure_forgets_it_after_later_searches(
    app: HelpCenter,
) -> None:
    """Bob was erased, and before the erasure reached the help centre he
    asked for a ticket drafted from what he had searched, then searched as
    many times again: the session's latest searches no longer hold the one
    from before. Heard, the erasure still forgets it in the ticket quoting
    it, and keeps what he searched since."""
    mark = uuid.uuid4().hex[:8]
    bob, session, erased_at, drafted = await drafted_after_the_erasure(
        app, f"bob-{mark}", f"SECRET-q1 first{mark}", "en", "en"
    )
    assert f"SECRET-q1 first{mark}" in drafted.description
    later = [f"upload fails {n} later{mark}" for n in range(store.SEARCHES_KEPT)]
    for query in later:
        await app.search(bob, query, "en", "", 0, session)
    [row], _ = await app.my_sessions(bob, 0, "")
    assert row["searches"] == later

    erasures.forget_person(str(app.pool.conninfo), bob.subject, erased_at)
    kept = await help_tables(app)
    assert f"first{mark}" not in kept
    assert all(query in kept for query in later)
    again = await app.resolve(bob, session, False, "en")
    assert again is not None and again.subject == drafted.subject
    assert f"first{mark}" not in again.description and later[-1] in again.description


async def test_own_words_given_after_the_erasure_are_kept_though_they_repeat_an_earlier_search(
    app: HelpCenter,
) -> None:
    """Uma searched "password", was erased, and before the erasure reached
    the help centre asked for a ticket in her own words, which say it too.
    Heard, and heard again, the erasure forgets her search, not her words."""
    mark = uuid.uuid4().hex[:8]
    uma = Identity(f"uma-{mark}", frozenset({"user"}))
    found = await app.search(uma, "password", "en", "", 0, "")
    erased_at = datetime.now(UTC)
    own = TicketDraft("", f"Still locked out {mark}", "I reset my password but it still fails")
    asked = await app.resolve(uma, found.session, False, "en", own)
    assert asked is not None

    for _ in range(2):
        erasures.forget_person(str(app.pool.conninfo), uma.subject, erased_at)
        [row], _ = await app.my_sessions(uma, 0, "")
        assert row["searches"] == []
        assert [q["query"] for q in row["search_log"]] == [""]
        assert (row["ticket_subject"], row["ticket_description"]) == (
            own.subject,
            own.description,
        )
    assert await app.resolve(uma, found.session, False, "en") == asked


async def test_a_ticket_recorded_by_an_earlier_release_is_forgotten_by_an_erasure(
    app: HelpCenter,
) -> None:
    """Recorded before the help centre kept when a ticket's words were
    written (or by a replica of an earlier release in a rollout), Leo's
    ticket in his own words counts as given before his erasure."""
    mark = uuid.uuid4().hex[:8]
    leo = Identity(f"leo-{mark}", frozenset({"user"}))
    found = await app.search(leo, "password", "en", "", 1, "")
    own = TicketDraft("", f"subject leo{mark}", f"words leo{mark}")
    assert await app.resolve(leo, found.session, False, "en", own) is not None
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE help_sessions SET worded_at = NULL WHERE id = %s",
            (found.session.removeprefix("help-sessions/"),),
        )
    erasures.forget_person(str(app.pool.conninfo), leo.subject, datetime.now(UTC))
    assert f"leo{mark}" not in await help_tables(app)


async def test_an_erased_persons_open_phone_change_ends_and_verifies_nothing(
    app: HelpCenter,
) -> None:
    """A code confirmed after the erasure would have verified a change
    between no numbers (and a resend texted no number); the change ends."""
    mark = uuid.uuid4().hex[:8]
    ivy = Identity(f"ivy-{mark}", frozenset({"user"}))
    old, new = f"+86137{int(mark, 16) % 10**8:08d}", f"+86136{int(mark, 16) % 10**8:08d}"
    change = await app.start_phone_change(ivy, NewPhoneChange("i1", old, new, ""))
    code = await code_sent(app, change.name)
    erasures.forget_person(str(app.pool.conninfo), ivy.subject, datetime.now(UTC))
    with pytest.raises(FailedPrecondition) as refused:
        await app.confirm_phone_change(ivy, change.name, code)
    assert refused.value.reason == "PHONE_CHANGE_ERASED"
    with pytest.raises(FailedPrecondition) as refused:  # a retry of its start
        await app.start_phone_change(ivy, NewPhoneChange("i1", old, new, ""))
    assert refused.value.reason == "PHONE_CHANGE_ERASED"
    shown = await app.phone_change(ivy, change.name)
    assert (shown.state, shown.old_phone, shown.new_phone) == ("ERASED", "", "")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM help_outbox WHERE request = %s", (change.name,)
        )
        assert await cur.fetchone() == (0,)
    # A new change, under a new request id, goes ahead.
    again = await app.start_phone_change(ivy, NewPhoneChange("i2", old, new, ""))
    assert again.state == "AWAITING_OLD_CODE"


async def test_retention_forgets_old_words_and_numbers_and_keeps_every_sessions_shape(
    app: HelpCenter,
) -> None:
    """A session begun longer ago than its period loses its searches, its
    ticket draft and its search log's queries; a phone change begun longer
    ago than its period loses both numbers, its codes still unsent and its
    published request's payload. Those a day younger than their period keep
    theirs, and every session keeps its flow, outcome and times. A second
    pass changes nothing."""
    mark = uuid.uuid4().hex[:8]
    ola = Identity(f"ola-{mark}", frozenset({"user"}))
    now = datetime.now(UTC)
    kept = [period("help_sessions"), period("phone_changes")]
    long_ago, lately = now - max(kept) - timedelta(days=1), now - min(kept) + timedelta(days=1)

    old = await app.search(ola, f"视频传不上去 old{mark}", "", "", 0, "")
    await app.start_flow(ola, "flows/upload", old.session, "en")
    await app.answer_flow(ola, old.session, 0)
    assert await app.resolve(ola, old.session, False, "zh-CN") is not None
    young = await app.search(ola, f"登录不了 young{mark}", "", "", 0, "")
    assert await app.resolve(ola, young.session, False, "zh-CN") is not None
    async with app.pool.connection() as conn:
        for found, began in ((old, long_ago), (young, lately)):
            ident = found.session.removeprefix("help-sessions/")
            await conn.execute(
                "UPDATE help_sessions SET created_at = %s, resolved_at = %s WHERE id = %s",
                (began, began + timedelta(minutes=5), ident),
            )
            await conn.execute(
                "UPDATE help_search_log SET at = %s WHERE session = %s", (began, ident)
            )

    number = int(mark, 16) % 10**7
    old_numbers = (f"+861350{number:07d}", f"+861360{number:07d}")
    young_numbers = (f"+861370{number:07d}", f"+861380{number:07d}")
    clock = app.clock
    assert isinstance(clock, FakeClock)
    was = clock.now()
    try:
        clock.now_is(long_ago)
        gone = await app.start_phone_change(ola, NewPhoneChange("o1", *old_numbers, ""))
        await app.confirm_phone_change(ola, gone.name, await code_sent(app, gone.name))
        await app.confirm_phone_change(ola, gone.name, await code_sent(app, gone.name))
        clock.now_is(lately)
        stays = await app.start_phone_change(ola, NewPhoneChange("y1", *young_numbers, ""))
    finally:
        clock.now_is(was)  # the module's other tests share the clock
    async with app.pool.connection() as conn:  # published from before payloads went on publishing
        await conn.execute(
            "UPDATE help_outbox SET published_at = %s WHERE request = %s", (long_ago, gone.name)
        )

    async def shapes() -> list[tuple[object, ...]]:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT flow, node, path, articles, outcome, ticket_category, created_at,"
                " resolved_at FROM help_sessions WHERE user_id = %s ORDER BY created_at",
                (ola.subject,),
            )
            return list(await cur.fetchall())

    olds = [f"old{mark}", *(n.removeprefix("+86") for n in old_numbers)]
    youngs = [f"young{mark}", *(n.removeprefix("+86") for n in young_numbers)]
    shaped = await shapes()
    before = await help_tables(app)
    assert all(m in before for m in olds + youngs)
    assert [row[0] for row in shaped] == ["upload", ""]

    async with app.pool.connection() as conn:
        assert await retention.forget_old(conn, now, batch=2) >= 6
    after = await help_tables(app)
    assert [m for m in olds if m in after] == []
    assert [m for m in youngs if m not in after] == []
    assert await shapes() == shaped
    [listed_young, listed_old] = (await app.my_sessions(ola, 0, ""))[0]
    words = ("searches", "ticket_subject", "ticket_description")
    assert [listed_old[w] for w in words] == [[], "", ""]
    assert all(listed_young[w] for w in words)
    assert [q["query"] for q in listed_old["search_log"]] == [""]
    assert [q["query"] for q in listed_young["search_log"]] == [f"登录不了 young{mark}"]
    shown = await app.phone_change(ola, gone.name)
    assert (shown.state, shown.old_phone, shown.new_phone) == ("VERIFIED", "", "")
    assert shown.created_at == long_ago and shown.verified_at is not None
    assert await code_sent(app, stays.name)  # still to be sent

    async with app.pool.connection() as conn:
        assert await retention.forget_old(conn, now) == 0
    assert await help_tables(app) == after


async def test_retention_counts_a_sessions_words_from_when_it_began(
    app: HelpCenter,
) -> None:
    """Pia's session began longer ago than its period, and she searched in
    it again lately and asked for a ticket in her own words: the session's
    searches and ticket go with it, all counted from its start; the search
    log keeps her latest search its period from when she made it."""
    mark = uuid.uuid4().hex[:8]
    pia = Identity(f"pia-{mark}", frozenset({"user"}))
    found = await app.search(pia, f"登录不了 old{mark}", "", "", 0, "")
    long_ago = datetime.now(UTC) - period("help_sessions") - timedelta(days=1)
    async with app.pool.connection() as conn:
        ident = found.session.removeprefix("help-sessions/")
        await conn.execute(
            "UPDATE help_sessions SET created_at = %s WHERE id = %s", (long_ago, ident)
        )
        await conn.execute(
            "UPDATE help_search_log SET at = %s WHERE session = %s", (long_ago, ident)
        )
    await app.search(pia, f"还是登录不了 lately{mark}", "", "", 0, found.session)
    own = TicketDraft("", f"my subject {mark}", f"my own words {mark}")
    assert await app.resolve(pia, found.session, False, "zh-CN", own) is not None

    async with app.pool.connection() as conn:
        await retention.forget_old(conn, datetime.now(UTC))
    [row], _ = await app.my_sessions(pia, 0, "")
    assert row["searches"] == []
    assert [q["query"] for q in row["search_log"]] == ["", f"还是登录不了 lately{mark}"]
    assert (row["ticket_subject"], row["ticket_description"]) == ("", "")
    assert row["outcome"] == "NOT_SOLVED"


async def test_retention_finds_what_it_forgets_through_its_partial_indexes(
    app: HelpCenter,
) -> None:
    """Each batch reads an index over the rows still holding something, not
    the table: the rows forgotten year after year cost it nothing. (Asked
    with the tables' other indexes dropped, in a transaction rolled back: on
    tables this small the planner may read any index on the same column.)"""
    indexes = {
        "help_search_log": "help_search_log_worded",
        "help_sessions": "help_sessions_worded",
        "verification_outbox": "verification_outbox_unpublished",
        "help_outbox": "help_outbox_published_payload",
        "phone_changes": "phone_changes_numbered",
    }
    async with app.pool.connection() as conn, conn.transaction(force_rollback=True):
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute(
            "SELECT i.indexrelid::regclass::text FROM pg_index i"
            " WHERE i.indrelid::regclass::text = ANY(%s)"
            " AND i.indexrelid::regclass::text <> ALL(%s)"
            " AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            (list(indexes), list(indexes.values())),
        )
        for (other,) in await cur.fetchall():
            await conn.execute(f"DROP INDEX {other}")
        for forgotten in erasures.FORGOTTEN:
            cur = await conn.execute(
                "EXPLAIN " + forgotten.by_age, {"before": datetime.now(UTC), "batch": 1000}
            )
            plan = "\n".join(row[0] for row in await cur.fetchall())
            assert re.search(rf"Index Scan (on|using) {indexes[forgotten.table]} ", plan), plan


async def test_the_retention_timer_waits_out_its_database_being_away_then_forgets(
    infra: Infra,
) -> None:
    """The timer starts while its database is not there (as in an outage):
    its passes fail and it tries again; once the database is there, a pass
    forgets what is older than its period. Stopping it ends it."""
    name = f"help_away_{uuid.uuid4().hex[:8]}"
    dsn = infra.pg.dsn(name)
    stop = asyncio.Event()
    timer = RetentionTimer(
        dsn, FakeClock(datetime.now(UTC)), first_pass_after_s=0, every_s=0.2, retry_after_s=0.1
    )
    running = asyncio.create_task(timer.run(stop))
    try:
        await asyncio.sleep(0.5)
        assert not running.done()
        infra.pg.create_database(name)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await store.create_schema(conn, phone.SCHEMA)
            ident = uuid.uuid4()
            await conn.execute(
                "INSERT INTO help_sessions (id, user_id, locale, searches, created_at)"
                " VALUES (%s, 'pia', 'en', '[\"pia words\"]', now() - interval '400 days')",
                (ident,),
            )
            for _ in range(100):
                cur = await conn.execute(
                    "SELECT searches FROM help_sessions WHERE id = %s", (ident,)
                )
                row = await cur.fetchone()
                if row == ([],):
                    break
                await asyncio.sleep(0.1)
        assert row == ([],)
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)


async def test_an_article_a_guided_flow_ends_at_is_not_withdrawn(app: HelpCenter) -> None:
    """Withdrawn, it would leave the flow's answer leading nowhere; still
    published, it is said so. One in a language it was never written in is
    not found."""
    with pytest.raises(FailedPrecondition, match="flows/login") as refused:
        await app.publish_article(ADMIN, "articles/login-no-sms-code", "en", 0, True)
    assert refused.value.reason == "ARTICLE_ENDS_A_FLOW"
    assert (await app.article(ALICE, "articles/login-no-sms-code", "en", 0, "")).title
    with pytest.raises(NotFound):
        await app.publish_article(ADMIN, "articles/no-such-article", "en", 0, True)


async def seeded_help_centre(infra: Infra) -> tuple[str, int]:
    """A database of its own with the starter articles published: its
    address, and how many were published."""
    name = f"help_reindex_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    dsn = infra.pg.dsn(name)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await store.create_schema(conn, phone.SCHEMA)
        return dsn, await store.seed(conn)


async def test_articles_indexed_by_an_earlier_release_are_indexed_again_at_the_next_start(
    infra: Infra,
) -> None:
    """A help centre whose articles an earlier release indexed (other word
    rules: here, no stemming of "passwords") finds them by the new rules
    once a replica of this release starts; replicas starting together index
    them once."""
    dsn, published = await seeded_help_centre(infra)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        fresh = await conn.execute("SELECT * FROM help_search_words ORDER BY 1, 2, 3")
        words = await fresh.fetchall()
        # As an earlier release left them: its own words, and no tokeniser noted.
        await conn.execute("UPDATE help_search SET tokeniser = ''")
        await conn.execute("UPDATE help_search_words SET word = word || '-old' WHERE locale = 'en'")
        assert await store.search(conn, "passwords", "en", "", 5) == []

    async def start() -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await store.create_schema(conn, phone.SCHEMA)

    assert sorted(await asyncio.gather(start(), start(), start())) == [0, 0, published]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        again = await conn.execute("SELECT * FROM help_search_words ORDER BY 1, 2, 3")
        assert await again.fetchall() == words and published
        found = await store.search(conn, "passwords", "en", "", 5)
        assert any("password" in article.slug for article, _ in found)


async def test_an_article_published_while_a_start_indexes_again_is_indexed_once_as_published(
    infra: Infra,
) -> None:
    """A replica still running publishes version 2 of an article while a new
    one indexes the articles again: one waits for the other, and the index
    holds version 2's words, once."""
    dsn, _ = await seeded_help_centre(infra)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE help_search SET tokeniser = ''")
        slug = "login-hacked"
        version = await store.write_version(
            conn,
            slug=slug,
            locale="en",
            category="account.login",
            title="Zebra crossing",
            body="Zebra stripes",
            keywords="zebra",
            author="editor",
            base_version=1,
        )
        assert isinstance(version, int)
    async with (
        await psycopg.AsyncConnection.connect(dsn) as indexing,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as publishing,
    ):
        async with indexing.transaction():
            # The start's re-index has run, and not yet committed.
            assert await store.reindex(indexing) > 0
            published = asyncio.create_task(store.publish(publishing, slug, "en", version))
            await eventually(lambda: waits_for_a_lock(dsn, publishing.info.backend_pid))
        assert not isinstance(await published, store.NotWritten)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        found = await store.search(conn, "zebra", "en", "", 5)
        assert [article.slug for article, _ in found] == [slug]
        cur = await conn.execute(
            "SELECT count(*) FROM help_search WHERE slug = %s AND locale = 'en'", (slug,)
        )
        assert await cur.fetchone() == (1,)


def waits_for_a_lock(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return row == ("Lock",)


async def test_a_session_keeps_the_words_only_of_the_searches_its_listing_shows(
    app: HelpCenter,
) -> None:
    """The person's export (ListMyHelpSessions) shows a session's latest 100
    searches; the words of an earlier one are kept nowhere else either. Each
    search is still counted, with its result count and time, for the
    figures."""
    cal = Identity(f"cal-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    first = await app.search(cal, "secret words 0", "en", "", 1, "")
    for i in range(1, 130):
        await app.search(cal, f"secret words {i}", "en", "", 1, first.session)
    rows, _ = await app.my_sessions(cal, 0, "")
    shown = [q["query"] for q in rows[0]["search_log"]]
    assert shown == [f"secret words {i}" for i in range(30, 130)]
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT query FROM help_search_log WHERE session = %s ORDER BY at, id",
            (first.session.removeprefix("help-sessions/"),),
        )
        kept = [row[0] for row in await cur.fetchall()]
    assert len(kept) == 130
    assert [q for q in kept if q] == shown


async def test_the_words_of_searches_no_listing_shows_are_forgotten_at_the_next_start(
    app: HelpCenter,
) -> None:
    """Logged by an earlier release, which kept every search's words: the
    start of this one forgets those of all but each session's latest 100."""
    kit = Identity(f"kit-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    step = await app.start_flow(kit, "flows/upload", "", "en")
    ident = step.session.removeprefix("help-sessions/")
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO help_search_log (session, query, results, at)"
            " SELECT %s, 'old words ' || i, 1, now() - (150 - i) * interval '1 second'"
            " FROM generate_series(1, 150) AS i",
            (ident,),
        )
        # As at the first start of this release (its statements not yet run).
        await conn.execute("DELETE FROM casemesh_schema WHERE name = 'helpcenter'")
        await store.create_schema(conn, phone.SCHEMA)
        cur = await conn.execute(
            "SELECT query FROM help_search_log WHERE session = %s ORDER BY at, id", (ident,)
        )
        kept = [row[0] for row in await cur.fetchall()]
    assert kept == [""] * 50 + [f"old words {i}" for i in range(51, 151)]
    rows, _ = await app.my_sessions(kit, 0, "")
    assert [q["query"] for q in rows[0]["search_log"]] == kept[50:]


async def test_a_search_cut_short_and_sent_again_leaves_one_session_with_the_search_once(
    app: HelpCenter,
) -> None:
    """The gateway sends a search again when its first attempt failed (here
    the database refuses its last write, as when it goes away then): the
    user's sessions list one session, holding the search once."""
    dan = Identity(f"dan-{uuid.uuid4().hex[:8]}", frozenset({"user"}))
    typed = f"{dan.subject} upload failed"
    async with app.pool.connection() as conn:
        await conn.execute("CREATE SEQUENCE help_fails_once")
        await conn.execute(
            "CREATE FUNCTION help_fails_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.query = '{typed}' AND nextval('help_fails_once') = 1 THEN"
            " RAISE EXCEPTION 'cut short'; END IF; RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER help_fails_once AFTER INSERT ON help_search_log"
            " FOR EACH ROW EXECUTE FUNCTION help_fails_once()"
        )
    try:
        with pytest.raises(psycopg.errors.RaiseException):
            await app.search(dan, typed, "en", "", 1, "")
        found = await app.search(dan, typed, "en", "", 1, "")
    finally:
        async with app.pool.connection() as conn:
            await conn.execute("DROP TRIGGER help_fails_once ON help_search_log")
            await conn.execute("DROP FUNCTION help_fails_once()")
            await conn.execute("DROP SEQUENCE help_fails_once")
    rows, _ = await app.my_sessions(dan, 0, "")
    assert [
        (f"help-sessions/{row['id']}", row["searches"], [q["query"] for q in row["search_log"]])
        for row in rows
    ] == [(found.session, [typed], [typed])]


async def test_the_service_has_its_dictionary_loaded_before_it_serves(
    app: HelpCenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded by the first Chinese query instead, jieba's dictionary would
    hold every call on the event loop for about a second. A start on a help
    centre already indexed tokenises nothing else: the service loads it
    before it serves (and so before it reports ready)."""
    loaded_when_serving: list[bool] = []

    async def serve(*_: Any, close: Callable[[], Awaitable[None]], **__: Any) -> None:
        loaded_when_serving.append(search._segmenter.cache_info().currsize == 1)
        await close()

    class Idle:
        def __init__(self, *_: Any, **__: Any) -> None:
            pass

        async def run(self, stop: asyncio.Event) -> None:
            await stop.wait()

    monkeypatch.setattr(helpcenter_main, "serve_servicer", serve)
    monkeypatch.setattr(helpcenter_main, "OutboxPublisher", Idle)
    monkeypatch.setattr(helpcenter_main, "RetentionTimer", Idle)
    monkeypatch.setattr(helpcenter_main, "open_sealer", lambda _: app.personal.sealer)
    search._segmenter.cache_clear()
    cfg = HelpSettings.model_construct(
        database_url=str(app.pool.conninfo), db_pool_size=2, kafka_bootstrap="127.0.0.1:1"
    )
    await helpcenter_main.run(cfg)
    assert loaded_when_serving == [True]


async def test_typeahead_finds_a_title_with_an_apostrophe_as_it_is_typed(app: HelpCenter) -> None:
    """ "Videos with another platform's watermark": found as "platform" is
    typed, and still once the apostrophe is, straight or as a phone types
    it, and what follows."""
    for typed in ("platform", "platform'", "platform's", "platform’s", "Another Platform’s W"):
        assert "upload-watermark" in [v.slug for v in await app.suggest(typed, "en")], typed


async def test_titles_indexed_before_they_were_kept_folded_are_folded_at_the_next_start(
    app: HelpCenter,
) -> None:
    async with app.pool.connection() as conn:
        await conn.execute("UPDATE help_search SET folded_title = NULL")
        assert await app.suggest("platform's", "en") == []  # matched as before
        await store.create_schema(conn, phone.SCHEMA)
        cur = await conn.execute("SELECT count(*) FROM help_search WHERE folded_title IS NULL")
        assert await cur.fetchone() == (0,)
    assert [v.slug for v in await app.suggest("platform's", "en")] == ["upload-watermark"]

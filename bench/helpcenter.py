"""Help-centre search latency over 10,000 articles: the judged queries of
tests/helpcenter_queries.json, segmented and ranked in PostgreSQL, against a
bare psycopg round trip, measured alternately (A-B-A-B)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg

from bench.queue import percentiles, raw_round_trips
from bench.report import Goal, interleaved, row
from casemesh_helpcenter import store
from casemesh_helpcenter.search import is_chinese

QUERIES = Path(__file__).resolve().parent.parent / "tests" / "helpcenter_queries.json"


async def seed(dsn: str, articles: int) -> int:
    """The starter knowledge base, then copies of it with numbered slugs until
    there are `articles` published articles (each language counts)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await store.create_schema(conn)
        count = await store.seed(conn)
        base = await (await conn.execute(
            "SELECT v.slug, v.locale, v.category, v.title, v.body, v.keywords FROM help_versions v"
        )).fetchall()  # fmt: skip
        n = 0
        while count < articles:
            n += 1
            async with conn.transaction():
                for slug, locale, category, title, body, keywords in base:
                    if count >= articles:
                        break
                    copy = f"{slug}-{n}"
                    await store.write_version(
                        conn, slug=copy, locale=locale, category=category,
                        title=f"{title}（{n}）", body=body, keywords=keywords,
                        author="bench", base_version=None,
                    )  # fmt: skip
                    await store.publish(conn, copy, locale, 1)
                    count += 1
        await conn.execute("VACUUM ANALYZE help_search, help_search_words")
    return count


async def searches(dsn: str, rounds: int) -> list[float]:
    queries = [q["query"] for q in json.loads(QUERIES.read_text())["queries"]]
    samples: list[float] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(rounds):
            for q in queries:
                locale = "zh-CN" if is_chinese(q) else "en"
                t = time.perf_counter()
                await store.search(conn, q, locale, "", 10)
                samples.append(time.perf_counter() - t)
    return samples


# The accepted goal is 15 ms. Searching adds up index rows in one query:
# measured from 6× a bare round trip's p95 on a very busy machine to 41× on a
# quiet one (round trip 0.1 ms, search 3.5 ms), so 50× is the ratio; ranking
# every matching article was 170× to 480×.
GOAL = Goal("help search p95, 10,000 articles", "ms", ratio=50, limit=15)


def run(dsn: str, articles: int = 10_000, rounds: int = 2, alternations: int = 3) -> None:
    started = time.perf_counter()
    total = asyncio.run(seed(dsn, articles))
    seeded = time.perf_counter() - started
    asyncio.run(searches(dsn, 1))  # warm: jieba's dictionary, the server's caches

    def search_p95() -> float:
        return percentiles(asyncio.run(searches(dsn, rounds)), 95)[1]

    def raw_p95() -> float:
        return percentiles(asyncio.run(raw_round_trips(dsn, 1, 300)), 95)[1]

    measured, reference = interleaved(search_p95, raw_p95, alternations)
    print(f"\nHelp-centre search over {total} published articles (seeded in {seeded:.0f} s)")
    print(row(GOAL, measured, reference, "bare psycopg round trip p95"))

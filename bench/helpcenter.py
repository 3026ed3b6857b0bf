"""Help-centre search latency over 10,000 articles: the judged queries of
tests/helpcenter_queries.json, segmented and ranked in PostgreSQL, against a
bare psycopg round trip."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg

from bench.queue import percentiles, raw_round_trips
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
        await conn.execute("VACUUM ANALYZE help_search")
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


def run(dsn: str, articles: int = 10_000, rounds: int = 5) -> None:
    started = time.perf_counter()
    total = asyncio.run(seed(dsn, articles))
    seeded = time.perf_counter() - started
    raw = asyncio.run(raw_round_trips(dsn, 1, 300))
    timed = asyncio.run(searches(dsn, rounds))
    raw50, raw95 = percentiles(raw, 95)
    p50, p95 = percentiles(timed, 95)
    print(f"\nHelp-centre search: {len(timed)} queries over {total} published articles")
    print(f"  (seeded in {seeded:.0f} s)")
    print(f"  bare psycopg round trip       p50 {raw50:7.2f} ms   p95 {raw95:7.2f} ms")
    print(
        f"  SearchArticles (segment+rank) p50 {p50:7.2f} ms   p95 {p95:7.2f} ms"
        f"   ratio p50 {p50 / raw50:.1f}×"
    )

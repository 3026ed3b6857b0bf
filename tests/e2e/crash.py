"""What every kill -9 test checks afterwards: each stored event of a service
is on its topic, and each person got exactly one message."""

from __future__ import annotations

import asyncio
import time

import psycopg

from tests.conftest import PARTITIONS, Stack
from tests.support import read_topic, wait_until


def assert_every_event_relayed(stack: Stack, dsn: str, events_table: str, topic: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT originator_id, originator_version FROM {events_table}"
        ).fetchall()
    want = {f"{oid}:{version}" for oid, version in rows}
    records = asyncio.run(read_topic(stack.infra.kafka.bootstrap, topic, PARTITIONS, want, 90))
    assert want <= {h["ce_id"] for _, h in records}


def assert_each_told_once(stack: Stack, emails: list[str], template: str) -> None:
    wait_until(lambda: all(stack.mail.to(e) for e in emails), timeout=90)
    time.sleep(3)  # anything sent twice would have arrived by now
    assert [len(stack.mail.to(e)) for e in emails] == [1] * len(emails)
    assert all(m["X-Casemesh-Template"] == template for e in emails for m in stack.mail.to(e))

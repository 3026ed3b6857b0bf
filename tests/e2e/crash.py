"""What every kill -9 test checks afterwards: each stored event of a service
is on its topic, and each person got exactly one message."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import psycopg

from tests.conftest import PARTITIONS, Stack
from tests.support import possible_repeats, read_topic, settled, wait_until, wait_while_progressing


def assert_every_event_relayed(stack: Stack, dsn: str, events_table: str, topic: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT originator_id, originator_version FROM {events_table}"
        ).fetchall()
    want = {f"{oid}:{version}" for oid, version in rows}
    records = asyncio.run(read_topic(stack.infra.kafka.bootstrap, topic, PARTITIONS, want, 90))
    assert want <= {h["ce_id"] for _, h in records}


def assert_only_marked_repeats(
    stack: Stack,
    emails: Sequence[str] = (),
    phones: Sequence[str] = (),
) -> None:
    """A message that arrived twice (one Message-ID, one SMS idempotency key)
    was a send in flight at a kill, and the notifier marked it so."""
    keys = Counter(
        m["Message-ID"].strip("<>").split("@")[0] for e in emails for m in stack.mail.to(e)
    )
    keys.update(r["idempotency_key"] for p in phones for r in stack.sms.to(p))
    repeated = {k for k, n in keys.items() if n > 1}
    assert repeated <= possible_repeats(stack.notifier_dsn), (
        "a message was repeated without a kill in flight"
    )


def assert_each_told_once(stack: Stack, emails: list[str], template: str) -> None:
    wait_while_progressing(lambda: sum(1 for e in emails if stack.mail.to(e)), len(emails))
    wait_until(lambda: settled(stack.notifier_dsn, emails), timeout=90)
    assert [len(stack.mail.distinct_to(e)) for e in emails] == [1] * len(emails)
    assert all(m["X-Casemesh-Template"] == template for e in emails for m in stack.mail.to(e))
    assert_only_marked_repeats(stack, emails=emails)

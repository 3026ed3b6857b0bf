"""Retention: what people typed in the help centre and the numbers they gave
(`erasures.FORGOTTEN`) are kept for the period retention.toml gives them
(`help_sessions`, `phone_changes`), counted from when they were given, and
then forgotten, for everyone, as an erasure forgets them of one person.

A timer on every replica does it soon after start and every hour after,
by the service's clock. Each statement changes at most `BATCH` rows and
commits on its own, again until none is left; the rows another replica's
batch or an erasure holds are left for later, not waited for. A forgotten
row holds nothing any statement looks for, so a pass changes each row once
however many replicas run it, and an interrupted pass is finished by the
next. A database away (or failing over) cuts a pass short: the timer logs
it and tries again shortly, however long that lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import psycopg

from casemesh.platform.clock import Clock
from casemesh.platform.logging import get_logger
from casemesh.platform.pools import DATABASE_OUTAGE, with_keepalives
from casemesh.rules import retention
from casemesh_helpcenter.erasures import FORGOTTEN

log = get_logger(__name__)

# Rows a statement changes at most: each transaction stays short on tables
# of any size, and so do the row locks an erasure may meet.
BATCH = 1000
FIRST_PASS_AFTER_S = 10.0
EVERY_S = 3600.0
# A pass the database cut short is tried again this much later.
RETRY_AFTER_S = 30.0


async def forget_old(
    conn: psycopg.AsyncConnection[Any],
    now: datetime,
    *,
    batch: int = BATCH,
    stop: asyncio.Event | None = None,
) -> int:
    """One pass on `conn` (autocommit): forgets what was given longer than
    its period before `now`, `batch` rows a transaction, until none is left
    (or `stop` is set); returns how many rows changed."""
    changed = 0
    for forgotten in FORGOTTEN:
        given_before = now - retention.period(forgotten.kept)
        done = batch
        while done == batch and not (stop is not None and stop.is_set()):
            cur = await conn.execute(forgotten.by_age, {"before": given_before, "batch": batch})
            done = cur.rowcount
            changed += done
    return changed


class RetentionTimer:
    """Runs `forget_old` on its own connection `first_pass_after_s` after
    `run` starts, then every `every_s`, until `stop`. A pass the database
    cut short is logged (`helpcenter.retention_unavailable`) and tried
    again `retry_after_s` later; any other failure is logged
    (`helpcenter.retention_failed`) and tried again at the next hour."""

    def __init__(
        self,
        database_url: str,
        clock: Clock,
        *,
        first_pass_after_s: float = FIRST_PASS_AFTER_S,
        every_s: float = EVERY_S,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self._database_url, self._clock = database_url, clock
        self._first, self._every, self._retry = first_pass_after_s, every_s, retry_after_s

    async def run(self, stop: asyncio.Event) -> None:
        wait = self._first
        while not await _stopped_within(stop, wait):
            try:
                await self._pass(stop)
                wait = self._every
            except DATABASE_OUTAGE as exc:
                log.warning(
                    "helpcenter.retention_unavailable", error=repr(exc), retry_in=self._retry
                )
                wait = self._retry
            except Exception as exc:
                log.error("helpcenter.retention_failed", error=repr(exc), retry_in=self._every)
                wait = self._every

    async def _pass(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(
            with_keepalives(self._database_url), autocommit=True
        ) as conn:
            changed = await forget_old(conn, self._clock.now(), stop=stop)
        if changed:
            log.info("helpcenter.retention_forgot", rows=changed)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()

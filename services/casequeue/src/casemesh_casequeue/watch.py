"""Fans the queue's changes (NOTIFY queue_changes) out to every watcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from casemesh.platform.logging import get_logger
from casemesh_casequeue.store import CHANGES_CHANNEL

log = get_logger(__name__)


class Broadcaster:
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._watchers: set[asyncio.Queue[tuple[str, str]]] = set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[tuple[str, str]]]:
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=10_000)
        self._watchers.add(queue)
        try:
            yield queue
        finally:
            self._watchers.discard(queue)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    async for note in conn.notifies():
                        change, _, name = note.payload.partition("|")
                        for watcher in list(self._watchers):
                            with contextlib.suppress(asyncio.QueueFull):  # a stalled watcher
                                watcher.put_nowait((change, name))
                        if stop.is_set():
                            break
            except psycopg.Error as exc:
                log.error("queue.watch_failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

"""Fans the queue's changes (NOTIFY queue_changes) out to every watcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from casemesh.platform.logging import get_logger
from casemesh_casequeue import store
from casemesh_casequeue.model import Case
from casemesh_casequeue.store import CHANGES_CHANNEL

log = get_logger(__name__)


Change = tuple[str, str, Case | None]


class Broadcaster:
    """One LISTEN connection and one reader per process, however many watch:
    each change is read once and handed to every watcher."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._watchers: set[asyncio.Queue[Change]] = set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Change]]:
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=10_000)
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
                reader: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                )
                async with conn, reader:
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    while not stop.is_set():
                        # Wakes at least once a second, so a stop is noticed
                        # even when nothing changes.
                        async for note in conn.notifies(timeout=1.0):
                            change, _, name = note.payload.partition("|")
                            case = await store.get(reader, name) if self._watchers else None
                            for watcher in list(self._watchers):
                                try:
                                    watcher.put_nowait((change, name, case))
                                except asyncio.QueueFull:
                                    log.warning("queue.watcher_behind", dropped=name)
                            if stop.is_set():
                                break
            except psycopg.Error as exc:
                log.error("queue.watch_failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

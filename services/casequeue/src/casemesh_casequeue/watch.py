"""Fans the queue's changes (NOTIFY queue_changes) out to every watcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from casemesh.platform.errors import Unavailable
from casemesh.platform.logging import get_logger
from casemesh.platform.pools import POOLED, with_keepalives
from casemesh_casequeue import store
from casemesh_casequeue.model import Case
from casemesh_casequeue.store import CHANGES_CHANNEL

log = get_logger(__name__)


# A change heard: what changed, the case's name, the case as it now is (None
# if gone, or not read), and, in the note of a change that took the case out
# of a queue (`store.note`), that queue.
Change = tuple[str, str, Case | None, *tuple[str, ...]]

# Told to every watcher when the changes stopped coming for a while (the
# LISTEN connection was lost): what changed meanwhile was not heard, so the
# watch must end, and its client read the queue again once it watches again.
LOST = "LOST"
# How long a new watcher waits for the changes to be heard at all (the
# database away) before it is told to try again.
LISTENING_WAIT_S = 5.0


class ChangesLost(Unavailable):
    """The queue's changes are not being heard: a watch cannot start, or
    missed some and must end (UNAVAILABLE: the client watches again)."""


class Broadcaster:
    """One LISTEN connection and one reader per process, however many watch:
    each change is read once and handed to every watcher. While the LISTEN
    connection is away, no watch starts; when it is lost, every watch is
    told (`LOST`), as changes made until it is back are never heard."""

    def __init__(self, conninfo: str) -> None:
        # Keepalives: a connection the network dropped without a word (a
        # database host lost) is noticed within a minute, not never.
        self._conninfo = with_keepalives(conninfo)
        self._watchers: set[asyncio.Queue[Change]] = set()
        self._listening = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Change]]:
        """A queue of the changes from now on; raises `ChangesLost` if they
        are not being heard."""
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=10_000)
        self._watchers.add(queue)
        try:
            try:
                await asyncio.wait_for(self._listening.wait(), LISTENING_WAIT_S)
            except TimeoutError:
                raise ChangesLost("the queue's changes cannot be heard now") from None
            yield queue
        finally:
            self._watchers.discard(queue)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._listen(stop)
            except Exception as exc:  # whatever it was, the next connection may do
                log.error("queue.watch_failed", error=repr(exc))
                self._lost()  # at once: no watch starts on a dead connection meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        self._lost()

    async def _listen(self, stop: asyncio.Event) -> None:
        # Held as long as a pool's connections, and prepared no more by
        # themselves (`POOLED`): a column added by a newer release's start
        # would fail their reads of a case.
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **POOLED
        )
        reader: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **POOLED
        )
        async with conn, reader:
            await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
            self._listening.set()
            while not stop.is_set():
                # Wakes at least once a second, so a stop is noticed
                # even when nothing changes.
                async for note in conn.notifies(timeout=1.0):
                    change, name, left = store.read_note(note.payload)
                    case = await store.get(reader, name) if self._watchers else None
                    self._hand_out((change, name, case, left) if left else (change, name, case))
                    if stop.is_set():
                        break

    def _hand_out(self, heard: Change) -> None:
        """Gives a change to every watcher. One whose queue is full would miss
        it: it is told at once, and hears nothing more."""
        for watcher in list(self._watchers):
            try:
                watcher.put_nowait(heard)
            except asyncio.QueueFull:
                log.warning("queue.watcher_behind", dropped=heard[1])
                self._end(watcher)

    def _lost(self) -> None:
        """Tells every watcher the changes stopped (a stop too ends them)."""
        if not self._listening.is_set():
            return
        self._listening.clear()
        for watcher in list(self._watchers):
            self._end(watcher)

    def _end(self, watcher: asyncio.Queue[Change]) -> None:
        """Ends a watch: LOST is all its queue holds, and nothing more is put
        in it. What it had not read yet is out of date and not all that
        changed: its client reads the queue again anyway, and should start
        now rather than after the backlog (a reader that stopped reading
        would otherwise keep the backlog until its deadline)."""
        self._watchers.discard(watcher)
        while not watcher.empty():
            watcher.get_nowait()
        watcher.put_nowait((LOST, "", None))

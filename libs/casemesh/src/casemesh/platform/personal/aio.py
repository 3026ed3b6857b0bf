"""Sealing and revealing from asyncio code (grpc.aio servicers, faststream
consumers) without blocking the event loop.

`AsyncSealer` wraps a `Sealer`: one implementation of the keys, their
memory and its erasure rules, not two kept in step. What memory can answer
(the hot path: a person's current key, the keys of a page of tokens) is
answered in the event loop at once; only a miss, which reads the key
database through the blocking pool, runs in a worker thread
(`asyncio.to_thread`). Misses are rare (keys stay in memory for
`cache_seconds`), so an `AsyncConnectionPool` would save little, and would
need a second store and a second copy of the locking, the generation count
and the erasure transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from casemesh.platform.personal.sealing import (
    Revealed,
    Sealer,
    _key_ids,
    _open_all,
    _parse_all,
    _seal,
)


class AsyncSealer:
    """`Sealer`'s seal and reveal as coroutines; closes the sealer it wraps
    (`async with AsyncSealer(open_sealer(settings)) as personal: ...`)."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    async def seal(self, text: str, person: str) -> str:
        """As `Sealer.seal`."""
        if not text:
            return text
        if not person:
            raise ValueError("personal text needs the person it belongs to")
        keys = self.sealer.keys
        key = keys.cached_current(person)
        if key is None:
            key = await asyncio.to_thread(keys.current, person)
        return _seal(key, text, person)

    async def ready_for(self, person: str) -> None:
        """Has the person's current key in memory (read, or made), so that
        sealing for them soon after needs no key database: for a caller
        about to seal while it holds locks of its own."""
        keys = self.sealer.keys
        if keys.cached_current(person) is None:
            await asyncio.to_thread(keys.current, person)

    async def reveal(self, token: str, person: str | None = None) -> str:
        """As `Sealer.reveal`: raises a `PersonalDataError` for a token it
        cannot reveal."""
        return (await self.look(token, person)).text

    async def look(self, token: str, person: str | None = None) -> Revealed:
        """As `Sealer.look`."""
        return (await self.look_many([token], person))[token].checked()

    async def reveal_many(self, tokens: Iterable[str], person: str | None = None) -> dict[str, str]:
        """As `Sealer.reveal_many`: never raises for a bad token."""
        return {t: r.text for t, r in (await self.look_many(tokens, person)).items()}

    async def look_many(
        self, tokens: Iterable[str], person: str | None = None
    ) -> dict[str, Revealed]:
        """As `Sealer.look_many`: never raises for a bad token."""
        parsed = _parse_all(tokens)
        keys = self.sealer.keys
        found, missing = keys.in_memory(_key_ids(parsed))
        if missing:
            found.update(await asyncio.to_thread(keys.find, missing))
        return _open_all(parsed, found, person)

    async def erase(self, person: str) -> int:
        """As `DataKeys.erase`: the person's keys destroyed in the store and
        forgotten here."""
        return await asyncio.to_thread(self.sealer.keys.erase, person)

    def forget(self, person: str) -> None:
        """As `DataKeys.forget` (memory only, so no thread): for the erasure
        consumer that runs in every replica."""
        self.sealer.keys.forget(person)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.sealer.close)

    async def __aenter__(self) -> AsyncSealer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

"""The identity provider's published signing keys (JWKS), kept fresh.

Fetched in the background from the start: the gateway serves at once (alive,
so Kubernetes does not restart it while the provider is down, but not ready,
so no traffic is sent to it) and answers UNAVAILABLE until the first fetch
succeeds, retrying with backoff.
Then every `refresh` seconds, and early when a token names a key not yet seen
— at most once every `EARLY_FETCH_GAP` seconds, so forged key ids cannot make
the gateway hammer the provider. A failed fetch keeps the keys it had.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import structlog

from casemesh.platform.backoff import backoff
from casemesh.platform.identity import KeySet

log = structlog.get_logger()

EARLY_FETCH_GAP = 30.0
FETCH_TIMEOUT = 10.0
MAX_BACKOFF = 30.0


@contextlib.asynccontextmanager
async def published_keys(
    url: str,
    *,
    refresh: float,
    early_gap: float = EARLY_FETCH_GAP,
    loaded: asyncio.Event | None = None,
) -> AsyncIterator[KeySet]:
    """The provider's keys, kept fresh while in use; `loaded` is set once
    the first fetch succeeded (the gateway is ready for traffic then)."""
    early = asyncio.Event()
    keys = KeySet(on_unknown_key=early.set)
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
        task = asyncio.create_task(
            _keep_fresh(client, url, keys, early, refresh, early_gap, loaded or asyncio.Event())
        )
        try:
            yield keys
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _keep_fresh(
    client: httpx.AsyncClient,
    url: str,
    keys: KeySet,
    early: asyncio.Event,
    refresh: float,
    early_gap: float,
    loaded: asyncio.Event,
) -> None:
    attempt = 0
    while not await _fetch(client, url, keys):
        attempt += 1
        await asyncio.sleep(backoff(attempt, base=1.0, cap=MAX_BACKOFF))
    loaded.set()
    while True:
        # However often unknown keys are named, no fetch comes sooner than this.
        await asyncio.sleep(min(early_gap, refresh))
        with contextlib.suppress(TimeoutError):
            # Woken early when a token named a key not seen yet.
            await asyncio.wait_for(early.wait(), max(0.0, refresh - early_gap))
        early.clear()
        await _fetch(client, url, keys)


async def _fetch(client: httpx.AsyncClient, url: str, keys: KeySet) -> bool:
    try:
        answer = await client.get(url, headers={"accept": "application/json"})
        answer.raise_for_status()
        keys.replace(answer.json())
    except Exception as exc:
        log.warning("jwks.fetch_failed", url=url, error=repr(exc), keys_kept=len(keys))
        return False
    log.info("jwks.fetched", url=url, keys=len(keys))
    return True

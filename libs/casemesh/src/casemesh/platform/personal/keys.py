"""Each person's data keys: made on first need, kept wrapped, cached unwrapped
for a while, deleted together when the person is erased.

A person has one current data key at a time; everything sealed for them uses
it. Erasing a person deletes every key they have: what was sealed with them
can never be read again, by anyone. Data sealed for them afterwards gets a
new key.

Keys are stored wrapped by a master key (`masterkeys`) in a `KeyStore`: in
memory for tests, or the shared `personal_keys` table (`postgres`). Unwrapped
keys stay in this process's memory for `cache_seconds` (and at most
`cache_size` of them), so sealing and revealing on a hot path seldom reach the
store. That memory is why an erasure is not instant everywhere: the process
that erases, and any that is told to `forget` the person, stop at once;
another process may go on revealing with a key it holds for at most
`cache_seconds` after the erasure, and, for as long, go on sealing new data
with the erased key (data that is then unreadable: it counts as erased).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from casemesh.platform.personal.masterkeys import MasterKeys


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as the store keeps it: sealed by the master key `master_id`."""

    key_id: uuid.UUID
    person: str
    master_id: str
    wrapped: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DataKey:
    """A person's data key in the clear (only ever in memory)."""

    key_id: uuid.UUID
    person: str
    secret: bytes = field(repr=False)


class KeyStore(Protocol):
    """Where wrapped data keys live."""

    def current(self, person: str) -> WrappedKey | None:
        """The person's current key, if they have one."""
        ...

    def add_current(self, key: WrappedKey) -> WrappedKey:
        """Makes `key` its person's current key unless they already have one
        (another process may have made it first); returns the one that is
        current afterwards."""
        ...

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey]:
        """The keys of these ids that still exist."""
        ...

    def erase(self, person: str) -> int:
        """Deletes every key of the person; returns how many there were."""
        ...

    def wrapped_by_other_than(self, master_id: str, limit: int) -> list[WrappedKey]:
        """Up to `limit` keys wrapped by a master key other than `master_id`."""
        ...

    def replace_wrapping(self, old: WrappedKey, master_id: str, wrapped: bytes) -> bool:
        """Stores a key's new wrapping, unless it changed or went meanwhile."""
        ...


class MemoryKeyStore:
    """A KeyStore in a dictionary, for tests and the in-memory applications."""

    def __init__(self) -> None:
        self._keys: dict[uuid.UUID, WrappedKey] = {}
        self._current: dict[str, uuid.UUID] = {}
        self._lock = threading.Lock()

    def current(self, person: str) -> WrappedKey | None:
        with self._lock:
            key_id = self._current.get(person)
            return None if key_id is None else self._keys[key_id]

    def add_current(self, key: WrappedKey) -> WrappedKey:
        with self._lock:
            existing = self._current.get(key.person)
            if existing is not None:
                return self._keys[existing]
            self._keys[key.key_id] = key
            self._current[key.person] = key.key_id
            return key

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey]:
        with self._lock:
            return {k: self._keys[k] for k in key_ids if k in self._keys}

    def erase(self, person: str) -> int:
        with self._lock:
            gone = [k for k, v in self._keys.items() if v.person == person]
            for key_id in gone:
                del self._keys[key_id]
            self._current.pop(person, None)
            return len(gone)

    def wrapped_by_other_than(self, master_id: str, limit: int) -> list[WrappedKey]:
        with self._lock:
            return [k for k in self._keys.values() if k.master_id != master_id][:limit]

    def replace_wrapping(self, old: WrappedKey, master_id: str, wrapped: bytes) -> bool:
        with self._lock:
            if self._keys.get(old.key_id) != old:
                return False
            self._keys[old.key_id] = WrappedKey(old.key_id, old.person, master_id, wrapped)
            return True


# What a key id maps to in the cache: the key, or None for one known to be gone.
_Entry = tuple[float, DataKey | None]


class DataKeys:
    """People's data keys, through a store and a bounded, expiring memory.

    A key id that is not in the store is remembered as gone too (ids are
    random and never reused, so that answer cannot turn stale): revealing a
    page of erased data does not ask the store again and again.
    """

    def __init__(
        self,
        store: KeyStore,
        masters: MasterKeys,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0 or cache_size < 1:
            raise ValueError("cache_seconds must be 0 or more and cache_size 1 or more")
        self.store = store
        self.masters = masters
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        self._clock = clock
        self._by_id: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._current: dict[str, uuid.UUID] = {}
        self._lock = threading.Lock()

    def current(self, person: str) -> DataKey:
        """The person's current key; made (and stored) if they have none."""
        with self._lock:
            key_id = self._current.get(person)
            cached = self._cached(key_id) if key_id is not None else None
        if cached is not None:
            return cached
        wrapped = self.store.current(person)
        if wrapped is None:
            wrapped = self.store.add_current(self._new_wrapped(person))
        key = self._unwrap(wrapped)
        with self._lock:
            self._remember(key.key_id, key)
            self._current[person] = key.key_id
        return key

    def find(self, key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DataKey]:
        """The keys of these ids that exist: one store look-up for all those
        not in memory; a missing id is an erased key."""
        found: dict[uuid.UUID, DataKey] = {}
        unknown: set[uuid.UUID] = set()
        with self._lock:
            for key_id in set(key_ids):
                entry = self._by_id.get(key_id)
                if entry is None or entry[0] <= self._clock():
                    unknown.add(key_id)
                elif entry[1] is not None:
                    self._by_id.move_to_end(key_id)
                    found[key_id] = entry[1]
        if unknown:
            stored = self.store.find(unknown)
            unwrapped = {key_id: self._unwrap(w) for key_id, w in stored.items()}
            with self._lock:
                for key_id in unknown:
                    self._remember(key_id, unwrapped.get(key_id))
            found.update(unwrapped)
        return found

    def erase(self, person: str) -> int:
        """Deletes every key of the person, here and in the store; returns how
        many the store had (0 when erased already)."""
        erased = self.store.erase(person)
        self.forget(person)
        return erased

    def forget(self, person: str) -> None:
        """Drops the person's keys from this process's memory: after another
        process erased them, this one stops using them at once."""
        with self._lock:
            self._current.pop(person, None)
            for key_id in [k for k, (_, v) in self._by_id.items() if v and v.person == person]:
                del self._by_id[key_id]

    def rewrap(self, batch: int = 500) -> int:
        """Wraps every stored key wrapped by an older master key with the
        current one; returns how many. Afterwards the older master keys can be
        dropped from the secret. Safe to run in several processes at once."""
        moved = 0
        current = self.masters.current_id
        while stale := self.store.wrapped_by_other_than(current, batch):
            for old in stale:
                secret = self.masters.unwrap(
                    old.master_id, old.wrapped, old.key_id.bytes, old.person
                )
                master_id, wrapped = self.masters.wrap(secret, old.key_id.bytes, old.person)
                moved += self.store.replace_wrapping(old, master_id, wrapped)
        return moved

    def _new_wrapped(self, person: str) -> WrappedKey:
        key_id = uuid.uuid4()
        master_id, wrapped = self.masters.wrap(os.urandom(32), key_id.bytes, person)
        return WrappedKey(key_id, person, master_id, wrapped)

    def _unwrap(self, key: WrappedKey) -> DataKey:
        secret = self.masters.unwrap(key.master_id, key.wrapped, key.key_id.bytes, key.person)
        return DataKey(key.key_id, key.person, secret)

    def _cached(self, key_id: uuid.UUID) -> DataKey | None:
        entry = self._by_id.get(key_id)
        if entry is None or entry[0] <= self._clock():
            return None
        self._by_id.move_to_end(key_id)
        return entry[1]

    def _remember(self, key_id: uuid.UUID, key: DataKey | None) -> None:
        self._by_id[key_id] = (self._clock() + self.cache_seconds, key)
        self._by_id.move_to_end(key_id)
        while len(self._by_id) > self.cache_size:
            dropped, (_, key) = self._by_id.popitem(last=False)
            if key is not None and self._current.get(key.person) == dropped:
                del self._current[key.person]

"""Each person's data keys: made on first need, kept wrapped, cached unwrapped
for a while, erased together when the person is erased.

A person has one current data key at a time; everything sealed for them uses
it. Erasing a person destroys every key they have: what was sealed with them
can never be read again, by anyone. The erasure leaves a record of each key
id (a tombstone, without the key), so that a token of an erased person reads
as erased while a token whose key the store never held is told apart
(`UnknownDataKey`): text that only looks like a token, or a process pointed
at the wrong key database, is not silently shown as erased. Data sealed for
the person afterwards gets a new key.

Case keys. A case's data can also be sealed under a key of the case's own
(`for_case`), beside its person's (see `sealing`): destroying the case's
keys (`destroy`) erases that case's personal data, the person's other
cases untouched, which is how a closed case past its retention period is
erased. A case key belongs to no person: its owner is `CASE_KEYS` and its
own id. They are made in batches (one store write for `SPARES` keys, made
in the background before the spares run out), so a new case seldom waits
for the store; a key is handed out for one case only,
and a batch's keys that a crashed process never handed out stay unused.

Keys are stored wrapped by a master key (`masterkeys`) in a `KeyStore`: in
memory for tests, or the shared `personal_keys` table (`postgres`). Unwrapped
keys stay in this process's memory for `cache_seconds` (and at most
`cache_size` of them), so sealing and revealing on a hot path seldom reach the
store. That memory is why an erasure is not instant everywhere: the process
that erases, and any that is told to `forget` the person, stop at once;
another process may go on revealing with a key it holds for at most
`cache_seconds` after the erasure, and, for as long, go on sealing new data
with the erased key (data that is then unreadable: it counts as erased).

`forget` clears only the memory of the process that calls it. The consumer
of erasure events must therefore run in every replica of every service that
reveals, each replica under a consumer group of its own (a group id unique to
the replica), so that each one hears every erasure. A consumer that reveals
and keeps clear text in a read model must also scrub that text itself when it
hears of the erasure: erasing the keys cannot reach copies made in the clear.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from casemesh.platform.errors import Aborted
from casemesh.platform.identity import RESERVED_SUBJECTS
from casemesh.platform.logging import get_logger
from casemesh.platform.personal.errors import (
    PersonalDataError,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)
from casemesh.platform.personal.masterkeys import MasterKeys

log = get_logger(__name__)

# The owner of every case key begins with this; no person's id may (a token
# whose subject does is refused).
CASE_KEYS = RESERVED_SUBJECTS
# How many case keys are made at once, and how few spares left start the
# making of more, in the background.
SPARES = 128
REFILL_BELOW = 32
# How many keys of each kind a rewrap names when it leaves some behind.
NAMED = 20


def is_case_key(owner: str) -> bool:
    """Whether a key of this owner is a case key, not a person's."""
    return owner.startswith(CASE_KEYS)


def _check_person(person: str) -> None:
    """Refuses a case key's owner given as a person: it would read, erase
    or seal with a case's key as if it were someone's."""
    if is_case_key(person):
        raise ValueError(f"no person's id begins with {CASE_KEYS!r}: {person!r}")


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


# What `DataKeys.find` gives for a key id: the key; None for an erased one;
# the error that stops it being read (`UnknownDataKey` for an id the store
# never held, `UnknownMasterKey` or `WrappedKeyRefused` for one that does not
# unwrap).
Lookup = DataKey | None | PersonalDataError


@dataclass(slots=True)
class LeftBehind:
    """Keys a rewrap left wrapped by another master key than the current
    one, of one kind: how many, and the first `NAMED` (id, master id)."""

    count: int = 0
    named: list[tuple[uuid.UUID, str]] = field(default_factory=list)

    def add(self, key: WrappedKey) -> None:
        self.count += 1
        if len(self.named) < NAMED:
            self.named.append((key.key_id, key.master_id))


@dataclass(slots=True)
class Rewrapped:
    """What a rewrap moved onto the current master key, and the live keys it
    left on others, by why: wrapped by a master key the secret does not
    hold; wrapped in a way that does not match the row (altered, or moved
    from another person's); or readable, but made (or wrapped anew) while
    the pass went by, which a run after it moves. While any is left, the
    master keys that wrap them must stay in the secret."""

    moved: int = 0
    master_missing: LeftBehind = field(default_factory=LeftBehind)
    altered: LeftBehind = field(default_factory=LeftBehind)
    made_meanwhile: LeftBehind = field(default_factory=LeftBehind)

    @property
    def left(self) -> int:
        return self.master_missing.count + self.altered.count + self.made_meanwhile.count


class KeyStore(Protocol):
    """Where wrapped data keys live, and the record of erased ones."""

    def add_current(self, key: WrappedKey) -> WrappedKey:
        """The person's current key; if they have none, makes `key` their
        current key (unless another process makes one first) and returns the
        one that is current afterwards. Never interleaves with an `erase` of
        the person: an erasure sees every key made before it."""
        ...

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey | None]:
        """Of these ids, the keys that exist, and None for those erased; an
        id the store never held is left out."""
        ...

    def erase(self, person: str) -> int:
        """Destroys every key of the person, keeping only the record that
        their ids were erased; returns how many there were."""
        ...

    def add_case_keys(self, keys: Collection[WrappedKey]) -> None:
        """Stores new case keys (all at once)."""
        ...

    def destroy_case_keys(self, key_ids: Collection[uuid.UUID]) -> int:
        """Destroys these case keys as `erase` destroys a person's (ids of
        anything but a live case key are left alone); returns how many were live."""
        ...

    def wrapped_by_other_than(
        self, master_id: str, limit: int, after: uuid.UUID | None = None
    ) -> list[WrappedKey]:
        """Up to `limit` keys wrapped by a master key other than `master_id`,
        in the order of their ids, from the first after `after` (a pass over
        them all reads each key once)."""
        ...

    def replace_wrapping(self, old: WrappedKey, master_id: str, wrapped: bytes) -> bool:
        """Stores a key's new wrapping, unless it changed or went meanwhile."""
        ...

    def close(self) -> None:
        """Lets go of what the store holds (connections)."""
        ...


class MemoryKeyStore:
    """A KeyStore in a dictionary, for tests and the in-memory applications."""

    def __init__(self) -> None:
        self._keys: dict[uuid.UUID, WrappedKey] = {}
        self._erased: set[uuid.UUID] = set()
        self._current: dict[str, uuid.UUID] = {}
        self._lock = threading.Lock()

    def add_current(self, key: WrappedKey) -> WrappedKey:
        with self._lock:
            existing = self._current.get(key.person)
            if existing is not None:
                return self._keys[existing]
            self._keys[key.key_id] = key
            self._current[key.person] = key.key_id
            return key

    def find(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, WrappedKey | None]:
        with self._lock:
            found: dict[uuid.UUID, WrappedKey | None] = {
                k: self._keys[k] for k in key_ids if k in self._keys
            }
            found.update((k, None) for k in key_ids if k in self._erased)
            return found

    def erase(self, person: str) -> int:
        with self._lock:
            self._current.pop(person, None)
            return self._destroy([k for k, v in self._keys.items() if v.person == person])

    def add_case_keys(self, keys: Collection[WrappedKey]) -> None:
        with self._lock:
            self._keys.update((k.key_id, k) for k in keys)

    def destroy_case_keys(self, key_ids: Collection[uuid.UUID]) -> int:
        with self._lock:
            live = self._keys
            return self._destroy([k for k in key_ids if k in live and is_case_key(live[k].person)])

    def _destroy(self, key_ids: list[uuid.UUID]) -> int:
        """Destroys these live keys, keeping the record that they were
        erased (under `_lock`); returns how many."""
        for key_id in key_ids:
            del self._keys[key_id]
            self._erased.add(key_id)
        return len(key_ids)

    def wrapped_by_other_than(
        self, master_id: str, limit: int, after: uuid.UUID | None = None
    ) -> list[WrappedKey]:
        with self._lock:
            keys = sorted(self._keys.values(), key=lambda k: k.key_id)
            return [
                k for k in keys if k.master_id != master_id and (after is None or k.key_id > after)
            ][:limit]

    def replace_wrapping(self, old: WrappedKey, master_id: str, wrapped: bytes) -> bool:
        with self._lock:
            if self._keys.get(old.key_id) != old:
                return False
            self._keys[old.key_id] = WrappedKey(old.key_id, old.person, master_id, wrapped)
            return True

    def close(self) -> None:
        pass


# How often `current` reads the store again when an erasure happened during
# its read, before it gives the key it read last without keeping it.
_ATTEMPTS = 3


class DataKeys:
    """People's data keys, through a store and a bounded, expiring memory.

    A key id the store records as erased is remembered as erased too, apart
    from the keys (ids are random and never reused, so that answer cannot
    turn stale, and a page of erased data pushes no live key out of memory).
    An id the store never held is not remembered: asked again, the store
    answers again.

    An erasure (`erase`, `forget`) counts up a generation under the lock. A
    look-up notes the generation before it reads the store, and keeps what it
    read only if no erasure happened meanwhile: a key read just before it was
    erased is never put back in memory after the erasure.
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
        self._by_id: OrderedDict[uuid.UUID, tuple[float, DataKey]] = OrderedDict()
        # The ids in `_by_id` of each person's keys.
        self._held: dict[str, set[uuid.UUID]] = {}
        # People erased (forgotten here) lately: until when nothing is sealed
        # for them, lest what a call revealed before reach a new key.
        self._erased_lately: dict[str, float] = {}
        self._erased: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._current: dict[str, uuid.UUID] = {}
        # Case keys: made and not yet handed out; handed out, by case.
        self._spares: list[DataKey] = []
        self._refilling = False
        # (until when, key): like the keys' memory, for `cache_seconds`.
        self._cases: OrderedDict[uuid.UUID, tuple[float, DataKey]] = OrderedDict()
        self._generation = 0
        self._lock = threading.Lock()

    def current(self, person: str) -> DataKey:
        """The person's current key; made (and stored) if they have none."""
        _check_person(person)
        for _ in range(_ATTEMPTS):
            with self._lock:
                self._refuse_if_erased_lately(person)
                cached = self._cached_current(person)
                if cached is not None:
                    return cached
                generation = self._generation
            # One store call, a new key ready should the person have none.
            wrapped = self.store.add_current(self._new_wrapped(person))
            key = self._unwrap(wrapped)
            with self._lock:
                others = [k for k in self._held.get(person, set()) if k != key.key_id]
                # Used here within the last while (a call under way may have
                # revealed with it): a key of theirs held here is no longer
                # theirs, so they were erased, and this process has not heard
                # yet. One unused for longer is only left over.
                lately = self._clock() - self.cache_seconds
                if any(self._by_id[k][0] > lately for k in others):
                    self._forget_locked(person)
                for k in others:
                    self._unhold(k)
                self._refuse_if_erased_lately(person)
                if self._generation == generation:
                    self._remember(key)
                    self._current[person] = key.key_id
                    return key
        # Erasures kept coming during the reads; the last read began after the
        # one before it, so it is as fresh as any: use it, but do not keep it.
        return key

    def for_case(self, case: uuid.UUID) -> DataKey:
        """A key of the case's own, this process's for it until it leaves
        memory (another process, or this one later, gives the case another:
        a case may have several, `destroy` takes them all)."""
        with self._lock:
            handed = self._cases.get(case)
            if handed is not None and handed[0] > self._clock():
                self._cases.move_to_end(case)
                return handed[1]
            if self._spares:
                if len(self._spares) <= REFILL_BELOW and not self._refilling:
                    self._refilling = True
                    threading.Thread(target=self._refill, name="case-keys", daemon=True).start()
                return self._hand_out(case, self._spares.pop())
        # Ran dry (the first case, or the store was away): wait for a batch.
        made = self._make_case_keys()
        with self._lock:
            self._spares.extend(made[1:])
            return self._hand_out(case, made[0])

    def _hand_out(self, case: uuid.UUID, spare: DataKey) -> DataKey:
        """Gives the case `spare`, unless another thread gave it a key
        meanwhile, in which case `spare` goes back to the spares (under
        `_lock`)."""
        handed = self._cases.get(case)
        if handed is None or handed[0] <= self._clock():
            handed = (self._clock() + self.cache_seconds, spare)
            self._cases[case] = handed
        else:
            self._spares.append(spare)
        self._cases.move_to_end(case)
        self._remember(handed[1])
        while len(self._cases) > self.cache_size:
            self._cases.popitem(last=False)
        return handed[1]

    def destroy(self, key_ids: Collection[uuid.UUID]) -> int:
        """Destroys these case keys, here and in the store (their records
        stay, as an erased person's do); returns how many the store still
        had. Another process stops using one within `cache_seconds`."""
        destroyed = self.store.destroy_case_keys(key_ids)
        with self._lock:
            self._generation += 1
            # Forgotten, not remembered as erased: the store's next answer
            # says which of them were case keys it destroyed.
            for key_id in key_ids:
                self._unhold(key_id)
            for case in [c for c, (_, k) in self._cases.items() if k.key_id in key_ids]:
                del self._cases[case]
        return destroyed

    def cached_current(self, person: str) -> DataKey | None:
        """The person's current key if it is in memory; never reaches the store."""
        with self._lock:
            return self._cached_current(person)

    def find(self, key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Lookup]:
        """What each key id stands for (see `Lookup`): one store look-up for
        all those not in memory. Errors are given per id, never raised; only
        the store being away raises."""
        with self._lock:
            found, missing = self._in_memory(key_ids)
            generation = self._generation
        if not missing:
            return found
        stored = self.store.find(missing)
        fresh: dict[uuid.UUID, Lookup] = {}
        for key_id in missing:
            if key_id not in stored:
                fresh[key_id] = UnknownDataKey(
                    f"no data key {key_id} in the key database, erased or not: text that"
                    " only looks like a token, or the wrong key database"
                )
                continue
            wrapped = stored[key_id]
            try:
                fresh[key_id] = None if wrapped is None else self._unwrap(wrapped)
            except PersonalDataError as exc:
                fresh[key_id] = exc
        with self._lock:
            for key_id, lookup in fresh.items():
                if lookup is None:
                    self._remember_erased(key_id)
                elif isinstance(lookup, DataKey) and self._generation == generation:
                    self._remember(lookup)
        found.update(fresh)
        return found

    def in_memory(
        self, key_ids: Iterable[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Lookup], set[uuid.UUID]]:
        """What memory knows of these ids, and the ids it does not know;
        never reaches the store."""
        with self._lock:
            return self._in_memory(key_ids)

    def erase(self, person: str) -> int:
        """Destroys every key of the person, here and in the store; returns
        how many the store had (0 when erased already). Other processes stop
        using the keys when told to `forget` the person, or within
        `cache_seconds`."""
        _check_person(person)
        erased = self.store.erase(person)
        with self._lock:
            # (Nothing this process revealed of them is sealed anew here: the
            # privacy desk erases, it does not copy.)
            self._forget_locked(person, lately=False)
        return erased

    def forget(self, person: str) -> None:
        """Drops the person's keys from this process's memory, and from no
        other's: after another process erased them, this one stops using them
        at once. Every replica must hear each erasure (see the module's
        docstring)."""
        with self._lock:
            self._forget_locked(person)

    def _forget_locked(self, person: str, lately: bool = True) -> None:
        self._generation += 1
        self._current.pop(person, None)
        for key_id in self._held.pop(person, set()):
            self._by_id.pop(key_id, None)
        if not lately:
            return
        now = self._clock()
        # Those whose while has passed go, from the oldest (each is put last).
        while self._erased_lately:
            first, until = next(iter(self._erased_lately.items()))
            if until > now:
                break
            del self._erased_lately[first]
        self._erased_lately.pop(person, None)
        self._erased_lately[person] = now + self.cache_seconds

    def _refuse_if_erased_lately(self, person: str) -> None:
        """What a call revealed of a person with a key of theirs that was
        erased since (a contact copied into a new event: this call's, or
        another's under way) must not be sealed for them under a new key,
        where it would outlive the erasure: for `cache_seconds` after this
        process forgot them (hearing the erasure, or finding a key it held
        no longer theirs), sealing for them is refused; tried again then, the
        call reads their data as erased."""
        if self._erased_lately.get(person, float("-inf")) > self._clock():
            raise Aborted(
                "the person was erased while this was being done; try again",
                reason="PERSON_ERASED_MEANWHILE",
            )

    def _unhold(self, key_id: uuid.UUID) -> None:
        entry = self._by_id.pop(key_id, None)
        if entry is not None:
            ids = self._held.get(entry[1].person)
            if ids is not None:
                ids.discard(key_id)
                if not ids:
                    del self._held[entry[1].person]

    def rewrap(self, batch: int = 500) -> Rewrapped:
        """Wraps every stored key wrapped by an older master key with the
        current one, then counts the live keys still wrapped by another (see
        `Rewrapped`); the older master keys can be dropped from the secret
        only when none is left. Safe to run in several processes at once.

        A key that does not unwrap is logged (its id and master id, nothing
        of the key or its person) and passed over: one bad row must not keep
        every key after it on the old master key. The pass goes once along
        the key ids, so a key made behind it meanwhile, by a process still
        wrapping with an older master key, is only counted: the next run
        moves it."""
        done = Rewrapped()
        current = self.masters.current_id
        for old in self._wrapped_by_others(current, batch):
            try:
                secret = self._unwrap(old).secret
            except PersonalDataError as exc:
                log.warning(
                    "personal.rewrap_passed_over",
                    key_id=str(old.key_id),
                    master_key=old.master_id,
                    error=type(exc).__name__,
                )
                continue
            master_id, wrapped = self.masters.wrap(secret, old.key_id.bytes, old.person)
            done.moved += self.store.replace_wrapping(old, master_id, wrapped)
        for left in self._wrapped_by_others(current, batch):
            self._count_left(left, done)
        return done

    def _wrapped_by_others(self, current: str, batch: int) -> Iterator[WrappedKey]:
        """Every live key wrapped by another master key than `current`, in
        the order of their ids, read `batch` at a time, each batch from where
        the last ended (a table of millions is read once, not over and over)."""
        after = None
        while stale := self.store.wrapped_by_other_than(current, batch, after):
            after = stale[-1].key_id
            yield from stale

    def _count_left(self, key: WrappedKey, done: Rewrapped) -> None:
        """Counts a key a rewrap left behind under why it was left."""
        try:
            self._unwrap(key)
        except UnknownMasterKey:
            done.master_missing.add(key)
        except WrappedKeyRefused:
            done.altered.add(key)
        else:
            done.made_meanwhile.add(key)

    def close(self) -> None:
        self.store.close()

    def _new_wrapped(self, person: str) -> WrappedKey:
        # One read of the system's randomness (a key is never taken from a
        # block kept in memory: `randomness`).
        raw = os.urandom(48)
        return self._wrapped(DataKey(uuid.UUID(bytes=raw[:16], version=4), person, raw[16:]))

    def _wrapped(self, key: DataKey) -> WrappedKey:
        master_id, wrapped = self.masters.wrap(key.secret, key.key_id.bytes, key.person)
        return WrappedKey(key.key_id, key.person, master_id, wrapped)

    def _refill(self) -> None:
        """Makes a batch of spare case keys off the callers' path."""
        try:
            made = self._make_case_keys()
        except Exception as exc:  # the store away: a caller that runs dry makes them
            log.warning("personal.case_keys_not_made", error=repr(exc))
            made = []
        with self._lock:
            self._spares.extend(made)
            self._refilling = False

    def _make_case_keys(self) -> list[DataKey]:
        """`SPARES` new case keys, stored in one write."""
        # One read of the system's randomness for the whole batch.
        raw = os.urandom(SPARES * 48)
        made = []
        for n in range(0, len(raw), 48):
            key_id = uuid.UUID(bytes=raw[n : n + 16], version=4)
            made.append(DataKey(key_id, f"{CASE_KEYS}{key_id}", raw[n + 16 : n + 48]))
        self.store.add_case_keys([self._wrapped(k) for k in made])
        return made

    def _unwrap(self, key: WrappedKey) -> DataKey:
        secret = self.masters.unwrap(key.master_id, key.wrapped, key.key_id.bytes, key.person)
        return DataKey(key.key_id, key.person, secret)

    def _cached_current(self, person: str) -> DataKey | None:
        key_id = self._current.get(person)
        if key_id is None:
            return None
        key = self._cached(key_id)
        return key if isinstance(key, DataKey) else None

    def _in_memory(
        self, key_ids: Iterable[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Lookup], set[uuid.UUID]]:
        found: dict[uuid.UUID, Lookup] = {}
        missing: set[uuid.UUID] = set()
        for key_id in set(key_ids):
            if key_id in self._erased:
                self._erased.move_to_end(key_id)
                found[key_id] = None
            elif (key := self._cached(key_id)) is not None:
                found[key_id] = key
            else:
                missing.add(key_id)
        return found, missing

    def _cached(self, key_id: uuid.UUID) -> DataKey | None:
        entry = self._by_id.get(key_id)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._unhold(key_id)
            return None
        self._by_id.move_to_end(key_id)
        return entry[1]

    def _remember(self, key: DataKey) -> None:
        self._by_id[key.key_id] = (self._clock() + self.cache_seconds, key)
        self._by_id.move_to_end(key.key_id)
        self._held.setdefault(key.person, set()).add(key.key_id)
        while len(self._by_id) > self.cache_size:
            dropped, (_, old) = next(iter(self._by_id.items()))
            self._unhold(dropped)
            if self._current.get(old.person) == dropped:
                del self._current[old.person]

    def _remember_erased(self, key_id: uuid.UUID) -> None:
        self._erased[key_id] = None
        self._erased.move_to_end(key_id)
        while len(self._erased) > self.cache_size:
            self._erased.popitem(last=False)

"""Taking a subscriber's records from its Kafka consumer (aiokafka) without
losing any, and stepping past a record the client itself cannot read.

aiokafka's `getmany` drains the records fetched for several partitions in one
call, moving each partition's position on as it drains it. A record that
fails as the client reads it (a header name that is not UTF-8 text:
UnicodeDecodeError; a batch whose checksum is wrong: CorruptRecordException)
raises out of the call after other partitions were drained: their records go
with the exception, their positions stay moved on, and the next commit passes
them by. The failing partition does not move: it is fetched again, fails
again, and takes with it whatever came with it, for ever. (The Java client
holds such an exception back until the records drained before it are
returned; aiokafka does not.)

So a `Reader` never lets one call drain more than one partition. It takes
what has been fetched partition by partition, in a call for each; and when
nothing has, waits for a record with `getmany(max_records=1)`, which takes one
record of one partition. A partition whose reading fails has not moved: what
was fetched for it is dropped and it is read again from the broker, one
record a call, so that a failure's position is its record's. A record that
fails there again is handed on as `Unreadable` at that offset, to be set aside
and committed like any record that can never apply, and the partition is read
on from the offset after it. (A record after it in the same record batch
fails the same way, since the client reads a batch from its first record:
each is set aside in turn.)
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    ConsumerStoppedError,
    CorruptRecordException,
    IllegalOperation,
    KafkaError,
)

from casemesh.platform.logging import get_logger

log = get_logger(__name__)

# After a failure that names no partition (one waited on all of them), each
# partition is read in a call of its own, and looked at again this often
# while none has come, for this long: the next failure names its partition.
BLAMELESS_S = 10.0


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a record the Kafka client could not read (twice, from
    two fetches): where it sits, and why. It has no key, value or headers."""

    topic: str
    partition: int
    offset: int
    error: str
    timestamp: int = -1
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class _Suspect:
    """A partition whose reading failed at `failed_at`: it is read one record
    a call until `until` (the record that failed is before it), or until
    its reads have given nothing since `since` (loop time; None: the last
    one gave a record, or failed) for BLAMELESS_S, where it never gets there
    (a failure that did not come back, the log ending before `until`):
    failing again, it is a suspect again."""

    failed_at: int
    until: int
    since: float | None = None


@dataclass
class Reader:
    """Takes up to `max_records` records at a time from a subscriber's Kafka
    consumer, waiting up to `wait_ms` for one when none has been fetched (a
    record that comes meanwhile ends the wait). `consumer` names it in logs."""

    consumer: str
    max_records: int
    wait_ms: int
    _kafka: Any = None
    _suspects: dict[TopicPartition, _Suspect] = field(default_factory=dict)
    _blameless_until: float = 0.0
    _turn: int = 0
    # A failure that says nothing of a record, held back while the records
    # taken before it are handled.
    _held: Exception | None = None

    async def take(self, kafka: Any) -> list[Any]:
        """The records fetched, in order within each partition: each is a
        record aiokafka gives, or `Unreadable`. Raises what says nothing of
        a record (Kafka away, the consumer stopped) once none is left."""
        if kafka is not self._kafka:
            self._kafka, self._suspects, self._blameless_until = kafka, {}, 0.0
            self._held = None
        if self._held is not None:
            held, self._held = self._held, None
            raise held
        taken: dict[TopicPartition, list[Any]] = {}
        await self._drain(kafka, taken)
        if not taken and self._held is None:
            await self._wait(kafka, taken)
            if taken:
                await self._drain(kafka, taken)
        records = [record for records in taken.values() for record in records]
        if not records and self._held is not None:
            held, self._held = self._held, None
            raise held
        return records

    async def _wait(self, kafka: Any, taken: dict[TopicPartition, list[Any]]) -> None:
        """Waits for a record, and takes it."""
        loop = asyncio.get_running_loop()
        if self._suspects or loop.time() < self._blameless_until:
            # Waiting on all partitions could fail naming none: look again.
            await asyncio.sleep(self.wait_ms / 1000)
            return
        try:
            got = await kafka.getmany(timeout_ms=self.wait_ms, max_records=1)
        except Exception as exc:
            if not _unreadable(exc):
                raise
            # No partition moved (one record, of one partition, was being
            # read); which one failed is found by reading each alone.
            log.warning("consumer.read_failed", consumer=self.consumer, error=repr(exc))
            self._blameless_until = loop.time() + BLAMELESS_S
            return
        for tp, records in got.items():
            taken.setdefault(tp, []).extend(records)

    async def _drain(self, kafka: Any, taken: dict[TopicPartition, list[Any]]) -> None:
        """Takes what has been fetched, each partition in a call of its own,
        starting from a different one each time (none is starved)."""
        held = sorted(kafka.assignment())
        for tp in [tp for tp in self._suspects if tp not in held]:
            del self._suspects[tp]
        self._turn += 1
        for n in range(len(held)):
            left = self.max_records - sum(map(len, taken.values()))
            if left <= 0 or self._held is not None:
                return
            tp = held[(self._turn + n) % len(held)]
            if got := await self._read(kafka, tp, left):
                taken.setdefault(tp, []).extend(got)

    async def _read(self, kafka: Any, tp: TopicPartition, left: int) -> list[Any]:
        """Up to `left` records of `tp`: those its reading gave before any
        failure, and, for a record that failed twice, `Unreadable`."""
        got: list[Any] = []
        suspect = self._suspects.get(tp)
        try:
            if suspect is None:
                got += (await kafka.getmany(tp, max_records=left)).get(tp, [])
                return got
            while len(got) < left:
                step = (await kafka.getmany(tp, max_records=1)).get(tp, [])
                got += step
                now = asyncio.get_running_loop().time()
                if step:
                    suspect.since = None
                elif suspect.since is None:
                    suspect.since = now
                elif now - suspect.since > BLAMELESS_S:
                    # Read again and again for that long with nothing
                    # coming: it will not get there.
                    del self._suspects[tp]
                    break
                if not step or step[-1].offset + 1 >= suspect.until:
                    break
            # Past where it failed (with no record to give, it may have gone
            # past it over transaction markers): read as any other again.
            reached = got[-1].offset + 1 if got else await _position(kafka, tp)
            if reached is not None and reached >= suspect.until:
                self._suspects.pop(tp, None)
        except Exception as exc:
            if _unreadable(exc):
                got += await self._failed(kafka, tp, exc, left)
            else:
                self._held = exc
        return got

    async def _failed(
        self, kafka: Any, tp: TopicPartition, exc: Exception, asked: int
    ) -> list[Unreadable]:
        """Reading `tp` (`asked` records of it) failed, and its position has
        not moved: it is read again from the broker, one record a call; if it
        failed there already, the record is unreadable, and `tp` is read on
        from the next."""
        self._blameless_until = 0.0  # this failure has its partition
        at = await _position(kafka, tp)
        if at is None:
            self._suspects.pop(tp, None)  # given up meanwhile: nothing to read
            return []
        said = log.bind(consumer=self.consumer, topic=tp.topic, partition=tp.partition, offset=at)
        suspect = self._suspects.get(tp)
        if suspect is not None and suspect.failed_at == at:
            said.warning("consumer.unreadable", error=repr(exc))
            with contextlib.suppress(Exception):
                kafka.seek(tp, at + 1)
            if at + 1 >= suspect.until:
                del self._suspects[tp]
            error = f"the Kafka client cannot read it: {exc!r}"
            return [Unreadable(tp.topic, tp.partition, at, error)]
        said.warning("consumer.read_failed", error=repr(exc), read_again=True)
        if suspect is not None:
            suspect.failed_at = at
            suspect.since = None
        else:
            # The record that failed is among the `asked` from `at`, and
            # before where the partition ended.
            until = at + asked
            with contextlib.suppress(Exception):
                until = min(until, kafka.highwater(tp) or until)
            self._suspects[tp] = _Suspect(at, max(until, at + 1))
        with contextlib.suppress(Exception):
            kafka.seek(tp, at)  # drops what was fetched: it is fetched again
        return []


async def _position(kafka: Any, tp: TopicPartition) -> int | None:
    """The offset `kafka` reads `tp` from next (None if it holds it no more)."""
    try:
        at: int = await kafka.position(tp)
    except Exception:
        return None
    return at


def _unreadable(exc: Exception) -> bool:
    """Whether `exc`, raised while the client read fetched records, may say a
    record is bad (what it raises then is whatever its parsing, checksum or
    decompression met) rather than Kafka away or the consumer stopped."""
    if isinstance(exc, CorruptRecordException):
        return True
    return not isinstance(
        exc, KafkaError | ConsumerStoppedError | IllegalOperation | AssertionError
    )

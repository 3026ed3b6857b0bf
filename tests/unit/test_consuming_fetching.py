"""How a subscriber takes its records from the Kafka client
(`casemesh.platform.fetching`): a record the client cannot read (a header
name that is not UTF-8 text, a checksum that does not match) costs no other
record, of its partition or another; it is handed on as `Unreadable`, once it
failed to read from two fetches, and its partition is read on past it.

aiokafka's own fetcher code (`Fetcher.fetched_records`, `FetchResult`, its
record parsers) runs over partitions kept in memory: a fetch is what a broker
would send for a partition's position, arriving in the background."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, Fetcher, FetchResult, PartitionRecords
from aiokafka.errors import KafkaConnectionError
from aiokafka.record.memory_records import MemoryRecords

from casemesh.platform.fetching import Reader, Unreadable
from tests.support import record_batch

A, B = TopicPartition("casemesh.tickets.v1", 0), TopicPartition("casemesh.tickets.v1", 1)
BAD_NAME = "?bad-name"


def batch(base: int, count: int, *, unreadable: int | None = None) -> bytes:
    """A record batch of `count` records from offset `base`, each record's
    value its offset; the one at `unreadable` has a header name that is not
    UTF-8 text."""
    records = [
        (b"k", b"%d" % offset, [(BAD_NAME if offset == unreadable else "ce_id", b"x")])
        for offset in range(base, base + count)
    ]
    return record_batch(records, base=base, unreadable=BAD_NAME if unreadable is not None else "")


def garbled(data: bytes) -> bytes:
    """The batch with its last byte changed: its checksum no longer matches."""
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@dataclass
class _Position:
    position: int
    paused: bool = False

    def consumed_to(self, offset: int) -> None:
        self.position = offset


@dataclass
class Kafka:
    """A consumer holding partitions kept in memory (record batches, from
    their base offsets), read through aiokafka's own fetcher code. Fetches
    arrive in the background, in `order`; `garble` says how many fetches of
    a partition come with a checksum that does not match."""

    logs: dict[TopicPartition, list[tuple[int, bytes]]]
    order: Sequence[TopicPartition]
    garble: dict[TopicPartition, int] = field(default_factory=dict)
    fail: dict[TopicPartition, Exception] = field(default_factory=dict)
    # Calls that waited for a record of any partition.
    waits: int = 0
    # What aiokafka's Fetcher and FetchResult look at.
    active: bool = True
    _records: dict[TopicPartition, Any] = field(default_factory=dict)
    _wait_consume_future: Any = None
    _closed: bool = False

    def __post_init__(self) -> None:
        self.states = {tp: _Position(batches[0][0]) for tp, batches in self.logs.items()}
        self._subscriptions = _Subscriptions(self)

    # What aiokafka's fetcher code calls.
    def state_value(self, tp: TopicPartition) -> _Position:
        return self.states[tp]

    def _notify(self, future: Any) -> None:
        pass

    # The consumer's API, as the reader uses it.
    def assignment(self) -> set[TopicPartition]:
        return set(self.states)

    async def position(self, tp: TopicPartition) -> int:
        return self.states[tp].position

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.states[tp].position = offset
        self._records.pop(tp, None)

    def highwater(self, tp: TopicPartition) -> int:
        _, data = self.logs[tp][-1]
        end: int = MemoryRecords(data).next_batch().next_offset
        return end

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        for tp in partitions:
            if tp in self.fail:
                raise self.fail.pop(tp)
        got: dict[TopicPartition, list[Any]] = await Fetcher.fetched_records(
            self, partitions, 0, max_records
        )
        self.waits += timeout_ms > 0
        waited = 0
        while not got and waited < timeout_ms:
            await asyncio.sleep(0.001)
            waited += 1
            got = await Fetcher.fetched_records(self, partitions, 0, max_records)
        return got

    def fetch(self) -> None:
        """Each partition with nothing left of its last fetch is fetched from
        its position."""
        for tp in self.order:
            if tp not in self._records:
                self._fetch(tp)

    async def fetching(self) -> None:
        """What the client's background fetching does."""
        while True:
            self.fetch()
            await asyncio.sleep(0.001)

    def _fetch(self, tp: TopicPartition) -> None:
        at = self.states[tp].position
        # A broker sends whole batches, from the one holding the position.
        batches = [
            data
            for n, (base, data) in enumerate(self.logs[tp])
            if n + 1 == len(self.logs[tp]) or self.logs[tp][n + 1][0] > at
        ]
        if not batches or at >= self.highwater(tp):
            return
        if self.garble.get(tp):
            self.garble[tp] -= 1
            batches[0] = garbled(batches[0])
        records = PartitionRecords(
            tp, MemoryRecords(b"".join(batches)), [], at, None, None, True, READ_UNCOMMITTED
        )
        self._records[tp] = FetchResult(tp, assignment=self, partition_records=records, backoff=0)


@dataclass
class _Subscriptions:
    kafka: Kafka
    reassignment_in_progress: bool = False

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self.kafka.states


@pytest.fixture()
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def read(
    kafka: Kafka, running: list[asyncio.Task[None]], reader: Reader | None = None
) -> Any:
    """Everything the reader takes until each partition is read to its end:
    (partition, offset, value or the error of an unreadable one)."""
    running.append(asyncio.create_task(kafka.fetching()))
    reader = reader or Reader("unit", 200, wait_ms=5)
    taken: list[Any] = []
    for _ in range(1000):
        if all(kafka.states[tp].position >= kafka.highwater(tp) for tp in kafka.logs):
            break
        taken += await reader.take(kafka)
    else:
        raise AssertionError("the partitions were not read to their end")
    return [
        (r.partition, r.offset, r.error if isinstance(r, Unreadable) else r.value.decode())
        for r in taken
    ]


def of(partition: TopicPartition, taken: Any) -> list[tuple[int, str]]:
    return [(offset, what) for p, offset, what in taken if p == partition.partition]


@pytest.mark.parametrize("first", [A, B], ids=["readable-first", "unreadable-first"])
@pytest.mark.parametrize("max_records", [200, 1], ids=["batch", "one-by-one"])
async def test_a_record_the_client_cannot_read_costs_no_other_partition_its_records(
    first: TopicPartition, max_records: int, running: list[asyncio.Task[None]]
) -> None:
    # The auditor's case: A's records fetched with B's unreadable one, which
    # `getmany` took A's with it and moved A past them.
    kafka = Kafka(
        {A: [(100, batch(100, 5))], B: [(7, batch(7, 1, unreadable=7)), (8, batch(8, 2))]},
        order=[first, B if first == A else A],
    )

    reader = Reader("unit", max_records, wait_ms=5)
    taken = await read(kafka, running, reader)

    assert of(A, taken) == [(n, str(n)) for n in range(100, 105)]
    assert [offset for offset, _ in of(B, taken)] == [7, 8, 9]
    (_, error), *after = of(B, taken)
    assert "UnicodeDecodeError" in error
    assert after == [(8, "8"), (9, "9")]
    assert (kafka.states[A].position, kafka.states[B].position) == (105, 10)
    # Read to the end, it waits on every partition again for what comes next.
    waits = kafka.waits
    assert await reader.take(kafka) == []
    assert kafka.waits == waits + 1


async def test_the_records_of_its_partition_before_it_are_taken_and_those_after_read_on(
    running: list[asyncio.Task[None]],
) -> None:
    # In one batch: the client reads a batch from its first record, so the
    # one after the unreadable one there cannot be read either.
    kafka = Kafka(
        {
            A: [(0, batch(0, 3))],
            B: [(0, batch(0, 2)), (2, batch(2, 3, unreadable=3)), (5, batch(5, 2))],
        },
        order=[A, B],
    )

    taken = await read(kafka, running)

    assert of(A, taken) == [(0, "0"), (1, "1"), (2, "2")]
    readable = [(offset, what) for offset, what in of(B, taken) if what.isdigit()]
    assert readable == [(0, "0"), (1, "1"), (2, "2"), (5, "5"), (6, "6")]
    assert [offset for offset, what in of(B, taken) if not what.isdigit()] == [3, 4]


async def test_a_checksum_that_does_not_match_twice_is_set_aside_and_once_is_read_again(
    running: list[asyncio.Task[None]],
) -> None:
    kafka = Kafka(
        {
            A: [(0, batch(0, 2)), (2, garbled(batch(2, 1))), (3, batch(3, 1))],
            B: [(0, batch(0, 3))],
        },
        order=[A, B],
        garble={B: 1},  # garbled on its way once: the next fetch reads well
    )

    taken = await read(kafka, running, Reader("unit", 2, wait_ms=5))

    assert [(offset, what[:20]) for offset, what in of(A, taken)] == [
        (0, "0"),
        (1, "1"),
        (2, "the Kafka client can"),
        (3, "3"),
    ]
    assert "CorruptRecordException" in of(A, taken)[2][1]
    assert of(B, taken) == [(0, "0"), (1, "1"), (2, "2")]


async def test_kafka_away_is_raised_after_the_records_already_taken_are_handed_on() -> None:
    kafka = Kafka({A: [(0, batch(0, 2))], B: [(0, batch(0, 2))]}, order=[A, B])
    kafka.fetch()
    reader = Reader("unit", 200, wait_ms=5)
    reader._turn = -1  # its next turn reads A first
    kafka.fail[B] = KafkaConnectionError("Kafka is away")

    assert [(r.partition, r.offset) for r in await reader.take(kafka)] == [(0, 0), (0, 1)]
    with pytest.raises(KafkaConnectionError):
        await reader.take(kafka)
    # Then B is read as before, and nothing is set aside.
    assert [(r.partition, r.offset) for r in await reader.take(kafka)] == [(1, 0), (1, 1)]

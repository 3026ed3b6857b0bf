"""How far the queue's consumer has read each partition, for its timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from casemesh.platform.consuming import Place, SetAside
from casemesh.platform.envelope import CloudEvent
from casemesh_casequeue.consumer import Progress
from casemesh_casequeue.timer import Settling


def test_a_record_told_late_does_not_move_a_partition_back() -> None:
    progress = Progress()
    progress.saw(Place("casemesh.tickets.v1", 0, 7, 7_000), at(7))
    progress.saw(
        Place("casemesh.tickets.v1", 0, 5, 5_000), at(5)
    )  # set aside after its batch-mates
    progress.saw(Place("casemesh.tickets.v1", 1, 2, 2_000), at(2))

    assert progress.applied == {("casemesh.tickets.v1", 0): 7, ("casemesh.tickets.v1", 1): 2}
    assert progress.times[("casemesh.tickets.v1", 0)] == at(7)


def at(minute: int) -> datetime:
    return datetime(2026, 3, 2, 10, minute, tzinfo=UTC)


def set_aside(offset: int, published: datetime, event_time: datetime | None) -> SetAside:
    """A record of partition 0 set aside: published by its relay at
    `published`, its event made at `event_time` (None: it did not parse)."""
    place = Place("casemesh.tickets.v1", 0, offset, int(published.timestamp() * 1000))
    event = None
    if event_time is not None:
        event = CloudEvent(
            id=f"tickets/x:{offset}",
            source="casemesh/tickets",
            type="casemesh.tickets.TicketNoted.v9",  # a type nobody publishes
            subject="tickets/x",
            time=event_time,
            data=b"",
            key="tickets/x",
        )
    return SetAside("casequeue", place, "unknown_type", "", event)


def test_a_record_set_aside_in_a_backlog_keeps_the_horizon_at_event_times() -> None:
    """Kafka was away from 10:00 to 10:30; the relay publishes its backlog
    at 10:30. A record of it set aside does not move the partition's time to
    10:30 (the clocks would run past the events still unread): a record that
    parsed counts by its event's time, one that did not leaves the time of
    the last event read there."""
    progress = Progress()
    key = ("casemesh.tickets.v1", 0)
    published = at(30)
    progress.saw(Place(*key, 3, int(published.timestamp() * 1000)), at(1))
    progress.set_aside(set_aside(4, published, at(2)))
    assert progress.applied[key] == 4 and progress.times[key] == at(2)
    progress.set_aside(set_aside(5, published, None))
    assert progress.applied[key] == 5 and progress.times[key] == at(2)
    # The first record of a partition, unreadable: read, but no time known.
    progress.set_aside(
        SetAside("casequeue", Place(key[0], 1, 0, 0), "malformed_envelope", "", None)
    )
    assert progress.applied[(key[0], 1)] == 0 and (key[0], 1) not in progress.times


def test_an_applied_records_time_is_its_events_not_when_kafka_got_it() -> None:
    """A relay publishes what was stored during a Kafka outage minutes
    late: the clocks must not run past the events still being read."""
    progress = Progress()
    solved_at = datetime(2026, 3, 2, 10, 2, tzinfo=UTC)
    published_at = datetime(2026, 3, 2, 10, 10, tzinfo=UTC)
    progress.saw(
        Place("casemesh.tickets.v1", 0, 3, int(published_at.timestamp() * 1000)), solved_at
    )
    assert progress.times[("casemesh.tickets.v1", 0)] == solved_at


def test_after_kafka_was_away_the_clocks_go_no_further_for_a_while() -> None:
    """Kafka back at 10:10, every partition read to its end: what the relays
    stored during the outage is still to come, so until the settling time
    has passed the clocks stay where they were before it."""
    settle = timedelta(seconds=60)
    settling = Settling(settle)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    settling.started(start)
    assert settling.bound(start, start) is None  # a process just started: nowhere yet
    steady = start + settle
    assert settling.bound(steady - timedelta(seconds=30), steady) == steady - timedelta(seconds=30)
    before = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert settling.bound(before, before) == before
    back = datetime(2026, 3, 2, 10, 10, tzinfo=UTC)
    settling.started(back)  # the horizon failed, and is back
    assert settling.bound(back - timedelta(seconds=30), back) == before
    assert settling.bound(None, back) is None
    later = back + settle
    assert settling.bound(later - timedelta(seconds=30), later) == later - timedelta(seconds=30)

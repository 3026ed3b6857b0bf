"""How far the queue's consumer has read each partition, for its timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from casemesh.platform.consuming import Place
from casemesh_casequeue.consumer import Progress
from casemesh_casequeue.timer import Settling


def test_a_record_told_late_does_not_move_a_partition_back() -> None:
    progress = Progress()
    progress.saw(Place("casemesh.tickets.v1", 0, 7, 7_000))
    progress.saw(Place("casemesh.tickets.v1", 0, 5, 5_000))  # set aside after its batch-mates
    progress.saw(Place("casemesh.tickets.v1", 1, 2, 2_000))

    assert progress.applied == {("casemesh.tickets.v1", 0): 7, ("casemesh.tickets.v1", 1): 2}
    assert progress.times[("casemesh.tickets.v1", 0)].timestamp() == 7.0


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

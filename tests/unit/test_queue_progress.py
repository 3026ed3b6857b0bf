"""How far the queue's consumer has read each partition, for its timer."""

from __future__ import annotations

from casemesh.platform.consuming import Place
from casemesh_casequeue.consumer import Progress


def test_a_record_told_late_does_not_move_a_partition_back() -> None:
    progress = Progress()
    progress.saw(Place("casemesh.tickets.v1", 0, 7, 7_000))
    progress.saw(Place("casemesh.tickets.v1", 0, 5, 5_000))  # set aside after its batch-mates
    progress.saw(Place("casemesh.tickets.v1", 1, 2, 2_000))

    assert progress.applied == {("casemesh.tickets.v1", 0): 7, ("casemesh.tickets.v1", 1): 2}
    assert progress.times[("casemesh.tickets.v1", 0)].timestamp() == 7.0

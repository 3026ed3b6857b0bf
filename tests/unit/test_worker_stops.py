"""A server's workers (projectors, timers, consumer threads) stop together
within one bound once the server has drained (`entrypoint.stop_workers`):
one after another, each with its own wait, they could outlast the grace the
pod is given, and the orchestrator would kill the process mid-stop."""

from __future__ import annotations

import threading

from casemesh.platform.entrypoint import stop_workers


class Stuck:
    """A worker whose stop waits for ever (a thread that never ends)."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self._never = threading.Event()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.asked.set()
        self._never.wait()

    def let_go(self) -> None:
        self._never.set()


class Quick:
    def __init__(self) -> None:
        self.stopped = threading.Event()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped.set()


class Failing:
    def start(self) -> None:
        pass

    def stop(self) -> None:
        raise RuntimeError("its database is away")


def test_every_worker_is_asked_to_stop_though_one_never_does_and_the_wait_ends() -> None:
    stuck, quick, after = Stuck(), Quick(), Quick()
    try:
        left = stop_workers([stuck, quick, Failing(), after], within=0.5)
    finally:
        stuck.let_go()
    assert left == ["Stuck"]
    assert stuck.asked.is_set()
    assert quick.stopped.is_set() and after.stopped.is_set()


def test_a_worker_still_stopping_is_named_by_its_own_name_where_it_has_one() -> None:
    named, plain = Stuck(), Stuck()
    named.name = "evidence-purger"  # type: ignore[attr-defined]
    try:
        assert stop_workers([named, plain], within=0.2) == ["evidence-purger", "Stuck"]
    finally:
        named.let_go()
        plain.let_go()


def test_two_slow_workers_stop_side_by_side_within_one_bound() -> None:
    """Two workers that each take most of the bound: one after the other
    they would need twice it."""
    release = threading.Event()
    both_stopping = threading.Barrier(2, timeout=30)

    class Slow:
        def start(self) -> None:
            pass

        def stop(self) -> None:
            both_stopping.wait()  # breaks (raises) unless the other stops meanwhile
            release.set()

    assert stop_workers([Slow(), Slow()], within=30) == []
    assert release.is_set() and not both_stopping.broken

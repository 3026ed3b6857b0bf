"""A service hearing erasures on a real casemesh.privacy.v1: its replicas
share the work of forgetting (once per erasure, and once more a little
later, even if the replica that made the first pass is gone by then), and
each drops the person's keys itself."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from casemesh import topics
from casemesh.platform.forgetting import ErasureFollower
from tests.conftest import Infra
from tests.integration.test_consumers import produce
from tests.integration.test_notifier_erasure import erasure
from tests.support import Hearing


class Replica:
    """What one process of the service does with what it hears."""

    def __init__(self, cfg: Hearing, again_after: float = 1.0) -> None:
        self.forgotten: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}  # when each forgetting came
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self.follower = ErasureFollower(cfg, self.forget, self.drop, again_after=again_after)

    def forget(self, person: str) -> int:
        with self._lock:
            self.forgotten[person] += 1
            self.times.setdefault(person, []).append(time.monotonic())
        return 1

    def drop(self, person: str) -> None:
        with self._lock:
            self.dropped.append(person)


def until(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s"
        time.sleep(0.1)


@pytest.mark.integration
async def test_replicas_forget_an_erasure_twice_between_them_and_each_drops_the_keys(
    infra: Infra,
) -> None:
    await infra.kafka.create_topics([topics.PRIVACY])
    cfg = Hearing(f"svc{uuid.uuid4().hex[:6]}", infra.kafka.bootstrap)
    replicas = [Replica(cfg), Replica(cfg)]
    for replica in replicas:
        replica.follower.start()
    try:
        person = f"users/{uuid.uuid4().hex[:8]}"
        await produce(infra, topics.PRIVACY, [erasure(person)])
        # Every process drops the keys; the service forgets once, and once more.
        # (Each also meets the erasures earlier tests put on the topic: its
        # groups are new, and read from the start.)
        until(lambda: all(person in r.dropped for r in replicas))
        until(lambda: sum(r.forgotten[person] for r in replicas) == 2)
    finally:
        for replica in replicas:
            replica.follower.stop()
    assert sum(r.forgotten[person] for r in replicas) == 2
    assert [r.dropped.count(person) for r in replicas] == [1, 1]


@pytest.mark.integration
async def test_the_second_pass_is_made_by_the_next_replica_if_the_first_stopped_before_it(
    infra: Infra,
) -> None:
    """A replica stopped (a rollout, a scale-down) after an erasure's first
    pass and before its second: the replica after it makes the second, once
    it is due, so a row rendered meanwhile with a key still held elsewhere
    does not stay in the clear."""
    await infra.kafka.create_topics([topics.PRIVACY])
    cfg = Hearing(f"svc{uuid.uuid4().hex[:6]}", infra.kafka.bootstrap)
    person = f"users/{uuid.uuid4().hex[:8]}"
    first = Replica(cfg, again_after=AGAIN_S)
    first.follower.start()
    try:
        await produce(infra, topics.PRIVACY, [erasure(person)])
        written = time.monotonic()
        until(lambda: first.forgotten[person] == 1)
    finally:
        first.follower.stop()
    assert time.monotonic() - written < AGAIN_S, "the first pass came too late to tell"
    assert first.forgotten[person] == 1

    # (The next replica may also read the first pass again, its offset not
    # committed before the first one stopped: forgetting twice is harmless.)
    after = Replica(cfg, again_after=AGAIN_S)
    after.follower.start()
    try:
        until(
            lambda: any(t - written >= AGAIN_S - 1 for t in after.times.get(person, [])),
            timeout=AGAIN_S + 60,
        )
    finally:
        after.follower.stop()
    assert after.forgotten[person] <= 2


# Long enough for the first pass to come well before the second is due.
AGAIN_S = 30.0

"""A service hearing erasures on a real casemesh.privacy.v1: its replicas
share the work of forgetting (once per erasure, and once more a little
later), and each drops the person's keys itself."""

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

    def __init__(self, cfg: Hearing) -> None:
        self.forgotten: Counter[str] = Counter()
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self.follower = ErasureFollower(cfg, self.forget, self.drop, again_after=1.0)

    def forget(self, person: str) -> int:
        with self._lock:
            self.forgotten[person] += 1
        return 1

    def drop(self, person: str) -> None:
        with self._lock:
            self.dropped.append(person)


def until(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within 60 s"
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

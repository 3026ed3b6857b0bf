"""An erasure a service cannot apply for personal data it cannot read (a
master key missing, a stored key or token altered) is read again until it
can, never set aside: the person's rows would stay in the clear."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from casemesh import topics
from casemesh.platform.consuming import NotYet, Place
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.personal.errors import (
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)
from tests.integration.test_notifier_erasure import erasure

UNREADABLE = [
    UnknownMasterKey("wrapped by master key 'k2'"),
    UnknownDataKey("no data key 5f0c…"),
    WrappedKeyRefused("data key 5f0c… does not unwrap"),
    TokenRefused("token altered"),
]


@pytest.mark.parametrize("error", UNREADABLE, ids=lambda e: type(e).__name__)
async def test_an_erasure_meeting_personal_data_it_cannot_read_is_read_again(
    error: Exception,
) -> None:
    def forget(person: str) -> int:
        raise error

    hearing = SimpleNamespace(service_name="tickets", kafka_bootstrap="127.0.0.1:9")
    follower = ErasureFollower(hearing, forget)
    with pytest.raises(NotYet):
        await follower._forget_now("alice", datetime.now(UTC))


@pytest.mark.parametrize(("cache_s", "at_least"), [(None, 60.0), (5.0, 60.0), (600.0, 600.0)])
def test_the_second_pass_comes_after_another_replica_may_still_reveal(
    cache_s: float | None, at_least: float
) -> None:
    """Another replica, not yet told of the erasure, may go on revealing with
    a key it holds for `key_cache_seconds` (or a case it created, for
    KEEP_REVEALED_S): a row it writes in that time is rendered again only by
    a second pass after it."""
    hearing = SimpleNamespace(service_name="tickets", kafka_bootstrap="127.0.0.1:9")
    if cache_s is not None:
        hearing.key_cache_seconds = cache_s
    follower = ErasureFollower(hearing, lambda person: 0)
    assert follower._again_after > at_least


async def test_keys_are_dropped_for_an_erasure_written_lately_not_for_old_ones() -> None:
    """Every process reads every erasure there has been at each start (its
    keys group is new): one written longer ago than any key of the person's
    may stay in memory drops nothing (nor refuses the person anything for
    a while, as a dropping does); one written lately drops their keys."""
    dropped: list[str] = []
    hearing = SimpleNamespace(service_name="tickets", kafka_bootstrap="127.0.0.1:9")
    follower = ErasureFollower(hearing, None, dropped.append)
    now_ms = int(time.time() * 1000)
    for person, age_s in (("users/old", 3600), ("users/new", 5)):
        place = Place(topics.PRIVACY, 0, len(dropped), now_ms - age_s * 1000)
        await follower._drop(erasure(person), place)
    assert dropped == ["users/new"]

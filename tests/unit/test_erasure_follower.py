"""An erasure a service cannot apply for personal data it cannot read (a
master key missing, a stored key or token altered) is read again until it
can, never set aside: the person's rows would stay in the clear."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from casemesh.platform.consuming import NotYet
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.personal.errors import (
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)

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

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

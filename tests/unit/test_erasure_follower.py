"""An erasure a service cannot apply for personal data it cannot read (a
master key missing, a stored key or token altered) is read again until it
can, never set aside: the person's rows would stay in the clear. One heard
long after it was written (the topic read again from the start) renders
the person's rows again, but refuses nothing to the person, who may have
come back since."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from casemesh import topics
from casemesh.platform.consuming import NotYet, Place
from casemesh.platform.errors import Aborted
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.personal import DataKeys, MasterKeys, MemoryKeyStore, Sealer
from casemesh.platform.personal.errors import (
    TokenRefused,
    UnknownDataKey,
    UnknownMasterKey,
    WrappedKeyRefused,
)
from casemesh.platform.personal.masterkeys import new_master_key
from tests.integration.test_notifier_erasure import erasure

ALICE = "users/alice"
YEAR_S = 365 * 24 * 3600

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


class CaseService:
    """One process of a case service, as far as erasures go: the keys it
    holds, and the rows it renders again. Its `forget` drops the person's
    keys first, as `forget_person` does; `render` only renders."""

    def __init__(self) -> None:
        masters = MasterKeys.parse(f"m1:{new_master_key()}")
        self.sealer = Sealer(DataKeys(MemoryKeyStore(), masters))
        self.rendered: list[str] = []

    def forget(self, person: str) -> int:
        self.sealer.keys.forget(person)
        return self.render(person)

    def render(self, person: str) -> int:
        self.rendered.append(person)
        return 1

    def follower(self) -> ErasureFollower:
        hearing = SimpleNamespace(service_name="tickets", kafka_bootstrap="127.0.0.1:9")
        return ErasureFollower(
            hearing, self.forget, self.sealer.keys.forget, again_after=0.0, forget_late=self.render
        )


def written(age_s: float) -> Place:
    """Where an erasure written `age_s` ago sits."""
    return Place(topics.PRIVACY, 0, 7, int((time.time() - age_s) * 1000))


async def hear(follower: ErasureFollower, person: str, place: Place, second_pass: bool) -> None:
    """The service's group hears an erasure: its first pass, or its second."""
    await (follower._again if second_pass else follower._handle)(erasure(person), place)


@pytest.mark.parametrize("second_pass", [False, True], ids=["first pass", "second pass"])
async def test_an_erasure_heard_long_after_leaves_a_person_who_came_back_free_to_act(
    second_pass: bool,
) -> None:
    """Alice was erased a year ago and came back; the service reads the
    privacy topic from the start again (a new group, offsets reset or
    expired). Her rows are rendered again; what she writes now is sealed at
    once, not refused as if her erasure were under way."""
    service = CaseService()
    service.sealer.seal("alice@example.com", ALICE)
    service.sealer.keys.erase(ALICE)
    token = service.sealer.seal("back again", ALICE)

    follower = service.follower()
    await hear(follower, ALICE, written(YEAR_S), second_pass)
    await follower._drop(erasure(ALICE), written(YEAR_S))  # and the process's own group

    assert service.rendered == [ALICE]
    assert service.sealer.reveal(service.sealer.seal("a new ticket", ALICE), ALICE) == (
        "a new ticket"
    )
    assert service.sealer.reveal(token, ALICE) == "back again"


@pytest.mark.parametrize("second_pass", [False, True], ids=["first pass", "second pass"])
async def test_an_erasure_heard_lately_refuses_the_person_for_a_while(second_pass: bool) -> None:
    """A command racing the erasure may hold what it revealed with Alice's
    key: for a while after the service hears it, nothing is sealed for her,
    lest that reach a new key and outlive the erasure."""
    service = CaseService()
    revealed = service.sealer.reveal(service.sealer.seal("alice@example.com", ALICE), ALICE)
    service.sealer.keys.erase(ALICE)

    await hear(service.follower(), ALICE, written(5), second_pass)

    assert service.rendered == [ALICE]
    with pytest.raises(Aborted) as refused:
        service.sealer.seal(revealed, ALICE)
    assert refused.value.reason == "PERSON_ERASED_MEANWHILE"

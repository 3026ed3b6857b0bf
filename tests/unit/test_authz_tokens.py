"""Users' tokens and the clocks of the identity provider and the gateway,
which differ a little: a token is taken within 30 s of its times, and no
further."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from casemesh.platform.errors import Unauthenticated
from casemesh.platform.identity import Identity, TokenVerifier

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ALICE = Identity("alice", frozenset({"user"}))


def bearer(**times: int) -> str:
    """Alice's token, valid for ten minutes unless `times` say otherwise."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "alice",
        "roles": ["user"],
        "iss": "casemesh",
        "aud": "casemesh",
        "exp": now + 600,
    }
    return "Bearer " + jwt.encode({**claims, **times}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "times",
    [
        {"iat": 2},  # issued by a provider whose clock runs 2 s ahead
        {"nbf": 2},
        {"iat": 29, "nbf": 29},
        {"exp": -20},  # the gateway's clock runs ahead of the provider's
    ],
)
def test_a_token_a_few_seconds_off_the_gateways_clock_is_taken(times: dict[str, int]) -> None:
    now = int(time.time())
    token = bearer(**{claim: now + delta for claim, delta in times.items()})
    assert TokenVerifier(secret=SECRET).verify(token) == ALICE


@pytest.mark.parametrize(
    ("times", "said"),
    [
        ({"exp": -31}, "expired"),
        ({"iat": 60}, "not yet valid"),
        ({"nbf": 60}, "not yet valid"),
    ],
)
def test_a_token_further_off_than_the_leeway_is_refused(times: dict[str, int], said: str) -> None:
    now = int(time.time())
    token = bearer(**{claim: now + delta for claim, delta in times.items()})
    with pytest.raises(Unauthenticated, match=said):
        TokenVerifier(secret=SECRET).verify(token)


def test_a_token_checked_once_is_taken_until_30_s_past_its_exp_and_not_after() -> None:
    now = [time.time()]
    verifier = TokenVerifier(secret=SECRET, clock=lambda: now[0])
    token = bearer(exp=int(now[0]) + 60)
    assert verifier.verify(token) == ALICE
    assert verifier.expiry(token) == int(now[0]) + 90
    now[0] = int(now[0]) + 89
    assert verifier.verify(token) == ALICE
    now[0] += 1
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)

"""The development sign-in (CASEMESH_DEV_SIGN_IN) mints a token for whoever
asks: only for a page on this machine, called from this machine. The Host
header is the caller's to write; the address it calls from is not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from casemesh_gateway.web import SIGN_IN_PATH, WebFront
from tests.support import asgi_post


async def sign_in(host: str, peer: str) -> tuple[int, dict[str, Any]]:
    front = WebFront(
        "127.0.0.1:0",
        services=[],
        cors_origins=[],
        pages={},
        sign_in_secret="s" * 40,
        read_max_bytes=4096,
    )
    asked = json.dumps({"subject": "mallory", "roles": ["admin"]}).encode()
    status, answer = await asgi_post(front.app, SIGN_IN_PATH, asked, {"host": host}, peer)
    return status, json.loads(answer)


@pytest.mark.parametrize(
    ("host", "peer", "status"),
    [
        ("localhost:8080", "127.0.0.1", 200),
        ("[::1]:8080", "::1", 200),
        ("localhost:8080", "203.0.113.9", 403),  # a Host header written to pass
        ("gateway.example.com", "127.0.0.1", 403),  # a page elsewhere (DNS rebinding)
    ],
)
async def test_a_token_is_minted_only_for_this_machine(host: str, peer: str, status: int) -> None:
    answered, body = await sign_in(host, peer)
    assert answered == status
    assert ("token" in body) is (status == 200)

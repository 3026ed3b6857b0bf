"""The development sign-in (CASEMESH_DEV_SIGN_IN) mints a token for whoever
asks: only for a page on this machine, called from this machine. The Host
header is the caller's to write; the address it calls from is not."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from casemesh_gateway.web import SIGN_IN_PATH, WebFront


async def sign_in(host: str, peer: str) -> tuple[int, dict[str, Any]]:
    front = WebFront(
        "127.0.0.1:0",
        services=[],
        cors_origins=[],
        pages={},
        sign_in_secret="s" * 40,
        read_max_bytes=4096,
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": SIGN_IN_PATH,
        "headers": [(b"host", host.encode())],
        "client": (peer, 50000),
    }
    asked = json.dumps({"subject": "mallory", "roles": ["admin"]}).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": asked, "more_body": False}

    said: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        said.append(message)

    await front.app(scope, receive, send)
    return said[0]["status"], json.loads(said[1]["body"])


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

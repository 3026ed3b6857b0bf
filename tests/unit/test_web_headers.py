"""Request headers that are not UTF-8 on the gateway's HTTP port. A header
no call reads (a cookie another page of the site set in Latin-1, say) no
longer refuses the call: it is left out of it. One the call reads (the
token, the language, the protocol's own) is still refused, naming it."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from casemesh.v1 import privacy_pb2
from casemesh_gateway.web import ServiceApp, WebFront

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
ERASE = "/casemesh.v1.PrivacyService/ErasePerson"


async def erase(headers: list[tuple[bytes, bytes]]) -> tuple[int, Any, dict[str, str]]:
    """ErasePerson over Connect (JSON) with `headers` besides its content
    type: the HTTP status, the JSON answer and the headers the handler saw."""
    seen: dict[str, str] = {}

    async def handler(request: Any, context: Any) -> Any:
        seen.update(context.invocation_metadata())
        return privacy_pb2.Erasure(person=request.person)

    async def export(request: Any, context: Any) -> Any:
        yield privacy_pb2.ExportPersonResponse()

    handlers = {
        ERASE: grpc.unary_unary_rpc_method_handler(handler),
        "/casemesh.v1.PrivacyService/ExportPerson": grpc.unary_stream_rpc_method_handler(export),
    }
    web = WebFront(
        "127.0.0.1:0",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret="",
        read_max_bytes=4096,
    )
    web._rpc = {f"/{SERVICE.full_name}": ServiceApp(SERVICE, handlers, 4096)}
    scope = {
        "type": "http",
        "method": "POST",
        "path": ERASE,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"person": "zoe"}', "more_body": False}

    said: list[Any] = []

    async def send(message: Any) -> None:
        said.append(message)

    await web.app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in said if m["type"] == "http.response.body")
    return said[0]["status"], json.loads(body), seen


async def test_a_latin1_cookie_from_the_same_site_does_not_refuse_the_call() -> None:
    status, answer, seen = await erase([(b"cookie", b"pref=caf\xe9"), (b"x-page", "café".encode())])
    assert (status, answer) == (200, {"person": "zoe"})
    assert "cookie" not in seen and seen["x-page"] == "café"


@pytest.mark.parametrize("name", [b"authorization", b"accept-language", b"connect-timeout-ms"])
async def test_a_header_the_call_reads_that_is_not_utf8_is_refused_naming_it(name: bytes) -> None:
    status, answer, _ = await erase([(name, b"caf\xe9")])
    assert status == 400
    assert answer["code"] == "invalid_argument" and name.decode() in answer["message"]

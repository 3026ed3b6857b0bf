"""The refusals the gateway's HTTP front makes itself, as callers read them.
A body too large is 413 however it is sent: with a Content-Length that says
so, or found so as it comes (chunked, gRPC-Web's text mode, the development
sign-in); never 429, which a client reads as a rate limit to wait out. And
each refusal (a deadline passed, a failure of ours, a body too large or not
JSON, a method, content type or path not served, a server busy) carries the
words to show in the caller's language (google.rpc.LocalizedMessage), as a
service's refusals do."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from casemesh.v1 import privacy_pb2
from casemesh_gateway.web import ServiceApp, WebFront

SERVICE = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"]
ERASE = "/casemesh.v1.PrivacyService/ErasePerson"
EXPORT = "/casemesh.v1.PrivacyService/ExportPerson"
LIMIT = 4096
TOO_LARGE = json.dumps({"person": "z" * LIMIT}).encode()
# The words error_messages.toml gives these codes in zh-CN.
DEADLINE_ZH = "服务响应超时，请稍后再试。"
INTERNAL_ZH = "出了点问题，请稍后再试。"
INVALID_ZH = "有内容需要修改，请检查后重试。"
UNAVAILABLE_ZH = "服务暂时不可用，请稍后再试。"
NOT_FOUND_ZH = "找不到这项内容，或你无权查看。"
# A body too large, not a rate limit's "too many requests".
TOO_LARGE_ZH = "发送的内容太大，请减少内容后重试。"
UNIMPLEMENTED_ZH = "暂不支持此操作。"


# Set once a "slow" erasure has begun (it then takes 10 s).
SLOW_BEGUN = asyncio.Event()


async def erase(request: Any, context: Any) -> Any:
    if request.person == "slow":
        SLOW_BEGUN.set()
        await asyncio.sleep(10)
    if request.person == "crash":
        raise RuntimeError("a bug of ours")
    return privacy_pb2.Erasure(person=request.person)


async def export(request: Any, context: Any) -> AsyncIterator[Any]:
    yield privacy_pb2.ExportPersonResponse()


def front(max_calls: int | None = None) -> WebFront:
    web = WebFront(
        "127.0.0.1:0",
        services=[SERVICE],
        cors_origins=[],
        pages={},
        sign_in_secret="a-test-secret-that-is-long-enough-for-hs256",
        read_max_bytes=LIMIT,
        max_connections=max_calls,
    )
    handlers = {
        ERASE: grpc.unary_unary_rpc_method_handler(erase),
        EXPORT: grpc.unary_stream_rpc_method_handler(export),
    }
    web._rpc = {f"/{SERVICE.full_name}": ServiceApp(SERVICE, handlers, LIMIT)}
    return web


async def posted(
    web: WebFront,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    pieces: int = 1,
    method: str = "POST",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request to the front, its body in `pieces` (as a chunked body
    comes: no Content-Length unless `headers` gives one), from this machine:
    the answer's status, headers and body."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"localhost")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
    }
    size = -(-len(body) // pieces) or 1
    parts = [body[at : at + size] for at in range(0, len(body), size)] or [b""]

    async def receive() -> dict[str, Any]:
        if not parts:
            await asyncio.Event().wait()  # the caller stays
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    said: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        said.append(message)

    async with asyncio.timeout(10):
        await web.app(scope, receive, send)
    answer = b"".join(m.get("body", b"") for m in said if m["type"] == "http.response.body")
    return int(said[0]["status"]), dict(said[0]["headers"]), answer


def words(details: list[Any]) -> dict[str, str]:
    """The LocalizedMessages among an error's details: its words by locale."""
    found = {}
    for detail in details:
        if isinstance(detail, dict):  # Connect's JSON
            if detail["type"] != "google.rpc.LocalizedMessage":
                continue
            value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
        elif detail.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR):
            value = detail.value
        else:
            continue
        said = error_details_pb2.LocalizedMessage.FromString(value)
        found[said.locale] = said.message
    return found


def reasons(details: list[Any]) -> list[str]:
    """The ErrorInfo reasons among a Connect error's details (JSON)."""
    return [
        error_details_pb2.ErrorInfo.FromString(
            base64.b64decode(d["value"] + "=" * (-len(d["value"]) % 4))
        ).reason
        for d in details
        if d["type"] == "google.rpc.ErrorInfo"
    ]


def grpc_web_status(headers: dict[bytes, bytes], body: bytes) -> status_pb2.Status:
    """A gRPC-Web answer's status: from its headers (trailers-only) or its
    trailers frame."""
    trailers = dict(headers)
    if body[:1] == b"\x80":
        (size,) = struct.unpack(">I", body[1:5])
        for line in body[5 : 5 + size].split(b"\r\n"):
            name, _, value = line.partition(b":")
            trailers[name.strip().lower()] = value.strip()
    status = status_pb2.Status(code=int(trailers[b"grpc-status"]))
    if b"grpc-status-details-bin" in trailers:
        status = status_pb2.Status.FromString(
            base64.b64decode(trailers[b"grpc-status-details-bin"] + b"==")
        )
    return status


@pytest.mark.parametrize(
    "headers",
    [{"content-length": str(len(TOO_LARGE))}, {}],
    ids=["declared", "chunked"],
)
async def test_a_connect_call_with_a_body_too_large_is_refused_413_however_it_is_sent(
    headers: dict[str, str],
) -> None:
    status, _, body = await posted(
        front(), ERASE, TOO_LARGE, {"content-type": "application/json", **headers}, pieces=3
    )
    assert status == 413
    error = json.loads(body)
    assert error["code"] == "resource_exhausted"
    assert error["message"] == f"the request body is larger than {LIMIT} bytes"
    # Told apart from a rate limit (also resource_exhausted) by its reason.
    assert reasons(error["details"]) == ["REQUEST_TOO_LARGE"]


async def test_a_body_too_large_is_answered_the_same_whether_declared_or_found() -> None:
    """A Connect client reads the same answer either way (status and body)."""
    answers = [
        await posted(front(), ERASE, TOO_LARGE, {"content-type": "application/json", **headers})
        for headers in ({"content-length": str(len(TOO_LARGE))}, {})
    ]
    (declared_status, _, declared), (found_status, _, found) = answers
    assert declared_status == found_status == 413
    assert json.loads(declared) == json.loads(found)


async def test_a_sign_in_with_a_body_too_large_is_refused_413() -> None:
    body = json.dumps({"subject": "z" * 5000}).encode()
    status, _, answer = await posted(front(), "/dev/sign-in", body, {}, pieces=2)
    assert status == 413
    assert json.loads(answer)["code"] == "resource_exhausted"


async def test_a_grpc_web_text_call_too_large_fails_resource_exhausted_in_chinese() -> None:
    message = privacy_pb2.ErasePersonRequest(person="z" * LIMIT).SerializeToString()
    text = base64.b64encode(struct.pack(">BI", 0, len(message)) + message)
    status, headers, body = await posted(
        front(),
        ERASE,
        text,
        {"content-type": "application/grpc-web-text", "accept-language": "zh-CN"},
        pieces=3,
    )
    assert status == 200  # gRPC-Web says how a call failed in its trailers
    said = grpc_web_status(headers, base64.b64decode(body))
    assert said.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert list(words(list(said.details))) == ["zh-CN"]


async def connect_error(
    web: WebFront, person: str, headers: dict[str, str], **asked: Any
) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"person": person}).encode()
    status, _, answer = await posted(
        web, ERASE, body, {"content-type": "application/json", **headers}, **asked
    )
    return status, json.loads(answer)


@pytest.mark.parametrize(
    ("person", "deadline", "code", "zh"),
    [
        ("slow", {"connect-timeout-ms": "50"}, "deadline_exceeded", DEADLINE_ZH),
        ("crash", {}, "internal", INTERNAL_ZH),
    ],
)
async def test_a_call_the_front_fails_itself_is_said_in_the_callers_language(
    person: str, deadline: dict[str, str], code: str, zh: str
) -> None:
    _, error = await connect_error(front(), person, {"accept-language": "zh-CN", **deadline})
    assert error["code"] == code
    assert words(error["details"]) == {"zh-CN": zh}


async def test_a_failure_of_ours_is_said_in_plain_english_to_whoever_asks_for_no_chinese() -> None:
    _, error = await connect_error(front(), "crash", {"accept-language": "de-DE"})
    assert error["message"] == "the call failed on our side"
    assert words(error["details"]) == {"en": "Something went wrong; please try again later."}


async def test_a_deadline_passed_is_said_in_chinese_to_a_grpc_web_caller() -> None:
    message = privacy_pb2.ErasePersonRequest(person="slow").SerializeToString()
    status, headers, body = await posted(
        front(),
        ERASE,
        struct.pack(">BI", 0, len(message)) + message,
        {
            "content-type": "application/grpc-web+proto",
            "grpc-timeout": "50m",
            "accept-language": "zh-CN,zh;q=0.9,en;q=0.5",
        },
    )
    said = grpc_web_status(headers, body)
    assert status == 200 and said.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert words(list(said.details)) == {"zh-CN": DEADLINE_ZH}


@pytest.mark.parametrize("pieces", [1, 3], ids=["declared", "chunked"])
async def test_a_body_too_large_is_said_in_the_callers_language(pieces: int) -> None:
    headers = {"content-type": "application/json", "accept-language": "zh-CN"}
    if pieces == 1:
        headers["content-length"] = str(len(TOO_LARGE))
    status, _, body = await posted(front(), ERASE, TOO_LARGE, headers, pieces=pieces)
    assert status == 413
    assert words(json.loads(body)["details"]) == {"zh-CN": TOO_LARGE_ZH}


async def test_a_body_that_is_not_json_is_said_in_the_callers_language() -> None:
    status, _, body = await posted(
        front(), ERASE, b"{nope", {"content-type": "application/json", "accept-language": "zh-CN"}
    )
    error = json.loads(body)
    assert status == 400 and error["code"] == "invalid_argument"
    assert words(error["details"]) == {"zh-CN": INVALID_ZH}


async def test_a_stream_ending_with_a_refusal_of_ours_says_it_in_the_callers_language() -> None:
    """A Connect stream whose request is too large ends with the error, its
    words in the caller's language."""
    status, _, body = await posted(
        front(),
        EXPORT,
        struct.pack(">BI", 0, len(TOO_LARGE)) + TOO_LARGE,
        {"content-type": "application/connect+json", "accept-language": "zh-CN"},
        pieces=3,
    )
    flags, size = struct.unpack(">BI", body[:5])
    error = json.loads(body[5 : 5 + size])["error"]
    assert status == 200 and flags & 2 and error["code"] == "resource_exhausted"
    assert list(words(error["details"])) == ["zh-CN"]


@pytest.mark.parametrize(
    ("path", "method", "content_type", "status", "zh"),
    [
        (ERASE, "POST", "text/plain", 415, INVALID_ZH),
        (ERASE, "PUT", "application/json", 405, UNIMPLEMENTED_ZH),
        ("/casemesh.v1.PrivacyService/Nothing", "POST", "application/json", 404, UNIMPLEMENTED_ZH),
        ("/nowhere", "GET", "", 404, NOT_FOUND_ZH),
        ("/dev/sign-in", "GET", "", 405, UNIMPLEMENTED_ZH),
    ],
)
async def test_a_request_the_front_refuses_is_said_in_the_callers_language(
    path: str, method: str, content_type: str, status: int, zh: str
) -> None:
    headers = {"accept-language": "zh-CN"}
    if content_type:
        headers["content-type"] = content_type
    answered, _, body = await posted(front(), path, b"{}", headers, method=method)
    assert answered == status
    assert words(json.loads(body)["details"]) == {"zh-CN": zh}


async def test_a_call_past_those_the_front_takes_is_refused_in_the_callers_language() -> None:
    web = front(max_calls=1)
    SLOW_BEGUN.clear()
    holding = asyncio.create_task(connect_error(web, "slow", {}))
    try:
        await asyncio.wait_for(SLOW_BEGUN.wait(), 10)  # the one call it takes, under way
        status, error = await connect_error(web, "zoe", {"accept-language": "zh-CN"})
    finally:
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
    assert status == 503 and error["code"] == "unavailable"
    assert words(error["details"]) == {"zh-CN": UNAVAILABLE_ZH}

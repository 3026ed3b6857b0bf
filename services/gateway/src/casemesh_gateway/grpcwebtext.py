"""gRPC-Web's text mode (application/grpc-web-text): the binary protocol with
both bodies in base64. It is the default of Google's grpc-web client, and
its only mode for server streams. A call sent so is served as gRPC-Web
binary: its body decoded as it comes, the answer's body encoded chunk by
chunk (each padded, as the protocol allows) under
application/grpc-web-text+proto."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.types import Receive, Scope, Send

TEXT_TYPES = (b"application/grpc-web-text", b"application/grpc-web-text+proto")
BINARY_TYPE = b"application/grpc-web+proto"
ANSWER_TYPE = b"application/grpc-web-text+proto"


def is_text(scope: Scope) -> bool:
    """Whether a request is gRPC-Web in text mode."""
    return any(
        k.lower() == b"content-type" and v.split(b";")[0].strip().lower() in TEXT_TYPES
        for k, v in scope["headers"]
    )


def as_binary(scope: Scope, receive: Receive, send: Send) -> tuple[Scope, Receive, Send]:
    """The text-mode call as gRPC-Web binary: its content type the binary
    one, its body decoded (its Content-Length, of the text, dropped), its
    answer encoded."""
    headers = [
        (k, BINARY_TYPE) if k.lower() == b"content-type" else (k, v)
        for k, v in scope["headers"]
        if k.lower() != b"content-length"
    ]
    return {**scope, "headers": headers}, _decoding(receive), _encoding(send)


def decode(text: bytes) -> bytes:
    """Base64 made of 4-character groups, padded anywhere a sender flushed
    (each padded run decoded on its own)."""
    text = b"".join(text.split())
    decoded = bytearray()
    start = 0
    while (pad := text.find(b"=", start)) != -1:
        end = (pad // 4 + 1) * 4
        decoded += base64.b64decode(text[start:end], validate=True)
        start = end
    decoded += base64.b64decode(text[start:], validate=True)
    return bytes(decoded)


def _decoding(receive: Receive) -> Receive:
    """`receive` for a base64 body, giving its bytes: whole 4-character
    groups as they come, the rest kept for the next chunk."""
    held = b""

    async def receiving() -> Any:
        nonlocal held
        event = await receive()
        if event["type"] != "http.request":
            return event
        text = held + b"".join(event.get("body", b"").split())
        more = event.get("more_body", False)
        whole = len(text) - len(text) % 4 if more else len(text)
        held = text[whole:]
        try:
            body = decode(text[:whole])
        except (binascii.Error, ValueError):
            raise ConnectError(
                Code.INVALID_ARGUMENT, "the body is not base64 (application/grpc-web-text)"
            ) from None
        return {**event, "body": body}

    return receiving


def _encoding(send: Send) -> Send:
    """`send`, the answer's content type the text one and its body base64."""

    async def sending(event: Any) -> None:
        if event["type"] == "http.response.start":
            headers = [
                (k, ANSWER_TYPE) if k.lower() == b"content-type" else (k, v)
                for k, v in event.get("headers", [])
                if k.lower() != b"content-length"
            ]
            event = {**event, "headers": headers}
        elif event["type"] == "http.response.body" and event.get("body"):
            event = {**event, "body": base64.b64encode(event["body"])}
        await send(event)

    return sending

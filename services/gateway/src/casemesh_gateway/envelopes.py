"""The envelopes of Connect and gRPC-Web streams on the HTTP port: each
message behind a 5-byte prefix (a flags byte, then its length), a Connect
stream ending with a message that says how it ended. Here: a client stream's
messages refused by the length they announce, before any of one is held, and
a Connect stream answered with an error at once, as Connect clients read one."""

from __future__ import annotations

import base64
import json
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.types import Receive

PREFIX_BYTES = 5
# A Connect stream's last message, its error if it failed (flags 0x02).
END_OF_STREAM = 0x02
CONNECT_STREAM_TYPES = ("application/connect+json", "application/connect+proto")


def error_json(err: ConnectError) -> dict[str, Any]:
    """A Connect error as JSON: its code, message and google.rpc details
    (type, and value in unpadded base64), as a unary error's body and a
    stream's end carry it."""
    said: dict[str, Any] = {"code": err.code.value, "message": err.message}
    if err.details:
        said["details"] = [
            {
                "type": d.type_url.rpartition("/")[2],
                "value": base64.b64encode(d.value).decode().rstrip("="),
            }
            for d in err.details
        ]
    return said


def end_of_stream(err: ConnectError) -> bytes:
    """The end of a Connect stream that failed with `err`."""
    body = json.dumps({"error": error_json(err)}, ensure_ascii=False).encode()
    return bytes([END_OF_STREAM]) + len(body).to_bytes(4, "big") + body


def stream_message_limit(content_type: str, limit: int) -> int:
    """The most a client stream's message may announce in the encoding
    `content_type` names, `limit` being what it may take in binary: JSON
    carries bytes in base64, four characters for every three, so a chunk of
    the documented size still comes whole (and one over it reaches the
    handler, which names the field) rather than refused by its envelope."""
    if content_type.split(";")[0].strip().lower().endswith("+json"):
        return 4 * -(-limit // 3)
    return limit


def too_large_message(size: int, limit: int) -> ConnectError:
    return ConnectError(
        Code.RESOURCE_EXHAUSTED,
        f"a request message of {size} bytes is larger than the {limit} bytes a message may be",
    )


def refusing_large_messages(receive: Receive, limit: int) -> Receive:
    """`receive` for a client stream's body: the prefix of each message is
    read as it arrives (across chunks), and a message announcing more than
    `limit` bytes fails the call RESOURCE_EXHAUSTED then and there, before
    any of it is held. (connectrpc holds a message whole before it checks
    its size: an upload announcing 4 GiB would be kept in memory as it came.)"""
    prefix = bytearray()  # the next message's prefix, as far as it came
    left = 0  # what is still to come of the current message
    refused: ConnectError | None = None

    async def receiving() -> Any:
        nonlocal left, refused
        if refused is not None:
            raise refused
        event = await receive()
        data = memoryview(event.get("body", b""))
        at = 0
        while at < len(data):
            if left:
                step = min(left, len(data) - at)
                left, at = left - step, at + step
                continue
            step = min(PREFIX_BYTES - len(prefix), len(data) - at)
            prefix.extend(data[at : at + step])
            at += step
            if len(prefix) == PREFIX_BYTES:
                left = int.from_bytes(prefix[1:], "big")
                prefix.clear()
                if left > limit:
                    refused = too_large_message(left, limit)
                    raise refused
        return event

    return receiving

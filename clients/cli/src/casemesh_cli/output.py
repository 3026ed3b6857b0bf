"""What a command prints: its result for people, or with `--json` the result as
the proto's JSON (camelCase field names, as Connect's JSON and MessageToJson
use), for scripts."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def emit(
    args: argparse.Namespace, message: M, human: Callable[[M], None], file: Any = None
) -> None:
    if getattr(args, "json", False):
        print(json_format.MessageToJson(message, ensure_ascii=False), file=file)
    else:
        human(message)


def every_page(fetch: Callable[[str], M], items: str) -> M:
    """All the pages of a list call as one response: `fetch(page_token)` is
    called until no `next_page_token` comes back, and the `items` of every page
    are gathered into the first (whose token is cleared)."""
    first = fetch("")
    token: str = getattr(first, "next_page_token", "")
    while token:
        page = fetch(token)
        getattr(first, items).extend(getattr(page, items))
        token = getattr(page, "next_page_token", "")
    first.ClearField("next_page_token")
    return first


def each(items: str, line: Callable[[Any], None]) -> Callable[[Message], None]:
    """A human printer for a list response: one `line` per item."""

    def human(response: Message) -> None:
        items_: Iterator[Any] = iter(getattr(response, items))
        for item in items_:
            line(item)

    return human

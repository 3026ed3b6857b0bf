"""Page sizes as every list call of the API reads them (AIP-158): 0 asks for the
call's default, a size over its maximum is taken as the maximum (the answer says
with `next_page_token` that more remain), and only a negative size is refused."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from casemesh.platform.caseindex import Page, encode_page_token
from casemesh.platform.errors import InvalidArgument

T = TypeVar("T")


def page_size_of(page_size: int, *, most: int = 100, default: int = 20) -> int:
    """The number of items to answer with for a requested `page_size`."""
    if page_size < 0:
        raise InvalidArgument.field(
            "page_size", f"must not be negative (0 means {default}; at most {most} are sent)"
        )
    return min(page_size or default, most)


def older_than(
    where: str, args: Sequence[object], after: tuple[datetime, str] | None
) -> tuple[str, list[object]]:
    """A table's `where` (and its `args`) narrowed to the rows older than
    `after` (a page token's creation time and id): those that come after it
    when listed newest first, by `(created_at, id)`."""
    if after is None:
        return where, list(args)
    return f"{where} AND (created_at, id) < (%s, %s)", [*args, after[0], after[1]]


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime, str]]
) -> tuple[list[T], str]:
    """A page of `limit` from up to `limit + 1` rows listed newest first, and
    the token of the next page, naming the page's last row by `key` (its
    creation time and id); "" when nothing follows."""
    if len(rows) <= limit:
        return list(rows), ""
    return list(rows[:limit]), encode_page_token(*key(rows[limit - 1]))


# What the items of a page may carry at most, as their sizes are counted (a
# case document as JSON, a history entry's text): a gRPC client takes 4 MiB
# by default, and a page past it fails for good (RESOURCE_EXHAUSTED) however
# often it is asked for. A page is cut short instead, as AIP-158 allows.
PAGE_BYTES = 2 * 1024 * 1024


def fitting(sizes: Iterable[int], limit: int, budget: int = PAGE_BYTES) -> int:
    """How many items, of these `sizes` in page order, a page holds: at most
    `limit`, no more than fit `budget`, but always the first (an item alone
    is bounded by its own limits)."""
    total, count = 0, 0
    for size in sizes:
        total += size
        if count == limit or (count > 0 and total > budget):
            break
        count += 1
    return count


def document_bytes(doc: Any) -> int:
    """A document's size as `fitting` counts it: its JSON, in UTF-8."""
    return len(json.dumps(doc, ensure_ascii=False, default=str).encode())


class Step(Protocol):
    """A step of a case's history as a page of it counts it."""

    @property
    def sequence(self) -> int: ...

    @property
    def text(self) -> str: ...


S = TypeVar("S", bound=Step)


# A history page token as `steps_page` writes it: a step's sequence, in
# plain ASCII digits (`int` alone would also take " 7", "-5", "1_0" or "٧").
_SEQUENCE_TOKEN = re.compile(r"[1-9][0-9]{0,17}", re.ASCII)


def sequence_after(page_token: str) -> int:
    """The sequence a page token of a case's history names: the last step the
    page before held (0: the first page)."""
    if not page_token:
        return 0
    if not _SEQUENCE_TOKEN.fullmatch(page_token):
        raise InvalidArgument.field("page_token", "is not a token this API gave")
    return int(page_token)


def steps_page(steps: list[S], limit: int, budget: int = PAGE_BYTES) -> Page[S]:
    """A page of the steps that follow the page token's (`sequence_after`):
    at most `limit`, cut short before their texts pass `budget` bytes
    (`fitting`); the next page's token names its last step."""
    kept = fitting((len(step.text.encode()) for step in steps), limit, budget)
    return Page(steps[:kept], str(steps[kept - 1].sequence) if kept < len(steps) else "")

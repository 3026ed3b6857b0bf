"""What a command prints: its result for people, or with `--json` the result as
the proto's JSON (camelCase field names, as Connect's JSON and MessageToJson
use), for scripts."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from casemesh_cli.parsing import BadInput

M = TypeVar("M", bound=Message)
T = TypeVar("T")


def emit(
    args: argparse.Namespace, message: M, human: Callable[[M], None], file: Any = None
) -> None:
    if getattr(args, "json", False):
        print(json_format.MessageToJson(message, ensure_ascii=False), file=file)
    else:
        human(message)


def hanging(text: str) -> str:
    """`text` to print after a label or on a list's line: its first line as
    it is, every other line indented, so that text someone wrote (a comment,
    a resolution, a decision's facts) never passes for a line of the view's
    own (a history step, a field)."""
    first, *rest = text.splitlines() or [""]
    return "\n".join([first, *(f"    {line}".rstrip() for line in rest)])


def emit_pages(
    args: argparse.Namespace, pages: Iterable[Message], items: str, line: Callable[[Any], None]
) -> None:
    """The `items` of a list call's `pages` (`paging.pages`), each page
    printed as it comes, so that a long list shows from its first page and
    a failure part-way keeps what came before it: for people one `line`
    each; with --json the proto's JSON of one response holding them all,
    as `emit` prints a response (no next page token). At most --limit of
    them, for a command that takes one."""
    limit: int | None = getattr(args, "limit", None)
    as_json = getattr(args, "json", False)
    shown = 0
    try:
        for page in pages:
            for item in getattr(page, items)[: None if limit is None else limit - shown]:
                if as_json:
                    sys.stdout.write(_json_item(page, items, item, first=not shown))
                else:
                    line(item)
                shown += 1
            sys.stdout.flush()
            if limit is not None and shown >= limit:
                break
    except grpc.RpcError:
        if shown:
            print(f"only the first {shown} were printed: the list failed part-way", file=sys.stderr)
        raise
    if as_json:
        print(_JSON_END if shown else "{}")


# The proto's JSON of a list response, as MessageToJson lays it out: the
# items' field, then each item indented under it; the end, once all came.
_JSON_END = "\n  ]\n}"


def _json_item(page: Message, items: str, item: Message, first: bool) -> str:
    body = json_format.MessageToJson(item, ensure_ascii=False).replace("\n", "\n    ")
    if not first:
        return f",\n    {body}"
    key = page.DESCRIPTOR.fields_by_name[items].json_name
    return f"{{\n  {json.dumps(key)}: [\n    {body}"


def each(items: str, line: Callable[[Any], None]) -> Callable[[Message], None]:
    """A human printer for a list response: one `line` per item."""

    def human(response: Message) -> None:
        items_: Iterator[Any] = iter(getattr(response, items))
        for item in items_:
            line(item)

    return human


def check_out(path: Path) -> None:
    """`--out` names a file: refused before any call when it cannot be one."""
    if path.name in ("", ".", "..") or path.is_dir():
        raise BadInput(f"--out {path}: name a file to write, not a folder")
    if not path.parent.is_dir():
        raise BadInput(f"--out {path}: there is no folder {path.parent}")


def write_whole(path: Path, fill: Callable[[BinaryIO], T]) -> T:
    """Writes `path` with `fill`: into a new file beside it, readable by its
    owner only (it may hold personal data), renamed once complete, so that
    no half-written file is ever under its name, nor one left behind."""
    staged: str | None = None
    try:
        fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(fd, "wb") as out:
            result = fill(out)
        os.replace(staged, path)
        return result
    except OSError as err:
        raise BadInput(f"cannot write {path}: {err.strerror}") from None
    finally:
        if staged is not None:
            Path(staged).unlink(missing_ok=True)

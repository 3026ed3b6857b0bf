"""What a command prints: its result for people, or with `--json` the result as
the proto's JSON (camelCase field names, as Connect's JSON and MessageToJson
use), for scripts."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

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

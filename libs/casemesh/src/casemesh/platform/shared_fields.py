"""Building one value from another whose fields have the same names: a
protobuf message from a view, a client from its settings, a message from an
event's payload. Each names the fields it copies, so a field the two do not
share is still written out where it is built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fields_of(source: object, *names: str, prefix: str = "") -> dict[str, Any]:
    """The attributes `prefix + name` of `source`, keyed by `name`."""
    return {name: getattr(source, prefix + name) for name in names}


def items_of(source: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The items of `source` under `keys` (each must be there)."""
    return {key: source[key] for key in keys}

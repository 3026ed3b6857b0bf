"""Building one record from another whose fields are named the same (a view
from an aggregate, a message from a view)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def same_named(source: Any, names: Iterable[str]) -> dict[str, Any]:
    """The attributes `names` of `source`, as keyword arguments for the other."""
    return {name: getattr(source, name) for name in names}


def same_keys(source: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The entries `names` of `source` (each must be there), likewise."""
    return {name: source[name] for name in names}

"""Building one value from another whose fields have the same names: a
protobuf message from a view, a client from its settings, a message from an
event's payload, a dataclass from a record. Each call names the fields it
copies (or the dataclass does), so a field the two do not share is still
written out where the value is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


def fields_of(source: object, *names: str, prefix: str = "") -> dict[str, Any]:
    """The attributes `prefix + name` of `source`, keyed by `name` (settings
    `smtp_host`, argument `host`)."""
    return {name: getattr(source, prefix + name) for name in names}


def items_of(source: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The items of `source` under `keys` (each must be there)."""
    return {key: source[key] for key in keys}


def record_from(cls: type[D], source: object, **given: Any) -> D:
    """A `cls` whose fields are `source`'s attributes of the same names, but
    for those `given`."""
    taken = {f.name: getattr(source, f.name) for f in fields(cls) if f.init and f.name not in given}
    return cls(**taken, **given)

"""One record made from another that names its fields alike: a dataclass from
a protobuf message or from another dataclass, a protobuf message from a
domain object."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


def same_named(cls: type[D], source: object, **given: Any) -> D:
    """A `cls` whose fields are `source`'s attributes of the same names, but
    for those `given`."""
    taken = {f.name: getattr(source, f.name) for f in fields(cls) if f.init and f.name not in given}
    return cls(**taken, **given)


def attributes(source: object, names: str, *, prefix: str = "") -> dict[str, Any]:
    """`source`'s attributes named in `names` (separated by spaces), as
    keyword arguments; with a `prefix`, each attribute's name starts with it
    and its argument's does not (settings `smtp_host`, argument `host`)."""
    return {name: getattr(source, prefix + name) for name in names.split()}

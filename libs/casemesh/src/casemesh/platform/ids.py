"""Ids derived from what names a thing: the same names give the same id, so
a create retried under the same request id lands on the same stream."""

from __future__ import annotations

import uuid


def derived_id(namespace: uuid.UUID, *names: object) -> uuid.UUID:
    """The UUIDv5 in `namespace` of `names`, one a line."""
    return uuid.uuid5(namespace, "\n".join(map(str, names)))

"""Opening a case application on PostgreSQL with its case index beside the
events: what the composition root of a case service does alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from casemesh.platform.caseindex import CaseIndex
from casemesh.platform.cases import CaseApplication
from casemesh.platform.eventstore import postgres_env, schema_lock, side_table

A = TypeVar("A", bound=CaseApplication[Any])


def open_indexed(
    make: Callable[..., A], database_url: str, table: str, *, pool_size: int, **settings: Any
) -> A:
    """`make(env=…, **settings)` on the database at `database_url` (a pool of
    `pool_size` connections), its case index in the table `table`."""
    with schema_lock(database_url):
        app = make(env=postgres_env(database_url, pool_size=pool_size), **settings)
        app.index = side_table(app, lambda datastore: CaseIndex(datastore, table))
    return app

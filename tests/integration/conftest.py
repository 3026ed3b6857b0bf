"""Fixtures of the integration tests that run the tickets application, or
the case queue's store, on a database of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from casemesh_casequeue import store
from casemesh_tickets.application import Tickets, open_tickets
from tests.conftest import Infra


@pytest.fixture()
def dsn(infra: Infra, request: pytest.FixtureRequest) -> str:
    """A fresh database, named after the test's module."""
    name = f"{request.module.__name__.rpartition('_')[2]}_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    return infra.pg.dsn(name)


@pytest.fixture()
def app(dsn: str) -> Iterator[Tickets]:
    """Tickets on `dsn`, closed after the test."""
    app = open_tickets(dsn, pool_size=4)
    yield app
    app.close()


@pytest.fixture()
async def queue_db(dsn: str) -> str:
    """`dsn` with the case queue's tables."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await store.create_schema(conn)
    return dsn

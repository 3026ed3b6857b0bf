"""A writer's process started while its database is away waits for it, and
then does its work: it does not exit (an orchestrator would restart it only
after its own back-off, minutes after the database is back). The tickets
relay, as `python -m casemesh_tickets relay`, with its event store, or its
key database, on a PostgreSQL cluster of its own that is stopped when it
starts (the other database on the tests' cluster, up)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from casemesh.platform.identity import Identity
from casemesh.platform.personal import create_schema
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_tickets.application import open_tickets
from casemesh_tickets.events import TOPIC
from tests.conftest import PARTITIONS, Infra
from tests.integration.test_pools import new_ticket
from tests.support import records_keyed, wait_until


@pytest.fixture()
def stopped_pg(infra: Infra) -> Iterator[LocalPostgres]:
    """A cluster with the tickets database made, then stopped."""
    pg = LocalPostgres(infra.root / f"pg-{uuid.uuid4().hex[:8]}", free_port())
    pg.start()
    try:
        pg.create_database("tickets")
        pg.stop()
        yield pg
    finally:
        pg.stop()


def log_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.parametrize("away", ["event store", "key database"])
def test_a_relay_started_while_its_database_is_down_publishes_once_it_is_up(
    infra: Infra, stopped_pg: LocalPostgres, tmp_path: Path, away: str
) -> None:
    name = f"db_{uuid.uuid4().hex[:8]}"
    infra.pg.create_database(name)
    if away == "event store":
        dsn, keys_dsn = stopped_pg.dsn("tickets"), infra.pg.dsn(name)
        create_schema(keys_dsn)
    else:
        dsn, keys_dsn = infra.pg.dsn(name), stopped_pg.dsn("tickets")
        stopped_pg.start()
        create_schema(keys_dsn)
        stopped_pg.stop()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "CASEMESH_DATABASE_URL": dsn,
        "CASEMESH_KAFKA_BOOTSTRAP": infra.kafka.bootstrap,
        "CASEMESH_SERVICE_NAME": "tickets-relay",
        "CASEMESH_MASTER_KEYS": f"t:{new_master_key()}",
        "CASEMESH_KEYS_DATABASE_URL": keys_dsn,
    }
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        relay = subprocess.Popen(
            [sys.executable, "-m", "casemesh_tickets", "relay"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # It tried, failed, and goes on trying (twice: it backs off, not exits).
        wait_until(
            lambda: log_of(log).count("database.unreachable") >= 2 or relay.poll() is not None,
            timeout=60,
        )
        assert relay.poll() is None, f"the relay exited: {log_of(log)[-3000:]}"
        stopped_pg.start()
        wait_until(lambda: "relay.active" in log_of(log) or relay.poll() is not None, timeout=120)
        assert relay.poll() is None, f"the relay exited: {log_of(log)[-3000:]}"

        app = open_tickets(dsn, pool_size=2)
        try:
            who = Identity("alice", frozenset({"user"}))
            ticket = app.create_ticket(who, new_ticket("after-outage"))
        finally:
            app.close()

        def published() -> bool:
            found = asyncio.run(records_keyed(infra.kafka.bootstrap, TOPIC, ticket.id, PARTITIONS))
            return bool(found)

        wait_until(published, timeout=120, interval=0.5)
        assert relay.poll() is None, f"the relay exited: {log_of(log)[-3000:]}"
    finally:
        relay.terminate()
        try:
            relay.wait(timeout=60)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()

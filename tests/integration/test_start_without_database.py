"""A writer's process started while its database is away waits for it, and
then does its work: it does not exit (an orchestrator would restart it only
after its own back-off, minutes after the database is back). The tickets
relay, as `python -m casemesh_tickets relay`, with its event store, or its
key database, on a PostgreSQL cluster of its own that is stopped when it
starts (the other database on the tests' cluster, up)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casemesh.platform.identity import Identity
from casemesh.platform.personal import create_schema
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.platform.starting import LIVENESS
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_devstack.stack import IdentityKeys, create_databases, service_specs
from casemesh_tickets.application import open_tickets
from casemesh_tickets.events import TOPIC
from tests.conftest import PARTITIONS, Infra, wait_serving
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


@contextmanager
def waiting(argv: list[str], env: dict[str, str], log: Path) -> Iterator[Callable[[], bool]]:
    """The process `argv`, its output in `log`, seen waiting for a database
    away (it tried, failed, and goes on trying: twice, so it backs off
    rather than exits); yields a check that it is still running, which
    says why not."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )

    def running() -> bool:
        assert proc.poll() is None, f"{argv[2]} exited: {log_of(log)[-3000:]}"
        return True

    def catches_sigterm() -> bool:
        # As PID 1 in its container, a process that does not catch SIGTERM
        # never gets it: the orchestrator would wait for its SIGKILL.
        status = Path(f"/proc/{proc.pid}/status").read_text()
        mask = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        caught = int(mask.removeprefix("SigCgt:"), 16)
        return bool(caught & (1 << (signal.SIGTERM - 1)))

    try:
        wait_until(
            lambda: log_of(log).count("database.unreachable") >= 2 or proc.poll() is not None,
            timeout=60,
        )
        running()
        assert catches_sigterm(), f"{argv[2]} would not hear a SIGTERM while it waits"
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    with waiting([sys.executable, "-m", "casemesh_tickets", "relay"], env, log) as running:
        stopped_pg.start()
        wait_until(lambda: running() and "relay.active" in log_of(log), timeout=120)
        running()

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
        running()


# The servers, each naming the address setting it serves on: those whose
# start connects to their database their own way, and a writer (through its
# schema lock) and the privacy service.
SERVERS = {
    "tickets": "tickets_addr",
    "privacy": "privacy_addr",
    "notifier": "notifier_addr",
    "casequeue": "queue_addr",
    "helpcenter": "help_addr",
    "evidence": "evidence_addr",
}


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return int(reply.status)


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_a_server_started_while_its_database_is_down_serves_once_it_is_up(
    infra: Infra, tmp_path: Path, name: str
) -> None:
    """Its database and the key database both on a cluster that is stopped
    when it starts. While it waits, its gRPC health answers alive and not
    ready."""
    pg = LocalPostgres(infra.root / f"pg-{uuid.uuid4().hex[:8]}", free_port())
    pg.start()
    try:
        create_databases(pg)
        pg.stop()
        addr = f"127.0.0.1:{free_port()}"
        serving_at: dict[str, Any] = {SERVERS[name]: addr}
        specs = service_specs(
            pg,
            infra.kafka,
            ("127.0.0.1", free_port()),
            f"http://127.0.0.1:{free_port()}/sms",
            "a-test-secret-that-is-long-enough-for-hs256",
            identity_keys=IdentityKeys.new(),
            evidence_dir=tmp_path / "evidence",
            metrics_addr=lambda _: f"127.0.0.1:{free_port()}",
            **serving_at,
        )
        (spec,) = [s for s in specs if s.name == name]
        with waiting(spec.argv, {**os.environ, **spec.env}, tmp_path / f"{name}.log") as running:
            # Meanwhile alive (its start-up probe passes: it is not
            # restarted), and not ready (no traffic is sent to it).
            assert health(addr, LIVENESS) == SERVING
            assert health(addr, "") == NOT_SERVING
            running()
            pg.start()
            wait_serving(addr, timeout=120)
            running()
    finally:
        pg.stop()

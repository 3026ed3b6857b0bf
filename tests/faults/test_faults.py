"""Fault drills, one part at a time, under steady load (`./dev faults`).

For each fault: writes go through the gateway at RATE a second, each asking
for e-mail and SMS updates; the part is killed with SIGKILL and brought back
after its downtime, as an orchestrator would; the load goes on throughout.
Then the ledger is read against what the people received:

- lost: acknowledged writes that are not in the event store;
- missing: acknowledged writes whose person got no e-mail or no SMS;
- repeats: a message (same Message-ID, or same SMS idempotency key) that
  arrived twice, split into the ones the notifier marked as a possible
  repeat (a send in flight at a kill) and any other;
- told after: seconds from the part being back (started and, for a gRPC
  service, serving) until every acknowledged write was told;
- serving: seconds from the restart of a gRPC service until it served;
- restarted: processes other than the killed one that stopped on their own.

Must be: 0 lost, 0 missing, 0 other repeats, nothing restarted, no UNKNOWN
or INTERNAL answer. The table is printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from casemesh_devstack.kafka import live_broker_pid
from casemesh_devstack.postgres import live_postmaster_pid
from casemesh_notifier.settings import NotifierSettings
from tests.conftest import Stack, wait_serving
from tests.faults.ledger import REPORT, Load, Outcome, Write
from tests.support import possible_repeats, settled, wait_until

RATE = 20.0  # writes a second through the gateway
BEFORE_S = 5.0  # seconds of load before the kill
AFTER_S = 6.0  # seconds of load after the restore
TOLD_WITHIN_S = 300.0
# The notifier's sending workers (CASEMESH_SEND_CONCURRENCY, as the stack runs it).
SEND_CONCURRENCY = NotifierSettings.model_fields["send_concurrency"].default

pytestmark = pytest.mark.faults


@dataclass(frozen=True)
class Fault:
    name: str
    down_s: float
    kill: Callable[[Stack], None]
    restore: Callable[[Stack], None]
    # The gRPC address that must serve again after the restore, if any.
    serves: Callable[[Stack], str] | None = None


def _kill_tree(pid: int) -> None:
    """SIGKILL to `pid` and its children at once, as a lost machine would do."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The parent pid is the second field after the ")" closing the name.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    for victim in (pid, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _kill_postgres(stack: Stack) -> None:
    pid = live_postmaster_pid(stack.infra.pg.data_dir)
    assert pid is not None, "PostgreSQL is not running"
    _kill_tree(pid)
    wait_until(lambda: live_postmaster_pid(stack.infra.pg.data_dir) is None, timeout=30)


def _kill_kafka(stack: Stack) -> None:
    kafka = stack.infra.kafka
    pid = live_broker_pid(kafka.root)
    assert pid is not None, "Kafka is not running"
    _kill_tree(pid)
    wait_until(lambda: not kafka.is_running(), timeout=30)


def _process(name: str, serves: Callable[[Stack], str] | None = None) -> Fault:
    return Fault(
        name,
        5.0,
        lambda stack: stack.supervisor.kill(name),
        lambda stack: stack.supervisor.restart(name),
        serves,
    )


FAULTS = [
    Fault("postgres down 5 s", 5.0, _kill_postgres, lambda s: s.infra.pg.start()),
    Fault("postgres down 60 s", 60.0, _kill_postgres, lambda s: s.infra.pg.start()),
    Fault("kafka broker", 5.0, _kill_kafka, lambda s: s.infra.kafka.start()),
    Fault("kafka broker down 60 s", 60.0, _kill_kafka, lambda s: s.infra.kafka.start()),
    _process("tickets-relay"),
    _process("appeals-relay"),
    _process("reports-relay"),
    _process("notifier"),
    _process("tickets", lambda stack: grpc_address(stack, "tickets")),
    _process("gateway", lambda stack: stack.gateway),
]


def grpc_address(stack: Stack, name: str) -> str:
    _, env = stack.supervisor.command(name)
    return env["CASEMESH_GRPC_ADDR"]


def stored_case_ids(stack: Stack, writes: list[Write]) -> set[str]:
    ids = {w.name.split("/", 1)[1] for w in writes}
    stored: set[str] = set()
    for dsn, table in (
        (stack.tickets_dsn, "tickets_events"),
        (stack.appeals_dsn, "appeals_events"),
    ):
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                f"SELECT DISTINCT originator_id::text FROM {table}"
                " WHERE originator_id::text = ANY(%s)",
                (list(ids),),
            ).fetchall()
        stored |= {r[0] for r in rows}
    return stored


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_under_load_a_kill_loses_nothing_and_tells_everyone_once(
    stack: Stack, fault: Fault
) -> None:
    sup = stack.supervisor
    sup.exited()  # forget what earlier drills did
    pids = {name: sup.pid(name) for name in sup.names}
    run = uuid.uuid4().hex[:8]
    load = Load(stack.gateway, stack.secret, run)
    marks: dict[str, float] = {}

    def drill() -> None:
        fault.kill(stack)
        time.sleep(fault.down_s)  # the outage itself
        marks["restarted"] = time.monotonic()
        fault.restore(stack)
        if fault.serves is not None:
            wait_serving(fault.serves(stack), timeout=60)
            marks["serving"] = time.monotonic()
        marks["back"] = time.monotonic()

    count = int(RATE * (BEFORE_S + fault.down_s + AFTER_S))
    asyncio.run(load.drive(rate=RATE, count=count, at=int(RATE * BEFORE_S), fault=drill))

    acked = load.acknowledged
    emails = {w.email: w for w in acked}
    phones = {w.phone: w for w in acked}

    def everyone_told() -> bool:
        got_mail = {m["To"] for m in stack.mail.messages}
        got_sms = {r["to"] for r in stack.sms.requests}
        return emails.keys() <= got_mail and phones.keys() <= got_sms

    told_after: float | None = None
    try:
        wait_until(everyone_told, timeout=TOLD_WITHIN_S, interval=0.5)
        told_after = time.monotonic() - marks["back"]
    except AssertionError:
        pass
    # Repeats are counted once every job of this run has its final outcome.
    wait_until(
        lambda: settled(stack.notifier_dsn, [*emails, *phones]), timeout=TOLD_WITHIN_S, interval=0.5
    )

    mail_ids = Counter(m["Message-ID"] for m in stack.mail.messages if m["To"] in emails)
    sms_keys = Counter(r["idempotency_key"] for r in stack.sms.requests if r["to"] in phones)
    in_flight = possible_repeats(stack.notifier_dsn)
    repeats_in_flight = repeats_other = 0
    for key, n in [*mail_ids.items(), *sms_keys.items()]:
        if n > 1:
            job = key.strip("<>").split("@", 1)[0]
            if job in in_flight:
                repeats_in_flight += n - 1
            else:
                repeats_other += n - 1
    got_mail = {m["To"] for m in stack.mail.messages}
    got_sms = {r["to"] for r in stack.sms.requests}
    missing = sum(1 for w in acked if w.email not in got_mail or w.phone not in got_sms)
    stored = stored_case_ids(stack, acked)
    lost = sum(1 for w in acked if w.name.split("/", 1)[1] not in stored)
    killed = fault.name if fault.name in pids else None
    restarted = [
        name
        for name, pid in pids.items()
        if name != killed and pid is not None and sup.pid(name) != pid
    ]
    outcome = Outcome(
        fault=fault.name,
        attempted=len(load.writes),
        acknowledged=len(acked),
        lost=lost,
        missing=missing,
        repeats_in_flight=repeats_in_flight,
        repeats_other=repeats_other,
        told_after_s=told_after,
        serving_after_s=(marks["serving"] - marks["restarted"] if "serving" in marks else None),
        restarted=restarted,
        codes=dict(load.codes),
        # Only a killed notifier leaves sends in flight (one per sending worker).
        in_flight_allowed=SEND_CONCURRENCY if fault.name == "notifier" else 0,
    )
    REPORT.append(outcome)
    print("\n" + "\n".join(Outcome.table([outcome])))
    assert not outcome.failed, outcome.failed

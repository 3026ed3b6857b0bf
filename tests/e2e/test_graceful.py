"""SIGTERM under load, as Kubernetes sends it when it rolls or scales a pod.

For each gRPC service a second replica runs beside the stack's, and clients
spread calls over both (round robin, the gateway's own channel settings).
SIGTERM to the second replica while calls are in flight: its readiness turns
NOT_SERVING at once (liveness stays SERVING), no call fails, and it exits 0
within the grace period. For the relay and the notifier: SIGTERM while tickets
keep coming, and every event reaches the topic once and every requester hears
once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casemesh import topics
from casemesh.platform.backends import SERVICE_CONFIG
from casemesh.platform.identity import mint_token
from casemesh.v1 import (
    appeals_pb2,
    appeals_pb2_grpc,
    casequeue_pb2,
    casequeue_pb2_grpc,
    evidence_pb2,
    evidence_pb2_grpc,
    helpcenter_pb2,
    helpcenter_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
    tickets_pb2,
    tickets_pb2_grpc,
)
from tests.conftest import PARTITIONS, Stack, wait_serving
from tests.e2e.replicas import DELAY, GRACE, Replica, metric
from tests.e2e.test_evidence import png
from tests.e2e.vouching import vouched_as
from tests.support import read_topic, wait_until, wait_while_progressing

WORKERS = 6
PAUSE = 0.1  # between one worker's calls: enough in flight, not a flood of mail

Call = Callable[[grpc.aio.Channel, int], Awaitable[Any]]


@dataclass
class Load:
    """Workers calling `call` back to back until told to stop; every outcome kept."""

    target: str
    call: Call
    ok: list[Any] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    count: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
        async with grpc.aio.insecure_channel(self.target, options=options) as channel:

            async def worker() -> None:
                while not stop.is_set():
                    n = self.count
                    self.count += 1
                    try:
                        self.ok.append(await self.call(channel, n))
                    except grpc.RpcError as err:
                        self.failed.append((n, f"{err.code()}: {err.details()}"))
                    await asyncio.sleep(PAUSE)

            await asyncio.gather(*(worker() for _ in range(WORKERS)))


def both(stack: Stack, of: str, replica: Replica) -> str:
    """A round-robin target over the stack's process and its replica."""
    mine = stack.supervisor.command(of)[1]["CASEMESH_GRPC_ADDR"]
    return f"ipv4:{mine},{replica.grpc_addr}"


def health(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=1
        )
        return int(reply.status)


def ticket_request(run: str, n: int) -> tickets_pb2.CreateTicketRequest:
    return tickets_pb2.CreateTicketRequest(
        ticket=tickets_pb2.Ticket(
            category="account.login",
            subject=f"sigterm {n}",
            description="cannot log in",
            locale="en",
            contact=tickets_pb2.Contact(
                email=f"term-{run}-{n}@example.com", channels=[tickets_pb2.CHANNEL_EMAIL]
            ),
        ),
        request_id=f"term-{run}-{n}",
    )


def create_ticket_direct(run: str, stack: Stack) -> Call:
    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = tickets_pb2_grpc.TicketServiceStub(channel)
        return await stub.CreateTicket(
            ticket_request(run, n),
            metadata=vouched_as(stack, "tickets", f"term-{run}"),
            timeout=20,
        )

    return call


def create_ticket_via_gateway(run: str, secret: str) -> Call:
    # Many users, each well inside the gateway's per-user rate limit.
    tokens = [
        [("authorization", f"Bearer {mint_token(secret, f'term-{run}-{u}')}")] for u in range(40)
    ]

    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = tickets_pb2_grpc.TicketServiceStub(channel)
        return await stub.CreateTicket(
            ticket_request(run, n), metadata=tokens[n % len(tokens)], timeout=20
        )

    return call


def upload_evidence(run: str, stack: Stack) -> Call:
    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        parts = [
            evidence_pb2.UploadEvidenceRequest(
                metadata=evidence_pb2.EvidenceMetadata(file_name=f"proof-{n}.png")
            ),
            evidence_pb2.UploadEvidenceRequest(chunk=png()),
        ]
        return await stub.UploadEvidence(
            iter(parts), metadata=vouched_as(stack, "evidence", f"term-{run}"), timeout=20
        )

    return call


def list_appeals(run: str, stack: Stack) -> Call:
    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = appeals_pb2_grpc.AppealServiceStub(channel)
        return await stub.ListAppeals(
            appeals_pb2.ListAppealsRequest(),
            metadata=vouched_as(stack, "appeals", f"term-{run}"),
            timeout=20,
        )

    return call


def list_reports(run: str, stack: Stack) -> Call:
    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = reports_pb2_grpc.ReportServiceStub(channel)
        return await stub.ListReports(
            reports_pb2.ListReportsRequest(),
            metadata=vouched_as(stack, "reports", f"term-{run}"),
            timeout=20,
        )

    return call


def list_queue(run: str, stack: Stack) -> Call:
    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = casequeue_pb2_grpc.CaseQueueServiceStub(channel)
        return await stub.ListQueueCases(
            casequeue_pb2.ListQueueCasesRequest(page_size=20),
            metadata=vouched_as(stack, "casequeue", f"term-{run}", "agent"),
            timeout=20,
        )

    return call


def search_help(run: str, stack: Stack) -> Call:
    async def call(channel: grpc.aio.Channel, n: int) -> Any:
        stub = helpcenter_pb2_grpc.HelpCenterServiceStub(channel)
        return await stub.SearchArticles(
            helpcenter_pb2.SearchArticlesRequest(query="忘记密码 登录不了", page_size=5),
            metadata=vouched_as(stack, "helpcenter", f"term-{run}"),
            timeout=20,
        )

    return call


async def slow_upload(
    target: str, metadata: list[tuple[str, Any]], release: asyncio.Event
) -> evidence_pb2.Evidence:
    """An upload to one replica that sends its first part, then waits for
    `release` before the rest: a call in flight across a shutdown."""
    data = png(extra=256 * 1024)

    async def parts() -> Any:
        yield evidence_pb2.UploadEvidenceRequest(
            metadata=evidence_pb2.EvidenceMetadata(file_name="slow.png")
        )
        yield evidence_pb2.UploadEvidenceRequest(chunk=data[:1000])
        await release.wait()
        yield evidence_pb2.UploadEvidenceRequest(chunk=data[1000:])

    async with grpc.aio.insecure_channel(target) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        evidence: evidence_pb2.Evidence = await stub.UploadEvidence(
            parts(), metadata=metadata, timeout=30
        )
        return evidence


async def watch_until_ended(
    target: str, metadata: list[tuple[str, Any]]
) -> tuple[grpc.StatusCode, float]:
    """Watches the whole queue on one replica until the stream ends: how, and when."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = casequeue_pb2_grpc.CaseQueueServiceStub(channel)
        try:
            async for _ in stub.WatchQueue(casequeue_pb2.WatchQueueRequest(), metadata=metadata):
                pass
        except grpc.RpcError as err:
            return err.code(), time.monotonic()
        return grpc.StatusCode.OK, time.monotonic()


# Where an agent watches the queue across the stop (direct, and through the gateway).
WATCHERS: dict[str, Callable[[str, Stack], list[tuple[str, Any]]]] = {
    "casequeue": lambda run, stack: vouched_as(stack, "casequeue", f"term-{run}", "agent"),
    "gateway": lambda run, stack: [
        ("authorization", f"Bearer {mint_token(stack.secret, f'term-{run}-watch', ['agent'])}")
    ],
}

# Where an upload is kept in flight across the stop (direct, and through the gateway).
SLOW_UPLOADS: dict[str, Callable[[str, Stack], list[tuple[str, Any]]]] = {
    "evidence": lambda run, stack: vouched_as(stack, "evidence", f"term-{run}"),
    "gateway": lambda run, stack: [
        ("authorization", f"Bearer {mint_token(stack.secret, f'term-{run}-slow')}")
    ],
}

LOADS: dict[str, Callable[[str, Stack], Call]] = {
    "tickets": create_ticket_direct,
    "gateway": lambda run, stack: create_ticket_via_gateway(run, stack.secret),
    "evidence": upload_evidence,
    "appeals": list_appeals,
    "reports": list_reports,
    "casequeue": list_queue,
    "helpcenter": search_help,
}


@pytest.fixture
def run_id() -> Iterator[str]:
    yield uuid.uuid4().hex[:6]


@pytest.mark.parametrize("service", list(LOADS))
def test_sigterm_under_load_fails_no_call_and_exits_within_the_grace_period(
    stack: Stack, service: str, run_id: str
) -> None:
    replica = Replica.start(stack, service)
    try:
        wait_serving(replica.grpc_addr)
        load = Load(both(stack, service, replica), LOADS[service](run_id, stack))
        stopped_at: list[float] = []
        readiness: list[tuple[int, int]] = []

        slow: list[Any] = []  # an upload in flight across the stop: (evidence, its end)
        watched: list[tuple[grpc.StatusCode, float]] = []  # how an open watch ended, when

        async def scenario() -> tuple[int | None, float]:
            stop = asyncio.Event()
            task = asyncio.create_task(load.run(stop))
            # The replica takes its share of the calls before it is told to stop.
            await asyncio.to_thread(
                wait_until,
                lambda: metric(replica.metrics_url, "grpc_server_handled_total") >= 20,
                60,
            )
            watching = None
            if service in WATCHERS:
                watching = asyncio.create_task(
                    watch_until_ended(replica.grpc_addr, WATCHERS[service](run_id, stack))
                )
                await asyncio.sleep(0.5)  # the stream is open on the replica
            release = asyncio.Event()
            upload = None
            if service in SLOW_UPLOADS:
                upload = asyncio.create_task(
                    slow_upload(replica.grpc_addr, SLOW_UPLOADS[service](run_id, stack), release)
                )
                await asyncio.sleep(0.5)  # its first part is on the server
            stopped_at.append(replica.terminate())
            await asyncio.sleep(DELAY / 4)
            readiness.append((health(replica.grpc_addr, ""), health(replica.grpc_addr, "liveness")))
            if upload is not None:
                # The rest is sent after the server stopped taking new calls.
                await asyncio.sleep(DELAY + 0.5)
                release.set()
                slow.append((await upload, time.monotonic()))
            if watching is not None:
                watched.append(await watching)
            code, gone = await asyncio.to_thread(replica.wait_exit, DELAY + GRACE + 10)
            await asyncio.sleep(1.0)  # calls go on after it left
            stop.set()
            await task
            return code, gone

        code, gone = asyncio.run(scenario())
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert readiness == [(not_serving, serving)]
        assert code == 0, replica.log()[-3000:]
        # Its log says which part took the time: the calls (`grpc.stopped`
        # late) or the workers after them.
        assert gone - stopped_at[0] < DELAY + GRACE, replica.log()[-3000:]
        assert "grpc.draining" in replica.log()
        assert load.failed == [], load.failed[:5]
        assert len(load.ok) > 40
        if service in WATCHERS:
            # An agent's watch does not hold the stop: it ends as draining
            # starts, UNAVAILABLE, and the agent watches again elsewhere.
            ended, when = watched[0]
            assert ended == grpc.StatusCode.UNAVAILABLE
            assert when - stopped_at[0] < DELAY, "the watch held on into the grace period"
        if service in SLOW_UPLOADS:
            evidence, finished = slow[0]
            assert finished > stopped_at[0] + DELAY, "the upload was not in flight at the stop"
            assert evidence.name.startswith("evidence/") and evidence.size_bytes > 0
        if service in ("tickets", "gateway"):
            assert_each_ticket_relayed_and_told_once(stack, load.ok)
        if service == "evidence":
            stub = evidence_pb2_grpc.EvidenceServiceStub(grpc.insecure_channel(stack.gateway))
            token = [("authorization", f"Bearer {mint_token(stack.secret, f'term-{run_id}')}")]
            for kept in load.ok[:: max(1, len(load.ok) // 20)]:
                got = stub.GetEvidence(
                    evidence_pb2.GetEvidenceRequest(name=kept.name), metadata=token, timeout=10
                )
                assert got.sha256 == kept.sha256
    finally:
        replica.cleanup()


def assert_each_ticket_relayed_and_told_once(stack: Stack, created: list[Any]) -> None:
    names = {t.name for t in created}
    assert len(names) == len(created), "a create answered twice with different tickets"
    want = {f"{name.split('/')[1]}:1" for name in names}
    time.sleep(3.0)  # anything published twice would be on the topic by now
    records = asyncio.run(
        read_topic(stack.infra.kafka.bootstrap, topics.TICKETS, PARTITIONS, want, 90)
    )
    seen = Counter(h["ce_id"] for _, h in records if h["ce_id"] in want)
    assert set(seen) == want, f"{len(want - set(seen))} events never reached the topic"
    assert max(seen.values()) == 1, "an event was published twice"
    emails = [t.contact.email for t in created]
    # The notifier may still be draining what earlier tests and this load
    # queued: late is fine, stopped is not.
    wait_while_progressing(lambda: sum(1 for e in emails if stack.mail.to(e)), len(emails))
    time.sleep(2.0)
    assert [len(stack.mail.to(e)) for e in emails] == [1] * len(emails)


@pytest.mark.parametrize("process", ["tickets-relay", "notifier"])
def test_sigterm_of_the_relay_or_the_notifier_under_load_loses_and_repeats_nothing(
    stack: Stack, process: str, run_id: str
) -> None:
    """A second relay stands by (a second notifier shares the partitions);
    SIGTERM the one at work while tickets keep coming: the other carries on
    from what was committed, and nothing is published or sent twice."""
    sup = stack.supervisor
    replica = Replica.start(stack, process)
    victim = process if process == "tickets-relay" else replica.name
    try:
        ready = "relay.standby" if process == "tickets-relay" else "notifier.started"
        wait_until(lambda: ready in replica.log(), timeout=60)
        load = Load(stack.gateway, create_ticket_via_gateway(run_id, stack.secret))

        async def scenario() -> tuple[int | None, float, float]:
            stop = asyncio.Event()
            task = asyncio.create_task(load.run(stop))
            await asyncio.to_thread(wait_until, lambda: len(load.ok) >= 30, 60)
            if process == "notifier":
                # The second notifier has partitions and has worked on them.
                await asyncio.to_thread(
                    wait_until, lambda: "notification.delivered" in replica.log(), 60
                )
            sent = time.monotonic()
            sup.kill(victim, signal.SIGTERM)
            code, gone = None, sent
            while time.monotonic() - sent < DELAY + GRACE + 10:
                code = sup.returncode(victim)
                if code is not None:
                    gone = time.monotonic()
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(wait_until, lambda: len(load.ok) >= 80, 60)
            stop.set()
            await task
            return code, sent, gone

        code, sent, gone = asyncio.run(scenario())
        assert code == 0, sup.log_path(victim).read_text()[-3000:]
        assert gone - sent < GRACE
        assert load.failed == [], load.failed[:5]
        if process == "tickets-relay":
            wait_until(lambda: "relay.active" in replica.log(), timeout=15)
        assert_each_ticket_relayed_and_told_once(stack, load.ok)
    finally:
        if process == "tickets-relay":
            sup.restart("tickets-relay")  # stands by until the replica goes
        replica.cleanup()
        if process == "tickets-relay":
            # The stack's relay is the active one again before the next test.
            log = sup.log_path("tickets-relay")
            wait_until(lambda: "relay.active" in log.read_text().rsplit("starting", 1)[-1], 30)


def test_a_consumer_exits_cleanly_on_sigterm(stack: Stack) -> None:
    """The reports service's consumer of appeal decisions leaves its group and
    exits 0 within the grace period."""
    replica = Replica.start(stack, "reports-appeals")
    try:
        wait_until(lambda: "reports_consumer.started" in replica.log(), timeout=60)
        sent = replica.terminate()
        code, gone = replica.wait_exit(GRACE + 10)
        assert code == 0, replica.log()[-3000:]
        assert gone - sent < GRACE
    finally:
        replica.cleanup()

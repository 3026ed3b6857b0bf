"""The agents' queue through the gateway: every case type in one queue,
claims, SLA clocks on the test clock (a pause does not count; a missed target
breaches once, escalates, and the requester sees nothing change), a rebuild
from the topics (the queue not ready until it has replayed them), and agents
only."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, timedelta
from typing import Any, cast

import grpc
import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from casemesh import topics
from casemesh.platform.identity import mint_token
from casemesh.platform.starting import LIVENESS
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import casequeue_pb2_grpc as qpb_grpc
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import PARTITIONS, Stack, wait_serving
from tests.e2e.vouching import vouched_as
from tests.support import Client, wait_until

HOUR = 3600


class Agent:
    def __init__(self, stack: Stack, user: str, *roles: str) -> None:
        self.client = Client(stack.gateway, stack.secret, user, roles or ("agent",))
        self.queue = qpb_grpc.CaseQueueServiceStub(self.client._channel)

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self.queue, method)
        return lambda request: rpc(request, metadata=self.client.metadata, timeout=15)


def queued(agent: Agent, name: str) -> qpb.QueueCase | None:
    token = ""
    while True:
        page = agent.ListQueueCases(qpb.ListQueueCasesRequest(page_size=500, page_token=token))
        for c in page.queue_cases:
            if c.name == name:
                found: qpb.QueueCase = c
                return found
        token = page.next_page_token
        if not token:
            return None


def new_ticket(client: Client, email: str) -> pb.Ticket:
    return client.CreateTicket(  # type: ignore[no-any-return]
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",  # high priority: resolution within 24 hours
                subject="登录不了",
                description="收不到验证码",
                locale="en",
                contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id=uuid.uuid4().hex,
        )
    )


def clock(case: qpb.QueueCase, name: str) -> qpb.SlaClock:
    return next(c for c in case.sla if c.name == name)


def sla_events(stack: Stack, case_name: str) -> list[str]:
    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.infra.kafka.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            parts = [TopicPartition(topics.CASEQUEUE, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            found = []
            for _ in range(6):
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    found += [
                        dict(r.headers)["ce_type"].decode()
                        for r in records
                        if r.key.decode() == case_name
                    ]
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_a_pause_does_not_count_and_a_missed_target_breaches_once(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    user = Client(stack.gateway, stack.secret, f"req-{run}")
    agent = Agent(stack, f"agent-{run}")
    tickets = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    waiting = new_ticket(user, f"req-{run}-a@example.com")
    open_ = new_ticket(user, f"req-{run}-b@example.com")
    first = wait_until(lambda: queued(agent, waiting.name), timeout=30)
    assert first.type == qpb.CASE_TYPE_TICKET and first.queue == "account"
    assert first.priority == pb.PRIORITY_HIGH and first.sla_state == qpb.SLA_STATE_ON_TRACK
    due = clock(first, "resolution").due_time.ToDatetime(tzinfo=UTC)
    created = first.create_time.ToDatetime(tzinfo=UTC)
    assert timedelta(hours=23, minutes=59) < due - created <= timedelta(hours=24)

    tickets.RequestInfo(pb.RequestInfoRequest(name=waiting.name, message="Which phone number?"))
    tickets.AddComment(pb.AddCommentRequest(name=open_.name, body="We are looking into it."))
    paused = wait_until(
        lambda: (c := queued(agent, waiting.name)) and c.sla_state == qpb.SLA_STATE_PAUSED and c,
        timeout=30,
    )
    assert paused.waiting and clock(paused, "first_response").state == qpb.SLA_STATE_MET

    stack.advance_clock(25 * HOUR)  # a day and an hour
    user.AddComment(pb.AddCommentRequest(name=waiting.name, body="The old number is 139…"))

    def resumed() -> qpb.QueueCase | None:
        c = queued(agent, waiting.name)
        return c if c and not c.waiting else None

    back = wait_until(resumed, timeout=30)
    moved = clock(back, "resolution").due_time.ToDatetime(tzinfo=UTC)
    assert moved - due > timedelta(hours=24, minutes=59)  # the day waiting is not counted
    assert back.sla_state in (qpb.SLA_STATE_ON_TRACK, qpb.SLA_STATE_WARNING)

    def breached() -> qpb.QueueCase | None:
        c = queued(agent, open_.name)
        return c if c and c.sla_state == qpb.SLA_STATE_BREACHED else None

    late = wait_until(breached, timeout=30)
    assert late.escalated and late.priority == pb.PRIORITY_URGENT and late.queue == "tier2"
    assert late.status == "OPEN"  # the requester-visible status is the owner's
    assert user.GetTicket(pb.GetTicketRequest(name=open_.name)).status == pb.TICKET_STATUS_OPEN
    time.sleep(2)
    stack.advance_clock(HOUR)
    time.sleep(3)
    events = wait_until(
        lambda: (
            (e := sla_events(stack, open_.name)) and "casemesh.casequeue.SlaBreached.v1" in e and e
        ),
        timeout=30,
    )
    assert events.count("casemesh.casequeue.SlaBreached.v1") == 1
    assert events.count("casemesh.casequeue.CaseEscalated.v1") == 1
    assert "casemesh.casequeue.SlaBreached.v1" not in sla_events(stack, waiting.name)
    # An operator sees it too.
    metrics = {
        (s.name, s.labels.get("queue", "")): s.value
        for f in text_string_to_metric_families(httpx.get(stack.queue_metrics, timeout=5).text)
        for s in f.samples
    }
    assert metrics[("casemesh_queue_breached", "tier2")] >= 1
    assert metrics[("casemesh_queue_sla_breaches_total", "")] >= 1
    assert ("casemesh_queue_depth", "child-safety") in metrics  # empty queues show 0


def test_claims_through_the_gateway_and_the_watch(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    user = Client(stack.gateway, stack.secret, f"req-{run}")
    a, b = Agent(stack, f"a-{run}"), Agent(stack, f"b-{run}")
    watch = a.queue.WatchQueue(
        qpb.WatchQueueRequest(queues=["account"]), metadata=a.client.metadata, timeout=60
    )
    changes = iter(watch)
    assert next(changes).change == "WATCHING"  # in place: no change from now on is missed
    ticket = new_ticket(user, f"req-{run}@example.com")
    change = next(c for c in changes if c.change != "HEARTBEAT")
    assert change.change in ("ADDED", "UPDATED", "CLAIMED", "RELEASED")
    watch.cancel()
    wait_until(lambda: queued(a, ticket.name), timeout=30)
    held = []
    while True:
        try:
            c = a.ClaimNextCase(qpb.ClaimNextCaseRequest(queues=["account"], lease_seconds=60))
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
            break
        held.append(c.name)
        if c.name == ticket.name:
            break
    assert ticket.name in held
    with pytest.raises(grpc.RpcError) as info:
        b.RenewClaim(qpb.RenewClaimRequest(name=ticket.name))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    renewed = a.RenewClaim(qpb.RenewClaimRequest(name=ticket.name, lease_seconds=120))
    assert renewed.holder == a.client.subject
    a.ReleaseClaim(qpb.ReleaseClaimRequest(name=ticket.name))
    for name in held:
        if name != ticket.name:
            a.ReleaseClaim(qpb.ReleaseClaimRequest(name=name))
    assert queued(a, ticket.name).holder == ""  # type: ignore[union-attr]
    bad_calls: list[Any] = [
        lambda: a.ClaimNextCase(qpb.ClaimNextCaseRequest(lease_seconds=5)),
        lambda: a.ClaimNextCase(qpb.ClaimNextCaseRequest(queues=["a\x00b"])),
        lambda: a.ClaimNextCase(qpb.ClaimNextCaseRequest(queues=["acount"])),  # no such queue
        lambda: a.RenewClaim(qpb.RenewClaimRequest(name="tickets/\x00")),
        lambda: a.ListQueueCases(qpb.ListQueueCasesRequest(page_token="eyJ4IjoxfQ==")),
        lambda: a.ListQueueCases(
            qpb.ListQueueCasesRequest(page_token="WzFlOTk5LCIiLCIiLCIiXQ==")  # [1e999, …]
        ),
        # Dates Python reads and PostgreSQL does not (a week date), or without
        # a time zone: refused as tokens, not failed as queries.
        lambda: a.ListQueueCases(
            qpb.ListQueueCasesRequest(page_token=token_of(False, 0, "2024-W01-1", NOON, "x"))
        ),
        lambda: a.ListQueueCases(
            qpb.ListQueueCasesRequest(page_token=token_of(False, 0, NOON[:19], NOON, "x"))
        ),
        # A priority of `true` (an int to Python, not to PostgreSQL), a name
        # with a lone surrogate (no UTF-8).
        lambda: a.ListQueueCases(
            qpb.ListQueueCasesRequest(page_token=token_of(False, True, NOON, NOON, "x"))
        ),
        lambda: a.ListQueueCases(
            qpb.ListQueueCasesRequest(page_token=token_of(False, 0, NOON, NOON, "\ud800"))
        ),
        lambda: a.ListQueueCases(qpb.ListQueueCasesRequest(category="a\x01")),
        lambda: a.ListQueueCases(qpb.ListQueueCasesRequest(types=[cast(Any, 9)])),
    ]
    for bad in bad_calls:
        with pytest.raises(grpc.RpcError) as info:
            bad()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    # Any time Python and the token's form allow is a place in the queue,
    # an offset with seconds too.
    odd = token_of(False, 0, "2024-01-01T00:00:00+05:30:15.5", "2024-01-01T00:00:00-00:00:30", "x")
    a.ListQueueCases(qpb.ListQueueCasesRequest(page_token=odd))


NOON = "2024-01-01T12:00:00+00:00"


def token_of(*fields: object) -> str:
    """A page token made as the queue makes them, of any fields."""
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()


def test_a_user_token_is_refused_on_every_queue_call(stack: Stack) -> None:
    user = Agent(stack, f"user-{uuid.uuid4().hex[:6]}", "user")
    calls: list[Any] = [
        lambda: user.ListQueueCases(qpb.ListQueueCasesRequest()),
        lambda: user.ClaimNextCase(qpb.ClaimNextCaseRequest()),
        lambda: user.RenewClaim(qpb.RenewClaimRequest(name="tickets/x")),
        lambda: user.ReleaseClaim(qpb.ReleaseClaimRequest(name="tickets/x")),
        lambda: next(
            iter(
                user.queue.WatchQueue(
                    qpb.WatchQueueRequest(), metadata=user.client.metadata, timeout=10
                )
            )
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def snapshot(agent: Agent) -> list[bytes]:
    """The queue as agents see it, without the claims (they are not events)."""
    rows = []
    token = ""
    while True:
        page = agent.ListQueueCases(qpb.ListQueueCasesRequest(page_size=500, page_token=token))
        for c in page.queue_cases:
            c.holder, c.lease_expire_time.seconds, c.hold_time.seconds = "", 0, 0
            c.ClearField("lease_expire_time")
            c.ClearField("hold_time")
            rows.append(c.SerializeToString(deterministic=True))
        token = page.next_page_token
        if not token:
            return rows


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(target: str, service: str) -> int | None:
    """What the process at `target` says of `service`'s health (None: no answer)."""
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
    except grpc.RpcError:
        return None
    return int(reply.status)


def names_served(stack: Stack, queue: str) -> set[str]:
    """The cases the queue process at `queue` lists, asked straight (as the
    gateway asks it)."""
    metadata = vouched_as(stack, "casequeue", f"agent-{uuid.uuid4().hex[:6]}", "agent")
    found, token = set(), ""
    with grpc.insecure_channel(queue) as channel:
        stub = qpb_grpc.CaseQueueServiceStub(channel)
        while True:
            request = qpb.ListQueueCasesRequest(page_size=500, page_token=token)
            page = stub.ListQueueCases(request, metadata=metadata, timeout=15)
            found |= {c.name for c in page.queue_cases}
            token = page.next_page_token
            if not token:
                return found


def replay_waiting(stack: Stack) -> bool:
    """Whether a session of the queue's database waits on a lock (the
    replaying consumer's, on queue_consumed)."""
    with psycopg.connect(stack.queue_dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_dropping_the_read_model_and_replaying_the_topics_gives_the_same_queue(
    stack: Stack,
) -> None:
    agent = Agent(stack, f"agent-{uuid.uuid4().hex[:6]}")
    user = Client(stack.gateway, stack.secret, f"req-{uuid.uuid4().hex[:6]}")
    last = new_ticket(user, "replay@example.com")
    wait_until(lambda: queued(agent, last.name), timeout=30)
    before = snapshot(agent)
    assert len(before) > 1
    sup = stack.supervisor
    rebuild = [sys.executable, "-m", "casemesh_casequeue", "rebuild"]
    env = {**os.environ, "CASEMESH_DATABASE_URL": stack.queue_dsn}
    refused = subprocess.run(rebuild, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "stop every casequeue instance" in refused.stderr
    sup.stop("casequeue")
    rebuilt = subprocess.run(
        [sys.executable, "-m", "casemesh_casequeue", "rebuild"],
        env={**os.environ, "CASEMESH_DATABASE_URL": stack.queue_dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    queue = sup.command("casequeue")[1]["CASEMESH_GRPC_ADDR"]
    # The replay held up (its writes wait for this lock): the queue is alive,
    # and not ready, so the gateway's balancer sends it no agent.
    with psycopg.connect(stack.queue_dsn) as holding:
        holding.execute("LOCK TABLE queue_consumed IN SHARE MODE")
        sup.restart("casequeue")
        wait_until(lambda: health(queue, LIVENESS) == SERVING, timeout=60, interval=0.3)
        # The replay under way: its consumer waits on the lock held here.
        wait_until(lambda: replay_waiting(stack), timeout=60, interval=0.3)
        assert health(queue, "") == NOT_SERVING
    # Ready once the replay has caught up: then every case is back. (Their
    # SLA states may still wait for the timer's next look.)
    wait_serving(queue, timeout=90)
    assert names_served(stack, queue) == {qpb.QueueCase.FromString(row).name for row in before}

    def same() -> bool:
        try:
            return snapshot(agent) == before
        except grpc.RpcError:
            return False  # still starting

    wait_until(same, timeout=90, interval=1)


def test_the_child_safety_lane_comes_before_an_urgent_case_due_sooner(stack: Stack) -> None:
    """A child-safety report is ahead of every other case, even an urgent
    ticket opened earlier (so due sooner) at the same priority."""
    from tests.e2e.test_reports import Person  # the reporter's helpers

    run = uuid.uuid4().hex[:6]
    user = Client(stack.gateway, stack.secret, f"req-{run}")
    agent = Agent(stack, f"lane-{run}")
    opened = new_ticket(user, f"req-{run}@example.com")
    agent.client.AssignTicket(
        pb.AssignTicketRequest(name=opened.name, priority=pb.PRIORITY_URGENT, etag=opened.etag)
    )
    stack.advance_clock(60)  # the report comes a minute later, so is due a minute later
    parent = Person(stack, f"parent-{run}")
    child = parent.report(
        f"c{run}", category="child_safety", subcategory="grooming", email=f"p-{run}@example.com"
    )

    def listed() -> list[qpb.QueueCase]:
        cases, token = [], ""
        while True:
            page = agent.ListQueueCases(qpb.ListQueueCasesRequest(page_size=7, page_token=token))
            cases += page.queue_cases
            token = page.next_page_token
            if not token:
                return cases

    def both() -> list[qpb.QueueCase] | None:
        cases = listed()
        found = {c.name: c for c in cases}
        ticket, report = found.get(opened.name), found.get(child.report_case)
        ready = ticket and report and ticket.priority == pb.PRIORITY_URGENT and not ticket.holder
        return cases if ready else None

    cases = wait_until(both, timeout=30)
    by_name = {c.name: c for c in cases}
    ticket, report = by_name[opened.name], by_name[child.report_case]
    assert report.child_safety and not ticket.child_safety
    assert report.priority == ticket.priority == pb.PRIORITY_URGENT
    assert min(c.due_time.ToSeconds() for c in ticket.sla if c.HasField("due_time")) < min(
        c.due_time.ToSeconds() for c in report.sla if c.HasField("due_time")
    )
    names = [c.name for c in cases]
    assert names.index(child.report_case) < names.index(opened.name)
    # The whole queue, page after page: the lane first, then the rest. (A case
    # whose clock fired meanwhile may be met twice, so the lanes are compared.)
    lanes = [c.child_safety for c in cases]
    assert lanes == sorted(lanes, reverse=True)
    # "Next case" over every queue takes from the lane first.
    claimed = agent.ClaimNextCase(qpb.ClaimNextCaseRequest(lease_seconds=60))
    agent.ReleaseClaim(qpb.ReleaseClaimRequest(name=claimed.name))
    assert claimed.child_safety, claimed.name


def test_a_watch_ends_when_the_agents_sign_in_does(stack: Stack) -> None:
    """A feed of every case in the queue is not held by a token that has
    expired (a role taken away with it): the watch ends UNAUTHENTICATED."""
    token = mint_token(stack.secret, f"brief-{uuid.uuid4().hex[:6]}", ["agent"], ttl_seconds=20)
    with grpc.insecure_channel(stack.gateway) as channel:
        watch = qpb_grpc.CaseQueueServiceStub(channel).WatchQueue(
            qpb.WatchQueueRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=60,
        )
        assert next(watch).change == "WATCHING"
        with pytest.raises(grpc.RpcError) as ended:
            for _ in watch:  # heartbeats, changes: until the token expires
                pass
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED, ended.value.details()

"""gRPC entry point of the case queue (agents only)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import grpc
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.callers import vouched
from casemesh.platform.clock import Clock
from casemesh.platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from casemesh.platform.grpcutil import enum_filter, to_timestamp
from casemesh.platform.identity import INTERNAL_LEEWAY_SECONDS, Identity, Vouched
from casemesh.platform.paging import page_size_of
from casemesh.rules import leases
from casemesh.v1 import casequeue_pb2 as pb
from casemesh.v1 import casequeue_pb2_grpc as pb_grpc
from casemesh_casequeue import store
from casemesh_casequeue.model import CLOCKS, Case
from casemesh_casequeue.watch import LOST, Broadcaster, ChangesLost

Ctx: TypeAlias = grpc.aio.ServicerContext

TYPES = {
    "ticket": pb.CASE_TYPE_TICKET,
    "appeal": pb.CASE_TYPE_APPEAL,
    "report": pb.CASE_TYPE_REPORT_CASE,
}
NAMES = {v: k for k, v in TYPES.items()}
PREFIXES = ("tickets/", "appeals/", "report-cases/")
# A watch with nothing to say says so this often (proxies close streams idle
# for a minute by default).
HEARTBEAT_SECONDS = 20.0
# Vouched for by the gateway on a WatchQueue: when the agent's sign-in stops
# being taken (ISO 8601), and so the watch with it.
WATCH_UNTIL = "watch_until"


def watch_ends(found: Vouched) -> float:
    """When a watch opened with `found` ends (seconds since the epoch): when
    the agent's sign-in does, as the gateway vouched (`WATCH_UNTIL`), with
    the leeway a token of the gateway's has for the two hosts' clocks (so
    the gateway, which ends it then too, is the one that says why); without
    it (a gateway of an older release), when the gateway's token for the
    call stops being taken, about a minute on."""
    until = found.facts.get(WATCH_UNTIL)
    if until is None:
        return found.until
    return datetime.fromisoformat(until).timestamp() + INTERNAL_LEEWAY_SECONDS


def clock_state(case: Case, name: str) -> int:
    c = case.clocks[name]
    if c.breached_at:
        return pb.SLA_STATE_BREACHED
    if c.met_at:
        return pb.SLA_STATE_MET
    if c.due is None:
        return pb.SLA_STATE_PAUSED
    return pb.SLA_STATE_WARNING if c.warned else pb.SLA_STATE_ON_TRACK


def case_message(case: Case) -> pb.QueueCase:
    return pb.QueueCase(
        name=case.name,
        type=TYPES[case.type],
        category=case.category,
        priority=case.priority,  # type: ignore[arg-type]
        status=case.status,
        queue=case.queue,
        sla_state=pb.SlaState.Value(f"SLA_STATE_{case.sla_state}"),
        sla=[
            pb.SlaClock(
                name=name,
                target_seconds=int(case.clocks[name].target),
                business_hours=case.clocks[name].business,
                due_time=to_timestamp(case.clocks[name].due),
                met_time=to_timestamp(case.clocks[name].met_at),
                breach_time=to_timestamp(case.clocks[name].breached_at),
                state=clock_state(case, name),  # type: ignore[arg-type]
            )
            for name in CLOCKS
        ],
        escalated=case.escalations > 0,
        holder=case.holder,
        hold_time=to_timestamp(case.hold_since),
        lease_expire_time=to_timestamp(case.lease_until),
        create_time=to_timestamp(case.created_at),
        waiting=case.waiting,
        child_safety=case.child_safety,
    )


def _lease(seconds: int) -> timedelta:
    if not leases.allowed(seconds):
        raise InvalidArgument.field("lease_seconds", f"must be {leases.BOUNDS}")
    return timedelta(seconds=leases.granted(seconds))


def _plain(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and not any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


# A case's id as the services give it: a UUID in lower case.
_CASE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _name(name: str) -> str:
    # One id after the kind, spelled as the services spell it: `tickets/`,
    # `tickets/a/../b` or an id in capitals names no case, and is the
    # caller's mistake, not a case the queue cannot find (NOT_FOUND, as if
    # it had closed, while the claim the agent meant to renew runs out).
    kind, _, ident = name.partition("/")
    if f"{kind}/" not in PREFIXES or not _CASE_ID.fullmatch(ident):
        raise InvalidArgument.field(
            "name", "must be tickets/{id}, appeals/{id} or report-cases/{id}"
        )
    return name


def _queues(queues: Any, known: Collection[str]) -> list[str]:
    found = [q.strip() for q in queues]
    if len(found) > 50 or not all(_plain(q, 100) for q in found):
        raise InvalidArgument.field(
            "queues", "must hold at most 50 queue names of 1–100 characters"
        )
    unknown = [
        FieldViolation(f"queues[{i}]", f"{q!r} is not a queue: one of {', '.join(sorted(known))}")
        for i, q in enumerate(found)
        if q not in known
    ]
    if unknown:
        raise InvalidArgument(unknown)
    return found


def _category(category: str) -> str:
    if category and not _plain(category, 100):
        raise InvalidArgument.field(
            "category", "must be a category or its prefix (at most 100 characters)"
        )
    return category


class QueueServicer(pb_grpc.CaseQueueServiceServicer):
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        clock: Clock,
        changes: Broadcaster,
        queues: Collection[str],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.changes = changes
        # The queues a request may name (the service levels').
        self.queues = queues
        # The real time, which tokens' expiry is told in (`clock` may be moved
        # on, in tests and drills).
        self.wall = wall

    @staticmethod
    def _agent(context: Ctx) -> Identity:
        who = vouched().identity
        if not who.is_agent:
            raise PermissionDenied("the case queue is for agents")
        return who

    async def ListQueueCases(
        self, request: pb.ListQueueCasesRequest, context: Ctx
    ) -> pb.ListQueueCasesResponse:
        self._agent(context)
        types = enum_filter(pb.CaseType, request.types, "types", "CASE_TYPE_")
        states = enum_filter(pb.SlaState, request.sla_states, "sla_states", "SLA_STATE_")
        limit = page_size_of(request.page_size, most=500, default=50)
        try:
            after = store.decode_token(request.page_token)
        except ValueError:
            raise InvalidArgument.field("page_token", "is not a token this API gave") from None
        filters = store.Filters(
            types=[NAMES[pb.CaseType.Value(f"CASE_TYPE_{t}")] for t in types],
            category=_category(request.category.strip()),
            queues=_queues(request.queues, self.queues),
            sla_states=states,
        )
        async with self.pool.connection() as conn:
            cases = await store.page(conn, filters, after, limit + 1)
        token = store.encode_token(cases[limit - 1]) if len(cases) > limit else ""
        return pb.ListQueueCasesResponse(
            queue_cases=[case_message(c) for c in cases[:limit]], next_page_token=token
        )

    async def ClaimNextCase(self, request: pb.ClaimNextCaseRequest, context: Ctx) -> pb.QueueCase:
        who = self._agent(context)
        lease = _lease(request.lease_seconds)
        queues = _queues(request.queues, self.queues)
        async with self.pool.connection() as conn:
            case = await store.claim_next(
                conn, who.subject, queues, lease, self.clock.now(), request.request_id
            )
        if case is None:
            raise NotFound(
                "no case is waiting for an agent in " + (", ".join(queues) or "any queue")
            )
        return case_message(case)

    async def RenewClaim(self, request: pb.RenewClaimRequest, context: Ctx) -> pb.QueueCase:
        who = self._agent(context)
        name, lease = _name(request.name), _lease(request.lease_seconds)
        async with self.pool.connection() as conn:
            result = await store.renew(conn, who.subject, name, lease, self.clock.now())
        return self._held(result, name)

    async def ReleaseClaim(self, request: pb.ReleaseClaimRequest, context: Ctx) -> pb.QueueCase:
        who = self._agent(context)
        name = _name(request.name)
        async with self.pool.connection() as conn:
            result = await store.release(conn, who.subject, name, self.clock.now())
        return self._held(result, name)

    @staticmethod
    def _held(result: Case | store.NotHeld, name: str) -> pb.QueueCase:
        match result:
            case store.NotHeld.ABSENT:
                raise NotFound(f"{name} is not in the queue")
            case store.NotHeld.NOT_HOLDER:
                raise FailedPrecondition(
                    f"you do not hold {name} (its lease may have expired)", reason="LEASE_NOT_HELD"
                )
            case Case():
                return case_message(result)

    async def WatchQueue(
        self, request: pb.WatchQueueRequest, context: Ctx
    ) -> AsyncIterator[pb.QueueChange]:
        self._agent(context)
        queues = set(_queues(request.queues, self.queues))
        # The watch ends with the sign-in it was opened with (UNAUTHENTICATED:
        # the client watches again with a new token), not at the next heartbeat.
        ends = watch_ends(vouched())
        async with self.changes.subscribe() as changes:
            # Said at once, so the watcher knows it is live before anything changes.
            yield pb.QueueChange(change="WATCHING", time=to_timestamp(self.clock.now()))
            loop = asyncio.get_running_loop()
            said = loop.time()
            while True:
                signed_in = ends - self.wall()
                if signed_in <= 0:
                    raise Unauthenticated("the sign-in this watch began with has expired")
                quiet = said + HEARTBEAT_SECONDS - loop.time()
                # Quiet for this watcher (changes it does not see do not count):
                # it still hears something, so no proxy closes the stream as idle.
                try:
                    change, _name, case, *left = await asyncio.wait_for(
                        changes.get(), max(0.0, min(quiet, signed_in))
                    )
                except TimeoutError:
                    if signed_in < quiet:
                        continue
                    said = loop.time()
                    yield pb.QueueChange(change="HEARTBEAT", time=to_timestamp(self.clock.now()))
                    continue
                if change == LOST:
                    raise ChangesLost(
                        "changes to the queue may have been missed: watch again, then read it"
                    )
                if case is None or not shown(queues, change, case, left):
                    continue
                said = loop.time()
                yield pb.QueueChange(
                    change=as_told(change, case),
                    queue_case=case_message(case),
                    time=to_timestamp(self.clock.now()),
                )


def as_told(change: str, case: Case) -> str:
    """The change a watcher is told, from the case as it now is (read after
    the change was made, perhaps after later ones): a closed case is
    REMOVED whatever changed it last, and a case since reopened is UPDATED,
    so a watcher never keeps a closed case nor drops an open one."""
    if not case.open:
        return "REMOVED"
    return "UPDATED" if change == "REMOVED" else change


def shown(queues: set[str], change: str, case: Case, left: Collection[str] = ()) -> bool:
    """Whether a watch of `queues` (empty: all) hears `change` to `case`: a
    change in one of them, or one that took the case out of one (shown
    leaving it, so the watcher drops it), told again naming the queue it
    `left` (`store.note`: an escalation out of the case's home queue too),
    which is for the watches the change's own note is not shown to. (Not
    every ESCALATED of a case whose home queue is watched: a second breach
    finds it long gone from there.)"""
    if left:
        return bool(queues) and case.queue not in queues and not queues.isdisjoint(left)
    return not queues or case.queue in queues

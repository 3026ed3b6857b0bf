"""What the case queue makes of a request before it reads the queue: a
case's name that names no case is the caller's mistake, said so by its
place (INVALID_ARGUMENT naming `name`), not a case the queue cannot find;
a filter longer than any a person would send is refused before it is read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from casemesh.platform.callers import _VOUCHED
from casemesh.platform.clock import SystemClock
from casemesh.platform.errors import InvalidArgument
from casemesh.platform.grpcutil import MOST_FILTER_VALUES, enum_filter
from casemesh.platform.identity import Identity, Vouched
from casemesh.v1 import appeals_pb2, reports_pb2, tickets_pb2
from casemesh.v1 import casequeue_pb2 as pb
from casemesh_casequeue import store
from casemesh_casequeue.api import QueueServicer, _name

CASE_ID = "01234567-89ab-cdef-0123-456789abcdef"  # as the services issue them


class NoDatabase:
    """A pool the call must not reach: a request refused is refused before."""

    def connection(self) -> Any:
        raise AssertionError("the queue was read for a request it refuses")


@pytest.fixture()
def queue() -> Iterator[QueueServicer]:
    """The queue service, called by an agent."""
    agent = _VOUCHED.set(Vouched(Identity("agent-1", frozenset({"agent"}))))
    try:
        yield QueueServicer(cast(Any, NoDatabase()), SystemClock(), cast(Any, None), [])
    finally:
        _VOUCHED.reset(agent)


@pytest.mark.parametrize(
    "name",
    [
        "tickets/",  # no id
        "report-cases/",
        "tickets/a/b/../c",  # a path, not an id
        "appeals//x",
        f"tickets/{CASE_ID}/",
        f"report-cases/{CASE_ID}/comments",
        f"ticket/{CASE_ID}",  # no such kind
        CASE_ID,
        f"tickets/{CASE_ID.upper()}",  # the same id, spelled as no service spells it
        "tickets/hello",
        f"appeals/{CASE_ID} ",
    ],
)
async def test_a_name_that_names_no_case_is_refused_by_its_place(
    queue: QueueServicer, name: str
) -> None:
    """Renewed or released, such a name was answered NOT_FOUND ("not in the
    queue"), as if the case had closed: the agent would look for a case."""
    with pytest.raises(InvalidArgument) as renewed:
        await queue.RenewClaim(pb.RenewClaimRequest(name=name), cast(Any, None))
    with pytest.raises(InvalidArgument) as released:
        await queue.ReleaseClaim(pb.ReleaseClaimRequest(name=name), cast(Any, None))
    for refused in (renewed, released):
        assert [v.field for v in refused.value.violations] == ["name"]


def test_each_kind_of_case_is_named_by_its_id() -> None:
    for kind in ("tickets", "appeals", "report-cases"):
        assert _name(f"{kind}/{CASE_ID}") == f"{kind}/{CASE_ID}"


@pytest.mark.parametrize(
    ("field", "value"), [("types", pb.CASE_TYPE_TICKET), ("sla_states", pb.SLA_STATE_BREACHED)]
)
async def test_a_filter_of_a_million_values_is_refused_by_its_place(
    queue: QueueServicer, field: str, value: int
) -> None:
    """A 1 MB request can carry a million values of a filter of three types
    (or five states): read one by one they held the queue's one event loop
    for a second, and every agent's renewal with it."""
    request = pb.ListQueueCasesRequest()
    getattr(request, field).extend([value] * 1_100_000)
    with pytest.raises(InvalidArgument) as refused:
        await queue.ListQueueCases(request, cast(Any, None))
    assert [v.field for v in refused.value.violations] == [field]
    assert refused.value.violations[0].description == f"at most {MOST_FILTER_VALUES} items"


async def test_a_filter_value_sent_twice_counts_once(
    queue: QueueServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[store.Filters] = []

    class OneConnection:
        @asynccontextmanager
        async def connection(self) -> AsyncIterator[None]:
            yield None

    async def page(conn: Any, filters: store.Filters, *args: Any) -> list[Any]:
        asked.append(filters)
        return []

    monkeypatch.setattr(queue, "pool", OneConnection())
    monkeypatch.setattr(store, "page", page)
    request = pb.ListQueueCasesRequest(
        types=[pb.CASE_TYPE_APPEAL, pb.CASE_TYPE_TICKET, pb.CASE_TYPE_APPEAL],
        sla_states=[pb.SLA_STATE_BREACHED] * MOST_FILTER_VALUES,
    )
    await queue.ListQueueCases(request, cast(Any, None))
    assert [(f.types, f.sla_states) for f in asked] == [(["appeal", "ticket"], ["BREACHED"])]


@pytest.mark.parametrize(
    ("enum", "prefix"),
    [
        (pb.CaseType, "CASE_TYPE_"),
        (pb.SlaState, "SLA_STATE_"),
        (tickets_pb2.TicketStatus, "TICKET_STATUS_"),
        (appeals_pb2.AppealState, "APPEAL_STATE_"),
        (reports_pb2.ReportCaseState, "REPORT_CASE_STATE_"),
    ],
)
def test_a_filter_naming_every_value_once_is_taken_by_every_list(enum: Any, prefix: str) -> None:
    """The services' lists share the limit: it is more than any of their
    filters' enums has values (an appeal has eleven states)."""
    values = [v for v in enum.values() if v]
    names = enum_filter(enum, values + values[:1], "states", prefix)
    assert names == [enum.Name(v).removeprefix(prefix) for v in values]

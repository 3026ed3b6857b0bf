"""Page sizes (AIP-158): 0 asks for the default, a size over the maximum is taken as
the maximum, and only a negative size is refused, naming `page_size`. The services
read sizes so (`page_size_of`); the gateway caps before forwarding (`checks.page`) and
refuses a negative size by the proto's annotation (`fieldrules`)."""

from __future__ import annotations

from typing import Any

import pytest

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh.platform.paging import page_size_of
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_gateway import checks, fieldrules


@pytest.mark.parametrize(
    ("asked", "answered"), [(0, 20), (1, 1), (100, 100), (101, 100), (2**31 - 1, 100)]
)
def test_a_service_takes_a_size_over_its_maximum_as_the_maximum(asked: int, answered: int) -> None:
    assert page_size_of(asked, most=100, default=20) == answered


def test_a_service_refuses_a_negative_size_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        page_size_of(-1, most=500, default=50)
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("page_size", "must not be negative (0 means 50; at most 500 are sent)")
    ]


@pytest.mark.parametrize(
    ("request_", "limit", "forwarded"),
    [
        (pb.ListTicketsRequest(page_size=10_000), 100, 100),
        (qpb.ListQueueCasesRequest(page_size=501), 500, 500),
        (pb.ListTicketEventsRequest(page_size=200), 200, 200),
        (pb.ListTicketEventsRequest(page_size=0), 200, 0),
    ],
)
def test_the_gateway_forwards_a_size_over_the_maximum_as_the_maximum(
    request_: Any, limit: int, forwarded: int
) -> None:
    v = Violations()
    checks.page(limit)(request_, v)
    assert not v
    assert request_.page_size == forwarded


def test_the_gateway_refuses_a_negative_size_naming_the_field() -> None:
    v = Violations()
    fieldrules.check(pb.ListTicketsRequest(page_size=-5), v)
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [f.field for f in refused.value.violations] == ["page_size"]

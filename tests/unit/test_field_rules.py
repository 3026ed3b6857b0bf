"""The field rules written in the protos, as the gateway applies them: the same
bad request gets the same field violations the hand-written checks gave, and
every annotated field is refused by name."""

from __future__ import annotations

from typing import Literal

import protovalidate
import pytest
from google.protobuf.message import Message
from protobuf import Oneof

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh_gateway import checks, fieldrules
from tests.field_rules import BAD_TICKET, BAD_TICKET_VIOLATIONS, CASES, annotated_fields, field_of


def refused(request: Message, check: checks.Check = checks.nothing) -> list[tuple[str, str]]:
    """What the gateway's checks say of a request, in its order: the annotations,
    then the rules kept in code."""
    v = Violations()
    fieldrules.check(request, v)
    check(request, v)
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    return [(f.field, f.description) for f in info.value.violations]


def test_the_same_bad_ticket_gets_the_same_field_violations_as_before() -> None:
    answered = refused(BAD_TICKET, checks.create_ticket)
    assert sorted(answered) == sorted(BAD_TICKET_VIOLATIONS)
    assert len(answered) == len(BAD_TICKET_VIOLATIONS)


@pytest.mark.parametrize(
    ("value", "description"),
    [
        ("", "must not be empty"),
        (" \u3000\n", "must not be empty"),
        ("长" * 201, "must be at most 200 characters"),
        ("长" * 201 + "\n", "must be at most 200 characters"),
        ("bad\x00subject", "must not contain control characters or line breaks"),
        ("tab\tinside", "must not contain control characters or line breaks"),
    ],
)
def test_a_field_breaking_several_rules_is_named_once_for_the_first(
    value: str, description: str
) -> None:
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject = value
    subject = [d for f, d in refused(request) if f == "ticket.subject"]
    assert subject == [description]


def test_text_around_a_field_is_trimmed_before_its_rules_apply() -> None:
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject = "\t一行\n"
    request.ticket.description = "  第一行\n第二行\r\n"
    assert not [f for f, _ in refused(request) if f in ("ticket.subject", "ticket.description")]


def test_a_text_at_its_limit_with_spaces_around_it_is_measured_trimmed() -> None:
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject = "长" * 200 + " "
    request.ticket.description = "描" * 10_000 + "\n\n"
    assert not [f for f, _ in refused(request) if f in ("ticket.subject", "ticket.description")]


def test_every_annotated_field_has_a_request_breaking_it() -> None:
    covered = {field_of(request, path) for request, path in CASES}
    assert annotated_fields() - covered == set()


@pytest.mark.parametrize(
    ("request_", "path"), CASES, ids=[f"{type(r).__name__}.{p}" for r, p in CASES]
)
def test_each_annotated_rule_names_its_field(request_: Message, path: str) -> None:
    assert path in [f for f, _ in refused(request_)]


def test_the_rules_compile_for_every_public_request() -> None:
    from casemesh.v1 import appeals_pb2, casequeue_pb2, helpcenter_pb2, reports_pb2, tickets_pb2

    fieldrules.warm(
        service
        for module in (tickets_pb2, appeals_pb2, reports_pb2, casequeue_pb2, helpcenter_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    )


def test_a_violation_inside_a_repeated_field_names_the_item() -> None:
    # No annotated rule sits inside a list today; one that does names the item.
    inside = protovalidate.Violation(
        field=protovalidate.FieldPathPb(
            elements=[
                protovalidate.FieldPathElementPb(field_name="notice"),
                protovalidate.FieldPathElementPb(
                    field_name="infringing_items",
                    subscript=Oneof[Literal["index"], int]("index", 2),
                ),
            ]
        ),
        rule_id="not_blank",
    )
    assert fieldrules._path(inside) == "notice.infringing_items[2]"

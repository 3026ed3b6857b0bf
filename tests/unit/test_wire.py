"""Request bytes that are no message of the call's type are refused naming
the field where they go wrong."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import DecodeError, Message

from casemesh.platform.wire import first_fault, unknown_enum_names
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import tickets_pb2 as pb

PLACE = "\x01PLACE\x01"


def with_bad_utf8(message: Message) -> bytes:
    """`message` serialized, its PLACE string turned into bytes that are not UTF-8."""
    return message.SerializeToString().replace(PLACE.encode(), b"\xff\xfe\xed\xa0\x80\xc3\xff")


def ticket(**fields: Any) -> pb.Ticket:
    return pb.Ticket(category="account.login", subject="登录不了", **fields)


@pytest.mark.parametrize(
    ("message_type", "data", "field", "problem"),
    [
        (pb.GetTicketRequest, with_bad_utf8(pb.GetTicketRequest(name=PLACE)), "name", "UTF-8"),
        (
            pb.CreateTicketRequest,
            with_bad_utf8(pb.CreateTicketRequest(request_id="r1", ticket=ticket(locale=PLACE))),
            "ticket.locale",
            "UTF-8",
        ),
        (
            pb.CreateTicketRequest,
            with_bad_utf8(
                pb.CreateTicketRequest(
                    ticket=ticket(
                        evidence=[epb.EvidenceRef(name="evidence/1"), epb.EvidenceRef(name=PLACE)]
                    )
                )
            ),
            "ticket.evidence[1].name",
            "UTF-8",
        ),
        (
            pb.CreateTicketRequest,
            pb.CreateTicketRequest(ticket=ticket()).SerializeToString()[:-3],
            "ticket",
            "past the end",
        ),
        (pb.GetTicketRequest, b"\x0a\x7fshort", "name", "past the end"),
        (pb.ListTicketsRequest, b"\x08\xff\xff", "page_size", "cut short"),
        (pb.ListTicketsRequest, b"\x1a\x02\x01\xff", "statuses[0]", "cut short"),
        (pb.GetTicketRequest, b"\xff\xff\xff", "", "cut short"),
        (pb.GetTicketRequest, b"\x0f", "name", "wire type 7"),
        (pb.GetTicketRequest, b"\x00\x00", "", "numbered 0"),
    ],
)
def test_the_fault_is_named_by_field(
    message_type: type[Message], data: bytes, field: str, problem: str
) -> None:
    with pytest.raises(DecodeError):
        message_type.FromString(data)
    fault = first_fault(message_type.DESCRIPTOR, data)
    assert fault.field == field
    assert problem in fault.description


def test_an_enum_value_by_a_name_the_enum_lacks_is_named_by_its_path() -> None:
    request = {
        "ticket": {
            "contact": {"channels": ["CHANNEL_EMAIL", "CHANNEL_EMAL", "2"]},
            "unknownField": "ignored",
        },
        "requestId": "r1",
    }
    [violation] = unknown_enum_names(pb.CreateTicketRequest.DESCRIPTOR, request)
    assert violation.field == "ticket.contact.channels[1]"
    assert violation.description.startswith("'CHANNEL_EMAL' is not one of CHANNEL_UNSPECIFIED,")
    fine = {"name": "tickets/x", "priority": "PRIORITY_URGENT", "etag": "1"}
    assert unknown_enum_names(pb.AssignTicketRequest.DESCRIPTOR, fine) == []
    assert unknown_enum_names(pb.AssignTicketRequest.DESCRIPTOR, {"priority": 4}) == []


@pytest.mark.parametrize(
    ("message_type", "request_", "field", "shown"),
    [
        (pb.AssignTicketRequest, {"priority": 3.9}, "priority", "3.9"),
        (pb.AssignTicketRequest, {"priority": -0.5}, "priority", "-0.5"),
        (pb.AssignTicketRequest, {"priority": float("inf")}, "priority", "Infinity"),
        (pb.AssignTicketRequest, {"priority": float("nan")}, "priority", "NaN"),
        (pb.AssignTicketRequest, {"priority": True}, "priority", "true"),
        (pb.ListTicketsRequest, {"statuses": [2, 2.7]}, "statuses[1]", "2.7"),
        (pb.ListTicketsRequest, {"statuses": [False]}, "statuses[0]", "false"),
        (
            pb.CreateTicketRequest,
            {"ticket": {"contact": {"channels": [-float("inf")]}}},
            "ticket.contact.channels[0]",
            "-Infinity",
        ),
    ],
)
def test_an_enum_value_by_a_number_that_is_not_a_whole_one_is_named_by_its_path(
    message_type: type[Message], request_: dict[str, Any], field: str, shown: str
) -> None:
    """The parser reads a number with int(): 3.9 would be the value numbered
    3, true the one numbered 1, -0.5 the unspecified one (a priority kept as
    it was), and an infinite one crashes it."""
    [violation] = unknown_enum_names(message_type.DESCRIPTOR, request_)
    assert violation.field == field
    assert violation.description.startswith(f"{shown} is not one of ")


@pytest.mark.parametrize(
    "number", [0, 4, 4.0, -0.0, "4", "-0", 2**31 - 1, -(2**31), float(-(2**31)), "-2147483648"]
)
def test_an_enum_value_by_a_whole_number_of_32_bits_is_left_to_the_parser(
    number: float | str,
) -> None:
    """A whole number is a value's number (one the enum lacks is the parser's
    to refuse or keep, as for any enum)."""
    assert unknown_enum_names(pb.AssignTicketRequest.DESCRIPTOR, {"priority": number}) == []


@pytest.mark.parametrize(
    ("message_type", "request_", "field", "shown"),
    [
        (pb.AssignTicketRequest, {"priority": 4294967300}, "priority", "4294967300"),
        (pb.AssignTicketRequest, {"priority": 4.2949673e9}, "priority", "4294967300.0"),
        (pb.AssignTicketRequest, {"priority": "4294967300"}, "priority", "'4294967300'"),
        (pb.AssignTicketRequest, {"priority": 2**31}, "priority", "2147483648"),
        (pb.AssignTicketRequest, {"priority": -(2**31) - 1}, "priority", "-2147483649"),
        (pb.AssignTicketRequest, {"priority": 1e30}, "priority", "1e+30"),
        (pb.AssignTicketRequest, {"priority": "9" * 5000}, "priority", repr("9" * 60)),
        (pb.ListTicketsRequest, {"statuses": [2, 4294967298]}, "statuses[1]", "4294967298"),
    ],
)
def test_an_enum_value_by_a_number_past_32_bits_is_named_by_its_path(
    message_type: type[Message], request_: dict[str, Any], field: str, shown: str
) -> None:
    """An enum's numbers are 32-bit ones, and the parser keeps only the low
    32 bits of a larger one: 4294967300 would be the value numbered 4
    (PRIORITY_URGENT), 4294967298 in a status filter OPEN."""
    [violation] = unknown_enum_names(message_type.DESCRIPTOR, request_)
    assert violation.field == field
    assert violation.description.startswith(f"{shown} is not one of ")


@pytest.mark.parametrize("number", [" 1", "1 ", "+1", "1_0", "\u0665", "\uff11", "1\n", ""])
def test_an_enum_value_by_a_number_string_other_than_ascii_digits_is_named(
    number: str,
) -> None:
    """The parser reads a string with int(), which takes spaces around it, a
    plus, underscores between digits and the digits of any script: " 1" and
    an Arabic-Indic five would be the values numbered 1 and 5. Proto JSON
    writes a number as an optional minus and ASCII digits."""
    [violation] = unknown_enum_names(pb.AssignTicketRequest.DESCRIPTOR, {"priority": number})
    assert violation.field == "priority"
    assert violation.description.startswith(f"{number!r} is not one of ")

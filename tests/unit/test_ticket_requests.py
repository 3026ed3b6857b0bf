"""What a ticket call may name, checked alike in the gateway and in the
service (a caller reaching the service directly gets the same answer):
each refusal names its field and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh.platform.grpcutil import MOST_FILTER_VALUES, resource_id
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as rules
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_evidence.application import evidence_id
from casemesh_gateway import checks, fieldrules
from casemesh_gateway.api import Backend
from casemesh_tickets.api import _statuses

CANONICAL = "0f8e6c1e-2b5d-4c3a-9e7f-1a2b3c4d5e6f"
OTHER_SPELLINGS = [
    "0f8e6c1e2b5d4c3a9e7f1a2b3c4d5e6f----",  # the hyphens moved
    "0F8E6C1E-2B5D-4C3A-9E7F-1A2B3C4D5E6F",  # upper case
    "{0f8e6c1e-2b5d-4c3a-9e7f-1a2b3c4d5e6}",
]


def fields(refused: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in refused.value.violations]


@pytest.mark.parametrize("ident", OTHER_SPELLINGS)
def test_a_case_has_one_name_and_no_other_spelling_of_it(ident: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        resource_id(f"tickets/{ident}", "tickets")
    assert fields(refused) == ["name"]
    v = Violations()
    assert rules.ticket_id_from_name(v, f"tickets/{ident}") == ""
    fieldrules.check(pb.GetTicketRequest(name=f"tickets/{ident}"), v)
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert fields(refused) == ["name", "name"]


def test_the_name_the_api_gives_is_taken() -> None:
    assert resource_id(f"tickets/{CANONICAL}", "tickets") == CANONICAL
    v = Violations()
    assert rules.ticket_id_from_name(v, f"tickets/{CANONICAL}") == CANONICAL
    fieldrules.check(pb.GetTicketRequest(name=f"tickets/{CANONICAL}"), v)
    v.raise_if_any()


def test_the_unspecified_status_is_refused_as_a_filter_by_the_service_too() -> None:
    assert _statuses([pb.TICKET_STATUS_OPEN]) == ["OPEN"]
    with pytest.raises(InvalidArgument) as refused:
        _statuses([pb.TICKET_STATUS_OPEN, pb.TICKET_STATUS_UNSPECIFIED])
    assert fields(refused) == ["statuses"]


def test_a_status_filter_of_a_million_values_is_refused_before_it_is_read() -> None:
    """A 1 MB request carries a million statuses: read one by one they held
    the tickets service's one event loop for a second a call, its liveness
    probe waiting behind them. The gateway refuses such a list as the
    service does, by its place, before forwarding it."""
    flood = pb.ListTicketsRequest(statuses=[pb.TICKET_STATUS_OPEN] * 1_000_000)
    too_many = [("statuses", f"at most {MOST_FILTER_VALUES} items")]
    with pytest.raises(InvalidArgument) as by_service:
        _statuses(flood.statuses)
    v = Violations()
    checks.statuses(flood, v)
    with pytest.raises(InvalidArgument) as by_gateway:
        v.raise_if_any()
    for refused in (by_service, by_gateway):
        assert [(f.field, f.description) for f in refused.value.violations] == too_many


def test_a_status_sent_twice_filters_once() -> None:
    most = [pb.TICKET_STATUS_OPEN, pb.TICKET_STATUS_NEW] * (MOST_FILTER_VALUES // 2)
    assert _statuses(most) == ["OPEN", "NEW"]
    v = Violations()
    checks.statuses(pb.ListTicketsRequest(statuses=most), v)
    v.raise_if_any()


def test_a_piece_of_evidence_listed_twice_is_refused_at_its_second_place() -> None:
    ref = {"name": f"evidence/{CANONICAL}", "sha256": "ab" * 32}
    other = {"name": "evidence/" + CANONICAL.replace("0f", "1f"), "sha256": "cd" * 32}
    v = Violations()
    rules.check_evidence(v, [ref, other, dict(ref)], "ticket.evidence")
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [(f.field, f.description) for f in refused.value.violations] == [
        ("ticket.evidence[2]", rules.REPEATED_EVIDENCE)
    ]
    # The gateway refuses it before asking the evidence service about any.
    refs = [epb.EvidenceRef(name=r["name"]) for r in (ref, other, ref)]
    nobody = cast(Any, None)  # no backend is reached
    with pytest.raises(InvalidArgument) as refused:
        asyncio.run(
            Backend.check_evidence(
                nobody, refs, "evidence", Identity("alice", frozenset({"user"})), nobody
            )
        )
    assert fields(refused) == ["evidence[2]"]


@pytest.mark.parametrize("ident", OTHER_SPELLINGS)
def test_a_piece_of_evidence_has_one_name_too(ident: str) -> None:
    """Else the same file, named twice in two spellings, passed as two."""
    assert evidence_id(f"evidence/{CANONICAL}") == CANONICAL
    with pytest.raises(InvalidArgument) as refused:
        evidence_id(f"evidence/{ident}")
    assert fields(refused) == ["name"]


def test_a_help_session_ticket_takes_the_sessions_words_where_the_caller_said_nothing() -> None:
    """ResolveHelp opens a ticket with the caller's subject and description
    or, where they are blank, the session's: zero-width characters alone
    are blank (the ticket would be refused for an empty subject)."""
    assert rules.said("  \u200b\ufeff ") == ""
    assert rules.said(" 上传失败 ") == "上传失败"


@pytest.mark.parametrize(
    "blank",
    [
        "\u3164",  # the Hangul filler, which passes for a blank name
        "\u115f\u1160",  # the Hangul choseong and jungseong fillers
        "\uffa0",  # the half-width Hangul filler
        "\u2800",  # the blank braille pattern
        "\ufe0f\u034f",  # a variation selector, the combining grapheme joiner
        "\U000e0041\u3000\u200b",  # a tag, an ideographic space, a zero-width space
    ],
)
def test_invisible_letters_and_marks_alone_say_nothing_to_the_service(blank: str) -> None:
    """A subject, a description or an assignee of characters no one sees
    is blank, as one of spaces is: the ticket would show nothing there."""
    v = Violations()
    rules.check_ticket_words(v, category="account.login", subject=blank, description=blank)
    rules.assignee(v, blank)
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [(f.field, f.description) for f in refused.value.violations] == [
        ("subject", "must not be empty"),
        ("description", "must not be empty"),
        ("assignee", "must not be blank (leave it empty for yours)"),
    ]
    assert rules.said(blank) == ""
    # Beside a character one sees, they are part of the text.
    assert rules.said(f"上传{blank}失败") == f"上传{blank}失败"


def test_an_emoji_with_its_variation_selector_is_text() -> None:
    assert rules.said("\U0001f44d\ufe0f") == "\U0001f44d\ufe0f"
    assert rules.said("\u3163") == "\u3163"  # a Hangul vowel, beside the filler

"""The life of a ticket, told through the aggregate alone (no database)."""

from __future__ import annotations

import pytest

from casemesh.platform.errors import FailedPrecondition, PermissionDenied
from casemesh_tickets.domain import Status, Ticket


def status(t: Ticket) -> Status:
    return Status(t.status)


def new_ticket() -> Ticket:
    return Ticket(
        requester="alice",
        request_id="r1",
        request_fingerprint="f",
        category="account.login",
        subject="无法登录",
        description="收不到验证码",
        locale="zh-CN",
        contact={"email": "a@example.com", "phone": "", "channels": ["EMAIL"]},
        priority=3,
        evidence=[{"name": "evidence/e1", "sha256": "ab" * 32}],
    )


def test_a_ticket_goes_from_new_to_solved_to_closed_and_is_rated() -> None:
    t = new_ticket()
    assert status(t) is Status.NEW
    t.assign(actor="li", assignee="li")
    assert (status(t), t.assignee) == (Status.OPEN, "li")
    t.request_info(actor="li", message="旧手机号？")
    assert status(t) is Status.PENDING
    t.add_comment(actor="alice", body="139…", by_requester=True, internal=False)
    assert status(t) is Status.OPEN  # the requester's answer puts it back in the agent's court
    t.put_on_hold(actor="li", reason="等待运营商")
    assert status(t) is Status.ON_HOLD
    t.solve(actor="li", resolution="已更换")
    assert (status(t), t.resolution) == (Status.SOLVED, "已更换")
    t.close(actor="alice")
    assert status(t) is Status.CLOSED
    t.rate(actor="alice", score=5, comment="谢谢")
    assert t.rating == {"score": 5, "comment": "谢谢"}
    assert [type(e).__name__ for e in t.collect_events()] == [
        "Created",
        "Assigned",
        "InfoRequested",
        "CommentAdded",
        "PutOnHold",
        "Solved",
        "Closed",
        "Rated",
    ]


def test_the_same_request_always_names_the_same_ticket() -> None:
    assert Ticket.create_id("alice", "r1") == new_ticket().id
    assert Ticket.create_id("bob", "r1") != new_ticket().id


def test_a_requester_reply_reopens_a_solved_ticket_but_an_agent_note_does_not() -> None:
    t = new_ticket()
    t.solve(actor="li", resolution="done")
    t.add_comment(actor="li", body="FYI", by_requester=False, internal=True)
    assert status(t) is Status.SOLVED
    t.add_comment(actor="alice", body="还是不行", by_requester=True, internal=False)
    assert status(t) is Status.OPEN


def test_an_agent_public_reply_acknowledges_a_new_ticket() -> None:
    t = new_ticket()
    t.add_comment(actor="li", body="我们在看", by_requester=False, internal=False)
    assert status(t) is Status.OPEN


@pytest.mark.parametrize(
    ("setup", "action", "message"),
    [
        (lambda t: None, lambda t: t.rate(actor="alice", score=4, comment=""), "solved"),
        (lambda t: None, lambda t: t.close(actor="alice"), "only a solved ticket"),
        (lambda t: None, lambda t: t.reopen(actor="alice", reason=""), "only a solved ticket"),
        (
            lambda t: t.solve(actor="li", resolution="x"),
            lambda t: t.solve(actor="li", resolution="y"),
            "already solved",
        ),
        (
            lambda t: t.solve(actor="li", resolution="x"),
            lambda t: t.cancel(actor="alice", reason=""),
            "only an unsolved ticket",
        ),
        (
            lambda t: t.solve(actor="li", resolution="x"),
            lambda t: t.request_info(actor="li", message="?"),
            "solved",
        ),
        (
            lambda t: (t.solve(actor="li", resolution="x"), t.close(actor="alice")),
            lambda t: t.add_comment(actor="alice", body="hi", by_requester=True, internal=False),
            "closed",
        ),
        (
            lambda t: t.cancel(actor="alice", reason=""),
            lambda t: t.assign(actor="li", assignee="li"),
            "cancelled",
        ),
        (
            lambda t: (
                t.solve(actor="li", resolution="x"),
                t.rate(actor="alice", score=3, comment=""),
            ),
            lambda t: t.rate(actor="alice", score=5, comment=""),
            "already been rated",
        ),
    ],
)
def test_illegal_changes_are_refused_with_a_reason_and_record_nothing(
    setup: object, action: object, message: str
) -> None:
    t = new_ticket()
    setup(t)  # type: ignore[operator]
    version = t.version
    with pytest.raises(FailedPrecondition, match=message):
        action(t)  # type: ignore[operator]
    assert t.version == version


def test_a_requester_cannot_write_internal_notes() -> None:
    with pytest.raises(PermissionDenied):
        new_ticket().add_comment(actor="alice", body="x", by_requester=True, internal=True)

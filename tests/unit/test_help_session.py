"""A help session told as a story: given what the user did, when they follow
a flow or give up, then where the flow stands and what ticket is drafted.
Pure rules (casemesh_helpcenter.domain): no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest

from casemesh.platform.errors import FailedPrecondition, InvalidArgument
from casemesh.rules import tickets as rules
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh_helpcenter import phone
from casemesh_helpcenter.api import change_message
from casemesh_helpcenter.domain import (
    NOT_SOLVED,
    SOLVED,
    HelpSession,
    category_tree,
    flow_id,
    flows,
)


def session(**changes: Any) -> HelpSession:
    fields: dict[str, Any] = {
        "id": "0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10",
        "user_id": "dora",
        "locale": "en",
        "flow": "",
        "node": "",
        "path": [],
        "searches": [],
        "articles": [],
        "outcome": "",
        "ticket_category": "",
    }
    return HelpSession(**{**fields, **changes})


def read(slug: str, category: str) -> dict[str, str]:
    return {"slug": slug, "title": slug.replace("-", " "), "category": category}


def test_a_flow_starts_at_its_first_question_in_the_users_language() -> None:
    s = session()
    s.start(flow_id("flows/login"))
    step = s.step("en")
    assert (step.session, step.flow.id, step.finished) == (s.name, "login", False)
    assert step.flow.title == "Trouble logging in" and step.flow.category == "account.login"
    assert "I get no code" in step.answers
    assert s.step("zh-CN").question != step.question


def test_an_answer_leads_on_and_the_last_one_to_an_article() -> None:
    s = session()
    s.start("login")
    first = s.choose(0)
    assert first.next and not first.article
    assert first.taken == {"question": "What happens?", "answer": "I get no code"}
    s.node = first.next
    last = s.choose(0)
    assert (last.next, last.article) == ("", "login-no-sms-code")
    s.node = last.next
    assert s.step("en").finished and s.step("en").answers == ()


def test_a_user_whose_linked_number_is_gone_reads_how_to_change_it_without_it() -> None:
    """A self-service phone change sends its first code to the old number and
    needs the user signed in: someone who cannot log in because that number
    is gone is sent to the article on changing it without the old number
    (and, if that does not solve it, to a ticket), not to that action."""
    s = session()
    s.start("login")
    s.node = s.choose(0).next  # "I get no code"
    assert s.step("en").question == "Is the linked number still yours?"
    gone = s.choose(s.step("en").answers.index("No, it is gone"))
    assert (gone.next, gone.article, gone.action) == ("", "phone-change-old-lost", "")


# Self-service actions that need the user signed in, so a login flow (the
# user cannot sign in) must not end at one.
SIGNED_IN_ACTIONS = {"phone_change", "restriction_reasons"}


def shipped_categories() -> dict[str, str]:
    """The category of each article in the starter knowledge base, by slug."""
    return {
        a["slug"]: a["category"]
        for a in json.loads(
            resources.files("casemesh_helpcenter").joinpath("knowledge_base.json").read_text()
        )["articles"]
    }


def test_every_answer_leads_to_a_question_a_shipped_article_or_an_action() -> None:
    shipped = shipped_categories()
    for fid, found in flows().items():
        assert found["category"] in rules.BY_ID, fid
        for nid, node in found["nodes"].items():
            for answer in node["answers"]:
                where = (fid, nid, answer["label"]["en"])
                assert answer.get("next", "") in {"", *found["nodes"]}, where
                assert answer.get("article", "") in {"", *shipped}, where
                assert answer.get("category", "") in {"", *rules.BY_ID}, where
                assert any(answer.get(k) for k in ("next", "article", "action")), where
                if fid == "login":
                    assert answer.get("action", "") not in SIGNED_IN_ACTIONS, where


def test_no_answer_without_a_question_and_none_out_of_range() -> None:
    with pytest.raises(FailedPrecondition, match="StartFlow first"):
        session().choose(0)
    s = session()
    s.start("login")
    with pytest.raises(InvalidArgument) as info:
        s.choose(9)
    assert info.value.violations[0].field == "answer"
    with pytest.raises(InvalidArgument) as info:
        flow_id("flows/nonsense")
    assert info.value.violations[0].field == "flow"


def test_solved_needs_something_tried_and_the_first_outcome_stands() -> None:
    with pytest.raises(FailedPrecondition, match="nothing was searched"):
        session().check_can_be_solved()
    session(searches=["login"]).check_can_be_solved()
    with pytest.raises(FailedPrecondition, match="already marked as not solved"):
        session(outcome=NOT_SOLVED).check_outcome(SOLVED)
    with pytest.raises(FailedPrecondition, match="already marked as solved"):
        session(outcome=SOLVED).check_outcome(NOT_SOLVED)


def test_the_ticket_goes_to_the_flows_category_else_where_the_reading_points() -> None:
    s = session(
        articles=[
            read("ban-why", "account.ban"),
            read("upload-size", "content.upload_failed"),
            read("upload-network", "content.upload_failed"),
        ]
    )
    draft = s.draft_ticket("en")
    assert draft.category == "content.upload_failed"
    assert draft.subject.startswith("Self-service did not solve it: ")
    assert "Read: upload size (articles/upload-size)" in draft.description
    s.start("login")
    assert s.draft_ticket("zh-CN").category == "account.login"
    assert s.draft_ticket("zh-CN").subject.startswith("自助服务未能解决：")
    assert session(searches=["nothing"]).draft_ticket("en").category == "other.general"


def follow(flow: str, *answers: str) -> HelpSession:
    """A session that followed `flow` by these answers (English labels), as
    the application records them."""
    s = session()
    s.start(flow)
    for label in answers:
        choice = s.choose(s.step("en").answers.index(label))
        s.node = choice.next
        s.path.append(choice.taken)
    assert s.step("en").finished
    return s


def test_a_ticket_opens_where_the_ending_belongs_whichever_flow_led_there() -> None:
    """A ban is the ban team's matter and a lost number goes to identity review
    for a phone change, whether the user came by the login flow or another:
    one problem, one queue."""
    banned = follow("login", "My account is locked or banned", "Banned")
    assert banned.draft_ticket("en").category == "account.ban"
    assert "Account bans and appeals" in banned.draft_ticket("en").subject
    assert follow("ban", "No").draft_ticket("en").category == "account.ban"
    gone = follow("login", "I get no code", "No, it is gone")
    assert gone.draft_ticket("zh-CN").category == "account.phone_change"
    # An ending that names no category of its own stays with the flow's.
    assert follow("login", "I get no code", "Yes").draft_ticket("en").category == "account.login"
    assert follow("login", "My account is locked or banned", "Locked").category_for_ticket() == (
        "account.login"
    )
    # Started again, the flow forgets the category the earlier route named.
    banned.start("login")
    assert banned.draft_ticket("en").category == "account.login"


def endings(fid: str) -> list[tuple[list[str], dict[str, Any]]]:
    """Every route through a flow: its answers' labels and the last answer."""
    found = flows()[fid]
    routes: list[tuple[list[str], dict[str, Any]]] = []

    def walk(nid: str, labels: list[str]) -> None:
        for answer in found["nodes"][nid]["answers"]:
            taken = [*labels, answer["label"]["en"]]
            if answer.get("next"):
                walk(answer["next"], taken)
            else:
                routes.append((taken, answer))

    walk(found["start"], [])
    return routes


def test_a_ticket_after_any_flows_article_opens_in_that_articles_category() -> None:
    """Whatever flow led to an article, giving up after it opens the ticket in
    the article's category: an ending of another category's matter names it."""
    shipped = shipped_categories()
    for fid in flows():
        for labels, last in endings(fid):
            if last.get("article"):
                category = follow(fid, *labels).category_for_ticket()
                assert category == shipped[last["article"]], (fid, labels)


def test_the_category_tree_groups_categories_and_counts_their_articles() -> None:
    tree = category_tree({"account.login": 2, "account.ban": 1}, "en")
    account = next(g for g in tree if g.id == "account")
    assert (account.label, account.article_count) == ("Account problems", 3)
    assert {c.id for c in account.children} >= {"account.login", "account.ban"}
    assert all(c.id.startswith("account.") for c in account.children)


def test_a_phone_change_left_past_its_hour_is_shown_expired_with_nothing_to_wait_for() -> None:
    """Past its hour a change takes no code and sends none: it is not shown
    waiting for one, nor with resends left that would each be refused."""
    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    change = phone.Change(
        id="c1",
        user_id="alice",
        request_id="r1",
        old_phone="+8613800138000",
        new_phone="+8613900139000",
        locale="zh-CN",
        state="AWAITING_OLD_CODE",
        salt="s",
        code_hash="h",
        code_expires=start + timedelta(minutes=10),
        codes_sent=1,
        attempts=0,
        created_at=start,
        verified_at=None,
    )
    waiting = change_message(change, start + timedelta(minutes=5))
    assert waiting.state == hpb.PHONE_CHANGE_STATE_AWAITING_OLD_CODE
    assert waiting.resends_left > 0 and waiting.HasField("code_expire_time")
    late = change_message(change, start + phone.CHANGE_TTL)
    assert late.state == hpb.PHONE_CHANGE_STATE_EXPIRED
    assert late.resends_left == 0 and not late.HasField("code_expire_time")

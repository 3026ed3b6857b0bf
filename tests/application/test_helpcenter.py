"""The help centre's application, told as stories with no database: when
someone asks for what they may not have, or sends what cannot be right, then
what they are told, before anything is read or written. What the store
answers is told in tests/integration/test_helpcenter.py."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import pytest

from casemesh.platform.errors import InvalidArgument, PermissionDenied
from casemesh.platform.identity import Identity
from casemesh_helpcenter.application import ArticleText, HelpCenter, NewPhoneChange
from tests.application.story import AGENT, ALICE, FakeClock
from tests.support import memory_sealer

ADMIN = Identity("ada", frozenset({"admin"}))


class NoDatabase:
    """A pool that fails the test if a use case reaches for a connection."""

    def connection(self) -> Any:
        raise AssertionError("this use case should have answered without the database")


@pytest.fixture()
def app() -> HelpCenter:
    return HelpCenter(NoDatabase(), FakeClock(), memory_sealer())  # type: ignore[arg-type]


def article(**changes: str) -> ArticleText:
    fields = {
        "name": "articles/login-no-sms-code",
        "locale": "en",
        "category": "account.login",
        "title": "No SMS code",
        "body": "Wait a minute, then ask again.",
        "keywords": "sms code",
    }
    return ArticleText(**{**fields, **changes})


async def refused(call: Awaitable[object]) -> list[str]:
    """The fields a call is refused for (it must be refused as invalid)."""
    with pytest.raises(InvalidArgument) as info:
        await call
    return [v.field for v in info.value.violations]


async def test_only_admins_edit_articles(app: HelpCenter) -> None:
    for who in (ALICE, AGENT):
        with pytest.raises(PermissionDenied, match="needs the admin role"):
            await app.create_article(who, article())
        with pytest.raises(PermissionDenied):
            await app.update_article(who, article(), 1)
        with pytest.raises(PermissionDenied):
            await app.publish_article(who, "articles/login-no-sms-code", "en", 0, False)
        with pytest.raises(PermissionDenied):
            await app.article_versions(who, "articles/login-no-sms-code", "en")


async def test_an_admins_article_is_refused_naming_what_is_wrong(app: HelpCenter) -> None:
    assert await refused(app.create_article(ADMIN, article(name="Articles/No SMS"))) == [
        "article.name"
    ]
    assert await refused(app.create_article(ADMIN, article(locale="fr"))) == ["article.locale"]
    assert await refused(
        app.create_article(ADMIN, article(category="account", title="a\nb", body=""))
    ) == ["article.category", "article.title", "article.body"]
    assert await refused(app.update_article(ADMIN, article(), 0)) == ["base_version"]
    assert await refused(
        app.publish_article(ADMIN, "articles/login-no-sms-code", "en", -1, False)
    ) == ["version"]
    # Withdrawing withdraws the article: a version named with it is not taken
    # for one that stays up.
    assert await refused(
        app.publish_article(ADMIN, "articles/login-no-sms-code", "en", 2, True)
    ) == ["version"]


async def test_earlier_versions_are_for_admins(app: HelpCenter) -> None:
    with pytest.raises(PermissionDenied, match="earlier versions are for admins"):
        await app.article(ALICE, "articles/login-no-sms-code", "en", 2, "")
    assert await refused(app.article(ALICE, "articles/login-no-sms-code", "en", -1, "")) == [
        "version"
    ]


async def test_a_search_is_refused_before_it_starts_a_session(app: HelpCenter) -> None:
    assert await refused(app.search(ALICE, "   ", "", "", 0, "")) == ["query"]
    assert await refused(app.search(ALICE, "login", "", "", -1, "")) == ["page_size"]
    assert await refused(app.search(ALICE, "login", "", "Account!", 10, "")) == ["category"]
    assert await refused(app.suggest("lo\ngin", "")) == ["prefix"]


async def test_a_search_in_an_unknown_category_is_refused_not_counted_as_finding_nothing(
    app: HelpCenter,
) -> None:
    """Only the categories and groups ListHelpCategories names filter a
    search; anything else (a typo, a pattern) is refused before the search
    is logged or a session started."""
    for category in ("acount", "account.nosuch", "a_count", "a_s", "ads.%"):
        assert await refused(app.search(ALICE, "login", "", category, 10, "")) == ["category"]


async def test_the_flows_are_content_and_listed_without_the_database(app: HelpCenter) -> None:
    listed = await app.list_flows("en")
    assert {f.id for f in listed} >= {"login", "upload", "ban", "copyright", "reporting"}
    assert next(f for f in listed if f.id == "login").title == "Trouble logging in"
    assert await refused(app.list_flows("fr")) == ["locale"]
    assert await refused(app.start_flow(ALICE, "flows/nonsense", "", "en")) == ["flow"]


async def test_help_figures_are_for_agents(app: HelpCenter) -> None:
    with pytest.raises(PermissionDenied, match="for agents and admins"):
        await app.figures(ALICE, None, None)


async def test_help_figures_of_a_period_ending_before_it_starts_are_refused(
    app: HelpCenter,
) -> None:
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    assert await refused(app.figures(AGENT, start, end)) == ["end_time"]
    assert await refused(app.figures(AGENT, start, start)) == ["end_time"]


async def test_a_phone_change_names_every_bad_field_at_once(app: HelpCenter) -> None:
    assert await refused(
        app.start_phone_change(ALICE, NewPhoneChange("", "1380013800", "+861", "fr"))
    ) == ["old_phone", "new_phone", "request_id", "locale"]
    # The same number, written two ways.
    same = NewPhoneChange("r1", "13800138000", " +86 138-0013-8000 ", "")
    assert await refused(app.start_phone_change(ALICE, same)) == ["new_phone"]


async def test_a_code_is_six_digits_for_a_named_change(app: HelpCenter) -> None:
    name = "phone-changes/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10"
    assert await refused(app.confirm_phone_change(ALICE, name, "12345")) == ["code"]
    assert await refused(app.confirm_phone_change(ALICE, "phone-changes/42", "123456")) == ["name"]
    assert await refused(
        app.phone_change(ALICE, "tickets/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10")
    ) == ["name"]


async def test_a_retry_key_is_checked_before_anything_is_read(app: HelpCenter) -> None:
    name = "phone-changes/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10"
    assert await refused(app.resend_phone_change_code(ALICE, name, "a b")) == ["request_id"]
    assert await refused(app.create_article(ADMIN, article(), "a b")) == ["request_id"]
    assert await refused(app.update_article(ADMIN, article(), 1, "x" * 65)) == ["request_id"]
    assert await refused(
        app.answer_flow(ALICE, "help-sessions/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10", 0, "a b")
    ) == ["request_id"]


@pytest.mark.parametrize(
    "question_id",
    ["x" * 1000, "login/what", "login/what/x", "login/what/-1", "nope/what/0", "login/side/0"],
)
async def test_a_question_id_no_step_gave_is_refused_naming_it(
    app: HelpCenter, question_id: str
) -> None:
    """Not told to start the flow again (QUESTION_ANSWERED): the id was never
    one a flow step gave, and starting again would not mend it."""
    session = "help-sessions/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10"
    assert await refused(app.answer_flow(ALICE, session, 0, "", question_id)) == ["question_id"]

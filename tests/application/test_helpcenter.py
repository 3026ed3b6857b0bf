"""The help centre's application, told as stories with no database: when
someone asks for what they may not have, or sends what cannot be right, then
what they are told, before anything is read or written. What the store
answers is told in tests/integration/test_helpcenter.py."""

from __future__ import annotations

from typing import Any

import pytest

from casemesh.platform.errors import InvalidArgument, PermissionDenied
from casemesh.platform.identity import Identity
from casemesh_helpcenter.application import ArticleText, HelpCenter, NewPhoneChange
from tests.application.story import AGENT, ALICE, FakeClock

ADMIN = Identity("ada", frozenset({"admin"}))


class NoDatabase:
    """A pool that fails the test if a use case reaches for a connection."""

    def connection(self) -> Any:
        raise AssertionError("this use case should have answered without the database")


@pytest.fixture()
def app() -> HelpCenter:
    return HelpCenter(NoDatabase(), FakeClock())  # type: ignore[arg-type]


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


def fields_of(info: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
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
    with pytest.raises(InvalidArgument) as info:
        await app.create_article(ADMIN, article(name="Articles/No SMS"))
    assert fields_of(info) == ["article.name"]
    with pytest.raises(InvalidArgument) as info:
        await app.create_article(ADMIN, article(locale="fr"))
    assert fields_of(info) == ["article.locale"]
    with pytest.raises(InvalidArgument) as info:
        await app.create_article(ADMIN, article(category="account", title="a\nb", body=""))
    assert fields_of(info) == ["article.category", "article.title", "article.body"]
    with pytest.raises(InvalidArgument) as info:
        await app.update_article(ADMIN, article(), 0)
    assert fields_of(info) == ["base_version"]
    with pytest.raises(InvalidArgument) as info:
        await app.publish_article(ADMIN, "articles/login-no-sms-code", "en", -1, False)
    assert fields_of(info) == ["version"]


async def test_earlier_versions_are_for_admins(app: HelpCenter) -> None:
    with pytest.raises(PermissionDenied, match="earlier versions are for admins"):
        await app.article(ALICE, "articles/login-no-sms-code", "en", 2, "")
    with pytest.raises(InvalidArgument) as info:
        await app.article(ALICE, "articles/login-no-sms-code", "en", -1, "")
    assert fields_of(info) == ["version"]


async def test_a_search_is_refused_before_it_starts_a_session(app: HelpCenter) -> None:
    with pytest.raises(InvalidArgument) as info:
        await app.search(ALICE, "   ", "", "", 0, "")
    assert fields_of(info) == ["query"]
    with pytest.raises(InvalidArgument) as info:
        await app.search(ALICE, "login", "", "", -1, "")
    assert fields_of(info) == ["page_size"]
    with pytest.raises(InvalidArgument) as info:
        await app.search(ALICE, "login", "", "Account!", 10, "")
    assert fields_of(info) == ["category"]
    with pytest.raises(InvalidArgument) as info:
        await app.suggest("lo\ngin", "")
    assert fields_of(info) == ["prefix"]


async def test_the_flows_are_content_and_listed_without_the_database(app: HelpCenter) -> None:
    listed = await app.list_flows("en")
    assert {f.id for f in listed} >= {"login", "upload", "ban", "copyright", "reporting"}
    assert next(f for f in listed if f.id == "login").title == "Trouble logging in"
    with pytest.raises(InvalidArgument) as info:
        await app.list_flows("fr")
    assert fields_of(info) == ["locale"]
    with pytest.raises(InvalidArgument) as info:
        await app.start_flow(ALICE, "flows/nonsense", "", "en")
    assert fields_of(info) == ["flow"]


async def test_help_figures_are_for_agents(app: HelpCenter) -> None:
    with pytest.raises(PermissionDenied, match="for agents and admins"):
        await app.figures(ALICE, None, None)


async def test_a_phone_change_names_every_bad_field_at_once(app: HelpCenter) -> None:
    with pytest.raises(InvalidArgument) as info:
        await app.start_phone_change(ALICE, NewPhoneChange("", "1380013800", "+861", "fr"))
    assert fields_of(info) == ["old_phone", "new_phone", "request_id", "locale"]
    # The same number, written two ways.
    same = NewPhoneChange("r1", "13800138000", " +86 138-0013-8000 ", "")
    with pytest.raises(InvalidArgument) as info:
        await app.start_phone_change(ALICE, same)
    assert fields_of(info) == ["new_phone"]


async def test_a_code_is_six_digits_for_a_named_change(app: HelpCenter) -> None:
    name = "phone-changes/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10"
    with pytest.raises(InvalidArgument) as info:
        await app.confirm_phone_change(ALICE, name, "12345")
    assert fields_of(info) == ["code"]
    with pytest.raises(InvalidArgument) as info:
        await app.confirm_phone_change(ALICE, "phone-changes/42", "123456")
    assert fields_of(info) == ["name"]
    with pytest.raises(InvalidArgument) as info:
        await app.phone_change(ALICE, "tickets/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10")
    assert fields_of(info) == ["name"]


async def test_a_retry_key_is_checked_before_anything_is_read(app: HelpCenter) -> None:
    name = "phone-changes/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10"
    with pytest.raises(InvalidArgument) as info:
        await app.resend_phone_change_code(ALICE, name, "a b")
    assert fields_of(info) == ["request_id"]
    with pytest.raises(InvalidArgument) as info:
        await app.create_article(ADMIN, article(), "a b")
    assert fields_of(info) == ["request_id"]
    with pytest.raises(InvalidArgument) as info:
        await app.update_article(ADMIN, article(), 1, "x" * 65)
    assert fields_of(info) == ["request_id"]
    with pytest.raises(InvalidArgument) as info:
        await app.answer_flow(ALICE, "help-sessions/0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10", 0, "a b")
    assert fields_of(info) == ["request_id"]

"""The ticket a help session drafts: what the user tried, always within the
ticket's description limit."""

from __future__ import annotations

from casemesh_helpcenter.domain import LIMIT, HelpSession, what_was_tried, within_limit


def session(searches: list[str], articles: int, flow: str = "") -> HelpSession:
    return HelpSession(
        id="0f6f3c1e-5a55-4b8e-9e41-7d6c1c7b2f10",
        user_id="dora",
        locale="zh-CN",
        flow=flow,
        node="",
        path=[{"question": "What happens?", "answer": "I get no code"}] if flow else [],
        searches=searches,
        articles=[
            {"slug": f"article-{i}", "title": "标题很长" * 50, "category": "account.login"}
            for i in range(articles)
        ],
        outcome="",
        ticket_category="",
    )


def test_a_short_session_is_told_whole() -> None:
    text = what_was_tried(session(["视频传不上去"], 1, flow="login"), "en")
    assert text.splitlines()[:3] == [
        "What I tried in the self-service centre:",
        "Searched: 视频传不上去",
        f"Read: {'标题很长' * 50} (articles/article-0)",
    ]
    assert "What happens? → I get no code" in text
    assert text.endswith("It is still not solved.")


def test_a_long_session_keeps_the_latest_searches_and_fits() -> None:
    searches = [f"第{i}次搜索 " + "上传一直失败" * 32 for i in range(60)]
    text = what_was_tried(session(searches, 60, flow="login"), "zh-CN")
    assert len(text) <= LIMIT
    assert searches[-1] in text and searches[0] not in text
    assert "次较早的搜索" in text and "篇较早读过的文章" in text
    assert "What happens? → I get no code" in text
    assert text.startswith("我在自助服务中心尝试过：") and text.endswith("仍未解决。")


def test_a_stored_draft_over_the_limit_is_cut_keeping_its_first_and_last_lines() -> None:
    old = "我在自助服务中心尝试过：\n" + "搜索：" + "上传失败 / " * 3000 + "\n仍未解决。"
    cut = within_limit(old)
    assert len(cut) <= LIMIT
    assert cut.startswith("我在自助服务中心尝试过：\n搜索：") and cut.endswith("…\n仍未解决。")
    assert within_limit(cut) == cut

"""How the help centre reads a query: full-width letters and digits, as a
Chinese keyboard types them, are the words they stand for; an English word
is found whatever its ending; a synonym group adds its members whole, each
counting less than the user's own words; 帐号 is 账号; "e-mail" is "email";
and Traditional Chinese, as Hong Kong and Taiwan type it, is the Simplified
the articles are written in."""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources

import pytest

from casemesh_helpcenter import search
from casemesh_helpcenter.search import index_text, index_version, query_terms, tokens


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ｌｏｇｉｎ　ｆａｉｌｅｄ", "login failed"),
        ("ＰＡＳＳＷＯＲＤ", "password"),
        ("密码ｒｅｓｅｔ", "密码reset"),
        ("验证码收不到ＳＭＳ", "验证码收不到SMS"),
        ("错误码１０２", "错误码102"),
    ],
)
def test_full_width_text_is_read_as_what_it_stands_for(typed: str, meant: str) -> None:
    assert tokens(typed) == tokens(meant) != []
    assert query_terms(typed) == query_terms(meant)


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        # The auditor's: each found nothing, or not the article meant.
        ("passwords", "Reset your password with your phone"),
        ("uploaded", "Most interrupted uploads come from an unstable connection"),
        ("someone is harassing me", "Dealing with harassment"),
        ("signing in", "Sign in with the code"),
    ],
)
def test_an_english_word_finds_the_article_whatever_its_ending(typed: str, written: str) -> None:
    """Queries and articles are read with the same stemmer: what the user
    typed shares an index word with the article that says it otherwise."""
    assert set(tokens(typed)) & set(tokens(written)) - {"someon"}


def test_a_word_form_mentions_its_synonym_group() -> None:
    """A query's "harassing" is the harassment group's word, and "stole my
    account" its "stolen account": the query finds the group's other words
    too (its Chinese ones, and "hacked" for a stolen account)."""
    harassing = query_terms("someone is harassing me")
    assert {"骚扰", "网暴", *tokens("bullying")} <= set(harassing)
    stole = query_terms("someone stole my account")
    assert {"被盗", "盗号", *tokens("hacked")} <= set(stole)
    assert set(tokens("stolen account")) <= set(stole)


def test_a_synonym_group_adds_its_members_whole_never_their_fragments() -> None:
    """A query's "登不上" once searched for 不, 登, 失败 and t (from "can't"):
    every article with a 不 in it, or an English "don't", matched."""
    terms = query_terms("登不上")
    assert {"登不上", "登录失败", "无法登录", "登不进去", "登录不了"} <= set(terms)
    assert not {"不", "登", "失败", "t", "can", "cannot", "in"} & set(terms)
    english = query_terms("login")
    assert not {"t", "don", "can", "cannot", "in"} & set(english)
    assert tokens("I can't log in") == tokens("I can’t log in")  # the phone's apostrophe
    assert "t" not in tokens("I can't log in, don't know why")


def test_a_synonym_phrase_is_one_index_word_where_an_article_says_it() -> None:
    """A member that is a phrase is looked for as the phrase: the article
    that says it has it as one index word, whatever its words' endings."""

    def phrase(member: str) -> set[str]:
        return set(tokens(member)) - {w for word in member.split() for w in tokens(word)}

    [login] = phrase("cannot log in")
    assert login in query_terms("登不上") and login in tokens("She cannot log in today")
    [failed] = phrase("upload failed")
    assert failed in query_terms("传不上去") and failed in tokens("The upload fails at 99%")
    assert failed not in tokens("The upload. Failed")  # not one phrase
    assert "登录失败" in tokens("提示登录失败怎么办")


def test_the_users_own_words_count_more_than_their_synonyms() -> None:
    terms = query_terms("登不上")
    assert terms["登不上"] > terms["无法登录"] > 0
    english = query_terms("banned account")
    assert english[tokens("banned")[0]] > english[tokens("suspended")[0]] > 0
    assert english[tokens("account")[0]] == english[tokens("banned")[0]]


@pytest.mark.parametrize(
    ("variant", "usual"), [("帐号", "账号"), ("帐户", "账户"), ("帳號", "账號")]
)
def test_a_variant_character_is_the_usual_one(variant: str, usual: str) -> None:
    assert tokens(variant) == tokens(usual) != []
    assert tokens(f"{variant}被盗了") == tokens(f"{usual}被盗了")
    assert query_terms(f"{variant}被封了") == query_terms(f"{usual}被封了")


def test_the_index_version_changes_with_what_decides_the_index_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Articles indexed under another version are indexed again at start
    (`store.create_schema`): the version is stable within a release, and
    another when the synonyms (jieba's dictionary, the phrases) or the words
    of Taiwan and Hong Kong change."""
    now = index_version()
    assert now == index_version() != ""
    try:
        index_version.cache_clear()
        monkeypatch.setattr(search, "_synonyms", lambda: [["改手机号", "换号"]])
        assert index_version() != now
        monkeypatch.undo()
        index_version.cache_clear()
        monkeypatch.setitem(search.REGIONAL_WORDS, "储值", "充值")
        assert index_version() != now
        monkeypatch.undo()
        index_version.cache_clear()
        monkeypatch.setitem(search.HYPHENATED, "log-in", "login")
        assert index_version() != now
    finally:
        monkeypatch.undo()
        index_version.cache_clear()
    assert index_version() == now


@pytest.mark.parametrize(
    ("typed", "title"),
    [
        ("platform's", "Platform's watermark on my video"),
        ("platform’s", "Platform's watermark on my video"),
        ("platform'", "Platform's watermark on my video"),
        ("ＰＬＡＴＦＯＲＭ", "Platform's watermark on my video"),
        ("can't", "I can’t log in"),
    ],
)
def test_a_typed_prefix_is_read_as_the_titles_it_begins(typed: str, title: str) -> None:
    """Typeahead matches a title folded as the prefix is: an apostrophe typed,
    straight or curly, or not typed yet after the word's letter, is no
    reason to find nothing."""
    assert search.folded_prefix(typed) in search.folded(title)


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("忘記密碼", "忘记密码"),
        ("上傳失敗", "上传失败"),
        ("帳號被盜了", "账号被盗了"),
        ("驗證碼收不到", "验证码收不到"),
        ("無法登入", "无法登录"),  # Taiwan's word for it, too
        ("影片上傳失敗", "视频上传失败"),
        ("收不到簡訊", "收不到短信"),
        ("如何登入帳號", "如何登录账号"),  # not 登 入账 号
        ("登入後顯示錯誤", "登录后显示错误"),  # not 登入后
    ],
)
def test_traditional_chinese_is_the_simplified_the_articles_are_written_in(
    traditional: str, simplified: str
) -> None:
    """忘記密碼 once gave 忘記 and 密碼, words no article has: the user in Hong
    Kong or Taiwan found nothing where 忘记密码 finds the password articles."""
    assert tokens(traditional) == tokens(simplified) != []
    assert query_terms(traditional) == query_terms(simplified)


def test_taiwans_word_for_logging_in_mentions_the_login_synonyms() -> None:
    terms = query_terms("無法登入")
    assert {"登录", "无法登录", "登录失败", "login"} <= set(terms)
    assert not {"注销", "销号"} & set(query_terms("如何登出"))  # logging out, not closing


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("电影片段", {"电影", "片段"}),
        ("点选项卡", {"选项卡"}),
        ("网路由器", {"路由器"}),
        ("个人档案", {"个人档案"}),
        ("電影片段", {"电影", "片段"}),
        ("網路由器", {"路由器"}),
    ],
)
def test_a_regional_word_is_replaced_only_where_it_stands_as_a_word(
    text: str, words: set[str]
) -> None:
    """影片, 点选, 网路 and 档案 once were replaced wherever their characters
    stood in a row: 电影片段 was 电视频段, an article about it had no 电影."""
    assert words <= set(tokens(text))
    assert not {"电视", "频段", "视频", "点击", "网络", "文件"} & set(tokens(text))
    assert search.folded(text) in {"电影片段", "点选项卡", "网路由器", "个人档案"}
    assert query_terms("电影").keys() <= set(tokens("电影片段剪辑"))


@pytest.mark.parametrize("word", sorted(search.REGIONAL_WORDS))
def test_jieba_cuts_each_regional_word_as_one_where_it_stands_as_one(word: str) -> None:
    segmenter = search._segmenter()
    for text in (word, f"无法{word}", f"{word}失败", f"我的{word}不见了", f"如何{word}"):
        assert word in segmenter.lcut(text), text
    meant = search.REGIONAL_WORDS[word]
    assert tokens(f"无法{word}") == tokens(f"无法{meant}")


def test_the_regional_words_change_no_other_word_of_the_shipped_articles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Segmented without the regional words (jieba's dictionary as it was),
    the Chinese articles shipped have the same words, but for a regional
    word where one stands as a word (ads-costs: 您设定的预算)."""
    raw = json.loads(
        resources.files("casemesh_helpcenter").joinpath("knowledge_base.json").read_text()
    )
    texts = [e["zh-CN"][part] for e in raw["articles"] for part in ("title", "keywords", "body")]
    now = [set(tokens(text)) for text in texts]
    try:
        search._segmenter.cache_clear()
        monkeypatch.setattr(search, "REGIONAL_WORDS", {})
        monkeypatch.setattr(search, "_REGIONAL", re.compile(r"(?!)"))
        before = [set(tokens(text)) for text in texts]
    finally:
        monkeypatch.undo()
        search._segmenter.cache_clear()
    changed = [(b - n, n - b) for b, n in zip(before, now, strict=True) if b != n]
    assert changed == [({"设定"}, set())]  # 设置, already in the text


@cache
def _shipped_words(locale: str = "zh-CN") -> dict[str, dict[str, float]]:
    """The articles shipped in `locale` (knowledge_base.json), each with its
    index words' shares of its rank, as `store.WORDS` writes them: title and
    keywords 1.0 an occurrence, the body 0.4, over ln(1 + its word count)."""
    raw = json.loads(
        resources.files("casemesh_helpcenter").joinpath("knowledge_base.json").read_text()
    )
    shipped = {}
    for entry in raw["articles"]:
        text = entry[locale]
        weights: dict[str, float] = {}
        length = 0
        for part, weight in (("title", 1.0), ("keywords", 1.0), ("body", 0.4)):
            for word in index_text(text[part]).split():
                weights[word] = weights.get(word, 0.0) + weight
                length += 1
        shipped[entry["slug"]] = {w: v / math.log(1 + length) for w, v in weights.items()}
    return shipped


def _found_first(query: str, locale: str = "zh-CN") -> str | None:
    """The shipped article a search puts first, ranked as `store.search`
    ranks: the sum of the query's words' shares, each times what it counts
    for."""
    scores = {
        slug: sum(words.get(term, 0.0) * counts for term, counts in query_terms(query).items())
        for slug, words in _shipped_words(locale).items()
    }
    found = sorted((-score, slug) for slug, score in scores.items() if score > 0)
    return found[0][1] if found else None


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("忘記密碼", "忘记密码"),
        ("無法登入", "无法登录"),
        ("上傳失敗", "上传失败"),
        ("帳號被盜了", "账号被盗了"),
    ],
)
def test_a_traditional_query_finds_first_what_its_simplified_spelling_finds(
    traditional: str, simplified: str
) -> None:
    """Of the 68 articles shipped, each once found nothing (帳號被盜了: a
    copyright article first)."""
    first = _found_first(simplified)
    assert first is not None
    assert _found_first(traditional) == first


@pytest.mark.parametrize(
    ("typed", "title"),
    [
        ("找回密碼", "手机号和邮箱都不能用了怎么找回密码"),
        ("帳號被", "怀疑账号被盗怎么办"),
        ("影片上傳", "视频上传失败：网络问题"),
        ("電影片", "剪辑电影片段"),  # 电影片 is one word: no 影片 in it
    ],
)
def test_a_traditional_prefix_suggests_the_simplified_titles(typed: str, title: str) -> None:
    """Typeahead read 找回密碼 as typed, in no title: it suggested nothing."""
    assert search.folded_prefix(typed) in search.folded(title)


def test_no_synonym_is_written_in_a_regional_word() -> None:
    """Synonyms are matched in the articles' words: one written with 登入,
    say, would never match, as queries and articles read it as 登录."""
    written = [member for group in search._synonyms() for member in group]
    assert written
    assert not [m for m in written if any(word in m for word in search.REGIONAL_WORDS)]


@pytest.mark.parametrize(
    ("written", "typed"),
    [
        ("e-mail", "email"),
        ("E-Mail", "email"),
        ("ｅ－ｍａｉｌ", "email"),
        ("e-mails", "emails"),
        ("no e-mail arrived", "no email arrived"),
        ("Wi-Fi", "wifi"),
    ],
)
def test_a_word_written_with_a_hyphen_or_without_is_one_word(written: str, typed: str) -> None:
    """The articles say "e-mail", which was the words "e" and "mail": the
    user's "email" met neither."""
    assert tokens(written) == tokens(typed) != []
    assert query_terms(written) == query_terms(typed)


def test_other_hyphenated_words_are_still_found_by_their_words() -> None:
    assert {"counter", "notic"} <= set(tokens("counter-notice"))
    assert {"live", "stream"} <= set(tokens("live-stream"))
    assert tokens("the-mail") == tokens("the mail")  # no e-mail in it


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("reset password by email", "password-reset-email"),
        ("reset password by e-mail", "password-reset-email"),
        ("email", "password-reset-email"),
        ("reset password by phone", "password-reset-phone"),
    ],
)
def test_the_way_the_user_names_finds_its_article_first(query: str, slug: str) -> None:
    """ "reset password by email" once put "Reset your password by phone"
    first: the article that says "e-mail" did not have the user's word."""
    assert _found_first(query, "en") == slug

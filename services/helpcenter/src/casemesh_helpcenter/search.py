"""Text as the search index and queries see it, read the same way on both
sides: Chinese segmented into words (jieba, search mode, with the synonyms'
Chinese members in its dictionary), other text split into lower-case words
and stemmed (Snowball's English stemmer: "uploads" and "uploaded" are
"upload"), variant characters folded (帐号 is 账号), and synonyms expanded from
data (synonyms.json) by whole members, each counting less than the user's own
words; a word written with a hyphen or without ("e-mail", "email") is one
word. The database ranks (PostgreSQL full-text search over these words,
title and keywords weighted above the body)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from importlib.metadata import version
from typing import Any

import jieba
import opencc
import snowballstemmer  # type: ignore[import-untyped]

jieba.setLogLevel(logging.WARNING)

# Of the rules below: raise it with any change that makes `tokens` give other
# words for the same text, so that the articles are indexed again at start
# (`index_version`, `store.create_schema`).
VERSION = 5
# What a synonym counts for against a word the user typed (1).
SYNONYM_WEIGHT = 0.5
MAX_TERMS = 64

WORD = re.compile(r"[\u3400-\u9fff]+|[a-z0-9]+", re.IGNORECASE)
CJK = re.compile(r"[\u3400-\u9fff]")
# Inside a word ("can't", "user's"), typed straight or as a phone types it.
APOSTROPHE = re.compile(r"(?<=[a-z0-9])['’](?=[a-z])")
TRAILING_APOSTROPHE = re.compile(r"(?<=[a-z0-9])['’]\Z")
# Words written with a hyphen or without, as one word, whatever follows
# ("e-mails"): an article's "e-mail" was the words "e" and "mail", which the
# query "email" never met, and its parts counted twice against its length.
# Only these: "counter-notice" or "live-stream" stay two words, each found
# by the query that says it.
HYPHENATED = {"e-mail": "email", "wi-fi": "wifi"}
_HYPHENATED = re.compile(r"\b(?:" + "|".join(map(re.escape, HYPHENATED)) + ")")
# What separates two words of one phrase.
BETWEEN_WORDS = re.compile(r"[\s\-]*")
# Characters people type for the one the articles use: 帐号 and 帐户 are
# common spellings of 账号 and 账户 (帳 and 賬 their traditional forms).
VARIANTS = str.maketrans({"帐": "账", "帳": "账", "賬": "账"})
# Words of Taiwan and Hong Kong for what the articles call otherwise, as they
# are once Simplified (`TO_SIMPLIFIED` changes characters, not words): 無法登入
# is 无法登录. A word as jieba segments the text, never a part of one: 电影片段
# (电影 片段) has no 影片, 网路由器 (网 路由器) no 网路. Those of OpenCC's
# Taiwan phrases (its tw2sp) a user of the help centre types, not tw2sp
# itself: it has 登出 ("log out") as 注销, which is closing the account here,
# and rewrites the Simplified articles' own words (文件夹 as 文档夹, 停用 as
# 禁用, 小程序 as 小进程).
REGIONAL_WORDS = {
    "登入": "登录",
    "登出": "退出登录",
    "影片": "视频",
    "视讯": "视频",
    "简讯": "短信",
    "短讯": "短信",
    "网路": "网络",
    "档案": "文件",
    "设定": "设置",
    "支援": "支持",
    "软体": "软件",
    "讯息": "消息",
    "资讯": "信息",
    "萤幕": "屏幕",
    "使用者": "用户",
    "连结": "链接",
    "点选": "点击",
    "稽核": "审核",
    "检举": "举报",
    "骇客": "黑客",
}
# What a regional word jieba's dictionary lacks counts for in it, so that it
# is a word where it stands as one: jieba has 登入 only in 登入后 (3), and cut
# 無法登入帳號 as 登 入账 号 and 登入後 as 登入后. Enough to keep it whole before
# 后, 时, 账号 (登录 has 463); Simplified text without it is cut as before.
REGIONAL_WORD_FREQUENCY = 2000
# Words that say nothing about what is wanted (Latin ones as typed, before
# stemming).
STOP = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "啊",
        "吧",
        "我",
        "我的",
        "你",
        "怎么",
        "怎么办",
        "怎样",
        "如何",
        "为什么",
        "什么",
        "是",
        "在",
        "有",
        "没",
        "和",
        "与",
        "就",
        "都",
        "也",
        "要",
        "能",
        "会",
        "a",
        "an",
        "the",
        "to",
        "of",
        "in",
        "on",
        "for",
        "my",
        "i",
        "is",
        "are",
        "can",
        "how",
        "why",
        "what",
        "do",
        "does",
        "with",
    ]
)

# Irregular forms the stemmer cannot know, of verbs people use about their
# accounts and videos ("someone stole my account": an article's "stolen").
IRREGULAR = {
    "stole": "steal",
    "stolen": "steal",
    "forgot": "forget",
    "forgotten": "forget",
    "lost": "lose",
    "hid": "hide",
    "hidden": "hide",
    "froze": "freeze",
    "frozen": "freeze",
    "broke": "break",
    "broken": "break",
    "took": "take",
    "taken": "take",
    "sent": "send",
    "paid": "pay",
    "bought": "buy",
    "chose": "choose",
    "chosen": "choose",
}

# Not for threads at once (it keeps the word it works on): the service
# tokenises on its event loop only.
_ENGLISH = snowballstemmer.stemmer("english")
# Traditional characters as the Simplified ones the articles and synonyms are
# written in (OpenCC's t2s): a user in Hong Kong or Taiwan types 忘記密碼, whose
# words (忘記, 密碼) no article has, for 忘记密码. Built once, in milliseconds.
TO_SIMPLIFIED = "t2s"
_SIMPLIFIED = opencc.OpenCC(TO_SIMPLIFIED)
# Where a text may hold a regional word: only there is it segmented to see.
_REGIONAL = re.compile("|".join(sorted(REGIONAL_WORDS, key=len, reverse=True)))
CHINESE_RUN = re.compile(r"[\u3400-\u9fff]+")


def folded(text: str) -> str:
    """Lower-case, in the forms a Chinese keyboard's full-width letters and
    digits (`ｌｏｇｉｎ`, `１２３`) stand for (NFKC), Traditional characters
    Simplified (忘記 is 忘记) and a region's word the articles' (`REGIONAL_WORDS`:
    登入 is 登录, where jieba cuts it as a word), with the usual character for a
    variant (`VARIANTS`: 帐号 is 账号) and a word's apostrophe dropped ("can't"
    is one word, "cant")."""
    return _regional_words_replaced(_folded_characters(text))


def _folded_characters(text: str) -> str:
    """`folded`, but for the regional words."""
    text = _SIMPLIFIED.convert(unicodedata.normalize("NFKC", text))
    return APOSTROPHE.sub("", text.lower().translate(VARIANTS))


def _regional_words_replaced(text: str) -> str:
    """Each word of the Chinese (as jieba cuts it, accurate mode: 个人档案 is
    one word, without the 档案 its search mode also gives) that is a regional
    word, as the articles' word; the rest as it is. `tokens` segments the
    result again, as the Simplified spelling's text: 无法登录 is then a synonym
    word too, as where an article says it."""
    if not _REGIONAL.search(text):
        return text
    return CHINESE_RUN.sub(
        lambda run: "".join(REGIONAL_WORDS.get(w, w) for w in _segmenter().cut(run.group())),
        text,
    )


def folded_prefix(text: str) -> str:
    """What a user has typed so far, `folded`: an apostrophe after a word's
    last letter is one inside the word being typed ("platform'" for
    "platform's", folded "platforms"), dropped as well. A regional word is
    the articles' where jieba cuts the prefix into it, as in a title (影片上傳
    is 视频上传; 電影片 is one word, kept): a word still being typed may be cut
    otherwise than in the title (网路由 is 网络由, until 網路由器 is whole)."""
    return TRAILING_APOSTROPHE.sub("", folded(text))


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A Latin word's stem, which its other forms share ("passwords",
    "harassing" and "harassment": "password", "harass"; "stole": "steal")."""
    return str(_ENGLISH.stemWord(IRREGULAR.get(word, word)))


def tokens(text: str) -> list[str]:
    """The index words of a text: Chinese segmented, Latin words stemmed,
    and each synonym phrase it says ("can't log in", "stole my account": its
    words in a row, stop words aside) as one word more; a word written with
    a hyphen or without is the one word (`HYPHENATED`)."""
    found: list[str] = []
    run: list[str] = []  # the stems of Latin words in a row, where phrases are said
    text = _HYPHENATED.sub(lambda word: HYPHENATED[word.group()], folded(text))
    end = 0
    for match in WORD.finditer(text):
        chunk = match.group()
        chinese = bool(CJK.match(chunk))
        if chinese or not BETWEEN_WORDS.fullmatch(text, end, match.start()):
            found += _phrases_said(run)
            run = []
        if chinese:
            found += [w for w in _segmenter().cut_for_search(chunk) if w.strip()]
        elif chunk not in STOP:
            run.append(stem(chunk))
            found.append(run[-1])
        end = match.end()
    found += _phrases_said(run)
    return [w for w in found if w not in STOP]


def index_text(*parts: str) -> str:
    return " ".join(tokens(" ".join(parts)))


def _phrases_said(run: list[str]) -> list[str]:
    said = []
    for i, first in enumerate(run):
        for phrase in _latin_phrases().get(first, ()):
            if tuple(run[i : i + len(phrase)]) == phrase:
                said.append("".join(phrase))
    return said


@dataclass(frozen=True)
class SynonymGroup:
    """Words for the same thing, each member one index word (`terms`): a
    Chinese member as itself (a word in jieba's dictionary), a Latin word as
    its stem, a Latin phrase as its words' stems run together, stop words
    left out (as `tokens` gives it where a text says it). A query mentions
    the group when it holds a Chinese member anywhere or a Latin member's
    index word."""

    chinese: tuple[str, ...]
    latin: frozenset[str]
    terms: tuple[str, ...]

    @classmethod
    def of(cls, members: list[str]) -> SynonymGroup:
        words = [_member_word(m) for m in members]
        chinese = tuple(w for w in words if is_chinese(w))
        return cls(
            chinese=chinese,
            latin=frozenset(w for w in words if not is_chinese(w)),
            terms=tuple(dict.fromkeys(words)),
        )

    def mentioned(self, text: str, words: set[str]) -> bool:
        return any(c in text for c in self.chinese) or not self.latin.isdisjoint(words)


def _member_words(member: str) -> list[str]:
    """A Chinese member as itself, a Latin one as the stems of its words.
    Written in the articles' words: not read for regional ones (which would
    take jieba, given the members as words)."""
    words = WORD.findall(_folded_characters(member))
    if len(words) == 1 and is_chinese(words[0]):
        return words
    stems = [stem(w) for w in words if w not in STOP and not is_chinese(w)]
    if not stems or len(stems) != len([w for w in words if w not in STOP]):
        raise ValueError(f"a synonym is a Chinese word or Latin words, not both: {member!r}")
    return stems


def _member_word(member: str) -> str:
    return "".join(_member_words(member))


@cache
def _synonyms() -> list[list[str]]:
    raw: dict[str, Any] = json.loads(
        resources.files("casemesh_helpcenter").joinpath("synonyms.json").read_text()
    )
    groups: list[list[str]] = raw["groups"]
    return groups


@cache
def synonym_groups() -> tuple[SynonymGroup, ...]:
    return tuple(SynonymGroup.of(g) for g in _synonyms())


@cache
def _latin_phrases() -> dict[str, tuple[tuple[str, ...], ...]]:
    """The synonyms of more than one Latin word, as their stems, by the
    first."""
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for group in _synonyms():
        for member in group:
            stems = tuple(_member_words(member))
            if len(stems) > 1:
                phrases.setdefault(stems[0], []).append(stems)
    return {first: tuple(dict.fromkeys(p)) for first, p in phrases.items()}


@cache
def _segmenter() -> Any:
    """jieba with each Chinese synonym a word of its own: one index word
    wherever an article says it, searched for whole ("登录失败", never 失败);
    and each regional word (`REGIONAL_WORD_FREQUENCY`)."""
    segmenter = jieba.Tokenizer()
    segmenter.check_initialized()
    for group in _synonyms():
        for member in group:
            word = _member_word(member)
            if is_chinese(word):
                segmenter.add_word(word)
    for word in REGIONAL_WORDS:
        if not segmenter.FREQ.get(word):
            segmenter.add_word(word, REGIONAL_WORD_FREQUENCY)
    return segmenter


def warm() -> None:
    """Loads what the first query would otherwise load, on the event loop
    and blocking every call meanwhile: jieba's dictionary (about a second),
    the synonyms, the stemmer. Before serving; in a thread is fine, as
    nothing tokenises at the same time."""
    query_terms("登录 login")


def query_terms(query: str) -> dict[str, float]:
    """The words to look for, each with what it counts for: the query's own
    1, and SYNONYM_WEIGHT the members of each synonym group it mentions."""
    own = tokens(query)
    terms = dict.fromkeys(own, 1.0)
    text = folded(query)
    words = set(own)
    for group in synonym_groups():
        if group.mentioned(text, words):
            for term in group.terms:
                terms.setdefault(term, SYNONYM_WEIGHT)
    return dict(list(terms.items())[:MAX_TERMS])


@cache
def index_version() -> str:
    """The tokeniser's version: `VERSION`, and a fingerprint of what else
    decides the index words (the stemmer's, jieba's and OpenCC's releases, the
    synonyms, the stop words, the regional words). An article indexed under
    another is indexed again."""
    digest = hashlib.sha256()
    for part in (
        f"jieba {version('jieba')}",
        f"opencc {version('opencc')} {TO_SIMPLIFIED}",
        f"snowballstemmer {version('snowballstemmer')}",
        json.dumps(_synonyms(), ensure_ascii=False),
        " ".join(sorted(STOP)),
        json.dumps(IRREGULAR, sort_keys=True),
        json.dumps(VARIANTS, sort_keys=True),
        json.dumps(HYPHENATED, sort_keys=True),
        json.dumps(REGIONAL_WORDS, ensure_ascii=False, sort_keys=True),
        f"regional words cut by jieba, {REGIONAL_WORD_FREQUENCY}",
    ):
        digest.update(part.encode())
        digest.update(b"\x00")
    return f"{VERSION}.{digest.hexdigest()[:16]}"


def is_chinese(text: str) -> bool:
    return bool(CJK.search(text))

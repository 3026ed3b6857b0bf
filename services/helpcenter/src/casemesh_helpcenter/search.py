"""Text as the search index and queries see it: Chinese segmented into words
(jieba, search mode), other text split into lower-case words, synonyms
expanded from data (synonyms.json). The database ranks (PostgreSQL full-text
search over the segmented words, title and keywords weighted above the body)."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jieba

jieba.setLogLevel(logging.WARNING)

WORD = re.compile(r"[\u3400-\u9fff]+|[a-z0-9]+", re.IGNORECASE)
CJK = re.compile(r"[\u3400-\u9fff]")
# Words that say nothing about what is wanted.
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


def folded(text: str) -> str:
    """Lower-case, in the forms a Chinese keyboard's full-width letters and
    digits (`ｌｏｇｉｎ`, `１２３`) stand for (NFKC)."""
    return unicodedata.normalize("NFKC", text).lower()


def tokens(text: str) -> list[str]:
    """The index words of a text (Chinese segmented, everything lower-case)."""
    found: list[str] = []
    for chunk in WORD.findall(folded(text)):
        if CJK.match(chunk):
            found += [w for w in jieba.cut_for_search(chunk) if w.strip()]
        else:
            found.append(chunk)
    return [w for w in found if w not in STOP]


def index_text(*parts: str) -> str:
    return " ".join(tokens(" ".join(parts)))


@dataclass(frozen=True)
class SynonymGroup:
    """Words for the same thing, ready to be looked for: Chinese phrases
    anywhere; Latin ones as whole words ("ban", not "banana")."""

    chinese: tuple[str, ...]
    words: frozenset[str]
    phrases: tuple[re.Pattern[str], ...]
    terms: tuple[str, ...]  # the index words of every member

    @classmethod
    def of(cls, members: list[str]) -> SynonymGroup:
        lower = [m.lower() for m in members]
        latin = [m.split() for m in lower if not is_chinese(m)]
        return cls(
            chinese=tuple(m for m in lower if is_chinese(m)),
            words=frozenset(p[0] for p in latin if len(p) == 1),
            phrases=tuple(
                re.compile(r"\b" + r"\s+".join(map(re.escape, p)) + r"\b")
                for p in latin
                if len(p) > 1
            ),
            terms=tuple(t for m in members for t in tokens(m)),
        )

    def mentioned(self, text: str, words: set[str]) -> bool:
        return (
            any(c in text for c in self.chinese)
            or not self.words.isdisjoint(words)
            or any(p.search(text) for p in self.phrases)
        )


@cache
def synonym_groups() -> tuple[SynonymGroup, ...]:
    raw: dict[str, Any] = json.loads(
        resources.files("casemesh_helpcenter").joinpath("synonyms.json").read_text()
    )
    return tuple(SynonymGroup.of(g) for g in raw["groups"])


def query_terms(query: str) -> list[str]:
    """The words to look for: the query's own, and those of any synonym group
    the query mentions."""
    terms = tokens(query)
    text = folded(query)
    words = set(re.findall(r"[a-z0-9]+", text))
    for group in synonym_groups():
        if group.mentioned(text, words):
            terms += group.terms
    return list(dict.fromkeys(terms))[:64]


def is_chinese(text: str) -> bool:
    return bool(CJK.search(text))

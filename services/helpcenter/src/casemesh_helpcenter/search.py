"""Text as the search index and queries see it: Chinese segmented into words
(jieba, search mode), other text split into lower-case words, synonyms
expanded from data (synonyms.json). The database ranks (PostgreSQL full-text
search over the segmented words, title and keywords weighted above the body)."""

from __future__ import annotations

import json
import logging
import re
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


def tokens(text: str) -> list[str]:
    """The index words of a text (Chinese segmented, everything lower-case)."""
    found: list[str] = []
    for chunk in WORD.findall(text.lower()):
        if CJK.match(chunk):
            found += [w for w in jieba.cut_for_search(chunk) if w.strip()]
        else:
            found.append(chunk)
    return [w for w in found if w not in STOP]


def index_text(*parts: str) -> str:
    return " ".join(tokens(" ".join(parts)))


@cache
def synonym_groups() -> tuple[tuple[str, ...], ...]:
    raw: dict[str, Any] = json.loads(
        resources.files("casemesh_helpcenter").joinpath("synonyms.json").read_text()
    )
    return tuple(tuple(g) for g in raw["groups"])


def query_terms(query: str) -> list[str]:
    """The words to look for: the query's own, and those of any synonym group
    the query mentions."""
    terms = tokens(query)
    text = query.lower()
    words = set(re.findall(r"[a-z0-9]+", text))
    for group in synonym_groups():
        if any(_mentions(text, words, word.lower()) for word in group):
            for word in group:
                terms += tokens(word)
    seen: dict[str, None] = {}
    for t in terms:
        seen.setdefault(t, None)
    return list(seen)[:64]


def _mentions(text: str, words: set[str], phrase: str) -> bool:
    """Chinese phrases anywhere; Latin ones as whole words ("ban", not "banana")."""
    if is_chinese(phrase):
        return phrase in text
    parts = phrase.split()
    if len(parts) == 1:
        return phrase in words
    return re.search(r"\b" + r"\s+".join(map(re.escape, parts)) + r"\b", text) is not None


def tsquery(terms: list[str]) -> str:
    """An OR query (documents matching more of the words rank higher)."""
    safe = [re.sub(r"[^\w]", "", t) for t in terms]
    return " | ".join(t for t in safe if t)


def is_chinese(text: str) -> bool:
    return bool(CJK.search(text))

"""The help centre's rules, without I/O: articles as versions, the category
tree, the guided flows (content in flows.json), the help session (what the
user searched, read and answered, and how it ended), the ticket it drafts when
the user says "not solved", and the deflection figures.

A session's flow stands at a question (`node`) until answered; an answer
moves it to the next question or ends it (`node` empty), perhaps with an
article or an action. An answer may name a ticket category of its own (an
ending that is another category's matter: a ban reached from the login flow),
kept with it in the path, so that a ticket opens where the problem belongs
whichever flow led there. The outcome is recorded once: `SOLVED`, or
`NOT_SOLVED` with the ticket drafted then, so a retried "not solved" drafts
the same ticket. The draft's description tells the agent what the user
searched, read and answered, and always fits the ticket's description rule,
however long the session was."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from casemesh.platform.errors import FailedPrecondition, InvalidArgument
from casemesh.rules import tickets as rules

SOLVED = "SOLVED"
NOT_SOLVED = "NOT_SOLVED"
# A session that tried nothing yet drafts a ticket in this category.
FALLBACK_CATEGORY = "other.general"

GROUPS = {
    "account": {"zh-CN": "账号问题", "en": "Account problems"},
    "content": {"zh-CN": "内容问题", "en": "Content problems"},
    "interaction": {"zh-CN": "举报与投诉", "en": "Reports and complaints"},
    "ads": {"zh-CN": "广告问题", "en": "Ad problems"},
    "other": {"zh-CN": "其他", "en": "Other"},
}


def category_label(category: str, locale: str) -> str:
    c = rules.BY_ID.get(category)
    if c is None:
        return category
    return c.labels[locale if locale in rules.LOCALES else "en"]


# -- articles ------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleVersion:
    """One version of an article in one locale; versions are never changed."""

    slug: str
    locale: str
    version: int
    category: str
    title: str
    body: str
    keywords: str
    author: str
    created_at: datetime
    published_version: int | None
    latest_version: int

    @property
    def published(self) -> bool:
        return self.published_version == self.version

    def read(self) -> dict[str, str]:
        """What a session keeps of this article once the user read it."""
        return {"slug": self.slug, "title": self.title, "category": self.category}


@dataclass(frozen=True)
class HelpCategory:
    id: str
    label: str
    article_count: int
    children: tuple[HelpCategory, ...] = ()


def category_tree(counts: dict[str, int], locale: str) -> list[HelpCategory]:
    """The ticket categories under their groups, with the published articles
    in each (`counts` by category)."""
    tree = []
    for group, labels in GROUPS.items():
        children = tuple(
            HelpCategory(c.id, category_label(c.id, locale), counts.get(c.id, 0))
            for c in rules.CATEGORIES
            if c.id.startswith(group + ".")
        )
        total = sum(c.article_count for c in children)
        tree.append(HelpCategory(group, text(labels, locale), total, children))
    return tree


# -- guided flows --------------------------------------------------------------


@cache
def flows() -> dict[str, dict[str, Any]]:
    raw: dict[str, Any] = json.loads(
        resources.files("casemesh_helpcenter").joinpath("flows.json").read_text()
    )
    found: dict[str, dict[str, Any]] = raw["flows"]
    return found


def flows_ending_at(slug: str) -> list[str]:
    """The flows (`flows/{id}`) one of whose answers leads to the article."""
    return [
        f"flows/{fid}"
        for fid, found in flows().items()
        if any(
            answer.get("article") == slug
            for node in found["nodes"].values()
            for answer in node.get("answers", [])
        )
    ]


def text(value: dict[str, str], locale: str) -> str:
    return value.get(locale) or value["en"]


def flow_id(name: str) -> str:
    """The flow a name `flows/{id}` stands for; any other name is refused."""
    prefix, _, fid = name.partition("/")
    if prefix != "flows" or fid not in flows():
        raise InvalidArgument.field(
            "flow", f"must be one of {', '.join('flows/' + f for f in flows())}"
        )
    return fid


@dataclass(frozen=True)
class Flow:
    id: str
    title: str = ""
    category: str = ""


def flow(fid: str, locale: str) -> Flow:
    found = flows().get(fid)
    if found is None:  # a flow since removed from the content
        return Flow(fid)
    return Flow(fid, text(found["title"], locale), found["category"])


@dataclass(frozen=True)
class FlowStep:
    """Where a session's flow stands: its question and answers, or finished;
    after an answer, the article and action it led to."""

    session: str
    flow: Flow
    finished: bool
    question: str = ""
    answers: tuple[str, ...] = ()
    article: ArticleVersion | None = None
    action: str = ""
    question_id: str = ""


@dataclass(frozen=True)
class Choice:
    """An answer to the question a session stands at, not yet recorded."""

    next: str
    taken: dict[str, str]
    article: str = ""
    action: str = ""


# -- the help session ----------------------------------------------------------


@dataclass(frozen=True)
class TicketDraft:
    category: str
    subject: str
    description: str


@dataclass
class HelpSession:
    id: str
    user_id: str
    locale: str
    flow: str
    node: str
    path: list[dict[str, str]]
    searches: list[str]
    articles: list[dict[str, str]]
    outcome: str
    ticket_category: str
    ticket_subject: str = ""
    ticket_description: str = ""

    @property
    def name(self) -> str:
        return f"help-sessions/{self.id}"

    def start(self, fid: str) -> None:
        """Starts (or starts again) a flow at its first question."""
        self.flow, self.node, self.path = fid, flows()[fid]["start"], []

    @property
    def question_id(self) -> str:
        """The question the session stands at, as callers name it back: the
        flow, the question and how many were answered before it (a flow
        started again asks its first question anew)."""
        return self.question_id_after(len(self.path))

    def question_id_after(self, answered: int) -> str:
        """The id of the question the session stands at, as it is named after
        `answered` questions of its flow."""
        return f"{self.flow}/{self.node}/{answered}" if self.node else ""

    def question(self) -> dict[str, Any] | None:
        """The question waiting for an answer, if any."""
        node: dict[str, Any] | None = flows().get(self.flow, {}).get("nodes", {}).get(self.node)
        return node

    def choose(self, answer: int) -> Choice:
        node = self.question()
        if node is None:
            raise FailedPrecondition(
                "this session has no question waiting (StartFlow first)",
                reason="NO_QUESTION_WAITING",
            )
        if not 0 <= answer < len(node["answers"]):
            raise InvalidArgument.field("answer", f"must be from 0 to {len(node['answers']) - 1}")
        chosen = node["answers"][answer]
        taken = {
            "question": text(node["question"], self.locale),
            "answer": text(chosen["label"], self.locale),
        }
        if chosen.get("category"):
            # Kept with the answer, as given then: the ticket goes there even
            # if the flow's content changes before the user gives up.
            taken["category"] = chosen["category"]
        return Choice(
            chosen.get("next", ""), taken, chosen.get("article", ""), chosen.get("action", "")
        )

    def step(
        self, locale: str, article: ArticleVersion | None = None, action: str = ""
    ) -> FlowStep:
        node = self.question()
        return FlowStep(
            session=self.name,
            flow=flow(self.flow, locale),
            finished=not self.node,
            question=text(node["question"], locale) if node else "",
            answers=tuple(text(a["label"], locale) for a in node["answers"]) if node else (),
            article=article,
            action=action,
            question_id=self.question_id if node else "",
        )

    def check_can_be_solved(self) -> None:
        if not (self.searches or self.articles or self.flow):
            raise FailedPrecondition(
                "nothing was searched, read or followed in this session", reason="SESSION_EMPTY"
            )

    def check_outcome(self, outcome: str) -> None:
        """After recording `outcome`: the first answer stands, so another one is refused."""
        if self.outcome != outcome:
            raise FailedPrecondition(
                # (Recorded before the ticket is opened: if opening it failed,
                # asking "not solved" again opens it.)
                "this help session was already marked as not solved: ask again"
                " (not solved) to open its ticket if it was not opened"
                if outcome == SOLVED
                else "this help session was already marked as solved",
                reason="SESSION_OUTCOME_RECORDED",
            )

    def category_for_ticket(self) -> str:
        """The last category an answer along the path named, else the flow's;
        without a flow, the one the articles read point to most."""
        named = [step["category"] for step in self.path if step.get("category")]
        if named:
            return named[-1]
        if self.flow in flows():
            return str(flows()[self.flow]["category"])
        counts: dict[str, int] = {}
        for read in self.articles:
            counts[read["category"]] = counts.get(read["category"], 0) + 1
        return max(counts, key=lambda c: counts[c]) if counts else FALLBACK_CATEGORY

    def draft_ticket(self, locale: str) -> TicketDraft:
        category = self.category_for_ticket()
        subject = (
            f"自助服务未能解决：{category_label(category, 'zh-CN')}"
            if locale == "zh-CN"
            else f"Self-service did not solve it: {category_label(category, 'en')}"
        )
        return TicketDraft(category, subject, what_was_tried(self, locale))

    def drafted(self) -> TicketDraft:
        """The ticket recorded with "not solved" (cut to today's limit)."""
        return TicketDraft(
            self.ticket_category, self.ticket_subject, within_limit(self.ticket_description)
        )


# -- the ticket's description ----------------------------------------------------

LIMIT = rules.LIMITS["description"]
# Room kept for a note of what was left out ("(and 12 earlier)").
_NOTE = 40


def what_was_tried(session: HelpSession, locale: str) -> str:
    """The description: the user's searches in their own words (the latest
    kept first), the flow they followed, then the articles they read (the
    latest kept first); what does not fit is left out and counted."""
    zh = locale == "zh-CN"
    head = "我在自助服务中心尝试过：" if zh else "What I tried in the self-service centre:"
    tail = "仍未解决。" if zh else "It is still not solved."
    followed: list[str] = []
    if session.flow in flows():
        title = text(flows()[session.flow]["title"], locale)
        followed.append(("引导流程：" if zh else "Guided flow: ") + title)
        followed += [f"  {p['question']} → {p['answer']}" for p in session.path]
    room = LIMIT - len("\n".join([head, *followed, tail]))

    lines = [head]
    searched_as = "搜索：" if zh else "Searched: "
    searched = _latest(session.searches, room - len(searched_as) - _NOTE - 1, len(" / "))
    if searched:
        more = len(session.searches) - len(searched)
        note = (f"（另有 {more} 次较早的搜索）" if zh else f" (and {more} earlier)") if more else ""
        lines.append(searched_as + " / ".join(searched) + note)
        room -= len(lines[-1]) + 1
    reads = [
        ("阅读：" if zh else "Read: ") + f"{read['title']} (articles/{read['slug']})"
        for read in session.articles
    ]
    kept = _latest(reads, room - _NOTE - 1, len("\n"))
    lines += kept
    if len(kept) < len(reads):
        more = len(reads) - len(kept)
        lines.append(
            f"（另有 {more} 篇较早读过的文章）" if zh else f"(and {more} more articles read)"
        )
    lines += [*followed, tail]
    return within_limit("\n".join(lines))


def _latest(items: list[str], room: int, separator: int) -> list[str]:
    """The latest of `items`, in their order, that fit in `room` characters
    with a separator of that length before each."""
    kept: list[str] = []
    for item in reversed(items):
        room -= len(item) + separator
        if room < 0:
            break
        kept.append(item)
    return kept[::-1]


def within_limit(description: str) -> str:
    """`description` cut to the ticket's limit in its middle, keeping its first
    and last lines (a draft stored by an earlier version may be longer)."""
    if len(description) <= LIMIT:
        return description
    first, _, rest = description.partition("\n")
    body, _, last = rest.rpartition("\n")
    keep = LIMIT - len(first) - len(last) - len("\n…\n")
    return f"{first}\n{body[: max(keep, 0)]}…\n{last}"[:LIMIT]


# -- figures -------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    searches: int
    zero_results: int
    solved: int
    tickets: int

    @property
    def deflection_rate(self) -> float:
        """Solved among the sessions that ended either way; 0 when none did."""
        outcomes = self.solved + self.tickets
        return self.solved / outcomes if outcomes else 0.0

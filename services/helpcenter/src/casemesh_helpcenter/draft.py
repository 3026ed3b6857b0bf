"""The ticket a help session drafts when the user says "not solved": its
description tells the agent what the user searched, read and answered, and
always fits the ticket's description rule, however long the session was."""

from __future__ import annotations

from casemesh.rules import tickets as rules
from casemesh_helpcenter import flows, store

LIMIT = rules.LIMITS["description"]
# Room kept for a note of what was left out ("(and 12 earlier)").
_NOTE = 40


def what_was_tried(session: store.Session, locale: str) -> str:
    """The description: the user's searches in their own words (the latest
    kept first), the flow they followed, then the articles they read (the
    latest kept first); what does not fit is left out and counted."""
    zh = locale == "zh-CN"
    head = "我在自助服务中心尝试过：" if zh else "What I tried in the self-service centre:"
    tail = "仍未解决。" if zh else "It is still not solved."
    flow: list[str] = []
    if session.flow in flows.flows():
        title = flows.text(flows.flows()[session.flow]["title"], locale)
        flow.append(("引导流程：" if zh else "Guided flow: ") + title)
        flow += [f"  {p['question']} → {p['answer']}" for p in session.path]
    room = LIMIT - len("\n".join([head, *flow, tail]))

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
    lines += [*flow, tail]
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

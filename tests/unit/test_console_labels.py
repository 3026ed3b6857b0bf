"""Every step of a case's history the services list has its words on the
pages that show it, in Chinese and in English (no raw event names); so has
every legal element a copyright case can be missing, and every queue the
service levels put a case in, each of which an agent can choose in the
console's queue filter."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from casemesh_appeals.application import PUBLIC_NAMES as APPEAL_EVENTS
from casemesh_appeals.domain import REQUIRED
from casemesh_casequeue import sla
from casemesh_tickets.views import PUBLIC_NAMES as TICKET_EVENTS

WEB = Path(__file__).parents[2] / "clients" / "web"
# Every queue a case can be in: a skill queue, the one for the rest, or one a
# breached case is escalated to (`escalate_to` in sla.json).
QUEUES = sla.load().queue_names


@pytest.mark.parametrize(
    ("page", "prefix", "names"),
    [
        ("console", "aevent", APPEAL_EVENTS.values()),
        ("console", "event", TICKET_EVENTS.values()),
        ("selfservice", "event", TICKET_EVENTS.values()),
    ],
)
def test_each_history_step_has_words_in_both_languages(
    page: str, prefix: str, names: Iterable[str]
) -> None:
    assert without_words(page, prefix, names) == []


@pytest.mark.parametrize(
    ("prefix", "names"),
    [("element", itertools.chain(*REQUIRED.values())), ("queue", QUEUES)],
    ids=["missing legal element", "queue"],
)
def test_each_missing_element_and_queue_has_words_in_both_languages(
    prefix: str, names: Iterable[str]
) -> None:
    """What a copyright case lacks (the service's REQUIRED) and where a case
    waits are shown to agents in words, not as `notice.work.title`, `tier2`."""
    assert without_words("console", prefix, names) == []


def without_words(page: str, prefix: str, names: Iterable[str]) -> list[str]:
    """The names the page's table does not say in both languages."""
    table = (WEB / page / "src" / "i18n.ts").read_text()
    return [n for n in sorted(set(names)) if table.count(f'"{prefix}.{n}":') != 2]


def test_an_agent_can_choose_every_queue_a_case_can_be_in() -> None:
    """A breached case moves to its escalation queue: an agent filtering on
    a queue the console does not offer would never see it again."""
    source = (WEB / "console" / "src" / "queue.ts").read_text()
    listed = re.search(r"^const QUEUES = \[(.*?)\];", source, re.MULTILINE | re.DOTALL)
    assert listed is not None, "queue.ts no longer lists its queues in `const QUEUES = [...]`"
    offered = re.findall(r'"([^"]+)"', listed.group(1))
    assert len(offered) == len(set(offered))
    assert sorted(offered) == sorted(QUEUES)

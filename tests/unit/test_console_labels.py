"""Every step of a case's history the services list has its words on the
pages that show it, in Chinese and in English (no raw event names)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from casemesh_appeals.application import PUBLIC_NAMES as APPEAL_EVENTS
from casemesh_tickets.views import PUBLIC_NAMES as TICKET_EVENTS

WEB = Path(__file__).parents[2] / "clients" / "web"


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
    table = (WEB / page / "src" / "i18n.ts").read_text()
    missing = [n for n in sorted(set(names)) if table.count(f'"{prefix}.{n}":') != 2]
    assert missing == []

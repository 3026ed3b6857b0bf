"""The case index during a rolling update: replicas of two releases project
side by side and record one shared position. A case the older release cannot
read is set aside by it; the newer one's row of it must still be written."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from casemesh.platform.caseindex import IndexProjector
from casemesh.platform.identity import Identity
from casemesh_tickets.application import Tickets, case_row
from tests.integration.test_pools import new_ticket
from tests.support import wait_until

USER = Identity("rollout-user", frozenset({"user"}))
AGENT = Identity("rollout-agent", frozenset({"agent"}))


def test_a_case_the_older_release_set_aside_is_listed_as_the_newer_one_renders_it(
    app: Tickets,
) -> None:
    """The older release reads a ticket as it was opened, not once it was
    solved (here, as if solving recorded a class it does not know): it sets
    the case aside and records the shared position past the solve while the
    newer release renders it. The newer one's batch was refused whole and the
    position taken as the older one's: the ticket was listed as open until
    its next event. It is listed as solved."""
    t = app.create_ticket(USER, new_ticket("rollout"))
    read = app.repository.get

    def reading_as_opened(ident: Any, version: int | None = None) -> Any:
        if str(ident) == t.id and version != 1:
            raise KeyError("casemesh_tickets.domain:Ticket.Solved")
        return read(ident, version=version)

    older_app = SimpleNamespace(
        name=app.name,
        recorder=app.recorder,
        repository=SimpleNamespace(get=reading_as_opened),
        created=None,
    )
    older = IndexProjector(older_app, app.index, case_row)
    older.catch_up()
    assert [x.status for x in app.list_tickets(AGENT, [], 0, "").items] == [t.status]

    overtaken: list[Any] = []

    def rendering(case: Any) -> Any:
        if case.version > 1 and not overtaken:
            overtaken.append(case)
            older.catch_up()  # the older replica records first, past the solve
        return case_row(case)

    app.solve(AGENT, t.id, "已处理", etag="")
    newer = IndexProjector(app, app.index, rendering)
    newer.start()
    try:
        last = app.recorder.max_notification_id()
        wait_until(lambda: overtaken and newer._follower._at == last)
    finally:
        newer.stop()
    assert [x.status for x in app.list_tickets(AGENT, [], 0, "").items] == ["SOLVED"]

"""kill -9 of the reports relay and of the notifier while reports are filed:
every stored report event reaches casemesh.reports.v1, and every reporter is
told of receipt exactly once."""

from __future__ import annotations

import time
import uuid

from casemesh import topics
from tests.conftest import Stack
from tests.e2e.crash import assert_each_told_once, assert_every_event_relayed
from tests.e2e.test_reports import Person


def test_kill_9_of_the_reports_relay_and_notifier_loses_and_repeats_nothing(
    stack: Stack,
) -> None:
    sup = stack.supervisor
    run = uuid.uuid4().hex[:6]
    reporter = Person(stack, f"crash-{run}")
    plan = {
        4: ("kill", "reports-relay"),
        8: ("restart", "reports-relay"),
        12: ("kill", "notifier"),
        16: ("restart", "notifier"),
    }
    emails = []
    for n in range(20):
        if n in plan:
            action, name = plan[n]
            getattr(sup, action)(name)
        email = f"crash-{run}-{n}@example.com"
        reporter.report(f"k{run}{n}", email=email, locale="en")
        emails.append(email)
        time.sleep(0.05)

    assert_every_event_relayed(stack, stack.reports_dsn, "reports_events", topics.REPORTS)
    assert_each_told_once(stack, emails, "report.received")

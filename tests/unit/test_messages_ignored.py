"""A consumer decodes only the messages it acts on: one it ignores cannot
fail it (and be set aside and alerted on), however it reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform import envelope
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import reports_pb2 as rpb
from casemesh_casequeue import sla
from casemesh_casequeue.observe import (
    APPEAL_CLOSED,
    APPEAL_OPEN,
    REPORT_CLOSED,
    REPORT_OPEN,
    TICKET_CLOSED,
    TICKET_OPEN,
    observe,
)
from casemesh_notifier.planner import EXPIRIES
from casemesh_notifier.registry import MESSAGES
from casemesh_notifier.steps import appeal_steps
from casemesh_reports.consumer import handle

UNREADABLE = b"\xff\xff\xff"


def event(message: Any, subject: str, data: bytes = UNREADABLE) -> envelope.CloudEvent:
    return envelope.CloudEvent(
        id="x:1",
        source="casemesh/test",
        type=envelope.type_of(message),
        subject=subject,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data=data,
        key="x",
    )


def test_the_queue_ignores_a_reports_event_of_no_case_without_reading_it() -> None:
    levels = sla.load()
    for message in (rev.ReportFiled(), rev.ReporterWarned(), rev.TrustedFlaggerSet()):
        assert observe(event(message, "reports/r1"), levels) is None


def test_the_queue_reads_a_report_case_event() -> None:
    opened = rev.ReportCaseOpened(
        header=rev.ReportEventHeader(aggregate_id="c1", version=1, state="OPEN")
    )
    observed = observe(event(opened, "report-cases/c1", opened.SerializeToString()), sla.load())
    assert observed is not None
    assert (observed.name, observed.open, observed.created) == ("report-cases/c1", True, True)


def test_a_report_cases_next_round_opening_is_known_and_changes_nothing_in_the_queue() -> None:
    """`ReportCaseSucceeded` on a closed case: a type the consumers know (not
    set aside), which leaves the case in the queue as it is; the next round
    comes to the queue with its own `ReportCaseOpened`."""
    succeeded = rev.ReportCaseSucceeded(
        header=rev.ReportEventHeader(aggregate_id="c1", version=5, state="NO_VIOLATION"),
        next_case_id="c2",
    )
    assert envelope.message_class(envelope.type_of(succeeded)) is rev.ReportCaseSucceeded
    told = event(succeeded, "report-cases/c1", succeeded.SerializeToString())
    assert observe(told, sla.load()) is None


def test_the_notifier_tells_nobody_of_a_report_cases_next_round_opening() -> None:
    """Consumed and ignored: no plan reads it, and it erases nothing."""
    ce_type = envelope.type_of(rev.ReportCaseSucceeded)
    assert ce_type not in MESSAGES and ce_type not in EXPIRIES


def test_the_notifier_tells_nobody_of_a_takedowns_overlap_with_another_notice() -> None:
    """`TakedownOverlapChanged` (another notice started or stopped keeping
    this one's items down; this case does not change): a type the consumers
    know (not set aside as unknown), which the notifier consumes and
    ignores (no plan reads it, it erases nothing), and no step of a
    copyright case's parties, were it read."""
    overlap = aev.TakedownOverlapChanged(
        header=aev.AppealEventHeader(appeal_id="a1", version=4, state="UPHELD", actor="system"),
        other_notice="appeals/a2",
        items=["https://v.example/1"],
        keeps_down=True,
    )
    ce_type = envelope.type_of(overlap)
    assert envelope.message_class(ce_type) is aev.TakedownOverlapChanged
    assert ce_type not in MESSAGES and ce_type not in EXPIRIES
    assert appeal_steps(overlap, "UPHELD") == {}


def test_the_reports_consumer_ignores_other_appeals_events_without_reading_them() -> None:
    class NoApplication:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"an ignored event called {name}")

    for message in (aev.AppealAssigned(), aev.AppealInfoRequested()):
        handle(NoApplication(), event(message, "appeals/a1"))  # type: ignore[arg-type]


def test_every_state_a_case_can_be_in_is_known_to_the_queue_as_open_or_closed() -> None:
    """A state added to a public enum must be placed by the queue: open
    (listed, its clocks running or paused) or closed."""
    states = {
        "ticket": (tev.TicketStatus.keys(), "TICKET_STATUS_", TICKET_OPEN, TICKET_CLOSED),
        "appeal": (apb.AppealState.keys(), "APPEAL_STATE_", APPEAL_OPEN, APPEAL_CLOSED),
        "report": (rpb.ReportCaseState.keys(), "REPORT_CASE_STATE_", REPORT_OPEN, REPORT_CLOSED),
    }
    for kind, (names, prefix, open_states, closed) in states.items():
        known = {n.removeprefix(prefix) for n in names} - {"UNSPECIFIED"}
        assert known == set(open_states) | closed, kind
        assert not set(open_states) & closed, kind


def test_a_case_in_a_state_the_queue_does_not_know_stays_in_it() -> None:
    """From a newer producer: the case stays listed rather than vanish."""
    levels = sla.load()
    for state in ("ESCALATED_TO_LEGAL", "OPEN"):
        assigned = rev.ReportCaseAssigned(
            header=rev.ReportEventHeader(aggregate_id="c1", version=2, state=state)
        )
        got = observe(event(assigned, "report-cases/c1", assigned.SerializeToString()), levels)
        assert got is not None and got.open and not got.waiting
    solved = tev.TicketSolved(
        header=tev.TicketEventHeader(ticket_id="t1", version=3, status=cast(Any, 99))
    )
    got = observe(event(solved, "tickets/t1", solved.SerializeToString()), levels)
    assert got is not None and got.open and got.status == "STATUS_99"

"""A consumer decodes only the messages it acts on: one it ignores cannot
fail it (and be set aside and alerted on), however it reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.platform import envelope
from casemesh_casequeue import sla
from casemesh_casequeue.observe import observe
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


def test_the_reports_consumer_ignores_other_appeals_events_without_reading_them() -> None:
    class NoApplication:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"an ignored event called {name}")

    for message in (aev.AppealAssigned(), aev.AppealInfoRequested()):
        handle(NoApplication(), event(message, "appeals/a1"))  # type: ignore[arg-type]

"""Who the queue knows as a party to a case, read from the case's events:
the people the appeals and reports services refuse a case's work to
(OWN_CASE), whom a claim therefore passes over. Each event's are recorded
beside the case (`store._add_parties`): the case is those of all its
events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh_casequeue import sla
from casemesh_casequeue.model import Case, apply, new_case
from casemesh_casequeue.observe import observe
from tests.support import case_event

LEVELS = sla.load()
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NOTICE = uuid.UUID(int=7)
REPORTED = uuid.UUID(int=8)


def lived(*events: tuple[str, Any]) -> tuple[Case, list[str]]:
    """The case as the queue keeps it after `events` (each its state after,
    and its message), a minute apart, and its parties, in the order its
    events named them: the appeal `appeals/{NOTICE}` after the appeals
    service's events, the report case `report-cases/{REPORTED}` after the
    reports service's."""
    case: Case | None = None
    parties: dict[str, None] = {}
    for version, (state, message) in enumerate(events, start=1):
        case, named = heard(case, version, state, message)
        parties.update(dict.fromkeys(named))
    assert case is not None
    return case, list(parties)


def heard(
    case: Case | None, version: int, state: str, message: Any
) -> tuple[Case, tuple[str, ...]]:
    """The case after its event `message` (at `version`, a minute after the
    one before, `state` after it) is applied, and the parties the event
    names (the case as `lived` says)."""
    at = START + timedelta(minutes=version)
    if isinstance(message.header, aev.AppealEventHeader):
        service, name = "appeals", f"appeals/{NOTICE}"
        message.header.CopyFrom(
            aev.AppealEventHeader(appeal_id=str(NOTICE), version=version, state=state)
        )
    else:
        service, name = "reports", f"report-cases/{REPORTED}"
        message.header.CopyFrom(
            rev.ReportEventHeader(aggregate_id=str(REPORTED), version=version, state=state)
        )
    message.header.time.FromDatetime(at)
    obs = observe(case_event(service, name, version, message, at), LEVELS)
    assert obs is not None
    case = case or new_case(obs, LEVELS)
    apply(case, obs, LEVELS)
    return case, obs.named_parties


def test_a_notices_claimant_and_the_uploader_it_names_are_its_parties() -> None:
    """Filed by its claimant, upheld naming the uploader, who answers with
    a counter-notice: both are parties (each once), as they are to an
    appeal of its decision."""
    notice, parties = lived(
        (
            "SUBMITTED",
            aev.AppealFiled(kind="TAKEDOWN_NOTICE", filer=aev.AppealParty(user_id="user-c")),
        ),
        (
            "UPHELD",
            aev.AppealDecided(
                outcome="UPHOLD", affected_uploader=aev.AppealParty(user_id="user-u")
            ),
        ),
        (
            "FORWARDED_TO_CLAIMANT",
            aev.CounterNoticeFiled(uploader=aev.AppealParty(user_id="user-u")),
        ),
    )
    assert parties == ["user-c", "user-u"]
    assert notice.appeal_of == ""


def test_an_appeal_names_the_decision_it_appeals_as_the_appeals_service_does() -> None:
    """A report case's id in another spelling of its UUID is the same
    decision to the appeals service: its appeals are each other's."""
    decided = uuid.uuid4()
    filed = aev.AppealFiled(
        kind="DECISION_APPEAL",
        filer=aev.AppealParty(user_id="user-v"),
        appeal_of=f"report-cases/{decided.hex.upper()}",
    )
    appeal, parties = lived(("SUBMITTED", filed))
    assert parties == ["user-v"]
    assert appeal.appeal_of == f"report-cases/{decided}"


def test_a_report_cases_reporters_and_the_uploader_it_names_are_its_parties() -> None:
    """Its first reporter, the reporters who joined the case, an appellant
    and the uploader a decision names are parties to it (each once): the
    reports service refuses them its work."""
    removed = rev.ReportParty(user_id="agent-u")
    opened = rev.ReportCaseOpened(
        category="violence_terrorism", lane="ORDINARY", first_reporter="agent-f"
    )
    case, parties = lived(
        ("OPEN", opened),
        ("OPEN", rev.ReportAddedToCase(reporter="agent-b")),
        ("OPEN", rev.ReportAddedToCase(reporter="user-c")),
        ("NO_VIOLATION", rev.ReportCaseDecided(outcome="NO_VIOLATION")),
        ("NO_VIOLATION", rev.ReportCaseAppealed(appellant="agent-a")),
        ("OPEN", rev.ReportCaseDecisionReversed()),
        ("ACTION_TAKEN", rev.ReportCaseDecided(outcome="ACTION_TAKEN", affected_uploader=removed)),
        ("ACTION_TAKEN", rev.ReportCaseAppealed(appellant="agent-b")),
        ("REVERSED", rev.ReportCaseDecisionReversed(affected_uploader=removed)),
    )
    assert parties == ["agent-f", "agent-b", "user-c", "agent-a", "agent-u"]
    assert case.appeal_of == ""


def test_a_case_held_by_an_agent_an_event_names_a_party_is_let_go() -> None:
    """Agent X holds a report case and, off duty, reports the same video:
    they may not work it now (OWN_CASE), so the queue lets it go, for
    another agent to take, rather than leave it hidden until the lease
    runs out. A reporter who does not hold it changes no one's hold."""
    case, _ = lived(
        ("OPEN", rev.ReportCaseOpened(category="violence_terrorism", lane="ORDINARY")),
    )
    for reporter, kept in (("user-c", "agent-x"), ("agent-x", "")):
        case.holder, case.hold_since = "agent-x", START
        case.lease_until = START + timedelta(hours=1)
        added = rev.ReportAddedToCase(reporter=reporter)
        heard(case, case.version + 1, "OPEN", added)
        assert case.holder == kept
        assert (case.lease_until is None) == (not kept)

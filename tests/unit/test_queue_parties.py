"""Who the queue knows as a party to a case, read from the case's events:
the people the appeals service refuses a case's work to (OWN_CASE), whom a
claim therefore passes over."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh_casequeue import sla
from casemesh_casequeue.model import Case, apply, new_case
from casemesh_casequeue.observe import observe
from tests.support import case_event

LEVELS = sla.load()
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NOTICE = uuid.UUID(int=7)


def lived(*events: tuple[str, Any]) -> Case:
    """The appeal `appeals/{NOTICE}` as the queue keeps it after `events`
    (each its state after, and its message), a minute apart."""
    case: Case | None = None
    for version, (state, message) in enumerate(events, start=1):
        at = START + timedelta(minutes=version)
        message.header.CopyFrom(
            aev.AppealEventHeader(appeal_id=str(NOTICE), version=version, state=state)
        )
        message.header.time.FromDatetime(at)
        obs = observe(case_event("appeals", f"appeals/{NOTICE}", version, message, at), LEVELS)
        assert obs is not None
        case = case or new_case(obs, LEVELS)
        apply(case, obs, LEVELS)
    assert case is not None
    return case


def test_a_notices_claimant_and_the_uploader_it_names_are_its_parties() -> None:
    """Filed by its claimant, upheld naming the uploader, who answers with
    a counter-notice: both are parties (each once), as they are to an
    appeal of its decision."""
    notice = lived(
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
    assert notice.parties == ["user-c", "user-u"]
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
    appeal = lived(("SUBMITTED", filed))
    assert appeal.parties == ["user-v"]
    assert appeal.appeal_of == f"report-cases/{decided}"
